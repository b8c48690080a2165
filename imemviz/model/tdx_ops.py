"""TDX TD build: KVM_TDX_INIT_MEM_REGION (kvm_gmem_populate -> TDH.MEM.PAGE.ADD, TDH.MR.EXTEND)
and KVM_TDX_FINALIZE_VM (TDH.MR.FINALIZE), with tdx_vcpu_init_mem_region()'s check order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imemviz.model.gmem_ops import gmem_get_pfn
from imemviz.model.mmu import MAPPED, Leaf
from imemviz.model.result import Result
from imemviz.model.units import LEVEL_4K
from imemviz.model.zap import ensure_tables

if TYPE_CHECKING:
    from imemviz.model.ops import TdxFinalizeVm, TdxInitMemRegion
    from imemviz.model.vm import VM

TDX_EXTENDMR_CHUNKS = 4096 // 256  # TDH.MR.EXTEND measures 256 bytes per call


def tdx_init_mem_region(vm: VM, op: TdxInitMemRegion) -> Result:
    if not vm.is_tdx:
        return Result.fail("EINVAL")  # vt_vcpu_mem_enc_unlocked_ioctl(): not a TD vCPU
    if vm.dead:
        return Result.fail("EIO", vm_dead=True)
    if vm.td_state == "RUNNABLE":
        return Result.fail("EINVAL")  # the initial memory is fixed once finalized
    gpa, npages = op.gpa, op.nr_pages
    last = gpa + (npages << 12)
    if gpa & 0xFFF or not npages or last >= 1 << 64 or last <= gpa:
        return Result.fail("EINVAL")
    bit = vm.config.shared_bit_gfn
    if (gpa >> 12) & bit or ((last - 1) >> 12) & bit:
        return Result.fail("EINVAL")
    for gfn in range(gpa >> 12, last >> 12):
        err = _populate_one(vm, gfn, op.measure, op.value)
        if err:
            return Result.fail(err)
    return Result.success()


def _populate_one(vm: VM, gfn: int, measure: bool, value: int) -> str | None:
    """kvm_gmem_populate() for one page, then tdx_gmem_post_populate()."""
    slot = vm.memslots.lookup(gfn)
    if slot is None or not slot.has_gmem:
        return "EINVAL"
    if slot.gmem_file is None:
        return "EFAULT"
    err, pfn, _order = gmem_get_pfn(vm, slot, gfn)
    if err:
        return err
    if not vm.attr_private(gfn):
        return "EINVAL"
    table = vm.private
    if table.lookup(gfn) is not None:
        return "EIO"  # kvm_tdp_mmu_map_private_pfn() finds the leaf: RET_PF_SPURIOUS
    vm.emit("kvm_gmem_populate", gfn, pfn)
    if not ensure_tables(vm, table, gfn, LEVEL_4K):
        return "ENOMEM"
    vm.emit("kvm_tdp_mmu_spte_changed", table.root, gfn, LEVEL_4K, -1, pfn)
    vm.emit("TDH.MEM.PAGE.ADD", gfn, pfn)
    table.install(Leaf(gfn, LEVEL_4K, pfn, MAPPED))
    vm.host.write(pfn, value)  # PAGE.ADD copies the source page into the TD
    if measure:
        vm.emit("TDH.MR.EXTEND", gfn, TDX_EXTENDMR_CHUNKS)
    return None


def tdx_finalize_vm(vm: VM, op: TdxFinalizeVm) -> Result:
    if not vm.is_tdx:
        return Result.fail("ENOTTY")  # vt_mem_enc_ioctl(): not a TD
    if vm.dead:
        return Result.fail("EIO", vm_dead=True)
    if vm.td_state == "RUNNABLE":
        return Result.fail("EINVAL")
    vm.emit("TDH.MR.FINALIZE")
    vm.td_state = "RUNNABLE"
    return Result.success()
