"""KVM_PRE_FAULT_MEMORY: map a GPA range as guest faults would, before the guest runs.

kvm_vcpu_pre_fault_memory() (virt/kvm/kvm_main.c) checks flags and alignment and
loops over the range; each step is kvm_arch_vcpu_pre_fault_memory()
(arch/x86/kvm/mmu/mmu.c): EOPNOTSUPP until pre_fault_allowed (a TD: once
finalized), EINVAL for a TDX shared-bit alias, the access type from the
attribute, then kvm_tdp_page_prefault() -> kvm_mmu_do_page_fault(prefetch):
an emulated access (no memslot) is ENOENT, other errors are the fault's.  A
step maps one leaf and moves to its end; the result is the range that is
left.  If nothing was mapped the error is the result; otherwise success with
what is left (contract section 3, pre_fault_memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imemviz.model.fault import Access, _faultin, _finish, _lookup, decode_gpa
from imemviz.model.mmu import Leaf
from imemviz.model.result import Result
from imemviz.model.units import LEVEL_4K

if TYPE_CHECKING:
    from imemviz.model.ops import PreFaultMemory
    from imemviz.model.vm import VM

U64 = 1 << 64


def pre_fault_memory(vm: VM, op: PreFaultMemory) -> Result:
    gpa, size = op.gpa, op.size
    if vm.dead:
        return Result.fail("EIO", vm_dead=True)  # kvm_vcpu_ioctl(): vm_dead
    if not vm.kernel["pre_fault_memory"]:
        return Result.fail("EINVAL")  # no KVM_PRE_FAULT_MEMORY: kvm_arch_vcpu_ioctl() default
    if op.vcpu in vm.in_flight:
        return Result.fail("EBUSY")  # the vCPU is inside KVM_RUN (its mutex is held)
    left = {"gpa": gpa, "size": size}
    if op.flags:
        return Result.fail("EINVAL", **left)
    if gpa & 0xFFF or size & 0xFFF or gpa + size <= gpa or gpa + size >= U64:
        return Result.fail("EINVAL", **left)
    vm.emit("kvm_pre_fault_memory", op.vcpu, gpa, size)
    full = size
    err: int | str | None = None
    while size:
        err = _step(vm, op.vcpu, gpa)
        if isinstance(err, str):
            break
        level = err
        err = None
        n = 1 << (12 + 9 * (level - 1))
        done = min(size, (gpa & ~(n - 1)) + n - gpa)
        gpa += done
        size -= done
    if isinstance(err, str) and size == full:
        return Result.fail(err, gpa=gpa, size=size)
    return Result.success(gpa=gpa, size=size)


def _step(vm: VM, vcpu: int, gpa: int) -> int | str:
    """One kvm_arch_vcpu_pre_fault_memory(): the level mapped, or the errno."""
    if vm.is_tdx and vm.td_state != "RUNNABLE":
        return "EOPNOTSUPP"  # !kvm->arch.pre_fault_allowed until tdx_td_finalize()
    if vm.snp is not None and not vm.snp.launched:
        return "EOPNOTSUPP"  # pre_fault_allowed is set by snp_launch_finish()
    gfn, alias = decode_gpa(vm, gpa)
    if alias:
        return "EINVAL"  # kvm_is_gfn_alias()
    private = vm.has_private_mem and vm.attr_private(gfn)
    # A shared TDX fault goes to the GPA with the shared bit (direct_bits).
    acc = Access(vcpu, gpa, gfn, vm.is_tdx and not private, private, False, None, prefetch=True)
    _table, leaf = _lookup(vm, gfn, private)
    if leaf is not None:
        return LEVEL_4K  # RET_PF_SPURIOUS (fast_page_fault): the step is one page
    pf = _faultin(vm, acc, private)
    if isinstance(pf, Result):
        if pf.errno == "EHWPOISON" and pf.ret.get("exit") is None:
            # kvm_handle_error_pfn(): SIGBUS to the task and RET_PF_RETRY; the prefault loop
            # then sees the signal pending.
            return "EINTR"
        return pf.errno or "EIO"
    out = _finish(vm, pf)
    if isinstance(out, Leaf):
        return out.level
    return out.errno or "EIO"
