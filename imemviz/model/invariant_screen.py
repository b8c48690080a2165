"""Array screens for the invariant checks: which leaves could break an invariant.

`check_invariants` looks at a million leaves; running its per-leaf rules in
Python costs ~8 us a leaf.  These screens run the same rules over columns
(numpy) and return the leaves that *might* fail: every leaf a rule would
flag is among them (a screen is conservative: what it cannot decide cheaply,
such as a leaf backed by the VMM's anonymous memory, it passes on).  The
per-leaf rules then run on those leaves only, so the violations, their order
and their words are exactly what the per-leaf pass gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from imemviz.model.guest_memfd import FOLIO_ORDERS, GmemFile
from imemviz.model.mmu import MAPPED, PENDING, LeafTable
from imemviz.model.sparse import unpack_pfnmaps
from imemviz.model.units import LEVEL_4K, LEVELS

if TYPE_CHECKING:
    from imemviz.model.vm import VM

_I64 = np.int64


def leaf_columns(table: LeafTable) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(gfn, level, pfn, state) of every leaf (`LeafTable.to_arrays`), in
    `LeafTable.all_leaves()` order (by gfn, ties in level order)."""
    c = table.to_arrays()
    return c.gfn, c.level, c.pfn, c.state


def _folio_pfn(f: GmemFile, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pfn, found once) of the folio page at each file index: `found` is False where no
    folio or more than one covers it (the per-leaf rules decide those)."""
    pfn = np.zeros(len(index), _I64)
    hits = np.zeros(len(index), _I64)
    cols = f.inode.to_arrays()
    for order in FOLIO_ORDERS:
        head = index & ~((1 << order) - 1)
        mine = cols.order == order
        single = mine & (cols.count == 1)
        keys, vals = cols.index[single], cols.pfn[single]
        if len(keys):
            i = np.searchsorted(keys, head)
            ok = i < len(keys)
            ok[ok] = keys[i[ok]] == head[ok]
            pfn[ok] = vals[i[ok]] + index[ok] - head[ok]
            hits += ok
        run = mine & (cols.count > 1)  # runs and single folios looked up apart, as stored
        if run.any():
            starts, counts, rpfn = cols.index[run], cols.count[run], cols.pfn[run]
            i = np.searchsorted(starts, head, side="right") - 1
            ok = i >= 0
            ok[ok] = head[ok] < starts[i[ok]] + (counts[i[ok]] << order)
            pfn[ok] = rpfn[i[ok]] + index[ok] - starts[i[ok]]
            hits += ok
    return pfn, hits == 1


def suspect_leaves(
    vm: VM, table: LeafTable, private: bool, cols: tuple[np.ndarray, ...]
) -> np.ndarray:
    """A mask over `cols` (leaf_columns of `table`): True where a per-leaf rule of
    invariants._check_leaf might report something."""
    gfn, level, pfn, state = cols
    n = len(gfn)
    suspect = np.zeros(n, bool)
    if n == 0:
        return suspect
    npages = np.left_shift(1, 9 * (level - 1))
    end = gfn + npages
    # I1: the attributes over the leaf are all PRIVATE (private) or all shared.
    if vm.has_private_mem:
        runs = vm.attributes.to_arrays()
        starts = runs.start
        good = runs.value == (8 if private else 0)
        i = np.searchsorted(starts, gfn, side="right") - 1
        nxt = np.append(starts, np.iinfo(_I64).max)[i + 1]
        suspect |= ~(good[i] & (nxt >= end))
    # I3: inside one memslot.
    slots = vm.memslots._sorted
    bases = np.fromiter((s.base_gfn for s in slots), _I64, len(slots))
    ends = np.fromiter((s.base_gfn + s.npages for s in slots), _I64, len(slots))
    si = np.searchsorted(bases, gfn, side="right") - 1
    has = si >= 0
    has[has] = gfn[has] < ends[si[has]]
    has[has] = end[has] <= ends[si[has]]
    suspect |= ~has
    # I3: huge leaves congruent.
    suspect |= (level > LEVEL_4K) & (((gfn ^ pfn) & (npages - 1)) != 0)
    # I2/I1: both ends translate to the leaf's pfn (guest_memfd backing only).
    for k, slot in enumerate(slots):
        mine = has & (si == k)
        if not mine.any():
            continue
        f = slot.gmem_file
        if not (private or slot.gmem_only) or f is None:
            suspect |= mine  # the VMM's memory or no file: the per-leaf rules decide
            continue
        g, p, e = gfn[mine], pfn[mine], end[mine] - 1
        base = slot.base_gfn - slot.gmem_pgoff
        ok = np.ones(len(g), bool)
        for point in (g, e):
            want_pfn, found = _folio_pfn(f, point - base)
            ok &= found & (want_pfn == p + (point - g))
        sub = suspect[mine]
        sub |= ~ok
        suspect[mine] = sub
    # I7: states.
    if vm.is_tdx and private:
        suspect |= level > vm.config.tdx_private_max_level
        suspect |= (state != MAPPED) & (state != PENDING)
    else:
        suspect |= state != MAPPED
    return suspect


def both_roots(private: tuple[np.ndarray, ...], shared: LeafTable) -> np.ndarray:
    """A mask over the private leaves: True where a shared leaf touches the same gfns
    (one direct root holds both on non-TDX VMs)."""
    gfn, level = private[0], private[1]
    end = gfn + np.left_shift(1, 9 * (level - 1))
    hit = np.zeros(len(gfn), bool)
    cols = shared.to_arrays()
    for lv in LEVELS:
        keys = cols.gfn[cols.level == lv]
        if not len(keys):
            continue
        span = 1 << (9 * (lv - 1))
        hit |= np.searchsorted(keys, end) > np.searchsorted(keys, gfn - span + 1)
    return hit


def host_blocks(vm: VM) -> tuple[np.ndarray, np.ndarray]:
    """(first pfn, pages) of every host block in use or free, as invariants._check_host
    lists them (unsorted): folios, the VMM's pages, S-EPT pages, device pages, other host
    pages, an SNP VMSA page and the allocator's free blocks."""
    starts: list[np.ndarray] = []
    sizes: list[np.ndarray] = []

    def add(pfn: np.ndarray, n: np.ndarray | int) -> None:
        starts.append(np.asarray(pfn, _I64))
        sizes.append(np.broadcast_to(np.asarray(n, _I64), len(starts[-1])))

    for f in vm.files.values():
        folios = f.inode.to_arrays()  # single folios and runs alike: count << order pages
        add(folios.pfn, folios.count << folios.order)
    for level, idx in vm.hva_pages.items():
        add(idx.int_arrays()[1], 1 << (9 * (level - 1)))
    tables = vm.private.tables
    add(np.fromiter(tables.values(), _I64, len(tables)), 1)
    add(unpack_pfnmaps(vm.pfnmap.int_arrays()[1])[0], 1)
    other = vm.host.other
    add(
        np.fromiter(other.keys(), _I64, len(other)),
        np.left_shift(1, np.fromiter(other.values(), _I64, len(other))),
    )
    if vm.snp is not None and vm.snp.vmsa_pfn is not None:  # the firmware's VMSA page
        add(np.array([vm.snp.vmsa_pfn], _I64), 1)
    free = vm.host.alloc.free_runs()
    add(
        np.fromiter((r[0] for r in free), _I64, len(free)),
        np.fromiter((r[2] << r[1] for r in free), _I64, len(free)),
    )
    return np.concatenate(starts), np.concatenate(sizes)
