"""The kernel in the app: the New VM dialog picks it (a VM type the kernel cannot create is
refused there, naming the kernel), the status bar shows it, the upm-v8 layout uses the 2022
design's uAPI, and the op form offers the new ops."""

from __future__ import annotations

import pytest

from .conftest import sw_session, wait_drawn
from .helpers import session_vm
from .test_actions import dialog, trigger

pytestmark = pytest.mark.qt


def test_new_vm_dialog_picks_the_kernel(make_window, qtbot) -> None:
    w = make_window(sw_session())
    assert "kernel mainline" in w.vm_label.text()
    trigger(w, "new_vm")
    d = dialog(w, "dialog_new_vm")
    d.type.setCurrentText("tdx")
    d.kernel.setCurrentText("6.12")
    assert not d.validate()
    assert 'kernel "6.12" cannot create a tdx VM' in d.error.text()
    d.type.setCurrentText("default")
    d.kernel.setCurrentText("upm-v8")
    d.host.setText("2G")
    d.ram.setText("64M")
    assert d.validate() and d.config["kernel"] == "upm-v8"
    assert [op.NAME for op in d.ops] == ["memfd_create", "set_user_memory_region"]
    d.accept()
    wait_drawn(qtbot, w)
    vm = session_vm(w)
    assert vm.config.kernel == "upm-v8"
    assert vm.memslots.by_id[0].gmem_file.kind == "inaccessible"
    assert "kernel upm-v8" in w.vm_label.text()


def test_op_form_offers_the_new_ops(make_window, qtbot) -> None:
    from imemviz.app.dialogs import OpDialog

    w = make_window(sw_session())
    for name in ("pre_fault_memory", "guest_map_gpa_range", "host_mmap_pfnmap", "memfd_create"):
        d = OpDialog(name, parent=w)
        assert d.op_name == name
        d.close()
    d = OpDialog("pre_fault_memory", parent=w)
    d.set_field("gpa", "0x0")
    d.set_field("size", "2M")
    assert d.validate() and d.op.size == 2 << 20
    d.close()


def test_new_vm_dialog_offers_snp(make_window, qtbot) -> None:
    """The New VM dialog creates an SNP guest launched as QEMU launches OVMF (issue 15)."""
    w = make_window(sw_session())
    trigger(w, "new_vm")
    d = dialog(w, "dialog_new_vm")
    d.type.setCurrentText("snp")
    d.kernel.setCurrentText("6.8")
    assert not d.validate() and "6.11" in d.error.text()
    d.kernel.setCurrentText("mainline")
    d.host.setText("2G")
    d.ram.setText("64M")
    assert d.validate() and d.config["type"] == "snp"
    assert [op.NAME for op in d.ops][-2:] == ["snp_launch_update", "snp_launch_finish"]
    d.accept()
    wait_drawn(qtbot, w)
    vm = session_vm(w)
    assert vm.snp is not None and vm.snp.launched
