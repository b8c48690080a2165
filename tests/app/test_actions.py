"""Every action of the registry, triggered as a user would (QAction by object name, dialogs
filled and accepted), checked against the engine state and what the window shows."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox

from imemviz.app.actions import SPECS
from imemviz.io import plans
from imemviz.io.session import Session
from imemviz.model.query import inspect_gfn
from imemviz.model.raster import Code

from .conftest import MB, sw_session, td_session, wait_drawn, wait_idle
from .helpers import assert_shows, session_vm

pytestmark = pytest.mark.qt


def trigger(window, action_id: str, qtbot=None) -> None:
    act = window.findChild(QAction, f"act_{action_id}")
    assert act is not None, action_id
    assert act.isEnabled(), f"{action_id} is disabled"
    assert act.toolTip(), f"{action_id} has no tooltip"
    act.trigger()
    if qtbot is not None:
        wait_idle(qtbot, window.engine)


def dialog(window, name: str):
    found = [d for d in window.findChildren(QDialog, name) if d.isVisible()]
    assert len(found) == 1, name
    return found[0]


def info(window, gfn: int):
    return inspect_gfn(session_vm(window), gfn)


# ----------------------------------------------------------------- guest side


def test_guest_reads_and_writes(make_window, qtbot) -> None:
    w = make_window(sw_session())
    w.selection.set_gfn(0x10)
    w.value.setValue(0x5A)
    trigger(w, "write", qtbot)
    assert info(w, 0x10)["content"]["private"] == 0x5A
    trigger(w, "read", qtbot)
    assert w.last_record.line["ret"]["value"] == 0x5A
    w.selection.set_gfn(0x11)  # private and not mapped yet: a shared access exits
    trigger(w, "read_shared", qtbot)
    assert w.last_record.line["errno"] == "EFAULT"
    assert "KVM_EXIT_MEMORY_FAULT" in w.message.text()
    assert "EFAULT" in w.message.text()
    w.selection.set_range(0x20, 0x21)
    trigger(w, "to_shared", qtbot)
    w.selection.set_gfn(0x20)
    trigger(w, "write_shared", qtbot)
    assert info(w, 0x20)["content"]["shared"] == 0x5A
    w.selection.set_range(0x22, 0x23)
    trigger(w, "to_shared", qtbot)
    w.selection.set_gfn(0x22)
    trigger(w, "read_private", qtbot)
    assert w.last_record.line["errno"] == "EFAULT"
    trigger(w, "write_private", qtbot)
    assert w.last_record.line["ret"]["exit"]["flags"] == 8


def test_default_action_is_enter(make_window, qtbot) -> None:
    w = make_window(td_session())
    w.selection.set_gfn(0x33)
    trigger(w, "act", qtbot)
    assert [r.op.NAME for r in [w.last_record]] == ["guest_access"]
    assert info(w, 0x33)["private_mapping"]["state"] == "MAPPED"


def test_tdx_accept_actions(make_window, qtbot) -> None:
    w = make_window(td_session())
    w.selection.set_gfn(0x11)
    trigger(w, "accept", qtbot)
    assert info(w, 0x11)["private_mapping"]["state"] == "MAPPED"
    w.selection.set_gfn(0x12)
    trigger(w, "accept_touch", qtbot)
    assert info(w, 0x12)["private_mapping"]["state"] == "MAPPED"
    assert w.last_record.op.NAME == "guest_access" and w.last_record.ok
    w.map.show_range(0, 0x40)
    w.selection.clear()
    wait_drawn(qtbot, w)
    assert_shows(w, 0x12, Code.PRIVATE_4K)
    w.selection.set_gfn(0x13)
    trigger(w, "touch_no_accept", qtbot)
    assert session_vm(w).dead
    assert "killed" in w.message.text() and "EIO" in w.message.text()
    assert "DEAD" in w.vm_label.text()
    # No modal message box: refusals go to the status bar and the log only.
    assert not [x for x in w.findChildren(QMessageBox) if x.isVisible()]
    trigger(w, "undo", qtbot)
    assert not session_vm(w).dead
    trigger(w, "redo", qtbot)
    assert session_vm(w).dead


def test_build_a_td_finalize_and_init_pages(make_window, qtbot) -> None:
    s = Session.new({"type": "tdx", "host_memory": "1G"})
    s.apply_group(plans.qemu_layout("tdx", 64 * MB, finalize=False))
    w = make_window(s)
    assert session_vm(w).td_state == "BUILDING"
    w.selection.set_range(0x100, 0x104)
    trigger(w, "init_mem_region")
    d = dialog(w, "dialog_tdx_init_mem_region")
    d.set_field("value", "0x77")
    d.accept()
    wait_idle(qtbot, w.engine)
    assert info(w, 0x102)["private_mapping"]["state"] == "MAPPED"
    assert info(w, 0x102)["content"]["private"] == 0x77
    trigger(w, "finalize", qtbot)
    assert session_vm(w).td_state == "RUNNABLE"
    assert "RUNNABLE" in w.vm_label.text()


# ------------------------------------------------------------------ VMM side


@pytest.mark.parametrize("discard", [True, False])
def test_conversions_with_and_without_discard(make_window, qtbot, discard) -> None:
    w = make_window(td_session())
    w.selection.set_gfn(0x40)
    trigger(w, "accept_touch", qtbot)
    act = w.findChild(QAction, "act_discard")
    act.setChecked(discard)
    w.selection.set_range(0x40, 0x48)
    trigger(w, "to_shared", qtbot)
    d = info(w, 0x40)
    assert d["attributes"] == 0 and d["private_mapping"] is None
    assert (d["folio"] is None) == discard
    w.map.show_range(0, 0x80)
    w.selection.clear()
    wait_drawn(qtbot, w)
    assert_shows(w, 0x40, Code.SHARED_EMPTY if discard else Code.SHARED_KEPT)
    w.selection.set_gfn(0x41)
    trigger(w, "write", qtbot)
    assert info(w, 0x41)["content"]["shared"] == w.value.value()
    w.selection.set_range(0x40, 0x48)
    trigger(w, "to_private", qtbot)
    assert info(w, 0x41)["attributes"] == 8
    assert (info(w, 0x41)["content"]["shared"] is None) == discard


def test_punch_allocate_dontneed_failure(make_window, qtbot) -> None:
    w = make_window(sw_session())
    w.selection.set_range(0x80, 0x84)
    trigger(w, "fallocate", qtbot)
    assert info(w, 0x82)["folio"] is not None
    trigger(w, "punch_hole", qtbot)
    assert info(w, 0x82)["folio"] is None
    w.selection.set_range(0x90, 0x91)
    trigger(w, "to_shared", qtbot)
    trigger(w, "write", qtbot)
    assert info(w, 0x90)["content"]["shared"] is not None
    trigger(w, "dontneed", qtbot)
    assert info(w, 0x90)["content"]["shared"] is None
    w.selection.set_gfn(0xA0)
    trigger(w, "write", qtbot)
    trigger(w, "memory_failure", qtbot)
    assert info(w, 0xA0)["folio"]["hwpoison"]
    trigger(w, "read", qtbot)
    assert w.last_record.line["errno"] == "EHWPOISON"
    w.map.show_range(0x80, 0x100)
    w.selection.clear()
    wait_drawn(qtbot, w)
    assert_shows(w, 0xA0, Code.HWPOISON)


def test_memory_failure_on_a_pfn_dialog(make_window, qtbot) -> None:
    w = make_window(sw_session())
    w.selection.set_gfn(0x7)
    trigger(w, "write", qtbot)
    qtbot.waitUntil(lambda: w.inspector.info is not None and w.inspector.info["folio"] is not None)
    pfn = w.inspector.info["private_mapping"]["pfn"]
    trigger(w, "memory_failure_pfn")
    d = dialog(w, "dialog_memory_failure")
    assert d.values()["pfn"] == pfn or int(d.values()["pfn"], 16) == pfn
    d.accept()
    wait_idle(qtbot, w.engine)
    assert info(w, 0x7)["folio"]["hwpoison"]


def test_race_walkthrough(make_window, qtbot) -> None:
    w = make_window(sw_session())
    w.selection.set_gfn(0x55)
    trigger(w, "race")
    d = dialog(w, "race")
    assert d.gfn == 0x55
    for _ in range(3):
        qtbot.waitUntil(d.next.isEnabled, timeout=10_000)
        qtbot.mouseClick(d.next, Qt.LeftButton)
        wait_idle(qtbot, w.engine)
    qtbot.waitUntil(lambda: d.step == 3 and d._active is None, timeout=10_000)
    text = d.text.toPlainText()
    assert "in_flight" in text and "retried" in text
    assert "was retried, as the kernel does" in text
    assert any("RET_PF_RETRY" in line for line in w.log.lines)
    ops = [op.NAME for op in w.engine.worker.session.ops[-3:]]
    assert ops == ["guest_access", "set_memory_attributes", "vcpu_resume"]


# ------------------------------------------------------------------ VM setup


def test_memslot_and_guest_memfd_dialogs(make_window, qtbot) -> None:
    w = make_window(sw_session())
    trigger(w, "gmem_create")
    d = dialog(w, "dialog_create_guest_memfd")
    d.set_field("size", "256M")
    d.accept()
    wait_idle(qtbot, w.engine)
    assert 4 in session_vm(w).files
    trigger(w, "memslot_create")
    d = dialog(w, "dialog_set_user_memory_region2")
    # Out of range input: a clear message, OK disabled, what was typed is kept.
    d.set_field("memory_size", "-5")
    ok_button = d.buttons.button(QDialogButtonBox.Ok)
    assert "memory_size" in d.error.text() and not ok_button.isEnabled()
    d.accept()  # refused: the dialog stays open with what was typed
    assert d.isVisible() and d.values()["memory_size"] == -5
    d.set_field("memory_size", "0")
    assert "deletes" in d.error.text()
    d.set_field("memory_size", "256M")
    d.set_field("guest_memfd", 4)
    d.set_field("guest_phys_addr", "0x100000000")
    assert d.validate(), d.error.text()
    d.accept()
    wait_idle(qtbot, w.engine)
    vm = session_vm(w)
    new = [s for s in vm.memslots.by_id.values() if s.base_gfn == 0x100000]
    assert new and new[0].gmem_file is vm.files[4]
    wait_drawn(qtbot, w)
    assert any("slot 1" in t.textItem.toPlainText() for t in w.map._labels if t.isVisible())
    w.selection.set_gfn(0x100001)
    trigger(w, "memslot_delete")
    d = dialog(w, "dialog_set_user_memory_region2")
    assert d.values()["slot"] == new[0].id
    d.accept()
    wait_idle(qtbot, w.engine)
    assert new[0].id not in session_vm(w).memslots.by_id
    trigger(w, "gmem_close")
    d = dialog(w, "dialog_close")
    d.set_field("fd", 4)
    d.accept()
    wait_idle(qtbot, w.engine)
    assert 4 not in session_vm(w).files


def test_any_op_dialog(make_window, qtbot, monkeypatch) -> None:
    from PySide6.QtWidgets import QInputDialog

    w = make_window(sw_session())
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("note", True))
    trigger(w, "any_op")
    d = dialog(w, "dialog_note")
    assert not d.validate()  # text is required
    d.set_field("text", "hello")
    d.accept()
    wait_idle(qtbot, w.engine)
    assert w.engine.worker.session.ops[-1].NAME == "note"


def test_new_vm_dialog(make_window, qtbot) -> None:
    w = make_window(sw_session())
    trigger(w, "new_vm")
    d = dialog(w, "dialog_new_vm")
    d.host.setText("12Q")
    assert "host_memory" in d.error.text() and d.config is None
    d.host.setText("2G")
    d.ram.setText("3M")
    assert "guest RAM" in d.error.text()
    d.ram.setText("128M")
    d.type.setCurrentText("sw_protected")
    d.order.setCurrentIndex(1)
    assert d.validate()
    d.accept()
    wait_drawn(qtbot, w)
    vm = session_vm(w)
    assert vm.config.type == "sw_protected" and vm.config.gmem_max_order == 9
    assert sorted(vm.memslots.by_id) == [0] and vm.memslots.by_id[0].npages == 128 * 256


# ------------------------------------------------------------------ files


def test_save_and_open_state_and_recording(make_window, qtbot, tmp_path, monkeypatch) -> None:
    pytest.importorskip("imemviz.io.state")
    w = make_window(td_session())
    w.selection.set_gfn(0x21)
    trigger(w, "accept_touch", qtbot)
    state = str(tmp_path / "s.json.gz")
    rec = str(tmp_path / "r.jsonl")
    monkeypatch.setattr(w, "ask_save_path", lambda *a: state)
    trigger(w, "save_state", qtbot)
    monkeypatch.setattr(w, "ask_save_path", lambda *a: rec)
    trigger(w, "save_recording", qtbot)
    assert "saved" in w.message.text()
    before = info(w, 0x21)
    monkeypatch.setattr(w, "ask_open_path", lambda: rec)
    trigger(w, "open")
    wait_drawn(qtbot, w)
    assert w.engine.worker.session.source == rec
    assert info(w, 0x21) == before
    assert w.engine.snapshot.can_undo  # a recording's ops are undoable history
    monkeypatch.setattr(w, "ask_open_path", lambda: state)
    trigger(w, "open")
    wait_drawn(qtbot, w)
    assert w.engine.worker.session.source == state
    assert info(w, 0x21)["folio"] == before["folio"]
    assert "r.jsonl" not in w.windowTitle() and "s.json.gz" in w.windowTitle()


def test_open_errors_are_reported_not_raised(make_window, qtbot, tmp_path) -> None:
    w = make_window(sw_session())
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    w.open_file(str(bad))
    wait_idle(qtbot, w.engine)
    assert "bad.jsonl:1" in w.message.text()
    assert w.engine.worker.session.source is None  # the old session is still there


def test_load_default_scene(make_window, qtbot) -> None:
    from imemviz import resources

    if resources.scene_path("default") is None:
        pytest.skip("the default scene is not installed")
    w = make_window(sw_session())
    trigger(w, "load_default")
    qtbot.waitUntil(
        lambda: w.engine.worker.session.start == {"scene": "default"} and w.wait_drawn(),
        timeout=60_000,
    )
    assert session_vm(w).config.is_tdx


# ------------------------------------------------------------------ view, help


def test_view_and_selection_actions(make_window, qtbot) -> None:
    w = make_window(sw_session())
    trigger(w, "select_all")
    assert w.selection.range == (0, w.engine.snapshot.extent)
    trigger(w, "clear_selection")
    assert w.selection.gfn is None
    w.selection.set_range(0x100, 0x120)
    trigger(w, "zoom_selection")
    assert w.map.layout_.visible_gfns()[0] <= 0x100
    r = w.map.row_gfns
    trigger(w, "zoom_out")
    trigger(w, "zoom_in")
    assert w.map.row_gfns == r
    trigger(w, "zoom_all")
    w.docks["legend"].hide()
    trigger(w, "reset_layout")
    assert w.docks["legend"].isVisible()


def test_help_and_about_are_non_modal(make_window, qtbot) -> None:
    w = make_window(sw_session())
    trigger(w, "help")
    h = dialog(w, "help")
    assert "What am I looking at" in h.browser.toPlainText()
    assert "PENDING 4K" in h.browser.toPlainText()
    assert not h.isModal()
    trigger(w, "about")
    boxes = [b for b in w.findChildren(QMessageBox) if b.isVisible()]
    assert boxes and not boxes[0].isModal()


def test_quit_closes_the_window(make_window, qtbot) -> None:
    w = make_window(sw_session())
    trigger(w, "quit")
    assert not w.isVisible()


def test_every_action_is_tested_and_described() -> None:
    """Every registered action is triggered by a test of this module (read from its source,
    so the check holds whatever order or subset of tests runs)."""
    import re
    from pathlib import Path

    source = Path(__file__).read_text()
    tested = set(re.findall(r'trigger\(w, "(\w+)"', source)) | {"discard"}  # toggled by name
    missing = {s.id for s in SPECS} - tested
    assert not missing, f"actions without a test: {sorted(missing)}"
    for s in SPECS:
        assert len(s.tip) > 15, s.id


def test_a_cancelled_import_leaves_no_dialog_to_close(make_window, monkeypatch) -> None:
    """File > Import trace, then Cancel in the file chooser: closing the window later
    finds no dialog (it once kept None and closeEvent called None.close())."""
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([], ""))
    w = make_window(sw_session())
    trigger(w, "import_trace")
    w.close()  # pytest-qt fails the test on an exception raised in closeEvent


def test_import_trace_and_export_perfetto(make_window, qtbot, tmp_path, monkeypatch) -> None:
    """File > Import trace runs the import off the GUI thread and opens the timeline;
    File > Export session as Perfetto trace writes a .pftrace of the session."""
    from PySide6.QtWidgets import QFileDialog

    from imemviz.app import observed as obs
    from imemviz.io.trace.kernel_export import export_lines
    from imemviz.model import ops as O
    from imemviz.model.config import VMConfig
    from imemviz.model.vm import VM

    vm = VM(VMConfig.from_dict({"type": "sw_protected", "host_memory": "1G"}))
    trace = tmp_path / "t.trace"
    trace.write_text(
        "\n".join(
            export_lines(
                vm,
                [
                    O.CreateGuestMemfd(8 << 20),
                    O.SetUserMemoryRegion2(
                        0, flags=4, guest_phys_addr=0, memory_size=8 << 20, guest_memfd=3
                    ),
                    O.GuestAccess(0x1000),
                ],
            )
        )
        + "\n"
    )
    out = tmp_path / "t.observed.jsonl"
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(trace)], ""))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    w = make_window(sw_session())
    trigger(w, "import_trace")
    dlg = w._dialogs["import_trace"]
    try:
        qtbot.waitUntil(lambda: bool(obs._OPEN_WINDOWS), timeout=20_000)
        assert out.exists() and dlg.error == ""
    finally:
        for win in list(obs._OPEN_WINDOWS):
            win.close()
    pytest.importorskip("perfetto")
    pf = tmp_path / "s.pftrace"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(pf), ""))
    trigger(w, "export_perfetto")
    wait_idle(qtbot, w.engine)
    assert pf.exists() and pf.stat().st_size > 100


# ------------------------------------------------------------------ issue 10 bugs


@pytest.mark.parametrize("ram", ["1T", "4T"])
def test_new_vm_of_a_tebibyte_and_more(make_window, qtbot, ram) -> None:
    """A New VM of >= 1 TiB used to end with a 2 GiB VM: its high memslot's hva passed
    the top of user space (EINVAL).  Now every byte of RAM is in a memslot."""
    w = make_window(sw_session())
    trigger(w, "new_vm")
    d = dialog(w, "dialog_new_vm")
    d.ram.setText(ram)
    assert d.validate(), d.error.text()
    d.accept()
    wait_drawn(qtbot, w)
    vm = session_vm(w)
    total = sum(s.npages for s in vm.memslots.by_id.values()) << 12
    assert total == (1 << 40) * int(ram[0])
    assert vm.td_state == "RUNNABLE"
    assert "EINVAL" not in w.message.text()


def test_new_vm_that_the_kernel_would_refuse_stays_open(make_window, qtbot, monkeypatch) -> None:
    """A layout the kernel refuses is refused in the dialog, loudly, and the VM on screen
    stays.  (Forced here with the old hva choice, which put 1 TiB past TASK_SIZE_MAX.)"""
    monkeypatch.setattr(plans, "layout_hva", lambda ram: plans.QEMU_HVA)
    w = make_window(sw_session())
    before = w.engine.snapshot.session
    trigger(w, "new_vm")
    d = dialog(w, "dialog_new_vm")
    d.ram.setText("1T")
    assert d.validate()
    d.accept()
    assert d.isVisible()
    assert "set_user_memory_region2 returns EINVAL" in d.error.text()
    assert not d.buttons.button(QDialogButtonBox.Ok).isEnabled()
    wait_idle(qtbot, w.engine)
    assert w.engine.snapshot.session == before


def test_td_build_actions_follow_the_td_state_not_the_selection(make_window, qtbot) -> None:
    s = Session.new({"type": "tdx", "host_memory": "1G"})
    s.apply_group(plans.qemu_layout("tdx", 64 * MB, finalize=False))
    w = make_window(s)
    w.selection.clear()
    acts = {k: w.findChild(QAction, f"act_{k}") for k in ("init_mem_region", "finalize")}
    assert all(a.isEnabled() for a in acts.values())
    trigger(w, "init_mem_region")
    d = dialog(w, "dialog_tdx_init_mem_region")
    d.accept()
    wait_idle(qtbot, w.engine)
    trigger(w, "finalize", qtbot)
    assert session_vm(w).td_state == "RUNNABLE"
    # Finalized: KVM refuses both ioctls now, so the actions are off, selection or not.
    assert not any(a.isEnabled() for a in acts.values())
    w.selection.set_gfn(0x10)
    assert not any(a.isEnabled() for a in acts.values())
    assert w.findChild(QAction, "act_accept").isEnabled()
