"""KVM_SET_USER_MEMORY_REGION(2): memslot create, delete, move and flag changes, and the
guest_memfd binding, with the check order of kvm_set_memory_region() and kvm_gmem_bind()."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imemviz.model.guest_memfd import GUEST_MEMFD_FLAG_MMAP, Binding
from imemviz.model.memslots import (
    KVM_MEM_GUEST_MEMFD,
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEM_READONLY,
    Memslot,
)
from imemviz.model.result import Result
from imemviz.model.zap import FILTER_PRIVATE, FILTER_SHARED, zap_all, zap_range

if TYPE_CHECKING:
    from imemviz.model.vm import VM

KVM_USER_MEM_SLOTS = 32764  # x86: SHRT_MAX - KVM_INTERNAL_MEM_SLOTS
KVM_MEM_SLOTS_NUM = 32767
KVM_MEM_MAX_NR_PAGES = (1 << 31) - 1
TASK_SIZE_MAX = 0x7FFFFFFFF000  # x86-64 with 4-level paging: access_ok() limit
U64 = 1 << 64


def nr_address_spaces(vm: VM) -> int:
    """kvm_arch_nr_memslot_as_ids(): SMM is unsupported for guests with private memory."""
    return 1 if vm.has_private_mem else 2


def max_gfn(vm: VM) -> int:
    """First gfn past what a memslot may cover (kvm_mmu_max_gfn(), the TDX shared-bit alias)."""
    return vm.config.shared_bit_gfn if vm.is_tdx else 1 << 40


def set_user_memory_region(vm: VM, op) -> Result:
    return _set_region(
        vm, op.slot, op.flags, op.guest_phys_addr, op.memory_size, op.userspace_addr, 0, 0, v2=False
    )


def set_user_memory_region2(vm: VM, op) -> Result:
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
    valid = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_GUEST_MEMFD
    if flags & KVM_MEM_GUEST_MEMFD:
        valid &= ~KVM_MEM_LOG_DIRTY_PAGES
    # READONLY needs kvm_arch_has_readonly_mem() (not for protected-state VMs) and no gmem.
    if not vm.is_tdx and not flags & KVM_MEM_GUEST_MEMFD:
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
    if not v2 and flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY):
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
        # Modify an existing slot: guest_memfd slots are immutable.
        if flags & KVM_MEM_GUEST_MEMFD or old.has_gmem:
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
            old.base_gfn = base_gfn
            old.flags = flags
            vm.memslots.moved()
            return Result.success()
        if flags == old.flags:
            return Result.success()
        # Dirty-log toggles change no mapping here; new faults see the new flags (4K while logging).
        vm.emit("kvm_set_memslot", slot_id, "FLAGS_ONLY", base_gfn, npages)
        old.flags = flags
        return Result.success()
    if vm.memslots.overlapping(as_id, base_gfn, base_gfn + npages, -1):
        return Result.fail("EEXIST")
    slot = Memslot(slot_id, flags, base_gfn, npages, uaddr)
    if flags & KVM_MEM_GUEST_MEMFD:
        err = _bind(vm, slot, gfd, goff)
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
        vm.emit("kvm_gmem_bind", gfd, slot_id, slot.gmem_pgoff, npages)
    return Result.success()


def _bind(vm: VM, slot: Memslot, fd: int, offset: int) -> str | None:
    """kvm_gmem_bind(): EBADF for a closed fd, EINVAL for the rest, EEXIST for an overlap."""
    file = vm.files.get(fd)
    if file is None:
        std_open = fd in (0, 1, 2) and fd not in vm.closed_std_fds
        return "EINVAL" if std_open else "EBADF"
    inode = file.inode
    if offset >= 1 << 63 or offset & 0xFFF or offset + (slot.npages << 12) > inode.size:
        return "EINVAL"
    start = offset >> 12
    if file.bindings_in(start, start + slot.npages):
        return "EEXIST"
    file.bindings.append(Binding(start, slot.npages, slot.id))
    file.bindings.sort(key=lambda b: b.pgoff)
    slot.gmem_file = file
    slot.gmem_fd = fd
    slot.gmem_pgoff = start
    slot.gmem_only = bool(inode.flags & GUEST_MEMFD_FLAG_MMAP)
    return None


def _flush_slot(vm: VM, slot: Memslot) -> None:
    """kvm_arch_flush_shadow_memslot(): zap-all quirk for DEFAULT VMs, else the slot's leaves."""
    if slot.as_id != 0:
        return
    if vm.config.type == "default":
        zap_all(vm)
    else:
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
    vm.memslots.remove(slot)
