"""The guest side: vCPU accesses, the x86 TDP fault path in kernel order, held faults and the
retry protocol, and TDX TDG.MEM.PAGE.ACCEPT.

The order of checks follows kvm_mmu_faultin_pfn() (arch/x86/kvm/mmu/mmu.c):
snapshot mmu_invalidate_seq, private/shared mismatch exit, no-slot handling,
gmem or hva pfn, then the retry checks and the max-level rule under mmu_lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

from imemviz.model import host_ops, snp
from imemviz.model.gmem_ops import gmem_get_pfn
from imemviz.model.memslots import Memslot
from imemviz.model.mmu import MAPPED, PENDING, PENDING_BLOCKED, Leaf, LeafTable
from imemviz.model.result import Result
from imemviz.model.uapi import (
    KVM_MEM_READONLY,
    KVM_MEMORY_EXIT_FLAG_PRIVATE,
    PFERR_PRIVATE_ACCESS,
    V8_MEMORY_EXIT_FLAG_PRIVATE,
)
from imemviz.model.units import LEVEL_1G, LEVEL_4K, LEVEL_NAMES, level_for_order
from imemviz.model.zap import demote, ensure_tables, install

if TYPE_CHECKING:
    from imemviz.model.ops import GuestAccept, GuestAccess, VcpuResume
    from imemviz.model.vm import VM

PFERR_WRITE = 1 << 1


@attrs.define(slots=True, eq=False)
class Access:
    """One guest access being executed (and re-executed after faults)."""

    vcpu: int
    gpa: int
    gfn: int
    alias: bool  # TDX: the GPA had the shared bit set
    private_arg: bool | None
    write: bool
    value: int | None
    accept_level: int | None = None
    retried: bool = False
    prefetch: bool = False  # KVM_PRE_FAULT_MEMORY: no exit reaches the VMM


class PendingFault(NamedTuple):
    """A fault that has its pfn and has not taken mmu_lock yet (what `hold` freezes)."""

    access: Access
    is_private: bool
    mmu_seq: int
    slot: Memslot
    slot_base: int
    pfn: int
    host_level: int


def decode_gpa(vm: VM, gpa: int) -> tuple[int, bool]:
    gfn = gpa >> 12
    bit = vm.shared_bit  # 0 unless TDX
    if gfn & bit:
        return gfn & ~bit, True
    return gfn, False


def is_private_access(vm: VM, acc: Access) -> bool:
    if acc.alias:
        return False
    if vm.kernel.v8_fault_scope:  # rule private_fault_scope
        # v8 (tested without TDX, HAVE_KVM_PRIVATE_MEM_TESTING): only a KVM_MEM_PRIVATE
        # slot can take a private fault (kvm_is_fault_private()).
        slot = vm.memslots.lookup(acc.gfn)
        if slot is None or not slot.has_gmem:
            return False
    if acc.private_arg is None:
        return vm.attr_private(acc.gfn)
    return acc.private_arg


def _vcpu_check(vm: VM, vcpu: int) -> Result | None:
    """What KVM_RUN refuses before any fault: a dead VM, a TD not finalized, a busy vCPU."""
    if vm.dead:
        return Result.fail("EIO", vm_dead=True)
    if vm.is_tdx and vm.td_state != "RUNNABLE":
        return Result.fail("EINVAL")  # tdx_vcpu_pre_run()
    if vm.snp is not None and not vm.snp.launched:
        return snp.fail_entry(vm)  # VMRUN before SNP_LAUNCH_FINISH
    if vcpu in vm.in_flight:
        return Result.fail("EBUSY")
    return None


# -- ops ------------------------------------------------------------------------------------
def guest_access(vm: VM, op: GuestAccess) -> Result:
    refused = _vcpu_check(vm, op.vcpu)
    if refused:
        return refused
    gfn, alias = decode_gpa(vm, op.gpa)
    private = op.private
    if vm.is_tdx and private is None and not alias:
        # A TD's access type is its GPA (shared bit or not): the well-behaved guest picks the
        # GPA the attribute asks for, and a re-executed access keeps that GPA, so a private
        # GPA converted to shared meanwhile faults as private (flags 8).
        private = vm.attr_private(gfn)
    acc = Access(op.vcpu, op.gpa, gfn, alias, private, op.write, op.value)
    return _run(vm, acc, hold=op.hold)


def vcpu_resume(vm: VM, op: VcpuResume) -> Result:
    if vm.dead:
        vm.in_flight.pop(op.vcpu, None)
        return Result.fail("EIO", vm_dead=True)
    held = vm.in_flight.pop(op.vcpu, None)
    if held is None:
        return Result.fail("EINVAL")
    return _run(vm, held.access, hold=False, held=held)


def guest_accept(vm: VM, op: GuestAccept) -> Result:
    if not vm.is_tdx:
        return Result.fail("EINVAL", tdx_status="TDX_NOT_A_TD")
    refused = _vcpu_check(vm, 0)
    if refused:
        return refused
    level = op.level
    n = 1 << (9 * (level - 1))
    gfn, alias = decode_gpa(vm, op.gpa)
    gfn &= ~(n - 1)
    if alias:
        return Result.fail("EINVAL", tdx_status="TDX_OPERAND_INVALID")
    table = vm.private
    leaf = table.lookup(gfn)
    if leaf is None:
        # The accept takes the EPT violation first (the accept level rides in the exit):
        # KVM maps what it can there (mainline: 4K, tdx_sept_set_private_spte()) and the
        # re-executed accept compares sizes below (contract 3.4).
        acc = Access(0, gfn << 12, gfn, False, True, False, None, accept_level=level)
        pf = _faultin(vm, acc, True)
        if isinstance(pf, Result):
            return pf
        out = _finish(vm, pf)
        if isinstance(out, Result):
            return out
        leaf = out
    if (
        leaf.level > level
        and leaf.state in (PENDING, PENDING_BLOCKED)
        and vm.config.tdx_private_max_level > LEVEL_4K
    ):
        demote(vm, table, leaf)  # the huge-page series splits for a smaller accept
        leaf = table.lookup(gfn)
        assert leaf is not None
    if leaf.level != level:
        vm.emit("TDG.MEM.PAGE.ACCEPT", gfn, level, "TDX_PAGE_SIZE_MISMATCH")
        return Result.fail("EINVAL", tdx_status="TDX_PAGE_SIZE_MISMATCH")
    if leaf.state == MAPPED:
        vm.emit("TDG.MEM.PAGE.ACCEPT", gfn, level, "TDX_PAGE_ALREADY_ACCEPTED")
        return Result.fail("EINVAL", tdx_status="TDX_PAGE_ALREADY_ACCEPTED")
    table.set_state(leaf, MAPPED)
    vm.host.clear(leaf.pfn, leaf.npages)  # ACCEPT initialises the page to zero
    vm.events.current.append((vm.op_index, "TDG.MEM.PAGE.ACCEPT", gfn, level, "TDX_SUCCESS"))
    return Result(True, None, {"level": LEVEL_NAMES[level]})


# -- the access loop ------------------------------------------------------------------------
# A retry is the kernel's RET_PF_RETRY: the vCPU re-enters the guest and faults again.
# Between two retries of one op nothing else runs in this model, so a second retry
# means the fault can make no progress (an invalidation that never ends): KVM_RUN
# would spin until the VMM signals the vCPU thread, and return -EINTR
# (KVM_EXIT_INTR).  Loaded states never have one in progress (invariant I6).
MAX_RETRIES = 8


def _run(vm: VM, acc: Access, *, hold: bool, held: PendingFault | None = None) -> Result:
    retries = 0
    pf: PendingFault | Result
    while True:
        if held is not None:
            pf, held = held, None
        else:
            is_private = is_private_access(vm, acc)
            table, leaf = _lookup(vm, acc.gfn, is_private)
            if leaf is not None:
                if vm.snp is not None:
                    checked = snp.check_access(vm, acc, table, leaf)
                    if checked is snp.RETRY:
                        continue  # RMP #NPF handled: the guest re-executes the access
                    if checked is not None:
                        return checked
                return _complete(vm, acc, table, leaf)
            pf = _faultin(vm, acc, is_private)
            if isinstance(pf, Result):
                if acc.retried:
                    pf.ret["retried"] = True
                return pf
            if hold:
                # The fault has its pfn and stops before mmu_lock.
                vm.emit("kvm_faultin_pfn", acc.vcpu, acc.gfn, pf.pfn, int(pf.is_private))
                vm.in_flight[acc.vcpu] = pf
                return Result.success(in_flight=True)
        out = _finish(vm, pf)
        if out is _RETRY:
            acc.retried = True
            retries += 1
            if retries > MAX_RETRIES:
                vm.emit("kvm_userspace_exit", acc.vcpu, "KVM_EXIT_INTR", "EINTR")
                return Result.fail("EINTR", exit={"reason": "KVM_EXIT_INTR"}, retried=True)
            continue
        if isinstance(out, Result):
            return out
        # The guest re-executes the access; it now finds the leaf just installed.
        table = vm.private if pf.is_private else vm.shared
        if vm.snp is not None:
            checked = snp.check_access(vm, acc, table, out)
            if checked is snp.RETRY:
                continue
            if checked is not None:
                return checked
        return _complete(vm, acc, table, out)


def _lookup(vm: VM, gfn: int, is_private: bool) -> tuple[LeafTable, Leaf | None]:
    if vm.is_tdx:
        table = vm.private if is_private else vm.shared
        return table, table.lookup(gfn)
    # One direct root: whatever maps the gfn serves the access.
    leaf = vm.private.lookup(gfn)
    if leaf is not None:
        return vm.private, leaf
    return vm.shared, vm.shared.lookup(gfn)


def _complete(vm: VM, acc: Access, table: LeafTable, leaf: Leaf) -> Result:
    if vm.is_tdx and table is vm.private and leaf.state in (PENDING, PENDING_BLOCKED):
        # tdx_handle_ept_violation(): "Guest access before accepting" -> kvm_vm_dead().
        vm.kill(f"guest access before accepting gpa {acc.gfn << 12:#x} on vCPU {acc.vcpu}")
        vm.emit("kvm_userspace_exit", acc.vcpu, "error", "EIO")
        ret: dict[str, Any] = {"vm_dead": True}
        if acc.retried:
            ret["retried"] = True
        return Result(False, "EIO", ret)
    pfn = leaf.pfn_of(acc.gfn)
    if acc.write:
        if vm.memslots.readonly:
            slot = vm.memslots.lookup(acc.gfn)
            if slot is not None and slot.flags & KVM_MEM_READONLY:
                # The leaf of a READONLY slot is not writable: the write faults, is emulated.
                return _mmio_exit(vm, acc, acc.gfn)
        assert acc.value is not None  # ops.py: value is required with write
        vm.host.write(pfn, acc.value)
        value = acc.value
    else:
        value = vm.host.read(pfn)
    ret = {"value": value, "level": LEVEL_NAMES[leaf.level], "pfn": pfn}
    if acc.retried:
        ret["retried"] = True
    return Result(True, None, ret)


def _memory_fault_exit(vm: VM, acc: Access, is_private: bool, errno: str) -> Result:
    if acc.prefetch:
        return Result.fail(errno, exit={"reason": "KVM_EXIT_MEMORY_FAULT"})
    if vm.kernel["memory_fault_exit"] == "v8":
        # v8 3/8 + 7/8: RET_PF_USER, KVM_RUN returns 0 with exit reason 38, flags bit 0.
        vm.emit("kvm_userspace_exit", acc.vcpu, "KVM_EXIT_MEMORY_FAULT", "")
        exit_ = {"reason": "KVM_EXIT_MEMORY_FAULT", "gpa": acc.gfn << 12, "size": 4096}
        exit_["flags"] = V8_MEMORY_EXIT_FLAG_PRIVATE if is_private else 0
        return Result(True, None, {"exit": exit_})
    vm.emit("kvm_userspace_exit", acc.vcpu, "KVM_EXIT_MEMORY_FAULT", errno)
    return Result.fail(
        errno,
        exit={
            "reason": "KVM_EXIT_MEMORY_FAULT",
            "gpa": acc.gfn << 12,
            "size": 4096,
            "flags": KVM_MEMORY_EXIT_FLAG_PRIVATE if is_private else 0,
        },
    )


def _mmio_exit(vm: VM, acc: Access, gfn: int) -> Result:
    """The access is emulated and reaches the VMM as KVM_EXIT_MMIO (no slot, or a write to
    a READONLY slot: kvm_handle_error_pfn() -> RET_PF_EMULATE)."""
    gpa = (gfn << 12) | (acc.gpa & 0xFFF)
    if acc.prefetch:
        return Result.fail("ENOENT")  # kvm_tdp_page_prefault(): RET_PF_EMULATE -> -ENOENT
    vm.emit("kvm_mmio", acc.vcpu, gpa)
    vm.emit("kvm_userspace_exit", acc.vcpu, "KVM_EXIT_MMIO", "")
    ret: dict[str, Any] = {"exit": {"reason": "KVM_EXIT_MMIO", "gpa": gpa}}
    if acc.retried:
        ret["retried"] = True
    return Result(True, None, ret)


def _faultin(vm: VM, acc: Access, is_private: bool) -> PendingFault | Result:
    """kvm_mmu_faultin_pfn(): up to the point where the fault has its pfn."""
    gfn = acc.gfn
    if vm.is_tdx:
        code = PFERR_WRITE if (is_private or acc.write) else 1  # EPT exit qualification
    else:
        code = (PFERR_WRITE if acc.write else 0) | (PFERR_PRIVATE_ACCESS if is_private else 0)
    vm.events.current.append((vm.op_index, "kvm_page_fault", acc.vcpu, acc.gpa, code))
    mmu_seq = vm.inv.seq
    v8 = vm.kernel.v8_fault_scope  # rule private_fault_scope
    if not v8 and is_private != vm.attr_private(gfn):
        return _memory_fault_exit(vm, acc, is_private, "EFAULT")
    slot = vm.memslots.lookup(gfn)
    if slot is None:
        if is_private:
            return _memory_fault_exit(vm, acc, is_private, "EFAULT")
        return _mmio_exit(vm, acc, gfn)
    if v8 and slot.has_gmem and is_private != vm.attr_private(gfn):
        # v8 7/8 kvm_faultin_pfn(): the check follows the slot lookup, private slots only.
        return _memory_fault_exit(vm, acc, is_private, "EFAULT")
    if acc.write and slot.flags & KVM_MEM_READONLY:
        # __gfn_to_hva_many() -> KVM_HVA_ERR_RO_BAD, kvm_handle_error_pfn() -> RET_PF_EMULATE:
        # the write is emulated and posted to the VMM; memory is unchanged.
        return _mmio_exit(vm, acc, gfn)
    if is_private or slot.gmem_only:
        if not slot.has_gmem:
            return _memory_fault_exit(vm, acc, is_private, "EFAULT")
        err, pfn, order = gmem_get_pfn(vm, slot, gfn)
        if not err and vm.snp is not None:
            snp.gmem_prepare(vm, gfn, pfn, order)  # kvm_gmem_get_pfn() -> sev_gmem_prepare()
        if err:
            if v8:
                # kvm_faultin_pfn_private(): RET_PF_RETRY, the vCPU re-faults until the
                # page can be had; the model ends the access with the errno instead.
                vm.emit("kvm_userspace_exit", acc.vcpu, "error", err)
                return Result.fail(err)
            return _memory_fault_exit(vm, acc, is_private, err)
        host_level = level_for_order(order)
    else:
        err, pfn, host_level = host_ops.faultin_hva(vm, slot.gfn_to_hva(gfn), acc.write)
        if err:
            if not acc.prefetch:
                vm.emit("kvm_userspace_exit", acc.vcpu, "error", err)
            return Result.fail(err)
    return PendingFault(acc, is_private, mmu_seq, slot, slot.base_gfn, pfn, host_level)


_RETRY = Result(False, "RET_PF_RETRY")  # internal marker, never returned to the caller


def _finish(vm: VM, pf: PendingFault) -> Result | Leaf:
    """Under mmu_lock: is_page_fault_stale(), the max-level rule, then the leaf installed."""
    acc, gfn = pf.access, pf.access.gfn
    slot = pf.slot
    if vm.memslots.by_id.get(slot.id) is not slot or slot.base_gfn != pf.slot_base:
        vm.emit("kvm_mmu_page_fault_retry", acc.vcpu, gfn, "memslot changed")
        return _RETRY
    if vm.inv.retry_gfn(pf.mmu_seq, gfn):
        vm.emit("kvm_mmu_page_fault_retry", acc.vcpu, gfn, "mmu_invalidate_seq changed")
        return _RETRY
    mirror = vm.is_tdx and pf.is_private
    table = vm.private if pf.is_private else vm.shared
    level = max_mapping_level(
        vm,
        slot,
        gfn,
        pf.is_private,
        pf.pfn,
        pf.host_level,
        acc.accept_level or LEVEL_1G,
        table if mirror else None,
    )
    n = 1 << (9 * (level - 1))
    head, pfn_head = gfn & ~(n - 1), pf.pfn - (gfn & (n - 1))
    i = vm.op_index  # the events are appended inline: this runs once per fault
    vm.events.current.append((i, "kvm_mmu_spte_requested", gfn, pf.pfn, level))
    if mirror:
        if not ensure_tables(vm, table, gfn, level):
            return Result.fail("ENOMEM")
        vm.events.current += (
            (i, "kvm_tdp_mmu_spte_changed", table.root, head, level, -1, pfn_head),
            (i, "TDH.MEM.PAGE.AUG", head, level, pfn_head),
        )
        leaf = Leaf(head, level, pfn_head, PENDING)
        table.install(leaf)
    else:
        leaf = Leaf(head, level, pfn_head, MAPPED)
        install(vm, table, leaf)
        vm.events.current += (
            (i, "kvm_tdp_mmu_spte_changed", table.root, head, level, -1, pfn_head),
            (i, "kvm_mmu_set_spte", table.root, head, pfn_head, level),
        )
    return leaf


def max_mapping_level(
    vm: VM,
    slot: Memslot,
    gfn: int,
    is_private: bool,
    pfn: int,
    host_level: int,
    fault_max: int,
    mirror: LeafTable | None,
) -> int:
    """kvm_mmu_max_mapping_level() + kvm_mmu_hugepage_adjust()."""
    if host_level == LEVEL_4K:
        return LEVEL_4K  # the backing caps everything below (mainline gmem: always)
    level = min(fault_max, LEVEL_1G)
    if vm.is_tdx and is_private:
        # tdx_gmem_max_mapping_level(): 4K upstream, 2M with the S-EPT huge-page series.
        level = min(level, vm.config.tdx_private_max_level)
    while level > LEVEL_4K and (
        not slot.huge_allowed(gfn, level) or (vm.has_private_mem and vm.mixed(gfn, level))
    ):
        level -= 1
    level = min(level, host_level)
    if vm.snp is not None and is_private:
        level = min(level, snp.max_level(vm, pfn))  # sev_gmem_max_mapping_level()
    while level > LEVEL_4K and (gfn ^ pfn) & ((1 << (9 * (level - 1))) - 1):
        level -= 1
    if mirror is not None:
        # No promotion in the mirror root: an S-EPT page below keeps the region at 4K.
        while level > LEVEL_4K and (level - 1, gfn >> (9 * (level - 1))) in mirror.tables:
            level -= 1
    return level
