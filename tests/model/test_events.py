"""Events: the kernel names each op emits, in the kernel's order."""

from __future__ import annotations

from imemviz.model.events import EVENT_FIELDS, format_event

from .kit import HVA, G, gmem_slot, names, ok, td, vm_of


def test_private_fault_sequence_sw_protected() -> None:
    vm = vm_of("sw_protected")
    gmem_slot(vm, 0, G)
    ok(vm, "guest_access", gpa=0x1000)
    assert names(vm) == [
        "kvm_page_fault",
        "kvm_gmem_folio_alloc",
        "kvm_mmu_spte_requested",
        "kvm_tdp_mmu_spte_changed",
        "kvm_mmu_set_spte",
    ]


def test_tdx_fault_and_accept_sequence() -> None:
    vm = td()
    ok(vm, "guest_accept", gpa=0x40000000 - 4096)
    assert names(vm) == [
        "kvm_page_fault",
        "kvm_gmem_folio_alloc",
        "kvm_mmu_spte_requested",
        "TDH.MEM.SEPT.ADD",
        "kvm_tdp_mmu_spte_changed",
        "TDH.MEM.SEPT.ADD",
        "kvm_tdp_mmu_spte_changed",
        "TDH.MEM.SEPT.ADD",
        "kvm_tdp_mmu_spte_changed",
        "TDH.MEM.SEPT.ADD",
        "kvm_tdp_mmu_spte_changed",
        "kvm_tdp_mmu_spte_changed",
        "TDH.MEM.PAGE.AUG",
        "TDG.MEM.PAGE.ACCEPT",
    ]
    assert format_event(vm.last_events[-2]) == (
        f"TDH.MEM.PAGE.AUG gfn 0x3ffff level 4K pfn {vm.last_events[-2][4]:#x}"
    )


def test_conversion_sequence() -> None:
    vm = vm_of("sw_protected")
    gmem_slot(vm, 0, G)
    ok(vm, "guest_access", gpa=0)
    ok(vm, "set_memory_attributes", address=0, size=4096, attributes=0)
    ev = names(vm)
    assert ev[0] == "kvm_vm_set_mem_attributes" and ev[1] == "kvm_mmu_invalidate_begin"
    assert ev[-1] == "kvm_mmu_invalidate_end"
    assert "kvm_tdp_mmu_spte_changed" in ev


def test_every_op_but_queries_emits_and_fields_match() -> None:
    vm = vm_of("sw_protected")
    fd = gmem_slot(vm, 0, G)
    for op, fields in [
        ("guest_access", {"gpa": 0}),
        ("host_access", {"hva": HVA + G - 4096}),
        ("madvise", {"hva": HVA, "len": 4096, "advice": "DONTNEED"}),
        ("fallocate", {"fd": fd, "mode": 1, "offset": 0, "len": 4096}),
        ("memory_failure", {"pfn": 5}),
        ("note", {"text": "hi"}),
        ("close", {"fd": fd}),
    ]:
        ok(vm, op, **fields)
        assert vm.last_events, op
        for e in vm.last_events:
            assert len(e) - 2 == len(EVENT_FIELDS[e[1]]), e


def test_a_deep_copy_is_independent() -> None:
    import copy

    vm = td()
    c = copy.deepcopy(vm)
    ok(c, "guest_accept", gpa=0x1000)
    assert "TDH.MEM.PAGE.AUG" in names(c)
    assert vm.events.current == [] and vm.private.lookup(1) is None


def test_result_line_json_is_the_encoded_line() -> None:
    import json

    from imemviz.model.result import Result

    for r in (
        Result(True, None, {"level": "4K", "pfn": 7}),
        Result(True, None, {}),
        Result(False, "EIO", {"vm_dead": True}),
    ):
        assert r.line_json(3, "guest_accept") == json.dumps(
            r.line(3, "guest_accept"), separators=(",", ":")
        )
