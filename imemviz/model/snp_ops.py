"""SEV-SNP ops: KVM_SEV_SNP_LAUNCH_UPDATE, KVM_SEV_SNP_LAUNCH_FINISH (arch/x86/kvm/svm/sev.c:
snp_launch_update(), sev_gmem_post_populate(), snp_launch_finish()) and the guest's
PVALIDATE instruction.

The firmware side (the SNP Firmware ABI's SNP_LAUNCH_UPDATE/FINISH) is modelled by what
it does to the RMP: a launched page is Pre-Guest (assigned, immutable, validated) and
the finish makes those pages Guest-Valid and vCPU 0's VMSA a firmware page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imemviz.model import snp
from imemviz.model.fault import Access, _faultin, _finish, _lookup, _vcpu_check
from imemviz.model.gmem_ops import gmem_get_pfn
from imemviz.model.mmu import Leaf
from imemviz.model.result import Result
from imemviz.model.rmp import PMD_PAGES, VALIDATED, VMSA
from imemviz.model.units import LEVEL_1G, LEVEL_2M, LEVEL_4K

if TYPE_CHECKING:
    from imemviz.model.memslots import Memslot
    from imemviz.model.ops import GuestPvalidate, SnpLaunchFinish, SnpLaunchUpdate
    from imemviz.model.vm import VM

# arch/x86/include/uapi/asm/kvm.h: KVM_SEV_SNP_PAGE_TYPE_*
SNP_PAGE_TYPES = {"NORMAL": 1, "ZERO": 3, "UNMEASURED": 4, "SECRETS": 5, "CPUID": 6}
# asm/sev.h and the APM's PVALIDATE: return codes the guest sees
PVALIDATE_FAIL_INPUT = "PVALIDATE_FAIL_INPUT"
PVALIDATE_FAIL_SIZEMISMATCH = "PVALIDATE_FAIL_SIZEMISMATCH"
PVALIDATE_FAIL_NOUPDATE = "PVALIDATE_FAIL_NOUPDATE"
FW_INVALID_GUEST_STATE = "SEV_RET_INVALID_GUEST_STATE"


def _enc_op_refusal(vm: VM, finish: bool) -> Result | None:
    """KVM_MEMORY_ENCRYPT_OP on a VM that is not an SNP guest, or a dead one."""
    if vm.snp is None:
        if vm.is_tdx:
            return Result.fail("EINVAL")  # tdx_vm_ioctl(): an unknown KVM_TDX_* command
        # sev_mem_enc_ioctl(): snp_launch_finish() is ENOTTY and snp_launch_update() EINVAL
        # for a VM that is not an SNP guest (!sev_snp_guest()).
        return Result.fail("ENOTTY" if finish else "EINVAL")
    if vm.dead:
        return Result.fail("EIO", vm_dead=True)  # kvm_vm_ioctl(): kvm->vm_dead
    return None


def snp_launch_update(vm: VM, op: SnpLaunchUpdate) -> Result:
    refused = _enc_op_refusal(vm, finish=False)
    if refused:
        return refused
    gpa, size = op.gpa, op.size
    # params.len: non-zero and page aligned; gfn_start cannot hold a byte offset.
    if not size or size & 0xFFF or gpa & 0xFFF or (gpa >> 12) + (size >> 12) > 1 << 52:
        return Result.fail("EINVAL")
    gfn = gpa >> 12
    slot = vm.memslots.lookup(gfn)
    if slot is None or not slot.has_gmem:
        return Result.fail("EINVAL")  # !kvm_slot_has_gmem(memslot)
    if slot.gmem_file is None:
        return Result.fail("EIO", fw_error=0)  # kvm_gmem_populate(): -EFAULT, count < 0
    # kvm_gmem_populate() clamps the range to the memslot.
    npages = min(size >> 12, slot.base_gfn + slot.npages - gfn)
    done = 0
    for i in range(npages):
        err = _post_populate(vm, slot, gfn + i, op.type, op.value)
        if err is not None:
            errno, fw_error = err
            if i == 0:
                # snp_launch_update(): kvm_gmem_populate() < 0 -> -EIO, argp->error set.
                return Result.fail("EIO", fw_error=fw_error, populate_errno=errno)
            break
        done += 1
    # Partial progress is a success with params.gfn_start/len updated (what is left).
    return Result.success(gpa=(gfn + done) << 12, size=size - (done << 12))


def _post_populate(
    vm: VM, slot: Memslot, gfn: int, kind: str, value: int
) -> tuple[str, int | str] | None:
    """__kvm_gmem_populate() + sev_gmem_post_populate() for one page."""
    assert vm.snp is not None
    err, pfn, _order = gmem_get_pfn(vm, slot, gfn)  # __kvm_gmem_get_pfn(): no prepare
    if err:
        return err, 0
    if not vm.attr_private(gfn):
        return "EINVAL", 0  # kvm_range_has_memory_attributes(PRIVATE)
    if vm.snp.rmp.lookup(pfn) is not None:
        return "EEXIST", 0  # "Failed to ensure GFN ... RMP entry is initial shared state"
    vm.host.write(pfn, 0 if kind in ("ZERO", "SECRETS") else value)
    snp.make_private(vm, pfn, gfn, LEVEL_4K, True)
    if vm.snp.launched:
        # The firmware refuses SNP_LAUNCH_UPDATE outside the launch; snp_page_reclaim().
        vm.emit("SNP_LAUNCH_UPDATE", gfn << 12, pfn, kind, FW_INVALID_GUEST_STATE)
        vm.emit("SNP_PAGE_RECLAIM", pfn)
        snp.make_shared(vm, pfn, 1, LEVEL_4K)
        return "EIO", FW_INVALID_GUEST_STATE
    vm.emit("SNP_LAUNCH_UPDATE", gfn << 12, pfn, kind, "SUCCESS")
    # Pre-Guest: assigned, immutable and validated (the guest need not PVALIDATE it).
    vm.snp.rmp.set_flags(pfn, 1, VALIDATED, 0)
    return None


def snp_launch_finish(vm: VM, op: SnpLaunchFinish) -> Result:
    refused = _enc_op_refusal(vm, finish=True)
    if refused:
        return refused
    state = vm.snp
    assert state is not None
    if state.launched:
        # The firmware's guest is RUNNING: SNP_LAUNCH_FINISH fails, sev_issue_cmd() -EIO.
        vm.emit("SNP_LAUNCH_FINISH", FW_INVALID_GUEST_STATE)
        return Result.fail("EIO", fw_error=FW_INVALID_GUEST_STATE)
    # snp_launch_update_vmsa(): vCPU 0's VMSA page goes to the firmware, then is measured.
    pfn = vm.host.allocate(0)
    if pfn is None:
        return Result.fail("ENOMEM")
    snp.make_private(vm, pfn, snp.INITIAL_VMSA_GPA >> 12, LEVEL_4K, True)
    state.rmp.set_flags(pfn, 1, VMSA | VALIDATED, 0)
    state.vmsa_pfn = pfn
    vm.emit("SNP_LAUNCH_UPDATE", snp.INITIAL_VMSA_GPA, pfn, "VMSA", "SUCCESS")
    snp.finish_launch(vm)
    vm.emit("SNP_LAUNCH_FINISH", "SUCCESS")
    state.launched = True
    return Result.success()


# -- PVALIDATE --------------------------------------------------------------------------
def guest_pvalidate(vm: VM, op: GuestPvalidate) -> Result:
    if vm.snp is None:
        return Result.fail("EINVAL", pvalidate_status="#UD")  # not an SNP guest
    refused = _vcpu_check(vm, 0)
    if refused:
        return refused
    level, gfn = op.level, op.gpa >> 12
    if level == LEVEL_1G or (level == LEVEL_2M and gfn & (PMD_PAGES - 1)):
        return _status(vm, gfn, op, PVALIDATE_FAIL_INPUT)  # rCX > 1, or rAX not 2M aligned
    for _attempt in range(4):
        # PVALIDATE is a private (C-bit) access: the NPT walk may fault first.
        acc = Access(0, gfn << 12, gfn, False, True, False, None)
        table, leaf = _lookup(vm, gfn, True)
        if leaf is None or table is not vm.private:
            pf = _faultin(vm, acc, True)
            if isinstance(pf, Result):
                return pf
            out = _finish(vm, pf)
            if not isinstance(out, Leaf):
                if out.errno == "RET_PF_RETRY":
                    continue
                return out
            leaf = out
        pfn = leaf.pfn_of(gfn)
        e = vm.snp.rmp.lookup(pfn)
        if e is None:
            return _status(vm, gfn, op, PVALIDATE_FAIL_INPUT)  # cannot happen: prepared
        if e.level == LEVEL_2M and (level == LEVEL_4K or leaf.level < LEVEL_2M):
            # #NPF with PFERR_GUEST_SIZEM (or an NPT leaf smaller than the RMP entry).
            snp.handle_rmp_fault(vm, acc, pfn, size_mismatch=level == LEVEL_4K)
            continue
        if level == LEVEL_2M and e.level == LEVEL_4K:
            return _status(vm, gfn, op, PVALIDATE_FAIL_SIZEMISMATCH)
        if e.validated == op.validate:
            return _status(vm, gfn, op, PVALIDATE_FAIL_NOUPDATE)  # rFLAGS.CF = 1
        head = pfn & ~(PMD_PAGES - 1) if level == LEVEL_2M else pfn
        n = PMD_PAGES if level == LEVEL_2M else 1
        if op.validate:
            vm.snp.rmp.set_flags(head, n, VALIDATED, 0)
        else:
            vm.snp.rmp.set_flags(head, n, 0, VALIDATED)
        vm.emit("pvalidate", gfn << 12, level, int(op.validate), "SUCCESS")
        return Result.success()
    return Result.fail("EINTR", exit={"reason": "KVM_EXIT_INTR"})


def _status(vm: VM, gfn: int, op: GuestPvalidate, status: str) -> Result:
    vm.emit("pvalidate", gfn << 12, op.level, int(op.validate), status)
    return Result.fail("EINVAL", pvalidate_status=status)
