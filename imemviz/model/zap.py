"""Invalidation and leaf changes: begin/range_add/end, zaps with the TDX removal sequence,
S-EPT splits, and installing leaves (with TDH.MEM.SEPT.ADD for missing S-EPT pages).

Which tables an invalidation touches follows `kvm_gfn_range_filter_to_root_types`:
on TDX the PRIVATE filter selects the mirror root and SHARED the direct root;
every other VM has one direct root and the filter is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from imemviz.model.events import Event
from imemviz.model.mmu import BLOCKED, MAPPED, PENDING, PENDING_BLOCKED, Leaf, LeafTable
from imemviz.model.units import LEVEL_2M, LEVEL_4K

if TYPE_CHECKING:
    from imemviz.model.vm import VM

FILTER_SHARED = 1
FILTER_PRIVATE = 2


def zap_tables(vm: VM, attr_filter: int) -> list[LeafTable]:
    if not vm.is_tdx:
        return [vm.private, vm.shared]
    out = []
    if attr_filter & FILTER_PRIVATE:
        out.append(vm.private)
    if attr_filter & FILTER_SHARED:
        out.append(vm.shared)
    return out


def invalidate(
    vm: VM,
    pieces: list[tuple[int, int]],
    attr_filter: int,
    extra: list[tuple[int, int]] | None = None,
    during: Callable[[], None] | None = None,
) -> int:
    """One begin/end pair around zapping `pieces` (gfn ranges); returns leaves zapped.

    `during` runs between the zap and end(): the primary change (folios freed,
    attributes stored) that the invalidation protects.

    `extra` ranges only widen the in-progress range (the straddling huge pages
    of an attribute change) without being zapped.
    """
    inv = vm.inv
    inv.begin()
    vm.emit("kvm_mmu_invalidate_begin", inv.in_progress)
    n = 0
    for start, end in pieces:
        inv.range_add(start, end)
        vm.emit("kvm_mmu_invalidate_range_add", start, end)
        n += zap_range(vm, start, end, attr_filter)
    for start, end in extra or ():
        inv.range_add(start, end)
        vm.emit("kvm_mmu_invalidate_range_add", start, end)
    if during is not None:
        during()
    inv.end()
    vm.emit("kvm_mmu_invalidate_end", inv.seq)
    return n


def zap_range(vm: VM, start: int, end: int, attr_filter: int) -> int:
    """Remove every leaf whose span intersects [start, end) in the selected tables.

    A huge leaf that only partly overlaps is zapped whole (the kernel does not
    split on zap), except TDX 2M private leaves, which the S-EPT huge-page
    series demotes first so the rest of the 2M stays accepted.
    """
    n = 0
    for table in zap_tables(vm, attr_filter):
        mirror = vm.is_tdx and table is vm.private
        if mirror:
            _demote_partial(vm, table, start, end)
        leaves = table.pop_touching(start, end)
        n += len(leaves)
        if mirror:
            _remove_private(vm, leaves)
        else:
            root = table.root
            i = vm.op_index
            vm.events.current.extend(
                [
                    (i, "kvm_tdp_mmu_spte_changed", root, gfn, level, pfn, -1)
                    for gfn, level, pfn, _state in leaves
                ]
            )
    return n


def zap_all(vm: VM) -> int:
    """kvm_mmu_zap_all_fast(): every root obsoleted and torn down."""
    vm.emit("kvm_mmu_zap_all_fast")
    n = 0
    for table in (vm.private, vm.shared):
        leaves = table.clear()
        n += len(leaves)
        if vm.is_tdx and table is vm.private:
            _remove_private(vm, leaves)
        else:
            for lf in leaves:
                vm.emit("kvm_tdp_mmu_spte_changed", table.root, lf.gfn, lf.level, lf.pfn, -1)
    return n


def _remove_private(vm: VM, leaves: Sequence[tuple[int, int, int, int]]) -> None:
    """tdx_sept_remove_private_spte(): BLOCK -> TRACK -> REMOVE -> WBINVD -> clear, per leaf."""
    runnable = vm.td_state == "RUNNABLE"
    events: list[Event] = []
    emit = events.append
    i = vm.op_index
    epoch = vm.tdx_epoch
    content = vm.host.content
    for gfn, level, pfn, _state in leaves:
        emit((i, "TDH.MEM.RANGE.BLOCK", gfn, level))
        if runnable:
            epoch += 1
            emit((i, "TDH.MEM.TRACK", epoch))
        emit((i, "TDH.MEM.PAGE.REMOVE", gfn, level, pfn))
        emit((i, "TDH.PHYMEM.PAGE.WBINVD", pfn))
        emit((i, "kvm_tdp_mmu_spte_changed", "mirror", gfn, level, pfn, -1))
        # tdx_clear_page(): the page leaves the TD zeroed, its contents are gone.
        if level == 1:
            content.pop(pfn)
        else:
            content.pop_range(pfn, pfn + (1 << (9 * (level - 1))))
    vm.tdx_epoch = epoch
    vm.events.current.extend(events)


def _demote_partial(vm: VM, table: LeafTable, start: int, end: int) -> None:
    for edge in {start, end - 1}:
        lf = table.lookup(edge)
        if lf is None or lf.level != LEVEL_2M:
            continue
        if start <= lf.gfn and lf.gfn + lf.npages <= end:
            continue
        demote(vm, table, lf)


def demote(vm: VM, table: LeafTable, lf: Leaf) -> bool:
    """Split a 2M S-EPT leaf into 512 4K leaves of the same state: BLOCK, TRACK, DEMOTE."""
    sept = _new_table_page(vm, table, LEVEL_4K, lf.gfn)
    if sept is None:
        return False
    vm.emit("TDH.MEM.RANGE.BLOCK", lf.gfn, lf.level)
    vm.tdx_epoch += 1
    vm.emit("TDH.MEM.TRACK", vm.tdx_epoch)
    vm.emit("TDH.MEM.PAGE.DEMOTE", lf.gfn, lf.level, sept)
    table.remove(lf)
    state = {BLOCKED: MAPPED, PENDING_BLOCKED: PENDING}.get(lf.state, lf.state)
    for k in range(512):
        table.install(Leaf(lf.gfn + k, LEVEL_4K, lf.pfn + k, state))
    vm.emit("kvm_tdp_mmu_spte_changed", table.root, lf.gfn, lf.level, lf.pfn, -1)
    return True


def _new_table_page(vm: VM, table: LeafTable, level: int, gfn: int) -> int | None:
    """Allocate the S-EPT page that holds level-`level` entries for gfn (no event)."""
    key = (level, gfn >> (9 * level))
    pfn = vm.host.allocate(0)
    if pfn is None:
        return None
    table.tables[key] = pfn
    return pfn


def ensure_tables(vm: VM, table: LeafTable, gfn: int, level: int) -> bool:
    """TDX mirror: TDH.MEM.SEPT.ADD every missing S-EPT page on the walk to a `level` leaf."""
    if (level, gfn >> (9 * level)) in table.tables:
        return True  # tables are added top-down and never freed: the walk is complete
    top = 5 if vm.config.gpaw == 52 else 4  # the root table itself belongs to the TD
    for t in range(top - 1, level - 1, -1):
        key = (t, gfn >> (9 * t))
        if key in table.tables:
            continue
        pfn = _new_table_page(vm, table, t, gfn)
        if pfn is None:
            return False
        head = (gfn >> (9 * t)) << (9 * t)
        vm.emit("TDH.MEM.SEPT.ADD", head, t + 1, pfn)
        vm.emit("kvm_tdp_mmu_spte_changed", table.root, head, t + 1, -1, pfn)
    return True


def install(vm: VM, table: LeafTable, leaf: Leaf) -> None:
    """Install a leaf; in the direct root a huge leaf replaces the smaller ones under it."""
    if leaf.level > LEVEL_4K and table.any_below(leaf.gfn, leaf.level):
        # The mirror root never gets here: the fault path refuses promotion there.
        for gfn, level, pfn, _state in table.pop_touching(leaf.gfn, leaf.gfn + leaf.npages):
            vm.emit("kvm_tdp_mmu_spte_changed", table.root, gfn, level, pfn, -1)
    table.install(leaf)
