"""Level of detail: a window of the guest physical address space reduced to pixel codes.

Three steps, all vectorised with numpy, none proportional to guest size:

1. `step_function(vm, start, end)` describes [start, end) as a step function:
   sorted breakpoints and one `Code` per run.  It reads the extents and the
   sparse indexes of the engine (memslots, attributes, leaf tables, guest_memfd
   folios, the VMM's host pages) only inside the window, so its cost is
   proportional to the runs, leaves and folios there.
2. `reduce_to_pixels(bounds, codes, start, end, npix)` splits the window into
   `npix` equal pixels and gives each the code of the gfns it covers.
3. `StepCache` keeps the step function of the whole guest and splices in the
   parts an op changed (`changed_ranges` reads them from the op's events), so
   the app redraws a 4 TiB guest after an op at the cost of the pixels.

**The reduction rule.**  Codes are numbered by significance: when a pixel
covers several gfns it shows the highest code among them.  So a mapped page
beats an unmapped one, a private mapping beats a shared one, a 4K leaf beats a
2M leaf (the splinter is the news), an S-EPT leaf that is BLOCKED or PENDING
beats a MAPPED one (a PENDING page kills the TD when touched) and a poisoned
page beats everything.  Zoomed in to one gfn per pixel the rule does nothing.

**What a gfn's code says** (see `classify`): no memslot (a hole, MMIO for
the guest); else its attribute (private/shared) and the leaf that maps it
in the matching table; when unmapped, whether backing memory exists (a
guest_memfd folio for private, a host page behind the hva for shared), and
the two mismatches that matter to a VMM developer: a private gfn whose
memslot has no guest_memfd (a private access exits with EFAULT), and a
shared gfn whose old private folio was never discarded (memory held twice).
How each code looks (colour, pattern, name) is the app's: `imemviz.app.palette`.

The pieces live in their own modules and are re-exported here: `raster_codes`
(`Code`), `raster_steps` (step 1), `raster_pixels` (step 2) and `raster_dirty`
(the changed ranges of step 3); this module keeps `StepCache` and `guest_extent`.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from imemviz.model.raster_codes import NCODES, Code
from imemviz.model.raster_dirty import changed_ranges, merge_ranges
from imemviz.model.raster_pixels import (
    pixel_bounds,
    raster,
    raster_rows,
    raster_rows_at,
    reduce_to_pixels,
)
from imemviz.model.raster_steps import classify, compress, step_function

if TYPE_CHECKING:
    from imemviz.model.vm import VM

__all__ = [
    "NCODES",
    "Code",
    "StepCache",
    "changed_ranges",
    "classify",
    "compress",
    "guest_extent",
    "merge_ranges",
    "pixel_bounds",
    "raster",
    "raster_rows",
    "raster_rows_at",
    "reduce_to_pixels",
    "step_function",
]


# ---------------------------------------------------------------- the cache


class StepCache:
    """The step function of [0, limit), kept up to date from changed ranges.

    `update(vm, ranges)` recomputes only the given gfn ranges (the op's
    `changed_ranges`) and splices them in; `None` rebuilds everything.
    """

    HISTORY = 16  # updates remembered by `changed_since`

    def __init__(self, vm: VM, limit: int) -> None:
        self.limit = limit
        self.bounds, self.codes = step_function(vm, 0, limit)
        # Every update bumps `serial` and remembers its ranges (None: everything), so a
        # raster made at an older serial can be patched row by row (`changed_since`).
        self.serial = 0
        self._recent: collections.deque[tuple[int, tuple[tuple[int, int], ...] | None]] = (
            collections.deque(maxlen=self.HISTORY)
        )

    def update(self, vm: VM, ranges: Iterable[tuple[int, int]] | None) -> None:
        self.serial += 1
        if ranges is None:
            self._recent.append((self.serial, None))
            self.bounds, self.codes = step_function(vm, 0, self.limit)
            return
        merged = merge_ranges(ranges)
        self._recent.append((self.serial, tuple(merged)))
        for a, b in merged:
            a, b = max(a, 0), min(b, self.limit)
            if a < b:
                self._splice(vm, a, b)

    def changed_since(self, serial: int) -> list[tuple[int, int]] | None:
        """The gfn ranges updated after `serial` (merged), or None when that is unknown
        (a full rebuild since, or too long ago)."""
        if serial == self.serial:
            return []
        out: list[tuple[int, int]] = []
        seen = 0
        for s, ranges in self._recent:
            if s > serial:
                if ranges is None:
                    return None
                out.extend(ranges)
                seen += 1
        if seen != self.serial - serial:
            return None
        return merge_ranges(out)

    def _splice(self, vm: VM, a: int, b: int) -> None:
        nb, nc = step_function(vm, a, b)
        bounds, codes = self.bounds, self.codes
        i = int(np.searchsorted(bounds, a, side="right")) - 1  # bounds[i] <= a < bounds[i+1]
        if bounds[i] < a:  # the run holding a keeps [bounds[i], a)
            left_b, left_c = bounds[: i + 1], codes[: i + 1]
        else:
            left_b, left_c = bounds[:i], codes[:i]
        if b >= bounds[-1]:
            right_b, right_c = bounds[-1:], codes[:0]
        else:
            j = int(np.searchsorted(bounds, b, side="right")) - 1  # bounds[j] <= b
            right_b = np.concatenate([[b], bounds[j + 1 :]])
            right_c = codes[j:]
        self.bounds, self.codes = compress(
            np.concatenate([left_b, nb[:-1], right_b]).astype(np.int64),
            np.concatenate([left_c, nc, right_c]).astype(np.uint8),
        )

    def raster(self, start: int, end: int, npix: int) -> np.ndarray:
        """Pixel codes of [start, end); gfns at or past `limit` count as OUTSIDE."""
        bounds, codes = self.bounds, self.codes
        if end > self.limit:
            bounds = np.append(bounds, end)
            codes = np.append(codes, np.uint8(Code.OUTSIDE))
        if start < 0 or end <= start:
            return np.zeros(max(npix, 0), dtype=np.uint8)
        return reduce_to_pixels(bounds, codes, start, end, npix)

    def raster_rows(self, start: int, row_gfns: int, rows: int, cols: int) -> np.ndarray:
        """A rows x cols raster of rows of `row_gfns` gfns from gfn `start`."""
        return self.raster(start, start + rows * row_gfns, rows * cols).reshape(rows, cols)


def guest_extent(vm: VM, align: int = 1 << 18) -> int:
    """First gfn past the last memslot of address space 0, rounded up to `align` (>= align)."""
    end = max(
        (s.end_gfn for s in vm.memslots.by_id.values() if s.as_id == 0 and s.npages), default=0
    )
    return max(align, -(-end // align) * align)
