"""The 2022 design (kernel profile ``upm-v8``) and plain memfds: memfd_create, the
inaccessible memfd's fallocate and notifier, KVM_MEMORY_ENCRYPT_(UN)REG_REGION.

Follows "[PATCH v8 0/8] KVM: mm: fd-based approach for supporting KVM"
(20220915142913.2213336-1-chao.p.peng): 1/8 mm/memfd_inaccessible.c
(memfd_create(MFD_INACCESSIBLE), inaccessible_fallocate(),
inaccessible_notifier_invalidate()), 5/8 kvm_vm_ioctl_set_mem_attr(), 8/8
kvm_private_notifier_invalidate().  The private memslot itself is in
memslot_ops.py, the fault in fault.py; docs/kernels.md lists every rule.

On merged kernels `memfd_create` makes a plain memfd (bit 8 is MFD_NOEXEC_SEAL
there): an fd whose shmem pages `fallocate` allocates and punches and `close`
frees, which KVM cannot bind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from imemviz.model.guest_memfd import INACCESSIBLE, MEMFD, Folio, GmemFile, GmemInode
from imemviz.model.result import Result
from imemviz.model.uapi import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    MFD_ALLOW_SEALING,
    MFD_CLOEXEC,
    MFD_EXEC,
    MFD_HUGE_MASK,
    MFD_HUGETLB,
    MFD_INACCESSIBLE,
)
from imemviz.model.zap import FILTER_PRIVATE, FILTER_SHARED, invalidate

if TYPE_CHECKING:
    from imemviz.model.ops import MemfdCreate, MemoryEncryptRegRegion, MemoryEncryptUnregRegion
    from imemviz.model.vm import VM

U64_MAX = (1 << 64) - 1


# -- memfd_create ------------------------------------------------------------------------
def memfd_create(vm: VM, op: MemfdCreate) -> Result:
    """memfd_create(2) and the ftruncate() that sizes the file."""
    flags = op.flags
    v8 = vm.kernel["memfd_inaccessible"]
    known = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_INACCESSIBLE
    if not v8:
        known |= MFD_EXEC  # MFD_ALL_FLAGS of 6.3+: bit 8 is MFD_NOEXEC_SEAL
    if flags & MFD_HUGETLB:
        known |= MFD_HUGE_MASK
    if flags & ~known:
        return Result.fail("EINVAL")
    if not v8 and flags & MFD_INACCESSIBLE and flags & MFD_EXEC:
        return Result.fail("EINVAL")  # 6.3 memfd_create(): MFD_EXEC with MFD_NOEXEC_SEAL
    inaccessible = v8 and bool(flags & MFD_INACCESSIBLE)
    if inaccessible and flags & (MFD_ALLOW_SEALING | MFD_HUGETLB):
        return Result.fail("EINVAL")  # v8 1/8: no sealing, "TODO: add hugetlb support"
    size = op.size
    if size >= 1 << 63:
        return Result.fail("EINVAL")  # ftruncate(): a negative length
    if inaccessible and size & 0xFFF:
        return Result.fail("EINVAL")  # inaccessible_setattr(): !PAGE_ALIGNED(ia_size)
    from imemviz.model.gmem_ops import lowest_free_fd

    fd = lowest_free_fd(vm)
    npages = (size + 0xFFF) >> 12  # a plain memfd's partial last page is a whole page here
    kind = INACCESSIBLE if inaccessible else MEMFD
    vm.files[fd] = GmemFile(fd, GmemInode(vm.next_ino, npages << 12, 0), kind=kind)
    vm.next_ino += 1
    vm.emit("memfd_create", fd, size, flags, kind)
    return Result.success(fd=fd)


# -- fallocate ---------------------------------------------------------------------------
def memfd_fallocate(vm: VM, file: GmemFile, mode: int, offset: int, length: int) -> Result:
    """shmem_fallocate(), and for an inaccessible memfd v8's inaccessible_fallocate() around
    it: PUNCH_HOLE alignment first, the notifiers after, whatever shmem returned."""
    punch = mode & FALLOC_FL_PUNCH_HOLE
    if file.kind == INACCESSIBLE and punch and (offset & 0xFFF or length & 0xFFF):
        return Result.fail("EINVAL")
    result = _shmem_fallocate(vm, file, mode, offset, length)
    if file.kind == INACCESSIBLE and vm.kernel["memfile_notifier"]:
        # inaccessible_notifier_invalidate(data, offset, offset + len): byte offsets
        # handed to callbacks that take pgoff_t (docs/kernels.md, memfile_notifier).
        notifier_invalidate(vm, file, offset, offset + length)
    return result


def _shmem_fallocate(vm: VM, file: GmemFile, mode: int, offset: int, length: int) -> Result:
    if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE):
        return Result.fail("EOPNOTSUPP")
    inode = file.inode
    vm.emit("shmem_fallocate", file.fd, mode, offset, offset + length)
    if mode & FALLOC_FL_PUNCH_HOLE:
        # shmem_truncate_range(): whole pages go, partial ones are zeroed in place.
        first, last = (offset + 0xFFF) >> 12, (offset + length) >> 12
        for edge in {offset >> 12, (offset + length - 1) >> 12}:
            if not first <= edge < last:
                folio = inode.folio_at(edge)
                if folio is not None:
                    vm.host.clear(folio.pfn + edge - folio.index)
        if first < last:
            free_pages(vm, file, first, last)
        return Result.success()
    from imemviz.model.gmem_ops import alloc_folio

    start, end = offset >> 12, (offset + length + 0xFFF) >> 12
    new: list[Folio] = []
    index = start
    while index < end:
        folio = inode.folio_at(index)
        if folio is None:
            folio = alloc_folio(vm, file, index)
            if folio is None:
                # shmem_undo_range(): the pages this call allocated go again.
                for f in new:
                    inode.remove(f)
                    vm.host.release(f.pfn, f.order)
                    vm.emit("kvm_gmem_folio_free", file.fd, f.index, f.order, f.pfn)
                return Result.fail("ENOMEM")
            new.append(folio)
        index = folio.index + folio.npages
    if not mode & FALLOC_FL_KEEP_SIZE and end > inode.npages:
        inode.npages = end  # i_size_write(inode, offset + len), in whole pages here
    return Result.success()


def free_pages(vm: VM, file: GmemFile, start: int, end: int) -> None:
    from imemviz.model.gmem_ops import _free_folios

    _free_folios(vm, file, start, end)


def notifier_invalidate(vm: VM, file: GmemFile, start: int, end: int) -> None:
    """Every registered slot's kvm_private_notifier_invalidate(notifier, start, end): the
    pgoff range clipped to the slot, then kvm_zap_gfn_range() (one begin/end pair), or
    nothing when the clipped range is empty."""
    vm.emit("inaccessible_notifier_invalidate", file.fd, start, min(end, U64_MAX))
    # list_add() puts each new notifier first: the newest slot is called first.
    for b in reversed(list(file.bindings)):
        slot = vm.memslots.by_id.get(b.slot)
        if slot is None:
            continue
        start_gfn, end_gfn = slot.base_gfn, slot.base_gfn + slot.npages
        if start > b.pgoff:
            start_gfn = slot.base_gfn + start - b.pgoff
        if end < b.pgoff + slot.npages:
            end_gfn = slot.base_gfn + end - b.pgoff
        if start_gfn >= end_gfn:
            continue
        zap_gfn_range(vm, start_gfn, end_gfn)


def zap_gfn_range(vm: VM, start: int, end: int, during: Callable[[], None] | None = None) -> None:
    """kvm_zap_gfn_range(): one invalidation (begin, zap every leaf in range, end), whether
    or not a memslot is there."""
    from imemviz.model.vm import GFN_LIMIT

    end = min(end, GFN_LIMIT)
    vm.emit("kvm_zap_gfn_range", start, end)
    invalidate(vm, [(start, end)], FILTER_PRIVATE | FILTER_SHARED, during=during)


# -- close -------------------------------------------------------------------------------
def close_memfd(vm: VM, file: GmemFile) -> None:
    """close() of a memfd: the file goes with its last reference.  v8's private memslots
    each hold one (fget() in __kvm_set_memory_region()), so an inaccessible memfd bound to
    slots lives on, under the key -ino, until the last of them is deleted."""
    del vm.files[file.fd]
    vm.emit("memfd_close", file.fd)
    if file.kind == INACCESSIBLE and file.bindings:
        file.fd = -file.inode.ino
        vm.files[file.fd] = file
        return
    _release(vm, file)


def put_file(vm: VM, file: GmemFile) -> None:
    """A private memslot dropped its reference (kvm_free_memslot(): fput())."""
    if file.fd < 0 and not file.bindings and vm.files.get(file.fd) is file:
        del vm.files[file.fd]
        _release(vm, file)


def _release(vm: VM, file: GmemFile) -> None:
    """inaccessible_release() / the shmem inode's eviction: every page is freed."""
    from imemviz.model.gmem_ops import _free_folios

    _free_folios(vm, file, 0, 1 << 52)


# -- KVM_MEMORY_ENCRYPT_(UN)REG_REGION -----------------------------------------------------
def memory_encrypt_reg_region(vm: VM, op: MemoryEncryptRegRegion) -> Result:
    return _set_mem_attr(vm, op.address, op.size, private=True)


def memory_encrypt_unreg_region(vm: VM, op: MemoryEncryptUnregRegion) -> Result:
    return _set_mem_attr(vm, op.address, op.size, private=False)


def _set_mem_attr(vm: VM, gpa: int, size: int, *, private: bool) -> Result:
    """v8 5/8 kvm_vm_ioctl_set_mem_attr(): store, then kvm_zap_gfn_range(start, end)."""
    if vm.dead:
        return Result.fail("EIO")
    if not vm.kernel["enc_region_attributes"]:
        # SEV's hva-based ioctl: kvm_arch_vm_ioctl() -ENOTTY without mem_enc_register_region
        return Result.fail("ENOTTY")
    if size == 0 or gpa + size > U64_MAX:
        return Result.fail("EINVAL")
    if gpa & 0xFFF or size & 0xFFF:
        return Result.fail("EINVAL")
    from imemviz.model.vm import GFN_LIMIT

    start, end = gpa >> 12, min((gpa + size) >> 12, GFN_LIMIT)
    value = 8 if private else 0
    vm.emit("kvm_vm_ioctl_set_mem_attr", start, end, int(private))
    vm.attributes.set_range(start, end, value)
    zap_gfn_range(vm, start, end)
    return Result.success()
