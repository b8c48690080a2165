"""The QEMU-style layout of the New VM dialog: guests of 1 TiB and more get hvas that fit
below the top of user space (`__kvm_set_memory_region()` checks `access_ok()`), so
every memslot of the layout is created; a guest that cannot fit is refused."""

from __future__ import annotations

import pytest

from imemviz.io import plans
from imemviz.model.config import VMConfig
from imemviz.model.memslot_ops import TASK_SIZE_MAX
from imemviz.model.vm import VM

G, T = 1 << 30, 1 << 40


@pytest.mark.parametrize("ram", [4 * G, 1 * T, 4 * T, 8 * T])
@pytest.mark.parametrize("vm_type", ["tdx", "sw_protected", "default"])
def test_every_layout_op_succeeds(vm_type: str, ram: int) -> None:
    vm = VM(VMConfig.from_dict({"type": vm_type, "host_memory": "16G"}))
    results = [(op.NAME, vm.apply(op)) for op in plans.qemu_layout(vm_type, ram)]
    assert [(n, r.errno) for n, r in results if not r.ok] == []
    slots = vm.memslots.by_id.values()
    assert sum(s.npages for s in slots) << 12 == ram
    assert all(s.hva_end <= TASK_SIZE_MAX for s in slots)
    if vm_type == "tdx":
        assert vm.td_state == "RUNNABLE"


def test_small_guests_keep_the_scenes_hva() -> None:
    assert plans.layout_hva(4 * G) == plans.QEMU_HVA
    assert plans.layout_hva(1 * T - 2 * G) == plans.QEMU_HVA
    assert plans.layout_hva(1 * T) < plans.QEMU_HVA  # 0x7f0000000000 + 1T > TASK_SIZE_MAX
    assert plans.layout_hva(1 * T) % G == 0


def test_a_guest_bigger_than_user_space_is_refused() -> None:
    with pytest.raises(plans.LayoutError, match="guest RAM"):
        plans.qemu_layout("tdx", 128 * T)
