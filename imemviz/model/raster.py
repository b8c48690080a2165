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
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

from imemviz.model.mmu import BLOCKED, MAPPED, PENDING, PENDING_BLOCKED

if TYPE_CHECKING:
    from imemviz.model.memslots import Memslot
    from imemviz.model.sparse import SparseIndex
    from imemviz.model.vm import VM


class Code(IntEnum):
    """Pixel codes, in increasing significance (the reduction keeps the highest)."""

    OUTSIDE = 0  # past the end of the drawn address space
    HOLE = 1  # no memslot: a hole, MMIO for the guest
    SHARED_EMPTY = 2  # shared, nothing behind the hva yet
    PRIVATE_EMPTY = 3  # private, no guest_memfd folio yet
    SHARED_POPULATED = 4  # shared, host page exists, not mapped in the EPT
    SHARED_KEPT = 5  # shared, but its private guest_memfd folio is still allocated
    PRIVATE_ALLOCATED = 6  # private, folio allocated, not mapped
    NO_BACKING = 7  # private, but the memslot has no guest_memfd: private access -> EFAULT
    SHARED_1G = 8
    SHARED_2M = 9
    SHARED_4K = 10
    PRIVATE_1G = 11
    PRIVATE_2M = 12
    PRIVATE_4K = 13
    BLOCKED = 14  # S-EPT leaf BLOCKED (only inside a zap; never between ops)
    PENDING_1G = 15  # S-EPT leaf added by TDH.MEM.PAGE.AUG, not accepted yet
    PENDING_2M = 16
    PENDING_4K = 17
    HWPOISON = 18  # the backing page is poisoned: an access gets EHWPOISON


NCODES = len(Code)


# --------------------------------------------------------------------- sources
# Each source is a set of disjoint half-open gfn intervals with a value, as
# three numpy arrays (starts, ends, values), sorted by start.

_EMPTY = np.zeros(0, dtype=np.int64)


def _intervals(
    starts: Sequence[int] | np.ndarray,
    length: int | np.ndarray,
    values: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    s = np.asarray(starts, dtype=np.int64)
    e = s + np.asarray(length, dtype=np.int64)
    v = np.zeros(len(s), dtype=np.int64) if values is None else np.asarray(values, np.int64)
    if len(s) > 1:
        order = np.argsort(s, kind="stable")
        s, e, v = s[order], e[order], v[order]
    return s, e, v


def _index_items(idx: SparseIndex, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys in [lo, hi) and their values from a SparseIndex, as sorted int64 arrays."""
    if lo >= hi or not len(idx):
        return _EMPTY, _EMPTY
    keys, vals = idx.arrays_in(lo, hi)
    n = len(keys)
    return np.fromiter(keys, np.int64, n), np.fromiter(vals, np.int64, n)


def _leaf_source(table, start: int, end: int) -> tuple[np.ndarray, ...]:
    """Leaves of a LeafTable touching [start, end): value = level << 2 | state."""
    ss, ls, vs = [], [], []
    for level, idx in table.leaves.items():
        n = 1 << (9 * (level - 1))
        k, v = _index_items(idx, start & ~(n - 1), end)
        if len(k):
            ss.append(k)
            ls.append(np.full(len(k), n, dtype=np.int64))
            vs.append((v & 3) | (level << 2))
    if not ss:
        return _EMPTY, _EMPTY, _EMPTY
    return _intervals(np.concatenate(ss), np.concatenate(ls), np.concatenate(vs))


def _slots_in(vm: VM, start: int, end: int) -> list[Memslot]:
    return [s for s in vm.memslots.in_range(start, end) if s.npages]


def _folio_source(vm: VM, slots: list[Memslot], start: int, end: int) -> tuple[np.ndarray, ...]:
    """guest_memfd folios behind the slots' gfns in [start, end): value = hwpoison."""
    ss, ls, vs = [], [], []
    for slot in slots:
        file = slot.gmem_file
        if file is None:
            continue
        a, b = max(start, slot.base_gfn), min(end, slot.end_gfn)
        ia, ib = slot.gmem_index(a), slot.gmem_index(b)
        delta = slot.base_gfn - slot.gmem_pgoff  # gfn = index + delta
        for order, idx in file.inode.folios.items():
            n = 1 << order
            k, v = _index_items(idx, ia & ~(n - 1), ib)
            if len(k):
                ss.append(k + delta)
                ls.append(np.full(len(k), n, dtype=np.int64))
                vs.append(v & 1)
        # Runs of folios (a fallocated range) are one interval each.
        runs = file.inode.runs_in(ia, ib)
        if runs:
            ss.append(np.array([r.index for r in runs], np.int64) + delta)
            ls.append(np.array([r.count << r.order for r in runs], np.int64))
            vs.append(np.array([int(r.hwpoison) for r in runs], np.int64))
    if not ss:
        return _EMPTY, _EMPTY, _EMPTY
    return _intervals(np.concatenate(ss), np.concatenate(ls), np.concatenate(vs))


def _host_source(vm: VM, slots: list[Memslot], start: int, end: int) -> tuple[np.ndarray, ...]:
    """Host pages behind the slots' hvas in [start, end); value 1 = the hva is poisoned."""
    ss, ls, vs = [], [], []
    for slot in slots:
        a, b = max(start, slot.base_gfn), min(end, slot.end_gfn)
        ha = (slot.userspace_addr >> 12) + (a - slot.base_gfn)
        hb = ha + (b - a)
        delta = slot.base_gfn - (slot.userspace_addr >> 12)  # gfn = hvpn + delta
        for level, idx in vm.hva_pages.items():
            n = 1 << (9 * (level - 1))
            k, _v = _index_items(idx, ha & ~(n - 1), hb)
            if len(k):
                ss.append(k + delta)
                ls.append(np.full(len(k), n, dtype=np.int64))
                vs.append(np.zeros(len(k), dtype=np.int64))
        if vm.poisoned_hva:
            hit = [p + delta for p in vm.poisoned_hva if ha <= p < hb]
            if hit:
                ss.append(np.array(hit, dtype=np.int64))
                ls.append(np.ones(len(hit), dtype=np.int64))
                vs.append(np.ones(len(hit), dtype=np.int64))
    if not ss:
        return _EMPTY, _EMPTY, _EMPTY
    s, e, v = _intervals(np.concatenate(ss), np.concatenate(ls), np.concatenate(vs))
    if v.any():
        # A poisoned hva page is a 4K hole inside a huge page entry: split so the
        # intervals stay disjoint, the poisoned one winning.
        s, e, v = _disjoint_with_priority(s, e, v)
    return s, e, v


def _disjoint_with_priority(s: np.ndarray, e: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
    """Overlapping intervals made disjoint; where they overlap the larger value wins."""
    bounds = np.unique(np.concatenate([s, e]))
    segs = bounds[:-1]
    val = np.full(len(segs), -1, dtype=np.int64)
    for lo, hi, x in zip(s.tolist(), e.tolist(), v.tolist(), strict=True):
        i, j = np.searchsorted(segs, lo), np.searchsorted(segs, hi)
        np.maximum(val[i:j], x, out=val[i:j])
    keep = val >= 0
    return segs[keep], bounds[1:][keep], val[keep]


def _lookup(src: tuple[np.ndarray, ...], xs: np.ndarray, missing: int = -1) -> np.ndarray:
    """The value of the interval containing each x (sorted or not), or `missing`."""
    s, e, v = src
    if not len(s):
        return np.full(len(xs), missing, dtype=np.int64)
    i = np.searchsorted(s, xs, side="right") - 1
    ic = np.clip(i, 0, None)
    inside = (i >= 0) & (xs < e[ic])
    return np.where(inside, v[ic], missing)


# --------------------------------------------------------- the step function

_PRIV_MAPPED = {1: Code.PRIVATE_4K, 2: Code.PRIVATE_2M, 3: Code.PRIVATE_1G}
_PRIV_PENDING = {1: Code.PENDING_4K, 2: Code.PENDING_2M, 3: Code.PENDING_1G}
_SHARED_MAPPED = {1: Code.SHARED_4K, 2: Code.SHARED_2M, 3: Code.SHARED_1G}


def _private_leaf_table() -> np.ndarray:
    """level << 2 | state -> code, for the private table."""
    t = np.zeros(16, dtype=np.uint8)
    for level in (1, 2, 3):
        t[level << 2 | MAPPED] = _PRIV_MAPPED[level]
        t[level << 2 | PENDING] = _PRIV_PENDING[level]
        t[level << 2 | PENDING_BLOCKED] = _PRIV_PENDING[level]
        t[level << 2 | BLOCKED] = Code.BLOCKED
    return t


_PRIV_LEAF_CODE = _private_leaf_table()
_SHARED_LEAF_CODE = np.zeros(16, dtype=np.uint8)
for _lv, _c in _SHARED_MAPPED.items():
    _SHARED_LEAF_CODE[_lv << 2 : (_lv << 2) + 4] = _c


def step_function(vm: VM, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) as runs: (bounds int64[k+1], codes uint8[k]); adjacent runs differ.

    bounds[0] == start and bounds[-1] == end.  Cost: proportional to the
    extents, leaves, folios and host pages inside the window.
    """
    if end <= start:
        return np.array([start], dtype=np.int64), np.zeros(0, dtype=np.uint8)
    slots = _slots_in(vm, start, end)
    slot_src = _intervals(
        [s.base_gfn for s in slots], [s.npages for s in slots], list(range(len(slots)))
    )
    # Attribute runs clipped to the window.
    run_starts, run_vals = vm.attributes.runs_in(start, end)
    a_starts = np.array(run_starts, dtype=np.int64)
    a_starts[0] = start
    a_vals = (np.array(run_vals, dtype=np.int64) != 0).astype(np.int64)
    a_ends = np.append(a_starts[1:], end)
    attr_src = (a_starts, a_ends, a_vals)
    priv_src = _leaf_source(vm.private, start, end)
    shared_src = _leaf_source(vm.shared, start, end)
    folio_src = _folio_source(vm, slots, start, end)
    host_src = _host_source(vm, slots, start, end)

    parts = [np.array([start, end], dtype=np.int64), a_starts]
    for src in (slot_src, priv_src, shared_src, folio_src, host_src):
        parts.append(src[0])
        parts.append(src[1])
    bounds = np.unique(np.concatenate(parts))
    bounds = bounds[(bounds >= start) & (bounds <= end)]
    xs = bounds[:-1]

    codes = classify(
        vm,
        slots,
        slot=_lookup(slot_src, xs),
        private=_lookup(attr_src, xs, 0) > 0,
        priv_leaf=_lookup(priv_src, xs),
        shared_leaf=_lookup(shared_src, xs),
        folio=_lookup(folio_src, xs),
        host=_lookup(host_src, xs),
    )
    return compress(bounds, codes)


def classify(
    vm: VM,
    slots: list[Memslot],
    *,
    slot: np.ndarray,
    private: np.ndarray,
    priv_leaf: np.ndarray,
    shared_leaf: np.ndarray,
    folio: np.ndarray,
    host: np.ndarray,
) -> np.ndarray:
    """The code of each elementary run from what lies behind it (arrays of equal length).

    `slot` is an index into `slots` or -1; leaves are level << 2 | state or -1;
    `folio` is hwpoison (0/1) or -1; `host` is poisoned (0/1) or -1.
    """
    n = len(slot)
    in_slot = slot >= 0
    si = np.clip(slot, 0, None)
    has_file = np.array([s.gmem_file is not None for s in slots] or [False], dtype=bool)[si]
    gmem_only = np.array([s.gmem_only for s in slots] or [False], dtype=bool)[si]

    code = np.full(n, Code.HOLE, dtype=np.uint8)
    # Shared gfns.
    sh = in_slot & ~private
    sh_backing_folio = gmem_only  # an mmap-able guest_memfd backs shared gfns itself
    sh_code = np.where(host >= 0, Code.SHARED_POPULATED, Code.SHARED_EMPTY).astype(np.uint8)
    sh_code = np.where(sh_backing_folio & (folio >= 0), Code.SHARED_POPULATED, sh_code)
    sh_code = np.where(~sh_backing_folio & (folio >= 0), Code.SHARED_KEPT, sh_code)
    sh_code = np.where(shared_leaf >= 0, _SHARED_LEAF_CODE[np.clip(shared_leaf, 0, 15)], sh_code)
    poisoned_sh = np.where(sh_backing_folio, folio == 1, host == 1)
    sh_code = np.where(poisoned_sh, Code.HWPOISON, sh_code)
    code = np.where(sh, sh_code, code)
    # Private gfns.
    pr = in_slot & private
    pr_code = np.where(folio >= 0, Code.PRIVATE_ALLOCATED, Code.PRIVATE_EMPTY).astype(np.uint8)
    pr_code = np.where(has_file, pr_code, Code.NO_BACKING)
    pr_code = np.where(priv_leaf >= 0, _PRIV_LEAF_CODE[np.clip(priv_leaf, 0, 15)], pr_code)
    pr_code = np.where(folio == 1, Code.HWPOISON, pr_code)
    code = np.where(pr, pr_code, code)
    if not vm.is_tdx:
        # One direct root: a leaf of either table maps the gfn whatever the attribute.
        other = np.where(private, shared_leaf, priv_leaf)
        stray = in_slot & (other >= 0) & (np.where(private, priv_leaf, shared_leaf) < 0)
        stray_code = np.where(
            private,
            _SHARED_LEAF_CODE[np.clip(other, 0, 15)],
            _PRIV_LEAF_CODE[np.clip(other, 0, 15)],
        )
        code = np.where(stray, stray_code, code)
    return code.astype(np.uint8)


def compress(bounds: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge adjacent runs of equal code."""
    if len(codes) <= 1:
        return bounds, codes
    keep = np.empty(len(codes), dtype=bool)
    keep[0] = True
    np.not_equal(codes[1:], codes[:-1], out=keep[1:])
    return np.append(bounds[:-1][keep], bounds[-1]), codes[keep]


# ------------------------------------------------------------- pixel reduction


def pixel_bounds(start: int, end: int, npix: int) -> np.ndarray:
    """The npix + 1 integer gfn boundaries of `npix` equal pixels over [start, end)."""
    span = end - start
    q, r = divmod(span, npix)
    i = np.arange(npix + 1, dtype=np.int64)
    return start + i * q + (i * r) // npix


def _pixel_of(x: np.ndarray, start: int, q: int, r: int, npix: int) -> np.ndarray:
    """For gfns x in [start, end): the pixel i with p_i <= x < p_i+1 (exact, vectorised)."""
    span = q * npix + r
    i = np.floor((x - start).astype(np.float64) * (npix / span)).astype(np.int64)
    i = np.clip(i, 0, npix - 1)
    p = start + i * q + (i * r) // npix
    i = np.where(p > x, i - 1, i)
    p = start + (i + 1) * q + ((i + 1) * r) // npix
    return np.where(p <= x, i + 1, i)


def reduce_to_pixels(
    bounds: np.ndarray, codes: np.ndarray, start: int, end: int, npix: int
) -> np.ndarray:
    """Codes of `npix` equal pixels over [start, end) from a step function covering it.

    A pixel covering several gfns gets the highest code among them (the
    module's significance rule); with fewer gfns than pixels, each pixel
    shows the gfn at its left edge.  Cost: O(runs in the window + npix),
    with no per-pixel search.
    """
    if npix <= 0 or end <= start or not len(codes):
        return np.zeros(max(npix, 0), dtype=np.uint8)
    # The runs inside the window: i0 holds start, i1 - 1 holds end - 1.
    i0 = int(np.searchsorted(bounds, start, side="right")) - 1
    i1 = int(np.searchsorted(bounds, end, side="left"))
    i0 = max(i0, 0)
    inner = bounds[i0 + 1 : i1]  # run starts strictly inside the window
    wcodes = codes[i0:i1]
    span = end - start
    if span <= npix:
        # Pixel i shows gfn start + floor(i * span / npix); run k starts at pixel
        # ceil((b_k - start) * npix / span).
        first_pix = -((-(inner - start) * npix) // span)
        counts = np.diff(np.concatenate([[0], first_pix, [npix]]))
        return np.repeat(wcodes, counts)
    q, r = divmod(span, npix)
    k = _pixel_of(inner, start, q, r, npix)  # the pixel each inner run starts in
    p_k = start + k * q + (k * r) // npix
    # Run at each pixel's left edge: runs starting at or before that edge.
    edge = np.where(p_k == inner, k, k + 1)
    cnt = np.bincount(edge, minlength=npix + 1)[:npix]
    out = wcodes[np.cumsum(cnt)]
    # Runs starting inside a pixel also touch it.
    np.maximum.at(out, k, wcodes[1:])
    return out


def raster(vm: VM, start: int, end: int, npix: int) -> np.ndarray:
    """Pixel codes (uint8[npix]) of the window [start, end), straight from the VM."""
    b, c = step_function(vm, start, end)
    return reduce_to_pixels(b, c, start, end, npix)


def raster_rows(vm: VM, start: int, row_gfns: int, rows: int, cols: int) -> np.ndarray:
    """A rows x cols raster of rows of `row_gfns` gfns starting at gfn `start`."""
    end = start + rows * row_gfns
    return raster(vm, start, end, rows * cols).reshape(rows, cols)


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


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, merged (touching ranges joined) half-open ranges."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(r for r in ranges if r[0] < r[1]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


# ------------------------------------------------------- what an op changed

# Events that change nothing the raster shows.
_NO_RASTER_CHANGE = frozenset(
    {
        "kvm_page_fault",
        "kvm_mmu_spte_requested",
        "kvm_userspace_exit",
        "kvm_mmio",
        "kvm_mmu_invalidate_begin",
        "kvm_mmu_invalidate_end",
        "kvm_mmu_page_fault_retry",
        "kvm_faultin_pfn",
        "kvm_gmem_create",
        "kvm_gmem_release",
        "kvm_gmem_fallocate",
        "kvm_gmem_invalidate_begin",
        "kvm_gmem_invalidate_end",
        "kvm_vm_dead",
        "handle_mm_fault",
        "memory_failure_event",
        "TDH.MR.EXTEND",
        "TDH.MR.FINALIZE",
        "TDH.MEM.TRACK",
        "TDH.PHYMEM.PAGE.WBINVD",
        "TDH.MEM.SEPT.ADD",
        "note",
    }
)
# Events carrying (gfn, level) in their first two fields (after the name).
_GFN_LEVEL = {
    "TDH.MEM.PAGE.AUG": 0,
    "TDH.MEM.RANGE.BLOCK": 0,
    "TDH.MEM.PAGE.REMOVE": 0,
    "TDH.MEM.PAGE.DEMOTE": 0,
    "TDG.MEM.PAGE.ACCEPT": 0,
}


def changed_ranges(vm: VM, events: Iterable[tuple]) -> list[tuple[int, int]] | None:
    """The gfn ranges whose raster codes an op's events may have changed (merged).

    `vm` is the state right after the op (bindings and memslots are read to
    turn file indexes and hvas into gfns).  None means "anything may have
    changed": a memslot move, a zap of everything, or an event this function
    does not know.
    """
    out: list[tuple[int, int]] = []
    add = out.append
    events = list(events)
    # New S-EPT table pages (TDH.MEM.SEPT.ADD) are announced as spte changes at their
    # level too; they map nothing, so they change no pixel.
    tables = {ev[4] for ev in events if ev[1] == "TDH.MEM.SEPT.ADD"}
    for ev in events:
        name = ev[1]
        f = ev[2:]
        if name in _NO_RASTER_CHANGE:
            continue
        if name in ("kvm_vm_set_mem_attributes", "kvm_mmu_invalidate_range_add"):
            add((f[0], f[1]))
        elif name == "kvm_tdp_mmu_spte_changed":
            if f[3] == -1 and f[4] in tables:
                continue
            add((f[1], f[1] + (1 << (9 * (f[2] - 1)))))
        elif name == "kvm_mmu_set_spte":
            add((f[1], f[1] + (1 << (9 * (f[3] - 1)))))
        elif name in _GFN_LEVEL:
            add((f[0], f[0] + (1 << (9 * (f[1] - 1)))))
        elif name in ("TDH.MEM.PAGE.ADD", "kvm_gmem_populate"):
            add((f[0], f[0] + 1))
        elif name in ("kvm_gmem_folio_alloc", "kvm_gmem_folio_free", "kvm_gmem_error_folio"):
            rs = _file_ranges(vm, f[0], f[1], f[1] + (1 << f[2]))
            if rs is None:
                return None
            out.extend(rs)
        elif name in ("kvm_gmem_folios_alloc", "kvm_gmem_folios_free"):
            rs = _file_ranges(vm, f[0], f[1], f[1] + (f[4] << f[2]))
            if rs is None:
                return None
            out.extend(rs)
        elif name == "kvm_set_memslot":
            if f[1] == "MOVE":
                return None
            add((f[2], f[2] + f[3]))
        elif name in ("kvm_gmem_bind", "kvm_gmem_unbind"):
            slot = vm.memslots.by_id.get(f[1])
            if slot is None:
                return None
            add((slot.base_gfn, slot.end_gfn))
        elif name in ("mm_page_alloc", "mm_page_free"):
            hva = f[2]
            out.extend(_hva_ranges(vm, hva, hva + (4096 << f[1])))
        elif name in ("madvise", "kvm_unmap_hva_range"):
            out.extend(_hva_ranges(vm, f[0], f[1]))
        else:
            return None  # kvm_mmu_zap_all_fast, or an event added after this was written
    return merge_ranges(out)


def _file_ranges(vm: VM, fd: int, i0: int, i1: int) -> list[tuple[int, int]] | None:
    file = vm.files.get(fd)
    if file is None:
        return None
    out = []
    for b in file.bindings_in(i0, i1):
        slot = vm.memslots.by_id.get(b.slot)
        if slot is None:
            return None
        a, z = max(i0, b.pgoff), min(i1, b.pgoff + b.npages)
        out.append((slot.base_gfn + a - b.pgoff, slot.base_gfn + z - b.pgoff))
    return out


def _hva_ranges(vm: VM, lo: int, hi: int) -> list[tuple[int, int]]:
    out = []
    for s in vm.memslots.by_id.values():
        if s.as_id or not s.npages:
            continue
        a, b = max(lo, s.userspace_addr), min(hi, s.hva_end)
        if a < b:
            out.append(
                (
                    s.base_gfn + ((a - s.userspace_addr) >> 12),
                    s.base_gfn + ((b - s.userspace_addr + 0xFFF) >> 12),
                )
            )
    return out


def guest_extent(vm: VM, align: int = 1 << 18) -> int:
    """First gfn past the last memslot of address space 0, rounded up to `align` (>= align)."""
    end = max(
        (s.end_gfn for s in vm.memslots.by_id.values() if s.as_id == 0 and s.npages), default=0
    )
    return max(align, -(-end // align) * align)


def raster_rows_at(
    bounds: np.ndarray,
    codes: np.ndarray,
    limit: int,
    row_starts: np.ndarray,
    row_gfns: int,
    cols: int,
) -> np.ndarray:
    """(rows, cols) codes of rows of `row_gfns` gfns that start anywhere (`row_starts`),
    from the step function of [0, limit); gfns at or past `limit` are OUTSIDE.

    Each row is split as `reduce_to_pixels` splits it, so a row equals the same row of
    `StepCache.raster_rows`; one pass over all the rows (a folded map stacks rows from
    many places: one call instead of one per stretch).  Cost: O(pixels * log runs).
    """
    starts = np.asarray(row_starts, dtype=np.int64)
    if len(starts) == 0 or cols <= 0:
        return np.zeros((len(starts), max(cols, 0)), dtype=np.uint8)
    b = np.append(bounds[:-1], limit).astype(np.int64)
    c = np.append(codes, np.uint8(Code.OUTSIDE)).astype(np.uint8)  # [limit, ...) is outside
    pb = pixel_bounds(0, row_gfns, cols)
    left = (starts[:, None] + pb[None, :-1]).ravel()
    last = (starts[:, None] + pb[None, 1:]).ravel() - 1
    lo = np.searchsorted(b, left, side="right") - 1
    hi = np.searchsorted(b, last, side="right") - 1
    out = c[np.clip(lo, 0, None)]
    multi = np.flatnonzero(hi > lo)
    if len(multi):
        # The most significant code of runs lo..hi: max over c[lo:hi + 1], by reduceat on
        # interleaved (lo, hi + 1) index pairs (every other result is the one wanted).
        idx = np.empty(2 * len(multi), dtype=np.int64)
        idx[0::2] = lo[multi]
        idx[1::2] = hi[multi] + 1
        cc = np.append(c, np.uint8(0))
        out[multi] = np.maximum.reduceat(cc, idx)[0::2]
    return out.reshape(len(starts), cols)
