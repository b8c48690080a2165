"""A window of guest physical address space as a step function: sorted breakpoints and
one `Code` per run, read from the engine's extents and sparse indexes inside the
window only (step 1 of raster.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from imemviz.model.mmu import BLOCKED, MAPPED, PENDING, PENDING_BLOCKED
from imemviz.model.raster_codes import Code

if TYPE_CHECKING:
    from imemviz.model.memslots import Memslot
    from imemviz.model.mmu import LeafTable
    from imemviz.model.sparse import SparseIndex
    from imemviz.model.vm import VM


# --------------------------------------------------------------------- sources
# Each source is a set of disjoint half-open gfn intervals with a value, as
# three numpy arrays (starts, ends, values), sorted by start.

_EMPTY = np.zeros(0, dtype=np.int64)


def _intervals(
    starts: Sequence[int] | np.ndarray,
    length: int | Sequence[int] | np.ndarray,
    values: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    s = np.asarray(starts, dtype=np.int64)
    e = s + np.asarray(length, dtype=np.int64)
    v = np.zeros(len(s), dtype=np.int64) if values is None else np.asarray(values, np.int64)
    if len(s) > 1:
        order = np.argsort(s, kind="stable")
        s, e, v = s[order], e[order], v[order]
    return s, e, v


def _index_items(idx: SparseIndex[int], lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys in [lo, hi) and their values from a SparseIndex, as sorted int64 arrays."""
    if lo >= hi or not len(idx):
        return _EMPTY, _EMPTY
    keys, vals = idx.arrays_in(lo, hi)
    n = len(keys)
    return np.fromiter(keys, np.int64, n), np.fromiter(vals, np.int64, n)


def _leaf_source(table: LeafTable, start: int, end: int) -> tuple[np.ndarray, ...]:
    """Leaves of a LeafTable touching [start, end): value = level << 2 | state."""
    if start >= end:
        return _EMPTY, _EMPTY, _EMPTY
    c = table.to_arrays(start, end)
    if not len(c):
        return _EMPTY, _EMPTY, _EMPTY
    return _intervals(c.gfn, c.npages, c.state | (c.level << 2))


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
        if ia >= ib:
            continue
        # Single folios and runs of folios (a fallocated range) are one interval each.
        c = file.inode.to_arrays(ia, ib)
        if len(c):
            ss.append(c.index + delta)
            ls.append(c.count << c.order)
            vs.append(c.hwpoison.astype(np.int64))
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
