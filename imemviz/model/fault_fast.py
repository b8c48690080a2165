"""The fault fast path: the common private fault and TDX accept in one function each.

A quiet 4K fault through the general path (`fault.py`) crosses some 25 Python
functions: `_faultin`, `gmem_get_pfn`, `folio_at`, `alloc_folio`,
`pick_order`, `_finish`, `max_mapping_level`, the table install, five event
appends.  Almost every one of them is answering a question whose answer is
fixed for the common case.  Here those answers are checked up front, as
preconditions that touch no state; when every one holds, the lookup, the
folio allocation and the leaf install are done inline and the events go in with
one `extend`.  When any precondition is not certain (a held fault, a dead VM,
an invalidation in progress, SEV-SNP, the v8 profile, an explicit `private`,
a shared fault, huge leaves or folios of another order, runs of folios from
fallocate, a poisoned folio, a missing slot or file, no memory, a 1G accept,
a 2M accept the max-level rule could refuse) it returns None before changing
anything and the op takes the general path, which remains the definition:
the fast path must give the same result, events and state, byte for byte
(tests/model/test_fault_fast.py runs random op sequences through both).

What the fast path does is the kernel's own order, condensed:

- sw_protected private fault: kvm_mmu_page_fault -> kvm_mmu_faultin_pfn()
  (kvm_gmem_get_pfn() allocating an order-0 folio), then under mmu_lock
  kvm_tdp_mmu_map() installs a 4K SPTE (kvm_mmu_max_mapping_level() is 4K
  because the folio is order 0), and the re-executed access reads or writes it.
- TDX TDG.MEM.PAGE.ACCEPT of an unmapped private GPA: the EPT violation maps it
  (tdx_sept_set_private_spte(): TDH.MEM.PAGE.AUG, PENDING), then the accept
  succeeds and zeroes the page.  A 2M accept is taken only when the folio is
  order 9 (gmem_max_order 9) and every 2M condition of max_mapping_level
  holds (the huge-page series allows 2M, lpage_info allows it, the attributes
  are not mixed, gfn and pfn agree modulo 2M, no S-EPT page below).

`ENABLED` switches the fast path off (the differential tests, and a doubt).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

from imemviz.model import fault
from imemviz.model.events import Event
from imemviz.model.fault import PFERR_WRITE
from imemviz.model.result import Result
from imemviz.model.uapi import (
    KVM_MEM_GUEST_MEMFD,
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEM_READONLY,
    PFERR_PRIVATE_ACCESS,
)
from imemviz.model.units import LEVEL_2M, LEVEL_4K, LEVEL_NAMES
from imemviz.model.zap import ensure_tables

if TYPE_CHECKING:
    from imemviz.model.ops import GuestAccept, GuestAccess
    from imemviz.model.vm import VM

ENABLED = True
"""False: every fault takes the general path (fault.py)."""

_HUGE = 512  # pages in a 2M folio or leaf


def guest_access(vm: VM, op: GuestAccess) -> Result:
    """The op handler: the fast path when it applies, else `fault.guest_access`."""
    if ENABLED and not op.hold and op.private is None:
        hit = access(vm, op.gpa, op.vcpu, op.write, op.value)
        if hit is not None:
            return Result(True, None, {"value": hit[0], "level": hit[1], "pfn": hit[2]})
    return fault.guest_access(vm, op)


def guest_accept(vm: VM, op: GuestAccept) -> Result:
    """The op handler: the fast path when it applies, else `fault.guest_accept`."""
    if ENABLED:
        got = accept(vm, op.gpa, op.level)
        if got is not None:
            if got is ENOMEM:
                return Result.fail("ENOMEM")
            return Result(True, None, {"level": got})
    return fault.guest_accept(vm, op)


ENOMEM = "ENOMEM"
"""What `accept` returns when the S-EPT pages it needs cannot be allocated (after the fault,
the folio and the events so far: the general path fails there too, with the same)."""


def access(
    vm: VM, gpa: int, vcpu: int = 0, write: bool = False, value: int | None = None
) -> tuple[int, str, int] | None:
    """`guest_access` without `hold` or `private` (the caller checks those), done fast:
    on a VM that is neither TDX nor SNP, private by its attribute, into a gmem slot whose
    folios are order 0; or an access that finds its leaf.  Returns the ret's (value,
    level name, pfn), or None, having changed nothing, for the general path."""
    if (
        vm.is_tdx
        or vm.snp is not None
        or vm.dead
        or vcpu in vm.in_flight  # EBUSY (a held fault of another vCPU does not matter)
        or vm.inv.in_progress
        or vm.kernel.v8_fault_scope
    ):
        return None
    gfn = gpa >> 12  # no shared bit outside TDX
    private, shared = vm.private, vm.shared
    content = vm.host.content
    # fault._lookup(): one direct root, whatever maps the gfn serves the access.
    v = private._d4k.get(gfn)
    if v is not None:
        hit: tuple[int, int] | None = (v >> 2, LEVEL_4K)
    elif private._d2m or private._d1g or shared._d4k or shared._d2m or shared._d1g:
        leaf = private.lookup(gfn) or shared.lookup(gfn)
        hit = None if leaf is None else (leaf.pfn + (gfn - leaf.gfn), leaf.level)
    else:
        hit = None
    if hit is not None:
        # The access finds its leaf (fault._complete; outside TDX every leaf is MAPPED).
        if write and vm.memslots.readonly:
            return None
        pfn, level = hit
        if write:
            assert value is not None  # ops.py: value is required with write
            vm.host.write(pfn, value)
        else:
            value = content._d.get(pfn, 0)
        return value, LEVEL_NAMES[level], pfn
    attrs = vm.attributes
    if not attrs._vals[bisect_right(attrs._starts, gfn) - 1]:
        return None  # a shared fault (the VMM's hva): the general path
    slots = vm.memslots  # Memslots.lookup(), written out
    k = bisect_right(slots._bases, gfn) - 1
    if k < 0:
        return None
    slot = slots._sorted[k]
    base = slot.base_gfn
    if gfn >= base + slot.npages or not slot.flags & KVM_MEM_GUEST_MEMFD:
        return None
    if write and slot.flags & KVM_MEM_READONLY:
        return None
    file = slot.gmem_file
    if file is None or vm.config.gmem_max_order != 0:
        return None  # order-9/18 folios: max_mapping_level may map more than 4K
    inode = file.inode
    index = gfn - base + slot.gmem_pgoff
    folios, runs = inode.folios, inode.runs
    small = folios[0]
    fv = small._d.get(index)
    if fv is None and (
        runs[0].folios or runs[9].folios or runs[18].folios or folios[9]._d or folios[18]._d
    ):
        folio = inode.folio_at(index)  # a folio of a run, or of another order
        if folio is not None:
            if folio.order:
                return None
            fv = (folio.pfn << 1) | folio.hwpoison
    i = vm.op_index
    code = (PFERR_WRITE if write else 0) | PFERR_PRIVATE_ACCESS
    if fv is None:
        # alloc_folio(): pick_order() is 0 (gmem_max_order 0) when a page is free.
        alloc = vm.host.alloc
        if not alloc.free_pages:
            return None  # ENOMEM: the general path says it
        new_pfn = alloc.alloc(0)
        if new_pfn is None:
            return None  # (cannot happen with free pages; nothing changed if it did)
        pfn = new_pfn
        small._pending.append(index)
        small._d[index] = pfn << 1
        events: list[Event] = [
            (i, "kvm_page_fault", vcpu, gpa, code),
            (i, "kvm_gmem_folio_alloc", file.fd, index, 0, pfn),
        ]
    elif fv & 1:
        return None  # hwpoison: EHWPOISON from the general path
    else:
        pfn = fv >> 1
        events = [(i, "kvm_page_fault", vcpu, gpa, code)]
    root = private.root
    events += (
        (i, "kvm_mmu_spte_requested", gfn, pfn, LEVEL_4K),
        (i, "kvm_tdp_mmu_spte_changed", root, gfn, LEVEL_4K, -1, pfn),
        (i, "kvm_mmu_set_spte", root, gfn, pfn, LEVEL_4K),
    )
    private.leaves[LEVEL_4K]._pending.append(gfn)
    private._d4k[gfn] = pfn << 2  # MAPPED
    vm.events.current += events
    # The guest re-executes the access and finds the leaf (fault._complete).
    if write:
        assert value is not None
        vm.host.write(pfn, value)
    else:
        value = content._d.get(pfn, 0)
    return value, "4K", pfn


def accept(vm: VM, gpa: int, level: int = LEVEL_4K) -> str | None:
    """`guest_accept` (TDG.MEM.PAGE.ACCEPT) of a private GPA with no leaf yet, 4K, or 2M
    with order-9 folios, done fast.  Returns the ret's level name ("4K", "2M"), `ENOMEM`
    when the S-EPT pages cannot be allocated, or None, having changed nothing, for the
    general path."""
    if (
        not vm.is_tdx
        or vm.dead
        or vm.td_state != "RUNNABLE"
        or vm.snp is not None
        or 0 in vm.in_flight  # the accept runs on vCPU 0: EBUSY
        or vm.inv.in_progress
        or vm.kernel.v8_fault_scope
    ):
        return None
    gfn = gpa >> 12
    if gfn & vm.shared_bit:
        return None
    config = vm.config
    order = config.gmem_max_order
    if level == LEVEL_2M:
        if order != 9 or config.tdx_private_max_level < LEVEL_2M:
            return None
        gfn &= ~(_HUGE - 1)
    elif level != LEVEL_4K:
        return None
    table = vm.private
    d2m, d1g = table._d2m, table._d1g
    if gfn in table._d4k or (d2m and gfn & ~0x1FF in d2m) or (d1g and gfn & ~0x3FFFF in d1g):
        return None  # a leaf exists: already accepted, a size mismatch, a demote
    starts = vm.attributes._starts
    run = bisect_right(starts, gfn) - 1  # the attribute run holding gfn
    if not vm.attributes._vals[run]:
        return None  # shared: the fault exits to the VMM
    slots = vm.memslots  # Memslots.lookup(), written out
    k = bisect_right(slots._bases, gfn) - 1
    if k < 0:
        return None
    slot = slots._sorted[k]
    base = slot.base_gfn
    if gfn >= base + slot.npages or not slot.flags & KVM_MEM_GUEST_MEMFD:
        return None
    file = slot.gmem_file
    if file is None:
        return None
    inode = file.inode
    index = gfn - base + slot.gmem_pgoff
    if order == 0:
        head_index = index
    elif order == 9:
        head_index = index & ~(_HUGE - 1)
    else:
        return None
    folios, runs = inode.folios, inode.runs
    store = folios[order]
    fv = store._d.get(head_index)
    new = False
    if fv is None and (
        runs[0].folios  # _other_folios(inode, order), written out
        or runs[9].folios
        or runs[18].folios
        or (order and folios[0]._d)
        or (not order and folios[9]._d)
        or folios[18]._d
    ):
        folio = inode.folio_at(index)  # a folio of a run, or of another order
        if folio is None:
            if order:
                return None  # pick_order() weighs the folios around: the general path
            new = True
        elif folio.hwpoison:
            return None
        else:
            head_index, folio_order, head_pfn = folio.index, folio.order, folio.pfn
    else:
        new = fv is None
        folio_order = order
        if not new:
            assert fv is not None
            if fv & 1:
                return None  # hwpoison
            head_pfn = fv >> 1
    if level == LEVEL_2M and (
        (LEVEL_4K, gfn >> 9) in table.tables  # an S-EPT page below: no promotion
        # Memslot.huge_allowed(gfn, 2M), written out (gfn is the 2M head)
        or slot.flags & KVM_MEM_LOG_DIRTY_PAGES
        or gfn < base
        or gfn + _HUGE > base + slot.npages
        or (base ^ (slot.userspace_addr >> 12)) & (_HUGE - 1)
        # VM.mixed(gfn, 2M): the 2M is not inside the one attribute run
        or (vm.has_private_mem and run + 1 < len(starts) and starts[run + 1] < gfn + _HUGE)
        # the folio maps 2M (order 9 or more) with gfn and pfn equal modulo 2M
        or (new and (index ^ gfn) & (_HUGE - 1))
        or (not new and (folio_order < 9 or (gfn ^ (head_pfn + index - head_index)) & 511))
    ):
        return None
    if new:
        if order and head_index + _HUGE > inode.npages:
            return None  # pick_order() falls back to order 0 at the file's end
        alloc = vm.host.alloc
        if not order and not alloc.free_pages:
            return None
        alloc_pfn = alloc.alloc(order)
        if alloc_pfn is None:
            return None  # no block of the order: the general path picks or fails
        head_pfn = alloc_pfn
    # Nothing has changed up to here; from here on the fast path commits.
    pfn = head_pfn + (index - head_index)
    i = vm.op_index
    fault_ev = (i, "kvm_page_fault", 0, gfn << 12, PFERR_WRITE)
    requested = (i, "kvm_mmu_spte_requested", gfn, pfn, level)
    if new:
        store._pending.append(head_index)
        store._d[head_index] = head_pfn << 1
        alloc_ev = (i, "kvm_gmem_folio_alloc", file.fd, head_index, order, head_pfn)
        events: list[Event] = [fault_ev, alloc_ev, requested]
    else:
        events = [fault_ev, requested]
    cur = vm.events.current
    root = table.root
    if (level, gfn >> (9 * level)) not in table.tables:
        cur += events
        events = []
        if not ensure_tables(vm, table, gfn, level):  # TDH.MEM.SEPT.ADD the missing pages
            return ENOMEM
    leaves = table.leaves[level]
    leaves._pending.append(gfn)
    leaves._d[gfn] = pfn << 2  # AUG leaves it PENDING; the ACCEPT makes it MAPPED
    if vm.host.content._d:
        vm.host.clear(pfn, 1 << (9 * (level - 1)))  # ACCEPT initialises the page to zero
    events += (
        (i, "kvm_tdp_mmu_spte_changed", root, gfn, level, -1, pfn),
        (i, "TDH.MEM.PAGE.AUG", gfn, level, pfn),
        (i, "TDG.MEM.PAGE.ACCEPT", gfn, level, "TDX_SUCCESS"),
    )
    vm.events.current += events
    return "4K" if level == LEVEL_4K else "2M"
