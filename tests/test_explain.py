"""explain.py: every refusal the engine produces gets a rule, not a bare errno."""

from __future__ import annotations

from imemviz.model import VM, VMConfig
from imemviz.model import ops as O
from imemviz.model.explain import RULES, TD_KILLED, TDX_STATUS, VM_DEAD, explain


def _td() -> VM:
    vm = VM(VMConfig.from_dict({"type": "tdx"}))
    vm.apply(O.CreateGuestMemfd(size=4 << 20))
    vm.apply(
        O.SetUserMemoryRegion2(
            0,
            flags=4,
            guest_phys_addr=0,
            memory_size=4 << 20,
            userspace_addr=0x7F0000000000,
            guest_memfd=3,
        )
    )
    vm.apply(O.SetMemoryAttributes(0, 4 << 20, 8))
    return vm


def _why(vm: VM, op) -> str:
    r = vm.apply(op)
    return explain(op.NAME, r.ok, r.errno, r.ret, vm.last_events)


def test_td_lifecycle_explanations() -> None:
    vm = _td()
    assert "FINALIZE" in _why(vm, O.GuestAccess(0x1000))
    vm.apply(O.TdxFinalizeVm())
    assert _why(vm, O.GuestAccept(0x1000)) == ""
    assert _why(vm, O.GuestAccept(0x1000)) == TDX_STATUS["TDX_PAGE_ALREADY_ACCEPTED"]
    assert _why(vm, O.GuestAccept(0x200000, level=2)) == TDX_STATUS["TDX_PAGE_SIZE_MISMATCH"]
    assert "shared access" in _why(vm, O.GuestAccess(0x2000, private=False))
    assert _why(vm, O.GuestAccess(0x3000)) == TD_KILLED
    assert _why(vm, O.GuestAccess(0x3000)) == VM_DEAD


def test_notes_on_successes() -> None:
    vm = VM(VMConfig.from_dict({"type": "sw_protected"}))
    assert "MMIO" in _why(vm, O.GuestAccess(0x1000))
    assert explain("guest_access", True, None, {"retried": True}).startswith(
        "The fault was retried"
    )
    assert "held" in explain("guest_access", True, None, {"in_flight": True})


def test_every_rule_is_a_sentence_and_unknown_falls_back() -> None:
    for text in [*RULES.values(), *TDX_STATUS.values()]:
        assert text.endswith(".") and len(text) > 20
    assert explain("fallocate", False, "EOPNOTSUPP").startswith("guest_memfd supports only")
    assert explain("close", False, "EWHATEVER") == "close failed with EWHATEVER."
    assert explain("madvise", False, "EINVAL").startswith("madvise needs")
