"""SEV-SNP rules, each named after the kernel function (arch/x86/kvm/svm/sev.c unless said)
or the hardware instruction it comes from."""

from __future__ import annotations

import pytest

from imemviz.model import VM, VMConfig
from imemviz.model import ops as O
from imemviz.model.config import ConfigError
from imemviz.model.invariants import check_invariants

K, M = 1 << 10, 1 << 20
HVA = 0x7F0000000000


def snp_vm(order: int = 0, launch: bool = True, kernel: str = "mainline") -> VM:
    vm = VM(VMConfig.from_dict({"type": "snp", "gmem_max_order": order, "kernel": kernel}))
    for op in (
        O.CreateGuestMemfd(4 * M),
        O.SetUserMemoryRegion2(
            0, flags=4, guest_phys_addr=0, memory_size=4 * M, userspace_addr=HVA, guest_memfd=3
        ),
        O.SetMemoryAttributes(0, 4 * M, 8),
    ):
        assert vm.apply(op).ok
    if launch:
        assert vm.apply(O.SnpLaunchFinish()).ok
    return vm


def rmp(vm: VM, gpa: int) -> dict | None:
    return vm.apply(O.Inspect(gpa)).ret["rmp"]


def events(vm: VM) -> list[str]:
    return [e[1] for e in vm.last_events]


def test_snp_vm_type_needs_6_11_kvm_x86_snp_vm() -> None:
    """kvm_arch_init_vm(): KVM_X86_SNP_VM exists from the 6.11 SNP host series."""
    assert snp_vm(kernel="6.12", launch=False).snp is not None
    with pytest.raises(ConfigError, match=r"6\.11"):
        VMConfig.from_dict({"type": "snp", "kernel": "6.8"})


def test_readonly_slot_refused_check_memory_region_flags() -> None:
    """check_memory_region_flags(): no KVM_MEM_READONLY when kvm_arch_has_readonly_mem() is
    false (kvm->arch.has_protected_state: SEV-ES/SNP)."""
    vm = VM(VMConfig.from_dict({"type": "snp"}))
    r = vm.apply(O.SetUserMemoryRegion2(1, flags=2, guest_phys_addr=0, memory_size=2 * M))
    assert r.errno == "EINVAL"


def test_launch_update_sev_gmem_post_populate_pre_guest_then_finish_guest_valid() -> None:
    """sev_gmem_post_populate(): rmp_make_private(4K, immutable), firmware LAUNCH_UPDATE
    (Pre-Guest: validated); snp_launch_finish(): Guest-Valid, VMSA a firmware page."""
    vm = snp_vm(launch=False)
    r = vm.apply(O.SnpLaunchUpdate(0x1000, 8 * K, "NORMAL", 7))
    assert r.ok and r.ret == {"gpa": 0x3000, "size": 0}
    assert "rmp_make_private" in events(vm) and "SNP_LAUNCH_UPDATE" in events(vm)
    e = rmp(vm, 0x1000)
    assert e["assigned"] and e["immutable"] and e["validated"] and e["page_size"] == "4K"
    assert vm.apply(O.Inspect(0x1000)).ret["private_mapping"] is None  # not mapped
    assert vm.apply(O.SnpLaunchFinish()).ok
    e = rmp(vm, 0x2000)
    assert e["state"] == "guest-valid" and not e["immutable"]
    assert vm.snp.rmp.lookup(vm.snp.vmsa_pfn).vmsa
    r = vm.apply(O.GuestAccess(0x1000))
    assert r.ok and r.ret["value"] == 7 and r.ret["level"] == "4K"
    assert check_invariants(vm) == []


def test_launch_update_errnos_snp_launch_update() -> None:
    """snp_launch_update(): len 0 or unaligned, no gmem slot -> EINVAL; a failure on the
    first page (kvm_gmem_populate() < 0) -> EIO; assigned RMP -> EEXIST inside; after the
    finish the firmware refuses (EIO); the range is clamped to the memslot."""
    vm = snp_vm(launch=False)
    assert vm.apply(O.SnpLaunchUpdate(0, 0)).errno == "EINVAL"
    assert vm.apply(O.SnpLaunchUpdate(0, 100)).errno == "EINVAL"
    assert vm.apply(O.SnpLaunchUpdate(8 * M, 4 * K)).errno == "EINVAL"
    assert vm.apply(O.SnpLaunchUpdate(0, 4 * K)).ok
    r = vm.apply(O.SnpLaunchUpdate(0, 4 * K))
    assert r.errno == "EIO" and r.ret["populate_errno"] == "EEXIST"
    assert vm.apply(O.SetMemoryAttributes(0x10000, 4 * K, 0)).ok
    r = vm.apply(O.SnpLaunchUpdate(0x10000, 4 * K))
    assert r.errno == "EIO" and r.ret["populate_errno"] == "EINVAL"
    r = vm.apply(O.SnpLaunchUpdate(0xF000, 8 * K))  # the second page is shared: partial
    assert r.ok and r.ret == {"gpa": 0x10000, "size": 4 * K}
    r = vm.apply(O.SnpLaunchUpdate(4 * M - 4 * K, 8 * K))  # clamped to the slot
    assert r.ok and r.ret["size"] == 4 * K
    assert vm.apply(O.SnpLaunchFinish()).ok
    r = vm.apply(O.SnpLaunchUpdate(0x20000, 4 * K))
    assert r.errno == "EIO" and r.ret["fw_error"] == "SEV_RET_INVALID_GUEST_STATE"
    assert rmp(vm, 0x20000)["assigned"] is False  # snp_page_reclaim()
    assert vm.apply(O.SnpLaunchFinish()).errno == "EIO"


def test_not_an_snp_guest_sev_mem_enc_ioctl() -> None:
    """sev_mem_enc_ioctl(): snp_launch_finish() ENOTTY / snp_launch_update() EINVAL when
    !sev_snp_guest(); a TD's tdx_vm_ioctl() refuses unknown commands with EINVAL."""
    vm = VM(VMConfig.from_dict({"type": "sw_protected"}))
    assert vm.apply(O.SnpLaunchFinish()).errno == "ENOTTY"
    assert vm.apply(O.SnpLaunchUpdate(0, 4 * K)).errno == "EINVAL"
    td = VM(VMConfig.from_dict({"type": "tdx"}))
    assert td.apply(O.SnpLaunchFinish()).errno == "EINVAL"
    assert vm.apply(O.GuestPvalidate(0)).ret["pvalidate_status"] == "#UD"


def test_run_before_finish_fails_entry_pre_sev_run() -> None:
    """VMRUN with a VMSA the firmware has not taken: SVM_EXIT_ERR -> KVM_EXIT_FAIL_ENTRY;
    KVM_PRE_FAULT_MEMORY is EOPNOTSUPP until snp_launch_finish() sets pre_fault_allowed."""
    vm = snp_vm(launch=False)
    r = vm.apply(O.GuestAccess(0x1000))
    assert r.ok and r.ret["exit"]["reason"] == "KVM_EXIT_FAIL_ENTRY"
    assert vm.apply(O.PreFaultMemory(0, 4 * K)).errno == "EOPNOTSUPP"


def test_private_fault_sev_gmem_prepare_4k_guest_invalid_then_pvalidate() -> None:
    """sev_gmem_prepare(): an order-0 folio is assigned at 4K, not validated; an access to
    it raises #VC and a Linux guest terminates (KVM_SYSTEM_EVENT_SEV_TERM); PVALIDATE
    validates it, a second PVALIDATE is PVALIDATE_FAIL_NOUPDATE (rFLAGS.CF)."""
    vm = snp_vm()
    r = vm.apply(O.GuestAccess(0x5000))
    assert r.ret["exit"]["type"] == "KVM_SYSTEM_EVENT_SEV_TERM"
    assert rmp(vm, 0x5000)["state"] == "guest-invalid"
    assert vm.apply(O.GuestPvalidate(0x5000)).ok
    r = vm.apply(O.GuestPvalidate(0x5000))
    assert r.ret["pvalidate_status"] == "PVALIDATE_FAIL_NOUPDATE"
    assert vm.apply(O.GuestAccess(0x5000, write=True, value=3)).ok
    assert vm.apply(O.GuestPvalidate(0x5000, validate=False)).ok
    assert rmp(vm, 0x5000)["validated"] is False


def test_pvalidate_2m_on_4k_rmp_is_size_mismatch() -> None:
    """PVALIDATE 2M on a 4K RMP entry: PVALIDATE_FAIL_SIZEMISMATCH (asm/sev.h: 6); 1G or an
    unaligned 2M gpa: PVALIDATE_FAIL_INPUT."""
    vm = snp_vm()
    r = vm.apply(O.GuestPvalidate(0x200000, level=2))
    assert r.ret["pvalidate_status"] == "PVALIDATE_FAIL_SIZEMISMATCH"
    assert vm.apply(O.GuestPvalidate(0x201000, level=2)).ret["pvalidate_status"] == (
        "PVALIDATE_FAIL_INPUT"
    )
    assert vm.apply(O.GuestPvalidate(0, level=3)).ret["pvalidate_status"] == (
        "PVALIDATE_FAIL_INPUT"
    )


def test_huge_folio_is_large_rmp_possible_2m_and_max_mapping_level() -> None:
    """is_large_rmp_possible(): a 2M folio whose 2M pfn range is all shared is assigned at
    2M; sev_gmem_max_mapping_level() lets the NPT map it at 2M."""
    vm = snp_vm(order=9)
    assert vm.apply(O.GuestPvalidate(0x200000, level=2)).ok
    assert rmp(vm, 0x201000)["page_size"] == "2M"
    r = vm.apply(O.GuestAccess(0x201000))
    assert r.ok and r.ret["level"] == "2M"


def test_rmp_fault_psmash_sev_handle_rmp_fault() -> None:
    """sev_handle_rmp_fault(): a 4K NPT leaf (the 2M range became MIXED) over a 2M RMP
    entry faults; KVM PSMASHes, zaps 512 gfns and traces kvm_rmp_fault; validated stays."""
    vm = snp_vm(order=9)
    assert vm.apply(O.GuestPvalidate(0x200000, level=2)).ok
    assert vm.apply(O.SetMemoryAttributes(0x203000, 4 * K, 0)).ok
    r = vm.apply(O.GuestAccess(0x201000))
    assert r.ok and r.ret["level"] == "4K"
    names = events(vm)
    assert names.index("psmash") < names.index("kvm_rmp_fault")
    e = rmp(vm, 0x201000)
    assert e["page_size"] == "4K" and e["validated"]


def test_pvalidate_4k_in_2m_entry_psmash_sizem() -> None:
    """PVALIDATE 4K inside a 2M RMP entry: #NPF with PFERR_GUEST_SIZEM, PSMASH, re-executed."""
    vm = snp_vm(order=9)
    assert vm.apply(O.GuestPvalidate(0x1000)).ok
    assert "psmash" in events(vm) and "kvm_rmp_fault" in events(vm)
    assert rmp(vm, 0x1000)["validated"] and not rmp(vm, 0x2000)["validated"]


def test_punch_sev_gmem_invalidate_psmash_then_shared() -> None:
    """sev_gmem_invalidate(): a 4K page of a 2M RMP entry freed (punching part of a huge
    folio) is PSMASHed first, then made shared and flushed; the rest stays private."""
    vm = snp_vm(order=9)
    assert vm.apply(O.GuestPvalidate(0x200000, level=2)).ok
    assert vm.apply(O.SetMemoryAttributes(0x203000, 4 * K, 0)).ok
    assert vm.apply(O.Fallocate(3, 3, 0x203000, 4 * K)).ok
    names = events(vm)
    assert names.index("psmash") < names.index("rmp_make_shared")
    assert "clflush_cache_range" in names
    pfn = vm.apply(O.Inspect(0x204000)).ret["folio"]["pfn"]
    assert vm.snp.rmp.lookup(pfn - 1) is None  # the punched page is the hypervisor's
    assert rmp(vm, 0x204000)["assigned"] and rmp(vm, 0x204000)["page_size"] == "4K"
    assert check_invariants(vm) == []


def test_close_frees_whole_2m_entries_with_one_rmpupdate() -> None:
    """sev_gmem_invalidate(): a whole 2M folio with a 2M entry is made shared at 2M
    (use_2m_update); nothing stays assigned after close()."""
    vm = snp_vm(order=9)
    assert vm.apply(O.GuestPvalidate(0x200000, level=2)).ok
    assert vm.apply(O.Close(3)).ok
    assert [e[3] for e in vm.last_events if e[1] == "rmp_make_shared"] == [2]
    assert vm.snp.rmp.count_assigned() == {"4K": 1, "2M": 0, "validated": 1, "immutable": 1}
    assert check_invariants(vm) == []  # only the VMSA remains


def test_page_state_change_snp_begin_psc() -> None:
    """snp_begin_psc(): 4K and 2M PSC entries give one KVM_HC_MAP_GPA_RANGE exit per run,
    args[2] with KVM_MAP_GPA_RANGE_PAGE_SZ_2M for the 2M run."""
    vm = snp_vm()
    r = vm.apply(O.GuestMapGpaRange(0x1FF000, 2 * M + 4 * K, False))
    assert r.ret["exit"]["args"] == [0x1FF000, 1, 0]
    assert r.ret["chunks"] == [[0x1FF000, 1], [0x200000, 512]]
    r = vm.apply(O.GuestMapGpaRange(0x200000, 2 * M, True))
    assert r.ret["exit"]["args"] == [0x200000, 512, 16 | 1]
    assert vm.apply(O.GuestMapGpaRange(0x1001, 4 * K, True)).ret["guest_ret"] == (
        "VMGEXIT_PSC_ERROR_INVALID_ENTRY"
    )


def test_inspect_rmp_null_without_page_and_absent_on_other_vms() -> None:
    """Contract 3.2: `rmp` only on snp VMs, null when no folio or private mapping."""
    vm = snp_vm()
    assert rmp(vm, 0x3000) is None
    sw = VM(VMConfig.from_dict({"type": "sw_protected"}))
    assert "rmp" not in sw.apply(O.Inspect(0)).ret


def _scene_vm(name: str) -> tuple[VM, list]:
    from imemviz import resources
    from imemviz.io.replay import Timeline

    tl = Timeline.load(resources.scene_path(name))
    vm = tl.start_vm()
    results = [vm.apply(op) for op in tl.ops]
    return vm, results


def test_scenes_show_what_they_say() -> None:
    """snp-launch: every page type Pre-Guest then Guest-Valid; snp-psmash: the punch
    PSMASHes (sev_gmem_invalidate()); snp-unvalidated: #VC ends the guest."""
    vm, results = _scene_vm("snp-launch")
    types = [e[4] for e in vm.events.log if e[1] == "SNP_LAUNCH_UPDATE"]
    assert {"NORMAL", "ZERO", "UNMEASURED", "SECRETS", "CPUID", "VMSA"} <= set(types)
    assert vm.snp.launched and vm.snp.rmp.count_assigned()["immutable"] == 1  # the VMSA
    vm, results = _scene_vm("snp-psmash")
    names = [e[1] for e in vm.events.log]
    assert "psmash" in names and "kvm_rmp_fault" not in names
    assert check_invariants(vm) == []
    vm, results = _scene_vm("snp-unvalidated")
    assert results[-2].ret["exit"]["type"] == "KVM_SYSTEM_EVENT_SEV_TERM"
