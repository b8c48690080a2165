"""A bug-report reader learns what the state holds on opening it: the State summary, the
banner, held faults on the map, File > Compare with..., copy as text, the bundle's check.

Reproducer of issue 13: held faults, the dead TD, invariant violations and what
differs from another state were visible only on the command line.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QTabBar

from imemviz.app import crash
from imemviz.io import summary as summarize_mod
from imemviz.io.session import Session
from imemviz.io.state import encode, save_state, state_document, vm_from_document
from imemviz.model import ops as O
from imemviz.model.events import event_dict, format_event

from .conftest import MB, WAIT_MS, td_session, wait_drawn, wait_idle

pytestmark = pytest.mark.qt

PRIVATE_GFN = 0x100  # a private page of the TD's RAM, not accepted


def dead_td(tmp_path: Path) -> Path:
    """A TD with a fault held on vCPU 1, then killed by a private access before accept."""
    s = td_session(64 * MB)
    s.apply_group([O.GuestAccess(0x200 << 12, vcpu=1, hold=True)])
    r = s.apply(O.GuestAccess(PRIVATE_GFN << 12, private=True))
    assert r.ret.get("vm_dead") and s.vm.in_flight
    path = tmp_path / "dead.json.zst"
    save_state(s.vm, path)
    return path


def open_file(qtbot, w, path: Path) -> None:
    w.open_file(str(path))
    qtbot.waitUntil(
        lambda: w.engine.snapshot is not None and w.engine.snapshot.source == str(path),
        timeout=WAIT_MS,
    )
    wait_drawn(qtbot, w)
    pane = w.report.summary.pane
    qtbot.waitUntil(
        lambda: pane.summary is not None and pane.summary.source == str(path), timeout=WAIT_MS
    )


def test_opening_a_dead_td_shows_the_summary_a_banner_and_the_held_fault(
    make_window, qtbot, tmp_path
) -> None:
    w = make_window()
    open_file(qtbot, w, dead_td(tmp_path))
    tools = w.report.summary
    text = tools.pane.text.text()
    for part in (
        "VM type: tdx, TD state RUNNABLE",
        "dead: yes (guest access before accepting",
        "held faults: 1",
        "vCPU 1: private read of gpa 0x200000 held",
    ):
        assert part in text, text
    assert tools.banner.isVisible()
    assert tools.banner.label.text().startswith("The TD is dead (guest access before accepting")
    assert tools.held.ranges() == ((0x200, 0x201),)
    # The legend stays in front; the summary's tab is flagged until it is looked at.
    dock, legend = w.docks["state_summary"], w.docks["legend"]
    assert front_tab(w, "Legend") == "Legend"
    assert not legend.visibleRegion().isEmpty() and dock.visibleRegion().isEmpty()
    assert dock.windowTitle() == "State summary ●"
    dock.raise_()
    qtbot.waitUntil(lambda: dock.windowTitle() == "State summary", timeout=WAIT_MS)
    assert front_tab(w, "Legend") == "State summary"


def front_tab(w, name: str) -> str:
    """The title of the tab in front in the dock tab bar that holds `name`."""
    for bar in w.findChildren(QTabBar):
        if name in [bar.tabText(i) for i in range(bar.count())]:
            return bar.tabText(bar.currentIndex())
    raise AssertionError(f"no tab bar holds {name}")


def test_violations_are_listed_and_a_click_selects_their_gfn(make_window, qtbot, tmp_path) -> None:
    s = td_session(64 * MB)
    s.apply_group([O.GuestAccept(0x300 << 12)])
    doc = json.loads(encode(state_document(s.vm)))
    row = next(r for r in doc["mappings"]["private"] if r[0] == "0x300")
    row[2] = hex(int(row[2], 16) + 7)  # the leaf no longer maps its folio's page: I2
    path = tmp_path / "broken.json"
    path.write_bytes(encode(doc))
    w = make_window()
    open_file(qtbot, w, path)
    pane = w.report.summary.pane
    assert pane.violations.count() >= 1
    item = pane.violations.item(0)
    assert item.text().startswith("I2: leaf maps pfn")
    pane._go(item)
    assert w.selection.gfn == 0x300
    assert "invariants: 1 violation" in pane.text.text()
    assert pane.copy().endswith(item.text())


def test_a_recording_cut_short_opens_with_a_visible_warning(make_window, qtbot, tmp_path) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_text(
        '{"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "sw_protected"}}}\n'
        '{"op": "create_guest_memfd", "size": "2M"}\n{"op": "note", "te'
    )
    w = make_window()
    open_file(qtbot, w, path)
    banner = w.report.summary.banner
    assert banner.isVisible() and "the last line is cut short" in banner.label.text()
    assert "replayed the 1 complete op line before it" in w.message.text()


def test_compare_with_outlines_the_differences_and_lists_them(make_window, qtbot, tmp_path) -> None:
    w = make_window(td_session(64 * MB))
    other = td_session(64 * MB)
    other.apply_group([O.SetMemoryAttributes(0x400 << 12, 16 << 12, 0), O.Close(0)])
    path = tmp_path / "other.json.zst"
    save_state(other.vm, path)
    compare = w.report.compare
    act = w.findChild(type(compare.action), "act_compare")
    file_menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "&File")
    assert act in file_menu.actions()
    compare.start(str(path))
    qtbot.waitUntil(lambda: compare.pane.comparison is not None, timeout=WAIT_MS)
    lines = [compare.pane.list.item(i).text() for i in range(compare.pane.list.count())]
    assert "attributes: gfn 0x400-0x40f: PRIVATE -> shared" in lines
    assert any("closed_std_fds: [] -> [0]" in line for line in lines)
    assert (0x400, 0x410) in compare.overlay.ranges()
    item = compare.pane.list.item(lines.index("attributes: gfn 0x400-0x40f: PRIVATE -> shared"))
    compare.pane._go(item)
    assert w.selection.range == (0x400, 0x410)
    assert compare.pane.copy().startswith("--- ")
    compare.pane.clear()
    assert compare.overlay.ranges() == ()
    compare.start(str(tmp_path / "missing.json"))
    qtbot.waitUntil(lambda: "missing.json: cannot read" in w.message.text(), timeout=WAIT_MS)


def test_copy_as_text_and_as_op_json(make_window, qtbot) -> None:
    w = make_window(td_session(64 * MB))
    engine = w.engine
    engine.apply_ops([O.GuestAccept(0x10 << 12), O.GuestAccess(0x10 << 12)], "touch")
    wait_idle(qtbot, engine)
    w.selection.set_gfn(0x10)
    qtbot.waitUntil(
        lambda: w.inspector.info is not None and w.inspector.info["gfn"] == 0x10, timeout=WAIT_MS
    )
    copy = w.report.copy
    w.map.view.setFocus()
    copy.as_text.trigger()
    assert copy.copied.startswith("selection: gpa 0x10000-0x10fff (gfn 0x10-0x10, 1 page)")
    assert "private mapping: 4K leaf -> pfn" in copy.copied
    copy.as_json.trigger()
    assert copy.copied == '{"op": "inspect", "gpa": "0x10000"}'
    assert QGuiApplication.clipboard().text() == copy.copied
    w.inspector.table.setFocus()
    copy.as_json.trigger()
    first, second = copy.copied.splitlines()
    assert json.loads(first) == {"op": "inspect", "gpa": "0x10000"}
    assert json.loads(second)["ret"]["private_mapping"]["state"] == "MAPPED"
    # An event: as text, and as the op that emitted it (fetched from the session).
    events = w.panes2.events
    w.docks["event_log"].show()
    w.docks["event_log"].raise_()
    qtbot.waitUntil(lambda: events.model.rowCount() > 0, timeout=WAIT_MS)
    row = events.model.rowCount() - 1
    events.table.setCurrentIndex(events.model.index(row, 0))
    events.table.setFocus()
    copy.as_text.trigger()
    ev = events.model.events[events.model.position(row)]
    assert copy.copied == f"op #{ev[0]}: {format_event(ev)}"
    before = copy.copied
    copy.as_json.trigger()
    qtbot.waitUntil(lambda: copy.copied != before, timeout=WAIT_MS)
    lines = copy.copied.splitlines()
    assert json.loads(lines[0]) == {**event_dict(ev)}
    assert json.loads(lines[1]) == {"op": "guest_accept", "gpa": "0x10000"}  # the op behind it


def test_the_bug_report_bundle_holds_check_output(tmp_path) -> None:
    s = Session.open(str(Path(__file__).parent.parent / "data" / "state-v1-tdx.json.gz"))
    problems = crash.write_bundle(tmp_path / "bug.zip", s, [])
    assert problems == []
    with zipfile.ZipFile(tmp_path / "bug.zip") as z:
        text = z.read(crash.CHECK_NAME).decode()
    assert text.startswith("state: state.json.zst\nVM: tdx")
    assert "\ninvariants: " in text
    assert vm_from_document  # the bundle's state reloads (test_crash checks that part)


def test_behind_its_tab_the_summary_checks_after_a_seek_only_when_shown(
    make_window, qtbot, tmp_path
) -> None:
    """A seek or an undo across a rebuild (a reset) re-checks every invariant only while
    the State summary is in front; behind another tab the check waits for it."""
    s = td_session(64 * MB)
    s.apply_group([O.GuestAccept(0x300 << 12)])
    doc = json.loads(encode(state_document(s.vm)))
    row = next(r for r in doc["mappings"]["private"] if r[0] == "0x300")
    row[2] = hex(int(row[2], 16) + 7)  # I2
    path = tmp_path / "broken.json"
    path.write_bytes(encode(doc))
    w = make_window()
    open_file(qtbot, w, path)
    tools = w.report.summary
    feed, pane, dock = tools.feed, tools.pane, w.docks["state_summary"]
    assert pane.summary.checked_at is not None  # a file opened: checked at once
    dock.visibilityChanged.emit(False)  # behind the legend
    checks = []
    real = summarize_mod.count_violations
    worker = w.engine.worker

    def reset(_s) -> None:
        summarize_mod.count_violations = lambda *a: checks.append(1) or real(*a)
        try:
            worker._publish(None, reset=True)
        finally:
            summarize_mod.count_violations = real

    w.engine.call(reset)
    wait_idle(qtbot, w.engine)
    assert not checks and feed.pending
    dock.visibilityChanged.emit(True)  # the tab comes forward: the check runs
    qtbot.waitUntil(lambda: not feed.pending, timeout=WAIT_MS)
    wait_idle(qtbot, w.engine)
    assert "invariants: 1 violation" in pane.text.text()


def test_a_recording_does_not_flag_the_summary(make_window, qtbot, tmp_path) -> None:
    """The flag is for a state file (a bug report's state); a recording, replayed or opened
    as history, is stepped through on the map and the Timeline: no flag, and a closed
    summary stays closed.  A state file opened after it still flags the tab."""
    s = td_session(64 * MB)
    s.apply_group([O.GuestAccept(0x300 << 12)])
    rec = tmp_path / "story.jsonl"
    s.save_recording(str(rec))
    w = make_window()
    dock = w.docks["state_summary"]
    open_file(qtbot, w, rec)  # File > Open: the recording as undo history
    assert dock.windowTitle() == "State summary"
    assert dock.visibleRegion().isEmpty()  # behind the legend, as before the open
    dock.close()
    c = w.presenter.replay
    assert c.load(str(rec))  # Replay > Replay recording
    qtbot.waitUntil(lambda: c.active, timeout=WAIT_MS)
    wait_drawn(qtbot, w)
    wait_idle(qtbot, w.engine)
    assert not dock.toggleViewAction().isChecked()  # left closed
    assert dock.windowTitle() == "State summary"
    # A state file: the summary comes back, flagged, the legend in front.
    state = tmp_path / "state.json"
    save_state(s.vm, state)
    open_file(qtbot, w, state)
    assert dock.toggleViewAction().isChecked()
    assert dock.windowTitle() == "State summary ●"
    assert front_tab(w, "Legend") == "Legend"
