"""Geometry of the GPA map (no Qt): rows of address space, zoom levels, scrolling.

The map draws gfns [0, extent) as rows of `row_gfns` gfns (a power of two, so
rows start on 2M/1G boundaries and huge pages look aligned).  View
coordinates: x is the gfn offset inside a row, y the row number (fractional
while scrolled).  Zooming halves or doubles `row_gfns`; the widest zoom shows
the whole guest; the deepest shows MIN_ROW_GFNS pages per row.  Cells are
roughly square until MAX_ROW_PX; when the guest is smaller than the view its
rows stretch to fill the height.
"""

from __future__ import annotations

import math

import attrs

MIN_ROW_GFNS = 16
MAX_ROW_PX = 40.0
MIN_FIT_ROW_PX = 4.0  # the whole-guest view keeps rows at least this tall
PAGE = 4096


def _pow2_at_least(n: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


@attrs.define
class MapLayout:
    extent: int = 1 << 20  # gfns drawn
    width: float = 800.0  # view size in pixels
    height: float = 600.0
    row_gfns: int = 1 << 11
    top: float = 0.0  # first visible row

    # ----------------------------------------------------------------- sizes
    def rows_total(self, row_gfns: int | None = None) -> int:
        r = row_gfns or self.row_gfns
        return max(1, -(-self.extent // r))

    def _base_px(self, r: int) -> float:
        return min(max(self.width / r, 1.0), MAX_ROW_PX)

    def row_px(self, row_gfns: int | None = None) -> float:
        r = row_gfns or self.row_gfns
        base = self._base_px(r)
        fill = self.height / self.rows_total(r)
        return max(base, fill) if fill > base else base

    def rows_visible(self) -> float:
        return self.height / self.row_px()

    def fit_row_gfns(self) -> int:
        """The widest zoom: the smallest power of two whose rows all fit the height."""
        r = max(MIN_ROW_GFNS, _pow2_at_least(self.extent / max(self.height, 1)) // 4)
        while self.rows_total(r) * max(self._base_px(r), MIN_FIT_ROW_PX) > self.height and r < (
            1 << 52
        ):
            r *= 2
        return r

    def max_top(self) -> float:
        return max(0.0, self.rows_total() - self.rows_visible())

    # -------------------------------------------------------------- changes
    def clamp(self) -> None:
        self.row_gfns = min(max(self.row_gfns, MIN_ROW_GFNS), self.fit_row_gfns())
        self.top = min(max(self.top, 0.0), self.max_top())

    def fit(self) -> None:
        self.row_gfns = self.fit_row_gfns()
        self.top = 0.0

    def resize(self, width: float, height: float, extent: int | None = None) -> None:
        self.width, self.height = max(width, 1.0), max(height, 1.0)
        if extent is not None:
            self.extent = max(extent, 1)
        self.clamp()

    def scroll_rows(self, rows: float) -> None:
        self.top += rows
        self.clamp()

    def zoom(self, steps: int, anchor_gfn: float | None = None, anchor_frac: float = 0.5) -> bool:
        """Zoom in (steps > 0) or out around a gfn kept at `anchor_frac` of the height."""
        old = self.row_gfns
        if anchor_gfn is None:
            anchor_gfn = (self.top + anchor_frac * self.rows_visible()) * old
        r = old
        for _ in range(abs(steps)):
            r = r // 2 if steps > 0 else r * 2
        self.row_gfns = min(max(r, MIN_ROW_GFNS), self.fit_row_gfns())
        self.top = anchor_gfn / self.row_gfns - anchor_frac * self.rows_visible()
        self.clamp()
        return self.row_gfns != old

    def show_range(self, start: int, end: int) -> None:
        """Zoom so [start, end) is visible as large as possible, and scroll to it."""
        r = self.fit_row_gfns()
        while r > MIN_ROW_GFNS:
            half = r // 2
            rows = (end - 1) // half - start // half + 1
            if rows * self.row_px(half) > self.height * 0.9:
                break
            r = half
        self.row_gfns = r
        first, last = start // r, (end - 1) // r
        self.top = (first + last + 1) / 2 - self.rows_visible() / 2
        self.clamp()

    def ensure_visible(self, gfn: int) -> None:
        row = gfn // self.row_gfns
        if row < self.top:
            self.top = float(row)
        elif row + 1 > self.top + self.rows_visible():
            self.top = row + 1 - self.rows_visible()
        self.clamp()

    # ---------------------------------------------------------- conversions
    def gfn_at(self, x: float, y: float) -> int:
        """The gfn under view coordinates (x, y), clamped to [0, extent)."""
        r = self.row_gfns
        col = min(max(math.floor(x), 0), r - 1)
        g = math.floor(y) * r + col
        return min(max(g, 0), self.extent - 1)

    def cell_of(self, gfn: int) -> tuple[int, int]:
        """(x, y) view coordinates of the top-left corner of gfn's cell."""
        return gfn % self.row_gfns, gfn // self.row_gfns

    def raster_window(self) -> tuple[int, int, int]:
        """(first row, rows, cols) of the raster that covers the view."""
        row0 = max(0, math.floor(self.top))
        last = min(self.rows_total(), math.ceil(self.top + self.rows_visible()))
        rows = max(1, last - row0)
        cols = self.row_gfns if self.row_gfns <= self.width else max(1, int(self.width))
        return row0, rows, cols

    def visible_gfns(self) -> tuple[int, int]:
        row0, rows, _ = self.raster_window()
        return row0 * self.row_gfns, min(self.extent, (row0 + rows) * self.row_gfns)

    def cell_px(self) -> tuple[float, float]:
        return self.width / self.row_gfns, self.row_px()


def staircase(start: int, end: int, row_gfns: int) -> list[tuple[float, float]]:
    """The outline polygon of gfns [start, end) in rows of `row_gfns` (view coordinates)."""
    r = row_gfns
    rs, cs = divmod(start, r)
    re, ce = divmod(end - 1, r)
    ce += 1
    if rs == re:
        return [(cs, rs), (ce, rs), (ce, rs + 1), (cs, rs + 1)]
    return [
        (cs, rs),
        (r, rs),
        (r, re),
        (ce, re),
        (ce, re + 1),
        (0, re + 1),
        (0, rs + 1),
        (cs, rs + 1),
    ]


def nice_step(min_units: float) -> int:
    """The smallest power of two >= min_units (tick spacing in rows or gfns)."""
    return _pow2_at_least(min_units)


def fmt_gpa(gpa: int) -> str:
    """A GPA as the kernel prints it: lower-case hex with 0x."""
    return f"{gpa:#x}"
