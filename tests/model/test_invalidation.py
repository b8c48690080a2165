"""mmu_invalidate_seq accounting, the in-progress range, held faults and the retry protocol."""

from __future__ import annotations

import pytest

from .kit import HVA, G, M, do, gmem_slot, inspect, names, ok, stats, vm_of


def seq(vm) -> int:
    return stats(vm)["mmu_invalidate_seq"]


def test_seq_counts_one_pair_per_invalidation() -> None:
    vm = vm_of("sw_protected")
    fd = gmem_slot(vm, 0, G, slot=0)
    s0 = seq(vm)
    ok(vm, "set_memory_attributes", address=0, size=G, attributes=8)  # equal: no-op
    assert seq(vm) == s0
    ok(vm, "set_memory_attributes", address=0, size=4096, attributes=0)
    assert seq(vm) == s0 + 1
    ok(vm, "set_memory_attributes", address=8 * G, size=G, attributes=8)  # no memslot
    assert seq(vm) == s0 + 1
    ok(vm, "fallocate", fd=fd, mode=3, offset=0, len=4096)
    assert seq(vm) == s0 + 2
    ok(vm, "fallocate", fd=fd, mode=3, offset=G, len=4096)  # beyond EOF: no binding there
    assert seq(vm) == s0 + 2
    ok(vm, "madvise", hva=HVA, len=4096, advice="DONTNEED")
    assert seq(vm) == s0 + 3
    ok(vm, "close", fd=fd)
    assert seq(vm) == s0 + 4


def test_one_pair_for_an_attribute_change_over_two_slots() -> None:
    vm = vm_of("sw_protected")
    fd = ok(vm, "create_guest_memfd", size=2 * G)["fd"]
    for slot, gpa in ((0, 0), (1, G)):
        ok(
            vm,
            "set_user_memory_region2",
            slot=slot,
            flags=4,
            guest_phys_addr=gpa,
            memory_size=G,
            userspace_addr=HVA + gpa,
            guest_memfd=fd,
            guest_memfd_offset=gpa,
        )
    s0 = seq(vm)
    ok(vm, "set_memory_attributes", address=0, size=2 * G, attributes=8)
    ranges = [e[2:] for e in vm.last_events if e[1] == "kvm_mmu_invalidate_range_add"]
    assert ranges == [(0, G >> 12), (G >> 12, 2 * G >> 12)]
    assert seq(vm) == s0 + 1


def test_straddling_huge_pages_widen_the_range() -> None:
    vm = vm_of("sw_protected")
    gmem_slot(vm, 0, G)
    ok(vm, "set_memory_attributes", address=3 * M + 4096, size=4096, attributes=0)
    added = [e[2:] for e in vm.last_events if e[1] == "kvm_mmu_invalidate_range_add"]
    assert (0x200, 0x400) in added  # the 2M page around the gfn
    assert (0, 0x40000) in added  # and the 1G page


def test_hold_then_unrelated_op_installs_without_retry() -> None:
    vm = vm_of("sw_protected")
    gmem_slot(vm, 0, G)
    assert ok(vm, "guest_access", gpa=0x1000, hold=True) == {"in_flight": True}
    assert stats(vm)["in_flight"] == [0]
    ok(vm, "note", text="nothing happens")
    assert do(vm, "guest_access", gpa=0x2000).errno == "EBUSY"
    r = ok(vm, "vcpu_resume")
    assert "retried" not in r and r["level"] == "4K"
    assert do(vm, "vcpu_resume").errno == "EINVAL"


def test_hold_then_conversion_retries_and_sees_the_new_attribute() -> None:
    vm = vm_of("sw_protected")
    gmem_slot(vm, 0, G)
    ok(vm, "guest_access", gpa=0x1000, hold=True)
    held_pfn = vm.in_flight[0].pfn
    ok(vm, "set_memory_attributes", address=0x1000, size=4096, attributes=0)
    r = ok(vm, "vcpu_resume")
    assert r["retried"] is True
    assert "kvm_mmu_page_fault_retry" in names(vm)
    # The re-executed access follows the attribute: shared, from the hva.
    assert inspect(vm, 0x1000)["shared_mapping"]["pfn"] == r["pfn"] != held_pfn


def test_hold_then_punch_retries_onto_a_new_zeroed_folio() -> None:
    vm = vm_of("sw_protected")
    fd = gmem_slot(vm, 0, G)
    ok(vm, "guest_access", gpa=0x1000, write=True, value=0x11)
    ok(vm, "set_memory_attributes", address=0x1000, size=4096, attributes=0)
    ok(vm, "set_memory_attributes", address=0x1000, size=4096, attributes=8)
    ok(vm, "guest_access", gpa=0x1000, hold=True)
    ok(vm, "fallocate", fd=fd, mode=3, offset=0x1000, len=4096)
    r = ok(vm, "vcpu_resume")
    assert r["retried"] is True and r["value"] == 0


def test_hold_then_memslot_delete_gives_private_memory_fault() -> None:
    vm = vm_of("sw_protected")
    gmem_slot(vm, 0, G)
    ok(vm, "guest_access", gpa=0x1000, hold=True)
    ok(vm, "set_user_memory_region2", slot=0, guest_phys_addr=0, memory_size=0)
    r = do(vm, "vcpu_resume")
    assert (r.ok, r.errno) == (False, "EFAULT")
    assert r.ret["exit"] == {
        "reason": "KVM_EXIT_MEMORY_FAULT",
        "gpa": 0x1000,
        "size": 4096,
        "flags": 8,
    }
    assert r.ret["retried"] is True


def test_hold_on_mapped_gfn_completes_at_once() -> None:
    vm = vm_of("sw_protected")
    gmem_slot(vm, 0, G)
    ok(vm, "guest_access", gpa=0x1000, write=True, value=2)
    assert ok(vm, "guest_access", gpa=0x1000, hold=True)["value"] == 2
    assert stats(vm)["in_flight"] == []


def test_hva_invalidation_zaps_private_too_outside_tdx() -> None:
    """On non-TDX VMs the direct root holds both, and the filter is ignored."""
    vm = vm_of("sw_protected")
    gmem_slot(vm, 0, G)
    ok(vm, "guest_access", gpa=0x1000)
    ok(vm, "madvise", hva=HVA + 0x1000, len=4096, advice="DONTNEED")
    assert inspect(vm, 0x1000)["private_mapping"] is None


@pytest.mark.parametrize(("vm_type", "left"), [("default", 0), ("sw_protected", 1)])
def test_memslot_delete_zaps_all_on_default_vms_else_the_slot(vm_type: str, left: int) -> None:
    """kvm_arch_flush_shadow_memslot(): the zap-all quirk only for DEFAULT VMs."""
    vm = vm_of(vm_type)
    for slot, gpa in ((0, 0), (1, G)):
        ok(
            vm,
            "set_user_memory_region",
            slot=slot,
            guest_phys_addr=gpa,
            memory_size=G,
            userspace_addr=HVA + gpa,
        )
        ok(vm, "guest_access", gpa=gpa)
    ok(vm, "set_user_memory_region", slot=0, guest_phys_addr=0, memory_size=0)
    assert ("kvm_mmu_zap_all_fast" in names(vm)) == (vm_type == "default")
    assert stats(vm)["mappings"]["shared"]["4K"] == left
