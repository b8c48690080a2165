"""The VMM's side: anonymous memory behind memslots' userspace_addr (first-touch allocation,
THP/hugetlb-sized pages), host_access, madvise(MADV_DONTNEED) with its mmu-notifier
invalidation, and poisoned shared pages.

Two other things can sit behind a memslot's userspace range: device memory the
VMM mapped with `host_mmap_pfnmap` (pfnmap.py), and, on a slot bound to a
guest_memfd created with MMAP, the VMM's mmap of that guest_memfd, whose pages
are the guest_memfd's own (kvm_gmem_fault_user_mapping(), contract 3.4 "Host
view of guest_memfd")."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from imemviz.model.result import Result
from imemviz.model.sparse import unpack_pfnmap
from imemviz.model.units import LEVEL_4K
from imemviz.model.zap import FILTER_SHARED, invalidate

if TYPE_CHECKING:
    from imemviz.model.memslots import Memslot
    from imemviz.model.ops import HostAccess, Madvise
    from imemviz.model.vm import VM

U64 = 1 << 64


def _shared_level(vm: VM) -> int:
    return {1 << 12: 1, 1 << 21: 2, 1 << 30: 3}[vm.config.shared_page_size]


def host_lookup(vm: VM, hvpn: int) -> tuple[int, int, int] | None:
    """(level, first hva page, pfn of that page) of the host page mapping hva page `hvpn`:
    device memory (VM_PFNMAP) or the VMM's anonymous memory."""
    if vm.pfnmap:
        v = vm.pfnmap.get(hvpn)
        if v is not None:
            return LEVEL_4K, hvpn, unpack_pfnmap(v)[0]
    for level, idx in vm.hva_pages.items():
        head = hvpn & ~((1 << (9 * (level - 1))) - 1)
        pfn = idx.get(head)
        if pfn is not None:
            return level, head, pfn
    return None


def _inside_a_slot(vm: VM, head: int, n: int) -> bool:
    return any(
        s.userspace_addr >> 12 <= head and head + n <= s.hva_end >> 12
        for s in vm.memslots.by_id.values()
    )


def _populate(vm: VM, hvpn: int) -> tuple[int, int, int] | None:
    """First touch: a huge page where the aligned range lies in a memslot's range, else 4K."""
    for level in range(_shared_level(vm), 0, -1):
        n = 1 << (9 * (level - 1))
        head = hvpn & ~(n - 1)
        if level > LEVEL_4K:
            if not _inside_a_slot(vm, head, n):
                continue
            if any(vm.hva_pages[lv].any_in(head, head + n) for lv in range(1, level)):
                continue
            if vm.pfnmap and vm.pfnmap.any_in(head, head + n):
                continue  # device memory splits the VMA: no huge page across it
        pfn = vm.host.allocate(9 * (level - 1))
        if pfn is None:
            continue
        vm.hva_pages[level].set(head, pfn)
        vm.emit("mm_page_alloc", pfn, 9 * (level - 1), head << 12)
        return level, head, pfn
    return None


def faultin_hva(vm: VM, hva: int, write: bool) -> tuple[str | None, int, int]:
    """GUP of a shared page: (errno or None, pfn, host mapping level)."""
    hvpn = hva >> 12
    if hvpn in vm.poisoned_hva:
        return "EHWPOISON", 0, 0
    if vm.pfnmap:
        v = vm.pfnmap.get(hvpn)
        if v is not None:
            pfn, refcounted = unpack_pfnmap(v)
            if not refcounted and not vm.kernel["pfnmap_noref"]:
                # hva_to_pfn_remapped(): kvm_try_get_pfn() refuses a struct page with
                # refcount 0 (before 6.13) -> KVM_PFN_ERR_FAULT -> -EFAULT from KVM_RUN.
                return "EFAULT", 0, 0
            return None, pfn, LEVEL_4K
    m = host_lookup(vm, hvpn) or _populate(vm, hvpn)
    if m is None:
        return "ENOMEM", 0, 0
    level, head, pfn = m
    return None, pfn + (hvpn - head), level


def host_access(vm: VM, op: HostAccess) -> Result:
    hva = op.hva
    if not vm.memslots.hva_in_any(hva):
        return Result.fail("EFAULT")
    hvpn = hva >> 12
    v = vm.pfnmap.get(hvpn) if vm.pfnmap else None
    if v is not None:
        pfn = unpack_pfnmap(v)[0]  # device memory: the VMM reaches it whatever its refcount
    else:
        slot = _gmem_mmap_slot(vm, hva)
        if slot is not None:
            err, pfn = gmem_user_fault(vm, slot, hva)
        else:
            err, pfn, _level = faultin_hva(vm, hva, op.write)
        if err:
            return Result.fail(err)
    vm.emit("handle_mm_fault", hva, pfn, int(op.write))
    if op.write:
        assert op.value is not None  # ops.py: value is required with write
        vm.host.write(pfn, op.value)
        return Result.success(value=op.value)
    return Result.success(value=vm.host.read(pfn))


def _gmem_mmap_slot(vm: VM, hva: int) -> Memslot | None:
    """The gmem-only slot (guest_memfd with MMAP) whose userspace range holds `hva`: there
    the range is the VMM's mmap of the guest_memfd."""
    for s in vm.memslots.by_id.values():
        if s.gmem_only and s.userspace_addr <= hva < s.hva_end:
            return s
    return None


def gmem_user_fault(vm: VM, slot: Memslot, hva: int) -> tuple[str | None, int]:
    """kvm_gmem_fault_user_mapping(): the guest_memfd's own page, or SIGBUS."""
    from imemviz.model.gmem_ops import alloc_folio
    from imemviz.model.uapi import GUEST_MEMFD_FLAG_INIT_SHARED

    file = slot.gmem_file
    if file is None:
        return "SIGBUS", 0  # the model does not keep a closed guest_memfd alive for the mmap
    inode = file.inode
    index = slot.gmem_pgoff + ((hva - slot.userspace_addr) >> 12)
    if index >= inode.npages:
        return "SIGBUS", 0  # pgoff << PAGE_SHIFT >= i_size
    if not inode.flags & GUEST_MEMFD_FLAG_INIT_SHARED:
        return "SIGBUS", 0  # the memory is private: the host may not touch it
    folio = inode.folio_at(index)
    if folio is None:
        folio = alloc_folio(vm, file, index)  # zeroed on first use (clear_highpage)
        if folio is None:
            return "ENOMEM", 0
    if folio.hwpoison:
        return "SIGBUS", 0  # a hwpoisoned page: VM_FAULT_HWPOISON
    vm.emit("kvm_gmem_fault_user_mapping", file.fd, index, folio.pfn + index - folio.index)
    return None, folio.pfn + index - folio.index


def _mapped_intervals(vm: VM) -> list[tuple[int, int]]:
    """The VMM's RAM mappings: the union of the memslots' hva ranges (byte addresses)."""
    ranges = sorted((s.userspace_addr, s.hva_end) for s in vm.memslots.by_id.values() if s.npages)
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def madvise(vm: VM, op: Madvise) -> Result:
    start, length = op.hva, op.len
    if start & 0xFFF:
        return Result.fail("EINVAL")
    plen = (length + 0xFFF) & ~0xFFF
    end = start + plen
    if plen >= U64 or end >= U64:
        return Result.fail("EINVAL")
    if end == start:
        return Result.success()
    unmapped = False
    pos = start
    for a, b in _mapped_intervals(vm):
        if b <= pos or a >= end:
            continue
        if a > pos:
            unmapped = True
        lo, hi = max(a, start), min(b, end)
        pos = hi
        if vm.pfnmap and vm.pfnmap.any_in(lo >> 12, (hi + 0xFFF) >> 12):
            # madvise_dontneed_free_valid_vma(): VM_PFNMAP is refused; the part before the
            # device mapping was already processed.
            first = min(k for k, _v in vm.pfnmap.items_in(lo >> 12, (hi + 0xFFF) >> 12))
            if (first << 12) > lo:
                _dontneed(vm, lo, first << 12)
            return Result.fail("EINVAL")
        if vm.config.shared_page_size == 1 << 30:
            # madvise_dontneed_free_valid_vma(): hugetlb start aligned, end rounded down.
            if lo & ((1 << 30) - 1):
                return Result.fail("EINVAL")
            hi = lo + ((hi - lo) & ~((1 << 30) - 1))
            if hi == lo:
                continue
        _dontneed(vm, lo, hi)
    if pos < end:
        unmapped = True
    return Result.fail("ENOMEM") if unmapped else Result.success()


def _dontneed(vm: VM, lo: int, hi: int) -> None:
    vm.emit("madvise", lo, hi, "DONTNEED")
    hva_invalidate(vm, lo, hi, lambda: _free_host_pages(vm, lo >> 12, hi >> 12))


def hva_invalidate(vm: VM, lo: int, hi: int, during: Callable[[], None]) -> None:
    """kvm_mmu_notifier_invalidate_range_start/end: shared leaves of every overlapping slot."""
    pieces: list[tuple[int, int]] = []
    other_as: list[
        tuple[int, int]
    ] = []  # kvm_handle_hva_range() walks every address space; the model keeps
    # leaves for address space 0 only, so the others only widen the in-progress range.
    for s in vm.memslots.all():
        a, b = max(lo, s.userspace_addr), min(hi, s.hva_end)
        if a < b:
            (pieces if s.as_id == 0 else other_as).append(
                (
                    s.base_gfn + ((a - s.userspace_addr) >> 12),
                    s.base_gfn + ((b - s.userspace_addr + 0xFFF) >> 12),
                )
            )
    vm.emit("kvm_unmap_hva_range", lo, hi)
    if pieces or other_as:
        invalidate(vm, pieces, FILTER_SHARED, extra=other_as, during=during)
    else:
        during()


def _free_host_pages(vm: VM, lo: int, hi: int) -> None:
    """Drop the host pages of hva pages [lo, hi); a THP straddling an edge is split first."""
    for level in (3, 2, 1):
        n = 1 << (9 * (level - 1))
        idx = vm.hva_pages[level]
        for head, pfn in idx.pop_range(lo & ~(n - 1), hi):
            if lo <= head and head + n <= hi:
                vm.host.release(pfn, 9 * (level - 1))
                vm.emit("mm_page_free", pfn, 9 * (level - 1), head << 12)
                continue
            for k in range(n):
                if lo <= head + k < hi:
                    vm.host.release(pfn + k, 0)
                    vm.emit("mm_page_free", pfn + k, 0, (head + k) << 12)
                else:
                    vm.hva_pages[1].set(head + k, pfn + k)


def poison_shared_page(vm: VM, pfn: int) -> bool:
    """memory_failure() on an anonymous page: unmap it (mmu notifier) and poison its hva."""
    for level, idx in vm.hva_pages.items():
        n = 1 << (9 * (level - 1))
        for head, p in idx.items():
            if p <= pfn < p + n:
                hvpn = head + (pfn - p)
                vm.poisoned_hva.add(hvpn)
                lo, hi = head << 12, (head + n) << 12
                hva_invalidate(vm, lo, hi, partial(_drop, vm, level, head))
                return True
    return False


def _drop(vm: VM, level: int, head: int) -> None:
    pfn = vm.hva_pages[level].pop(head)
    assert pfn is not None  # poison_shared_page() found it there
    vm.host.release(pfn, 9 * (level - 1))
    vm.emit("mm_page_free", pfn, 9 * (level - 1), head << 12)
