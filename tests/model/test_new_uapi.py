"""The uAPI added in part 2 and the fixes that came with it, each test naming its kernel
source: KVM_PRE_FAULT_MEMORY, the MapGPA / KVM_HC_MAP_GPA_RANGE exit, VM_PFNMAP device
memory, READONLY memslots, the SMM slot zap, hva invalidations over every address space,
the host view of an MMAP guest_memfd, the TDX access that keeps its GPA, and the 2M accept
on a 4K-only KVM."""

from __future__ import annotations

from imemviz.model.ops import parse_op

from .kit import HVA, G, M, do, gmem_slot, inspect, names, ok, stats, td, vm_of

SHARED_BIT = 1 << 51  # TDX GPAW 52


def shared_slot(vm, gpa: int, size: int, slot: int = 0, **kw) -> None:
    ok(vm, "set_user_memory_region", slot=slot, guest_phys_addr=gpa, memory_size=size,
       userspace_addr=HVA + gpa, **kw)  # fmt: skip


# ------------------------------------------------------------------ KVM_PRE_FAULT_MEMORY


def test_pre_fault_checks_in_kernel_order() -> None:
    """kvm_vcpu_ioctl(): vm_dead -> EIO first; kvm_vcpu_pre_fault_memory(): flags, then
    alignment and wrap -> EINVAL with the range handed back (copy_to_user always runs)."""
    vm = vm_of("default")
    shared_slot(vm, 0, 4 * M)
    r = do(vm, "pre_fault_memory", gpa=0x1000, size=0x1000, flags=2)
    assert (r.errno, r.ret) == ("EINVAL", {"gpa": 0x1000, "size": 0x1000})
    for gpa, size in ((0x800, 4096), (0, 100), (0, 0), ((1 << 64) - 4096, 8192)):
        assert do(vm, "pre_fault_memory", gpa=gpa, size=size).errno == "EINVAL"


def test_pre_fault_maps_leaves_and_returns_what_is_left() -> None:
    """kvm_arch_vcpu_pre_fault_memory(): each step maps one leaf and returns up to its end;
    a THP-backed 2M page is one step."""
    vm = vm_of("default", shared_page_size="2M")
    shared_slot(vm, 0, 8 * M)
    r = ok(vm, "pre_fault_memory", gpa=M, size=4 * M)
    assert r == {"gpa": 5 * M, "size": 0}
    assert inspect(vm, 2 * M)["shared_mapping"]["level"] == "2M"
    assert stats(vm)["mappings"]["shared"]["2M"] == 3  # [0,2M) [2M,4M) [4M,6M)


def test_pre_fault_partial_success_then_enoent() -> None:
    """kvm_tdp_page_prefault(): RET_PF_EMULATE -> -ENOENT; kvm_vcpu_pre_fault_memory() returns
    success when at least one page was mapped."""
    vm = vm_of("default")
    shared_slot(vm, 0, 8192)
    assert ok(vm, "pre_fault_memory", gpa=0, size=16384) == {"gpa": 8192, "size": 8192}
    r = do(vm, "pre_fault_memory", gpa=8192, size=8192)
    assert (r.ok, r.errno, r.ret) == (False, "ENOENT", {"gpa": 8192, "size": 8192})


def test_pre_fault_td_needs_finalize_then_adds_pending_pages() -> None:
    """kvm_arch_vcpu_pre_fault_memory(): -EOPNOTSUPP until pre_fault_allowed (tdx_td_finalize());
    then tdx_sept_set_private_spte() AUGs (PENDING); kvm_is_gfn_alias() -> EINVAL."""
    vm = vm_of("tdx")
    gmem_slot(vm, 0, 4 * M)
    assert do(vm, "pre_fault_memory", gpa=0, size=8192).errno == "EOPNOTSUPP"
    ok(vm, "tdx_finalize_vm")
    assert ok(vm, "pre_fault_memory", gpa=0, size=8192) == {"gpa": 8192, "size": 0}
    assert "TDH.MEM.PAGE.AUG" in names(vm)
    assert inspect(vm, 0)["private_mapping"]["state"] == "PENDING"
    assert do(vm, "pre_fault_memory", gpa=SHARED_BIT, size=4096).errno == "EINVAL"
    # the guest accepts what was pre-faulted; touching it first would kill the TD
    assert ok(vm, "guest_accept", gpa=0) == {"level": "4K"}
    assert ok(vm, "guest_access", gpa=0)["value"] == 0
    r = do(vm, "guest_access", gpa=4096)
    assert r.errno == "EIO" and r.ret["vm_dead"]


def test_pre_fault_private_without_memory_is_efault() -> None:
    """A private gfn without guest_memfd: kvm_mmu_faultin_pfn_gmem() / kvm_handle_noslot_fault()
    prepare a memory-fault exit and return -EFAULT, which KVM_PRE_FAULT_MEMORY returns."""
    vm = vm_of("sw_protected")
    ok(vm, "set_memory_attributes", address=G, size=4096, attributes=8)
    r = do(vm, "pre_fault_memory", gpa=G, size=4096)
    assert (r.errno, r.ret) == ("EFAULT", {"gpa": G, "size": 4096})
    assert "kvm_userspace_exit" not in names(vm)  # no exit reaches the VMM


def test_pre_fault_busy_vcpu_and_dead_vm() -> None:
    vm = td()
    ok(vm, "guest_access", gpa=0x5000, private=True, hold=True)
    assert do(vm, "pre_fault_memory", gpa=0, size=4096).errno == "EBUSY"
    assert do(vm, "pre_fault_memory", gpa=0, size=4096, vcpu=1).ok
    assert do(vm, "vcpu_resume").ret["vm_dead"]  # it finds its page PENDING: the TD dies
    r = do(vm, "pre_fault_memory", gpa=0, size=4096)
    assert (r.errno, r.ret) == ("EIO", {"vm_dead": True})


def test_pre_fault_poisoned_shared_page_is_eintr() -> None:
    """kvm_handle_error_pfn(): HWPOISON -> SIGBUS to the task and RET_PF_RETRY; the prefault loop
    then sees signal_pending() -> -EINTR."""
    vm = vm_of("default")
    shared_slot(vm, 0, 4 * M)
    pfn = ok(vm, "guest_access", gpa=0)["pfn"]
    ok(vm, "memory_failure", pfn=pfn)
    assert do(vm, "pre_fault_memory", gpa=0, size=4096).errno == "EINTR"


# ------------------------------------------------------------------ MapGPA / KVM_HC_MAP_GPA_RANGE


def test_tdx_map_gpa_exits_in_2m_chunks_without_the_shared_bit() -> None:
    """tdx_map_gpa() / __tdx_map_gpa(): args[0] without the shared bit, ENCRYPTED or DECRYPTED
    from the GPA, one KVM_EXIT_HYPERCALL per TDX_MAP_GPA_MAX_LEN (2 MiB)."""
    vm = td()
    seq = stats(vm)["mmu_invalidate_seq"]
    r = ok(vm, "guest_map_gpa_range", gpa=M, size=5 * M, private=False)
    assert r["exit"] == {"reason": "KVM_EXIT_HYPERCALL", "nr": 12, "args": [M, 512, 0]}
    assert r["chunks"] == [[M, 512], [3 * M, 512], [5 * M, 256]]
    r = ok(vm, "guest_map_gpa_range", gpa=0, size=8192, private=True)
    assert r == {"exit": {"reason": "KVM_EXIT_HYPERCALL", "nr": 12, "args": [0, 2, 16]}}
    assert stats(vm)["mmu_invalidate_seq"] == seq  # the VMM has not converted anything yet


def test_tdx_map_gpa_refusals_go_to_the_guest() -> None:
    """tdx_map_gpa(): TDVMCALL_STATUS_INVALID_OPERAND (wrap, beyond GPAW, crossing the shared
    bit), TDVMCALL_STATUS_ALIGN_ERROR (unaligned); no exit."""
    vm = td()
    for gpa, size, private, status in (
        (0x800, 4096, True, "TDVMCALL_STATUS_ALIGN_ERROR"),
        (0, 100, True, "TDVMCALL_STATUS_ALIGN_ERROR"),
        (SHARED_BIT, 4096, True, "TDVMCALL_STATUS_INVALID_OPERAND"),
        (SHARED_BIT - 4096, 8192, True, "TDVMCALL_STATUS_INVALID_OPERAND"),
        (0, 1 << 53, True, "TDVMCALL_STATUS_INVALID_OPERAND"),
    ):
        r = ok(vm, "guest_map_gpa_range", gpa=gpa, size=size, private=private)
        assert r == {"guest_ret": status}, (gpa, size)
        assert "kvm_userspace_exit" not in names(vm)


def test_vmcall_map_gpa_range_one_exit() -> None:
    """kvm_emulate_hypercall() KVM_HC_MAP_GPA_RANGE: one exit with (gpa, npages, attrs);
    unaligned gpa or 0 pages -> -KVM_EINVAL to the guest."""
    vm = vm_of("sw_protected")
    r = ok(vm, "guest_map_gpa_range", gpa=G, size=8 * M, private=True)
    assert r == {"exit": {"reason": "KVM_EXIT_HYPERCALL", "nr": 12, "args": [G, 2048, 16]}}
    assert ok(vm, "guest_map_gpa_range", gpa=G + 1, size=4096, private=False) == {
        "guest_ret": "KVM_EINVAL"
    }
    assert ok(vm, "guest_map_gpa_range", gpa=G, size=0, private=False) == {
        "guest_ret": "KVM_EINVAL"
    }
    # Only a u64 wrap of gfn + npages is refused: a range past any memslot still exits.
    high = ok(vm, "guest_map_gpa_range", gpa=1 << 63, size=1 << 40, private=False)
    assert high["exit"]["args"] == [1 << 63, 1 << 28, 0]


def test_map_gpa_needs_a_running_vcpu() -> None:
    vm = vm_of("tdx")
    assert do(vm, "guest_map_gpa_range", gpa=0, size=4096, private=True).errno == "EINVAL"


# ------------------------------------------------------------------ VM_PFNMAP device memory


def test_pfnmap_replaces_anonymous_memory_through_the_mmu_notifier() -> None:
    """mmap(MAP_FIXED) over the range: kvm_mmu_notifier_invalidate_range_start() zaps the shared
    leaves (one invalidation), the anonymous pages are freed; the VMM reads the device pages."""
    vm = vm_of("default")
    shared_slot(vm, 0, 4 * M)
    ok(vm, "guest_access", gpa=M, write=True, value=5)
    free = stats(vm)["host_free_bytes"]
    ok(vm, "host_mmap_pfnmap", hva=HVA + M, size=8192, refcounted=True)
    assert stats(vm)["mmu_invalidate_seq"] == 1
    assert inspect(vm, M)["shared_mapping"] is None
    assert stats(vm)["host_free_bytes"] == free + 4096 - 8192
    assert ok(vm, "host_access", hva=HVA + M, write=True, value=9) == {"value": 9}
    assert ok(vm, "guest_access", gpa=M)["value"] == 9


def test_pfnmap_refusals() -> None:
    """madvise_dontneed_free_valid_vma(): VM_PFNMAP -> EINVAL (after the anonymous part before
    it); mmap: unaligned address or length 0 -> EINVAL; the model tracks memslot ranges only."""
    vm = vm_of("default", host_memory="64M")
    shared_slot(vm, 0, 4 * M)
    assert do(vm, "host_mmap_pfnmap", hva=HVA + 1, size=4096).errno == "EINVAL"
    assert do(vm, "host_mmap_pfnmap", hva=HVA, size=0).errno == "EINVAL"
    assert do(vm, "host_mmap_pfnmap", hva=HVA + 8 * M, size=4096).errno == "EFAULT"
    # __get_unmapped_area() checks the range against TASK_SIZE before the alignment.
    top = 0x7FFFFFFFF000
    assert do(vm, "host_mmap_pfnmap", hva=top + 1, size=4096).errno == "ENOMEM"
    assert do(vm, "host_mmap_pfnmap", hva=top - 4096, size=8192).errno == "ENOMEM"
    assert do(vm, "host_mmap_pfnmap", hva=top - 8191, size=4096).errno == "EINVAL"
    ok(vm, "host_mmap_pfnmap", hva=HVA + 2 * M, size=4096)
    ok(vm, "host_access", hva=HVA, write=True, value=1)
    r = do(vm, "madvise", hva=HVA, len=4 * M)
    assert r.errno == "EINVAL"
    assert ok(vm, "host_access", hva=HVA)["value"] == 0  # the part before was dropped
    vm2 = vm_of("default", host_memory="64M")
    shared_slot(vm2, 0, 128 * M)
    assert do(vm2, "host_mmap_pfnmap", hva=HVA, size=128 * M).errno == "ENOMEM"


# ------------------------------------------------------------------ READONLY, SMM, notifiers


def test_readonly_slot_write_is_mmio_and_read_maps() -> None:
    """__gfn_to_hva_many() -> KVM_HVA_ERR_RO_BAD; kvm_handle_error_pfn(): KVM_PFN_ERR_RO_FAULT
    -> RET_PF_EMULATE; api.rst: writes are posted to userspace as KVM_EXIT_MMIO."""
    vm = vm_of("default")
    shared_slot(vm, 0, 4 * M, flags=["READONLY"])
    ok(vm, "host_access", hva=HVA, write=True, value=7)
    r = ok(vm, "guest_access", gpa=0x10, write=True, value=1)
    assert r == {"exit": {"reason": "KVM_EXIT_MMIO", "gpa": 0x10}}
    assert ok(vm, "guest_access", gpa=0)["value"] == 7
    assert ok(vm, "guest_access", gpa=0, write=True, value=1)["exit"]["reason"] == "KVM_EXIT_MMIO"
    assert ok(vm, "host_access", hva=HVA)["value"] == 7


def test_deleting_an_smm_slot_zaps_every_root() -> None:
    """kvm_arch_flush_shadow_memslot() -> kvm_mmu_zap_all_fast(): no as_id check, so deleting an
    address-space-1 (SMM) slot on a DEFAULT VM zaps address space 0 too."""
    vm = vm_of("default")
    shared_slot(vm, 0, 4 * M)
    ok(vm, "guest_access", gpa=0)
    ok(vm, "set_user_memory_region", slot=(1 << 16) | 1, guest_phys_addr=0, memory_size=4 * M,
       userspace_addr=HVA + G)  # fmt: skip
    ok(vm, "set_user_memory_region", slot=(1 << 16) | 1, guest_phys_addr=0, memory_size=0)
    assert "kvm_mmu_zap_all_fast" in names(vm)
    assert inspect(vm, 0)["shared_mapping"] is None


def test_hva_invalidation_walks_every_address_space() -> None:
    """kvm_handle_hva_range() iterates every address space: an hva only an SMM slot maps still
    runs an invalidation (begin, range_add, end: seq + 1)."""
    vm = vm_of("default")
    ok(vm, "set_user_memory_region", slot=(1 << 16) | 1, guest_phys_addr=0, memory_size=4 * M,
       userspace_addr=HVA)  # fmt: skip
    ok(vm, "host_access", hva=HVA, write=True, value=1)
    ok(vm, "madvise", hva=HVA, len=4096)
    assert "kvm_mmu_invalidate_range_add" in names(vm)
    assert stats(vm)["mmu_invalidate_seq"] == 1


# ------------------------------------------------------------------ host view of guest_memfd


def test_gmem_host_view_poison_and_close() -> None:
    """kvm_gmem_fault_user_mapping(): a hwpoisoned folio is VM_FAULT_HWPOISON (SIGBUS); with the
    file closed the model has no file behind the mapping (SIGBUS, a simplification)."""
    vm = vm_of("default")
    fd = ok(vm, "create_guest_memfd", size=4 * M, flags=["MMAP", "INIT_SHARED"])["fd"]
    ok(vm, "set_user_memory_region2", slot=0, flags=4, guest_phys_addr=0, memory_size=4 * M,
       userspace_addr=HVA, guest_memfd=fd)  # fmt: skip
    ok(vm, "host_access", hva=HVA + 4096, write=True, value=3)
    pfn = inspect(vm, 4096)["folio"]["pfn"]
    ok(vm, "memory_failure", pfn=pfn)
    assert do(vm, "host_access", hva=HVA + 4096).errno == "SIGBUS"
    ok(vm, "close", fd=fd)
    assert do(vm, "host_access", hva=HVA).errno == "SIGBUS"
    assert stats(vm)["host_free_bytes"] == vm.host.free_bytes


def test_gmem_mmap_on_a_private_vm_converts_in_place() -> None:
    """A SW_PROTECTED VM with an MMAP guest_memfd (no INIT_SHARED there): the slot is gmem-only
    (KVM_MEMSLOT_GMEM_ONLY), so shared and private faults map the same folio and a conversion
    keeps the content; the host cannot touch it (SIGBUS)."""
    vm = vm_of("sw_protected")
    fd = ok(vm, "create_guest_memfd", size=4 * M, flags=["MMAP"])["fd"]
    ok(vm, "set_user_memory_region2", slot=0, flags=4, guest_phys_addr=0, memory_size=4 * M,
       userspace_addr=HVA, guest_memfd=fd)  # fmt: skip
    r = ok(vm, "guest_access", gpa=0, write=True, value=0x42)
    ok(vm, "set_memory_attributes", address=0, size=4 * M, attributes=8)
    r2 = ok(vm, "guest_access", gpa=0)
    assert (r2["value"], r2["pfn"]) == (0x42, r["pfn"])
    assert do(vm, "host_access", hva=HVA).errno == "SIGBUS"


# ------------------------------------------------------------------ TDX


def test_tdx_reexecuted_access_keeps_its_private_gpa() -> None:
    """A TD's access type is its GPA: the held private fault retries after the conversion to
    shared (mmu_invalidate_retry_gfn()) and the re-executed access, still at the private GPA,
    mismatches: KVM_EXIT_MEMORY_FAULT with flags 8 (kvm_mmu_faultin_pfn())."""
    vm = td()
    assert ok(vm, "guest_access", gpa=0x7000, hold=True) == {"in_flight": True}
    ok(vm, "set_memory_attributes", address=0x7000, size=4096, attributes=0)
    r = do(vm, "vcpu_resume")
    assert (r.ok, r.errno) == (False, "EFAULT")
    assert r.ret["exit"] == {"reason": "KVM_EXIT_MEMORY_FAULT", "gpa": 0x7000, "size": 4096,
                             "flags": 8}  # fmt: skip
    assert r.ret["retried"] is True


def test_linux_guest_accept_fallback_on_a_4k_kvm() -> None:
    """Contract 3.4 (TDX guest_accept): each 2M accept AUGs the 4K page at its start (PENDING,
    tdx_sept_set_private_spte() maps 4K only) and fails TDX_PAGE_SIZE_MISMATCH; the guest
    accepts the 512 pages at 4K."""
    vm = td()
    r = do(vm, "guest_accept", gpa=4 * M, level="2M")
    assert r.ret == {"tdx_status": "TDX_PAGE_SIZE_MISMATCH"}
    for k in range(512):
        assert vm.apply(parse_op({"op": "guest_accept", "gpa": 4 * M + k * 4096})).ok
    assert stats(vm)["mappings"]["private"]["4K"] == 512
    assert inspect(vm, 4 * M)["private_mapping"]["state"] == "MAPPED"


def test_guest_accept_2m_on_the_huge_page_series() -> None:
    """tdx_private_max_level 2M (the S-EPT huge-page series, RFC v5): the 2M accept maps a 2M
    leaf (TDH.MEM.PAGE.AUG at 2M) and is accepted at once."""
    vm = td(gmem_max_order=9, tdx_private_max_level="2M")
    assert ok(vm, "guest_accept", gpa=4 * M, level="2M") == {"level": "2M"}
    assert stats(vm)["mappings"]["private"]["2M"] == 1
    # a 1G accept still takes the violation, gets a 2M leaf and the mismatch
    r = do(vm, "guest_accept", gpa=0, level="1G")
    assert r.ret["tdx_status"] == "TDX_PAGE_SIZE_MISMATCH"
    assert inspect(vm, 0)["private_mapping"]["level"] == "2M"
