"""Recording through the real widgets, replaying with the controls, captions, exports."""

from __future__ import annotations

import json

import pytest
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QInputDialog

from imemviz import resources
from imemviz.cli import main
from imemviz.io.diff import diff_vms
from imemviz.io.replay import StateCache, Timeline, run_timeline
from imemviz.io.state import load_state, state_document
from imemviz.model.ops import Note

from .conftest import wait_drawn, wait_idle
from .helpers import click_gfn, session_vm

pytestmark = pytest.mark.qt


def trigger(window, action_id: str) -> None:
    act = window.findChild(QAction, f"act_{action_id}")
    assert act is not None and act.isEnabled() and act.toolTip(), action_id
    act.trigger()


def run_file(tmp_path, path) -> object:
    st = tmp_path / "run-state.json"
    assert (
        main(["run", str(path), "--state-out", str(st), "--results-out", str(tmp_path / "r")]) == 0
    )
    return load_state(st)


def test_record_through_the_widgets_replays_to_the_same_state(make_window, qtbot, tmp_path):
    w = make_window()
    rec = w.presenter.recorder
    rec.directory = tmp_path / "recordings"
    trigger(w, "record")
    wait_idle(qtbot, w.engine)
    assert rec.recording and w.presenter.actions["record"].isChecked()
    assert rec.label.isVisible() and "REC" in rec.label.text()
    assert w.windowTitle().endswith("REC")
    g = 0x800
    click_gfn(qtbot, w, g)  # the default action: accept and touch (two ops)
    wait_drawn(qtbot, w)
    w.selection.set_range(g + 8, g + 12)
    trigger(w, "to_shared")
    wait_idle(qtbot, w.engine)
    # The caption through its dialog, as a user types it.
    trigger(w, "caption")
    dlg = w.findChild(QInputDialog, "caption_dialog")
    assert dlg is not None and dlg.isVisible()
    dlg.setTextValue("Four pages converted to shared")
    dlg.accept()
    wait_drawn(qtbot, w)
    assert w.presenter.overlay.isVisible()
    assert w.presenter.overlay.text() == "Four pages converted to shared"
    click_gfn(qtbot, w, g + 1)
    wait_drawn(qtbot, w)
    path = rec.path
    # Written and flushed as it goes: a crash now would lose nothing applied.
    with open(path, encoding="utf-8") as f:
        assert len(f.read().splitlines()) == 1 + rec.ops_written >= 7
    trigger(w, "record")
    wait_idle(qtbot, w.engine)
    assert not rec.recording and not w.windowTitle().endswith("REC")

    with open(path, encoding="utf-8") as f:
        lines = [json.loads(x) for x in f]
    header, ops = lines[0], lines[1:]
    assert "state" in header["start"]  # the session had ops: the state is embedded
    assert [o["op"] for o in ops].count("note") == 1
    assert all("t" in o for o in ops) and [o["t"] for o in ops] == sorted(o["t"] for o in ops)
    assert len(ops) >= 6
    assert diff_vms(run_file(tmp_path, path), session_vm(w))["equal"]


def test_undo_while_recording_rewrites_the_file(make_window, qtbot, tmp_path):
    w = make_window()
    rec = w.presenter.recorder
    path = tmp_path / "undo.jsonl"
    rec.start(path)
    for g in (0x800, 0x801, 0x802):
        click_gfn(qtbot, w, g)
        wait_drawn(qtbot, w)
    trigger(w, "undo")
    wait_drawn(qtbot, w)
    rec.stop()
    wait_idle(qtbot, w.engine)
    assert diff_vms(run_file(tmp_path, path), session_vm(w))["equal"]
    # Undo past the start of the recording stops it.
    rec.start(tmp_path / "second.jsonl")
    wait_idle(qtbot, w.engine)
    trigger(w, "undo")
    wait_idle(qtbot, w.engine)
    qtbot.waitUntil(lambda: not rec.recording, timeout=5000)
    assert not w.presenter.actions["record"].isChecked()


def scene(name: str) -> Timeline:
    return Timeline.load(resources.scene_path(name))


def loaded(qtbot, w, c, source) -> None:
    assert c.load(source)
    qtbot.waitUntil(lambda: c.active, timeout=20_000)
    wait_drawn(qtbot, w)


def test_replay_controls(make_window, qtbot):
    w = make_window()
    c = w.presenter.replay
    tl = scene("fault-race")
    loaded(qtbot, w, c, tl.source)
    assert w.presenter.dock.isVisible()
    pane = w.presenter.pane
    assert pane.model.rowCount() == len(tl) + 1
    ref = StateCache(tl)
    # Step through the first ops with the pane's buttons.
    for _ in range(4):
        pane.step_btn.click()
    wait_drawn(qtbot, w)
    assert c.position == 4 and pane.slider.value() == 4
    assert w.presenter.overlay.text() == tl.caption_at(4)
    assert len(session_vm(w).memslots.by_id) == 1
    pane.back_btn.click()
    wait_drawn(qtbot, w)
    assert c.position == 3
    assert state_document(session_vm(w)) == state_document(ref.vm_at(3))
    # Seek with the slider, and to the end with the button.
    pane.slider.setValue(9)
    wait_drawn(qtbot, w)
    assert c.position == 9 and state_document(session_vm(w)) == state_document(ref.vm_at(9))
    pane.end_btn.click()
    wait_drawn(qtbot, w)
    assert c.position == len(tl)
    assert diff_vms(session_vm(w), run_timeline(tl))["equal"]
    # Undo (the session's own machinery) goes back one replayed op too.
    assert w.engine.snapshot.op_count == len(tl)
    # Speed: the interval scales with it.
    c.seek(0)
    wait_drawn(qtbot, w)
    slow = c.interval_ms()
    pane.speed.setCurrentIndex(pane.speed.findData(4.0))
    assert c.speed == 4.0 and c.interval_ms() == pytest.approx(slow / 4, abs=1)
    pane.recorded.setChecked(False)
    assert not c.as_recorded


def test_opening_a_recording_keeps_the_window_layout(make_window, qtbot):
    """The Timeline is a strip above the log for a live session too: a replay fills it,
    and no dock moves or resizes (a relayout would repaint every pane: the open's GUI
    stall)."""
    w = make_window(size=(1600, 1000))
    dock, log = w.presenter.dock, w.docks["log"]
    assert dock.isVisible() and log.isVisible()
    assert dock not in w.tabifiedDockWidgets(log)
    # Across the window, right above the log and its tabs, which keep the full width.
    assert dock.geometry().bottom() < log.geometry().top()
    assert dock.width() == log.width() == w.width()
    before = {n: d.geometry() for n, d in w.docks.items() if d.isVisible()}
    map_before = w.map.geometry()
    loaded(qtbot, w, w.presenter.replay, scene("fault-race").source)
    qtbot.wait(50)  # any layout posted by the open has run
    assert w.map.geometry() == map_before
    assert {n: d.geometry() for n, d in w.docks.items() if d.isVisible()} == before
    assert w.presenter.pane.title.text().startswith("Replaying")


def test_a_saved_layout_with_the_timeline_tabbed_still_shows_a_replay(make_window, qtbot):
    """A layout saved by an older version tabs the Timeline with the log: a replay makes it
    the strip above the log."""
    w = make_window(size=(1600, 1000))
    dock, log = w.presenter.dock, w.docks["log"]
    w.tabifyDockWidget(log, dock)
    log.raise_()
    qtbot.waitUntil(lambda: dock.visibleRegion().isEmpty(), timeout=5000)
    loaded(qtbot, w, w.presenter.replay, scene("fault-race").source)
    assert dock not in w.tabifiedDockWidgets(log)
    qtbot.waitUntil(lambda: not dock.visibleRegion().isEmpty(), timeout=5000)
    assert not log.visibleRegion().isEmpty()


def test_play_to_the_end_equals_run(make_window, qtbot, tmp_path):
    w = make_window()
    c = w.presenter.replay
    tl = scene("memslot-delete")
    assert c.load(tl.source)  # play at once: it starts when the recording is loaded
    c.set_speed(16.0, as_recorded=False)
    w.presenter.actions["replay_play"].trigger()
    assert c.playing
    qtbot.waitUntil(lambda: c.position == len(tl) and not c.playing, timeout=30_000)
    wait_drawn(qtbot, w)
    assert diff_vms(session_vm(w), run_file(tmp_path, tl.source))["equal"]
    notes = [r for r in w.log.lines if "note " in r]
    assert len(notes) >= len(tl.note_indexes)


def test_opening_something_else_ends_the_replay(make_window, qtbot):
    w = make_window()
    c = w.presenter.replay
    loaded(qtbot, w, c, scene("fault-race").source)
    c.step()
    wait_drawn(qtbot, w)
    w.engine.load_scene("mixed-2m")
    qtbot.waitUntil(lambda: not c.active, timeout=20_000)
    # The timeline pane stays: it shows the new session's own timeline.
    assert w.presenter.pane.title.text().startswith("This session")


def test_scenarios_menu_lists_every_scene(make_window, qtbot):
    w = make_window()
    names = resources.scene_names()
    for n in names:
        act = w.findChild(QAction, f"act_scene_{n}")
        assert act is not None and act.text() and act.text() != n, n
    w.findChild(QAction, "act_scene_touch-before-accept").trigger()
    c = w.presenter.replay
    c.pause()
    qtbot.waitUntil(lambda: c.active, timeout=20_000)
    assert c.timeline.source.endswith("touch-before-accept.jsonl")
    wait_drawn(qtbot, w)


def test_bad_recording_is_one_message(make_window, qtbot, tmp_path):
    w = make_window()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "imemviz-recording", "version": 1, "start": {"vm": {}}}\n')
    assert not w.presenter.replay.load(tmp_path / "missing.jsonl")
    assert "missing.jsonl" in w.message.text()
    # Read on the engine thread: the error comes back as one line in the status bar.
    assert w.presenter.replay.load(bad)
    qtbot.waitUntil(lambda: "bad.jsonl" in w.message.text(), timeout=20_000)
    assert not w.presenter.replay.active


def test_live_caption_shows_above_the_map(make_window, qtbot):
    """The caption is a band above the plot: never over the axes or a changed page."""
    w = make_window()
    w.presenter.recorder.add_caption("Hello, room")
    wait_drawn(qtbot, w)
    ov = w.presenter.overlay
    assert ov.isVisible() and ov.text() == "Hello, room"
    assert ov.font().pixelSize() >= 15
    assert isinstance(w.engine.worker.session.ops[-1], Note)
    view_top = w.map.view.mapTo(w.map, w.map.view.rect().topLeft()).y()
    assert ov.geometry().bottom() < view_top  # above the plot, its axes included
    click_gfn(qtbot, w, 1)  # the first page, right under the caption
    wait_drawn(qtbot, w)
    pos = w.map.view.mapTo(w.map, w.map.gfn_pos(1))
    assert not ov.geometry().contains(pos)
    w.presenter.actions["show_captions"].setChecked(False)
    assert not ov.isVisible()


@pytest.mark.parametrize("ext", ["png", "svg"])
def test_export_panes(make_window, qtbot, tmp_path, ext):
    from imemviz.app.present import export_widget

    w = make_window()
    out = tmp_path / f"map.{ext}"
    assert export_widget(w.map, out)
    assert out.stat().st_size > 1000
    if ext == "svg":
        assert out.read_text(encoding="utf-8").lstrip().startswith("<?xml")
    for name, dock in w.docks.items():
        p = tmp_path / f"{name}.{ext}"
        assert export_widget(dock.widget(), p), name
    w.presenter._fill_export_menu()
    assert len(w.presenter.export_menu.actions()) == len(w.docks) + 1


def test_recording_a_fresh_vm_starts_from_its_config(make_window, qtbot, tmp_path):
    from imemviz.io import plans

    w = make_window()
    w.engine.new_vm({"type": "sw_protected", "host_memory": "1G"})
    wait_drawn(qtbot, w)
    path = tmp_path / "fresh.jsonl"
    w.presenter.recorder.start(path)
    w.engine.apply_ops(plans.qemu_layout("sw_protected", 32 << 20), "layout")
    wait_drawn(qtbot, w)
    click_gfn(qtbot, w, 0x1000)
    wait_drawn(qtbot, w)
    w.presenter.recorder.stop()
    wait_idle(qtbot, w.engine)
    with open(path, encoding="utf-8") as f:
        header = json.loads(f.readline())
    assert header["start"] == {"vm": w.engine.worker.session.start["vm"]}
    assert diff_vms(run_file(tmp_path, path), session_vm(w))["equal"]


def test_shortcuts_do_not_collide(make_window):
    w = make_window()
    mine = {a.objectName() for a in w.presenter.actions.values()}
    seen: dict[str, str] = {}
    for act in w.findChildren(QAction):
        for key in act.shortcuts():
            text = key.toString()
            if text and act.objectName() in mine:
                seen.setdefault(text, act.objectName())
    for act in w.findChildren(QAction):
        if act.objectName() in mine:
            continue
        for key in act.shortcuts():
            assert key.toString() not in seen, (key.toString(), act.objectName())
