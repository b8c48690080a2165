"""Unexpected errors: a dialog instead of a dead app, and bug-report bundles that reproduce."""

from __future__ import annotations

import json
import logging
import logging.handlers
import threading
import zipfile

import pytest
from PySide6.QtWidgets import QMessageBox, QPushButton

from imemviz.app import crash
from imemviz.app import settings as S
from imemviz.app.panes.log import LogPane
from imemviz.cli import run_script
from imemviz.io.state import load_state, state_document
from imemviz.model import ops as O

from .conftest import wait_idle

pytestmark = [pytest.mark.qt, pytest.mark.qt_no_exception_capture]

BOOM = "boom: make the log pane fail"


@pytest.fixture
def hooked(make_window, monkeypatch, tmp_path):
    """A window whose log pane raises on one note, with the crash hooks and a log file."""
    orig = LogPane.on_op

    def on_op(self, rec) -> None:
        if rec.op.NAME == "note" and rec.op.text == BOOM:
            raise RuntimeError("injected failure in LogPane.on_op")
        orig(self, rec)

    # Patched before the window exists: the pane connects its bound method at init.
    monkeypatch.setattr(LogPane, "on_op", on_op)
    monkeypatch.setenv("IMEMVIZ_LOG_DIR", str(tmp_path / "logs"))
    level = logging.getLogger("imemviz").level
    S.setup_logging()
    w = make_window()
    crash.install_hooks(w.crash_reporter)
    monkeypatch.setattr(w.crash_reporter, "ask_path", lambda: str(tmp_path / "bug.zip"))
    try:
        yield w
    finally:
        crash.uninstall_hooks()
        root = logging.getLogger("imemviz")
        for h in list(root.handlers):
            if isinstance(h, logging.handlers.RotatingFileHandler):
                root.removeHandler(h)
                h.close()
        root.setLevel(level)


def _ops(window) -> int:
    return len(window.engine.worker.session.ops)


def _doc(vm) -> str:
    return json.dumps(state_document(vm), sort_keys=True)


def test_exception_in_a_pane_shows_a_dialog_and_the_app_keeps_working(
    hooked, qtbot, tmp_path
) -> None:
    w = hooked
    n = _ops(w)
    w.engine.apply_ops([O.Note(BOOM)])
    qtbot.waitUntil(lambda: w.crash_reporter.dialog is not None, timeout=10_000)
    box = w.crash_reporter.dialog
    assert isinstance(box, QMessageBox) and box.isVisible() and not box.isModal()
    assert "injected failure in LogPane.on_op" in box.detailedText()
    assert "Traceback" in box.detailedText()
    # The op the failing slot was told about is applied: nothing was lost.
    wait_idle(qtbot, w.engine)
    assert _ops(w) == n + 1

    # Save bug-report bundle… from the dialog.
    save = box.findChild(QPushButton, "crash_save")
    with qtbot.waitSignal(w.crash_reporter.bundleWritten, timeout=20_000) as sig:
        save.click()
    path, problems = sig.args
    assert path == str(tmp_path / "bug.zip") and problems == []

    # The app keeps working: a further action applies and the log pane shows it.
    w.engine.apply_ops([O.Note("still alive")])
    wait_idle(qtbot, w.engine)
    assert _ops(w) == n + 2
    w.log.flush()
    assert any("still alive" in line for line in w.log.lines)

    # The bundle reproduces the state: the state file loads, and the recording
    # replays (imemviz run) to the same state.
    out = tmp_path / "unpacked"
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        z.extractall(out)
    assert {
        crash.STATE_NAME,
        crash.RECORDING_NAME,
        crash.VERSIONS_NAME,
        "traceback.txt",
        "README.txt",
        "log/imemviz.log",
    } <= names
    state = load_state(out / crash.STATE_NAME)
    replayed = tmp_path / "replayed.json.zst"
    count = run_script(
        str(out / crash.RECORDING_NAME),
        results_out=str(tmp_path / "results.jsonl"),
        state_out=str(replayed),
    )
    assert count == n + 1
    assert _doc(load_state(replayed)) == _doc(state)
    info = json.loads((out / crash.VERSIONS_NAME).read_text())
    for key in ("imemviz", "python", "platform", "pyqtgraph", "numpy", "Qt"):
        assert info["versions"][key]
    assert info["ops"] == n + 1
    assert "injected failure" in (out / "traceback.txt").read_text()
    assert "note ok" in (out / "log" / "imemviz.log").read_text()


def test_a_second_error_grows_the_same_dialog(hooked, qtbot) -> None:
    w = hooked
    w.engine.apply_ops([O.Note(BOOM)])
    qtbot.waitUntil(lambda: w.crash_reporter.dialog is not None, timeout=10_000)
    box = w.crash_reporter.dialog
    # An exception in a Python thread takes the same way.
    t = threading.Thread(target=lambda: 1 / 0, name="worker-x")
    t.start()
    t.join()
    qtbot.waitUntil(lambda: "ZeroDivisionError" in box.detailedText(), timeout=10_000)
    assert "in thread worker-x" in box.detailedText()
    assert len(w.crash_reporter.tracebacks) == 2
    assert [b for b in w.findChildren(QMessageBox) if b.isVisible()] == [box]


def test_an_engine_internal_error_shows_the_dialog(hooked, qtbot) -> None:
    w = hooked

    def bug(session) -> None:
        raise ValueError("engine bug")

    w.engine.call(bug)
    qtbot.waitUntil(lambda: w.crash_reporter.dialog is not None, timeout=10_000)
    assert "engine bug" in w.crash_reporter.dialog.detailedText()
    # A user error (a missing file) is not a crash: status bar only.
    w.crash_reporter.dialog.close()
    qtbot.waitUntil(lambda: w.crash_reporter.dialog is None)
    w.engine.open("/nonexistent/x.jsonl")
    wait_idle(qtbot, w.engine)
    qtbot.wait(50)
    assert w.crash_reporter.dialog is None


def test_help_menu_saves_a_bundle_without_a_crash(hooked, qtbot, tmp_path) -> None:
    w = hooked
    act = w.findChild(type(w.registry["about"]), "act_bug_report")
    help_menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "&Help")
    assert act in help_menu.actions() and act.toolTip()
    with qtbot.waitSignal(w.crash_reporter.bundleWritten, timeout=20_000) as sig:
        act.trigger()
    assert sig.args[1] == []
    # The engine's command ends after the bundle is written: until then the busy line
    # may still come ("Working: …", its 100 ms timer due in the same pass of the event
    # loop as the bundle's signal on a loaded machine).  What the user reads is the line
    # once the engine is done.
    wait_idle(qtbot, w.engine)
    with zipfile.ZipFile(tmp_path / "bug.zip") as z:
        assert "traceback.txt" not in z.namelist()
        z.extract(crash.STATE_NAME, tmp_path)
    live = w.engine.worker.session.vm
    assert _doc(load_state(tmp_path / crash.STATE_NAME)) == _doc(live)
    assert w.crash_reporter.dialog is None
    assert "Bug-report bundle saved" in w.message.text()


def test_the_bundle_saved_line_outlasts_the_busy_line(hooked, qtbot, monkeypatch) -> None:
    """The order a loaded machine made: the bundle is written, then the engine's busy
    timer fires (the command not finished yet), then the command ends.  Forced here:
    the engine lingers after the write, the GUI thread is held past the busy delay."""
    w = hooked
    worker = w.engine.worker
    release = threading.Event()
    orig = type(worker)._sync_recorder

    def linger(self) -> None:
        release.wait(30)  # the command's end waits until the GUI has seen the busy line
        orig(self)

    monkeypatch.setattr(type(worker), "_sync_recorder", linger)
    # The busy line after the bundle's line: its delay past the write's few ms.
    w.engine._busy_timer.setInterval(1500)
    written: list = []
    w.crash_reporter.bundleWritten.connect(lambda *a: written.append(a))
    w.findChild(type(w.registry["about"]), "act_bug_report").trigger()
    qtbot.waitUntil(lambda: bool(written), timeout=20_000)
    assert "Bug-report bundle saved" in w.message.text()
    qtbot.waitUntil(w.busy.isVisible, timeout=20_000)  # the busy line comes after
    release.set()
    wait_idle(qtbot, w.engine)
    assert "Bug-report bundle saved" in w.message.text()


def test_bundle_without_a_vm_still_has_versions(tmp_path) -> None:
    problems = crash.write_bundle(tmp_path / "b.zip", None, ["tb"])
    assert problems and "no VM" in problems[0]
    with zipfile.ZipFile(tmp_path / "b.zip") as z:
        assert crash.VERSIONS_NAME in z.namelist()
        assert crash.STATE_NAME not in z.namelist()
        assert z.read("traceback.txt") == b"tb"


def test_hooks_report_and_are_restored() -> None:
    import sys

    class Reporter:
        def __init__(self) -> None:
            self.texts: list[str] = []

        def report(self, text: str) -> None:
            self.texts.append(text)

    before = (sys.excepthook, threading.excepthook)
    reporter = Reporter()
    crash.install_hooks(reporter)  # type: ignore[arg-type]
    try:
        try:
            raise KeyError("direct")
        except KeyError as e:
            sys.excepthook(type(e), e, e.__traceback__)
        assert "KeyError: 'direct'" in reporter.texts[0]
    finally:
        crash.uninstall_hooks()
    assert (sys.excepthook, threading.excepthook) == before


def test_a_failing_dialog_does_not_report_itself(window, monkeypatch, capsys) -> None:
    reporter = window.crash_reporter

    def broken() -> None:
        raise RuntimeError("dialog broken")

    monkeypatch.setattr(reporter, "_show_dialog", broken)
    reporter._show("original traceback\n")  # must not raise, nor loop
    assert reporter.tracebacks == ["original traceback\n"]
    assert "original traceback" in capsys.readouterr().err
