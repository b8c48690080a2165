"""KVM_SET_USER_MEMORY_REGION(2): memslot create, delete, move and flag changes, and the
guest_memfd binding, with the check order of kvm_set_memory_region() and kvm_gmem_bind()."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imemviz.model.guest_memfd import GUEST_MEMFD, INACCESSIBLE, Binding
from imemviz.model.memslots import Memslot
from imemviz.model.result import Result
from imemviz.model.uapi import (
    GUEST_MEMFD_FLAG_MMAP,
    KVM_MEM_GUEST_MEMFD,
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEM_PRIVATE,
    KVM_MEM_READONLY,
)
from imemviz.model.zap import FILTER_PRIVATE, FILTER_SHARED, zap_all, zap_range

if TYPE_CHECKING:
    from imemviz.model.ops import SetUserMemoryRegion, SetUserMemoryRegion2
    from imemviz.model.vm import VM

KVM_USER_MEM_SLOTS = 32764  # x86: SHRT_MAX - KVM_INTERNAL_MEM_SLOTS
KVM_MEM_SLOTS_NUM = 32767
KVM_MEM_MAX_NR_PAGES = (1 << 31) - 1
TASK_SIZE_MAX = 0x7FFFFFFFF000  # x86-64 with 4-level paging: access_ok() limit
U64 = 1 << 64


def nr_address_spaces(vm: VM) -> int:
    """kvm_arch_nr_memslot_as_ids(): SMM is unsupported for guests with private memory
    (kernel rule private_mem_address_spaces: upm-v8 predates it)."""
    return vm.kernel["private_mem_address_spaces"] if vm.has_private_mem else 2


def max_gfn(vm: VM) -> int:
    """First gfn past what a memslot may cover (kvm_mmu_max_gfn(), the TDX shared-bit alias)."""
    return vm.config.shared_bit_gfn if vm.is_tdx else 1 << 40


def set_user_memory_region(vm: VM, op: SetUserMemoryRegion) -> Result:
    return _set_region(
        vm,
        op.slot,
        op.flags,
        op.guest_phys_addr,
        op.memory_size,
        op.userspace_addr,
        op.private_fd,
        op.private_offset,
        v2=False,
    )


def set_user_memory_region2(vm: VM, op: SetUserMemoryRegion2) -> Result:
    return _set_region(
        vm,
        op.slot,
        op.flags,
        op.guest_phys_addr,
        op.memory_size,
        op.userspace_addr,
        op.guest_memfd,
        op.guest_memfd_offset,
        v2=True,
    )


def _valid_flags(vm: VM, flags: int) -> bool:
    """check_memory_region_flags()."""
    if vm.kernel["private_memslot"]:
        # v8 8/8: LOG_DIRTY_PAGES, PRIVATE (kvm_arch_has_private_mem()) and READONLY.
        return not flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_PRIVATE | KVM_MEM_READONLY)
    valid = KVM_MEM_LOG_DIRTY_PAGES
    if vm.has_private_mem or vm.kernel["gmem_default_vm"]:
        valid |= KVM_MEM_GUEST_MEMFD
    if flags & KVM_MEM_GUEST_MEMFD:
        valid &= ~KVM_MEM_LOG_DIRTY_PAGES
    # READONLY needs kvm_arch_has_readonly_mem() (not for protected-state VMs) and no gmem.
    if not vm.config.has_protected_state and not flags & KVM_MEM_GUEST_MEMFD:
        valid |= KVM_MEM_READONLY
    return not flags & ~valid


def _set_region(
    vm: VM,
    slot_arg: int,
    flags: int,
    gpa: int,
    size: int,
    uaddr: int,
    gfd: int,
    goff: int,
    *,
    v2: bool,
) -> Result:
    if vm.dead:
        return Result.fail("EIO")
    v8 = vm.kernel["private_memslot"]
    if v2 and not vm.kernel["guest_memfd"]:
        return Result.fail("ENOTTY")  # no KVM_SET_USER_MEMORY_REGION2: kvm_arch_vm_ioctl()
    if not v2 and not v8 and flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY):
        return Result.fail("EINVAL")
    if slot_arg & 0xFFFF >= KVM_USER_MEM_SLOTS:
        return Result.fail("EINVAL")
    if not _valid_flags(vm, flags):
        return Result.fail("EINVAL")
    if size & 0xFFF:
        return Result.fail("EINVAL")
    if gpa & 0xFFF:
        return Result.fail("EINVAL")
    if uaddr & 0xFFF or uaddr + size > TASK_SIZE_MAX:
        return Result.fail("EINVAL")
    if flags & KVM_MEM_GUEST_MEMFD and (goff & 0xFFF or goff + size >= U64):
        # v2: guest_memfd_offset; v8: private_offset (same place in the check order)
        return Result.fail("EINVAL")
    as_id, sid = slot_arg >> 16, slot_arg & 0xFFFF
    if as_id >= nr_address_spaces(vm) or sid >= KVM_MEM_SLOTS_NUM:
        return Result.fail("EINVAL")
    if gpa + size >= U64:
        return Result.fail("EINVAL")
    npages = size >> 12
    if npages > KVM_MEM_MAX_NR_PAGES:
        return Result.fail("EINVAL")
    slot_id = (as_id << 16) | sid
    old = vm.memslots.by_id.get(slot_id)
    base_gfn = gpa >> 12
    if not size:
        if old is None:
            return Result.fail("EINVAL")
        _delete(vm, old)
        return Result.success()
    if old is not None:
        # Modify an existing slot: guest_memfd slots are immutable; v8 refuses only a request
        # with KVM_MEM_PRIVATE ("Private memslots are immutable").
        if flags & KVM_MEM_GUEST_MEMFD or (old.has_gmem and not v8):
            return Result.fail("EINVAL")
        if (
            uaddr != old.userspace_addr
            or npages != old.npages
            or ((flags ^ old.flags) & KVM_MEM_READONLY)
        ):
            return Result.fail("EINVAL")
        if base_gfn != old.base_gfn:
            if vm.memslots.overlapping(as_id, base_gfn, base_gfn + npages, slot_id):
                return Result.fail("EEXIST")
            if base_gfn + npages > max_gfn(vm):
                return Result.fail("EINVAL")
            _flush_slot(vm, old)
            vm.emit("kvm_set_memslot", slot_id, "MOVE", base_gfn, npages)
            _drop_private(vm, old)
            old.base_gfn = base_gfn
            old.flags = flags
            vm.memslots.moved()
            return Result.success()
        if flags == old.flags:
            return Result.success()
        # Dirty-log toggles change no mapping here; new faults see the new flags (4K while logging).
        vm.emit("kvm_set_memslot", slot_id, "FLAGS_ONLY", base_gfn, npages)
        _drop_private(vm, old)
        old.flags = flags
        vm.memslots.moved()
        return Result.success()
    if vm.memslots.overlapping(as_id, base_gfn, base_gfn + npages, -1):
        return Result.fail("EEXIST")
    slot = Memslot(slot_id, flags, base_gfn, npages, uaddr)
    if flags & KVM_MEM_GUEST_MEMFD:
        err = _register_private(vm, slot, gfd, goff) if v8 else _bind(vm, slot, gfd, goff)
        if err:
            return Result.fail(err)
    if base_gfn + npages > max_gfn(vm):
        # kvm_arch_prepare_memory_region() refuses it; the binding is undone.
        if slot.gmem_file is not None:
            slot.gmem_file.bindings = [b for b in slot.gmem_file.bindings if b.slot != slot_id]
        return Result.fail("EINVAL")
    vm.memslots.add(slot)
    vm.emit("kvm_set_memslot", slot_id, "CREATE", base_gfn, npages)
    if slot.gmem_file is not None:
        name = "kvm_private_mem_register" if v8 else "kvm_gmem_bind"
        vm.emit(name, gfd, slot_id, slot.gmem_pgoff, npages)
    return Result.success()


def _bind(vm: VM, slot: Memslot, fd: int, offset: int) -> str | None:
    """kvm_gmem_bind(): EBADF for a closed fd, EINVAL for the rest, EEXIST for an overlap."""
    file = vm.files.get(fd) if fd >= 0 else None
    if file is None:
        std_open = fd in (0, 1, 2) and fd not in vm.closed_std_fds
        return "EINVAL" if std_open else "EBADF"
    if file.kind != GUEST_MEMFD:
        return "EINVAL"  # file->f_op != &kvm_gmem_fops
    inode = file.inode
    if offset >= 1 << 63 or offset & 0xFFF or offset + (slot.npages << 12) > inode.size:
        return "EINVAL"
    start = offset >> 12
    if file.bindings_in(start, start + slot.npages):
        errno: str = vm.kernel["bind_overlap_errno"]
        return errno
    file.bindings.append(Binding(start, slot.npages, slot.id))
    file.bindings.sort(key=lambda b: b.pgoff)
    slot.gmem_file = file
    slot.gmem_fd = fd
    slot.gmem_pgoff = start
    slot.gmem_only = bool(inode.flags & GUEST_MEMFD_FLAG_MMAP)
    return None


def _register_private(vm: VM, slot: Memslot, fd: int, offset: int) -> str | None:
    """v8: new->private_file = fget(private_fd) (EINVAL when that fails), then
    kvm_private_mem_register() adds the slot's notifier to the inaccessible memfd."""
    file = vm.files.get(fd) if fd >= 0 else None
    if file is None:
        return "EINVAL"
    if file.kind != INACCESSIBLE:
        # v8 does not check the file type and would use any file's mapping as the
        # notifier list (docs/kernels.md); the model refuses it.
        return "EINVAL"
    file.bindings.append(Binding(offset >> 12, slot.npages, slot.id))
    file.bindings.sort(key=lambda b: (b.pgoff, b.slot))
    slot.gmem_file = file
    slot.gmem_fd = fd
    slot.gmem_pgoff = offset >> 12
    return None


def _drop_private(vm: VM, slot: Memslot) -> None:
    """v8 kvm_free_memslot() of a private slot's old copy: kvm_private_mem_unregister() and
    fput(); a modified slot without KVM_MEM_PRIVATE is no longer private."""
    file = slot.gmem_file
    if not vm.kernel["private_memslot"] or file is None:
        return
    file.bindings = [b for b in file.bindings if b.slot != slot.id]
    slot.gmem_file = None
    from imemviz.model import upm

    upm.put_file(vm, file)


def _flush_slot(vm: VM, slot: Memslot) -> None:
    """kvm_arch_flush_shadow_memslot(): kvm_mmu_zap_all_fast() for DEFAULT VMs with the
    KVM_X86_QUIRK_SLOT_ZAP_ALL quirk (every VM type before 6.12), else the slot's leaves.

    The zap-all has no as_id check: deleting an SMM (address space 1) slot zaps every root.
    """
    if vm.kernel["slot_zap"] == "every" or vm.config.type == "default":
        zap_all(vm)
    elif slot.as_id == 0:
        zap_range(vm, slot.base_gfn, slot.end_gfn, FILTER_PRIVATE | FILTER_SHARED)


def _delete(vm: VM, slot: Memslot) -> None:
    vm.emit("kvm_set_memslot", slot.id, "DELETE", slot.base_gfn, slot.npages)
    _flush_slot(vm, slot)
    file = slot.gmem_file
    if file is None and slot.has_gmem:
        file = next(
            (f for f in vm.files.values() if any(b.slot == slot.id for b in f.bindings)), None
        )
    if file is not None:
        file.bindings = [b for b in file.bindings if b.slot != slot.id]
        vm.emit("kvm_gmem_unbind", file.fd, slot.id)
        if vm.kernel["private_memslot"]:
            from imemviz.model import upm

            upm.put_file(vm, file)
    vm.memslots.remove(slot)
