"""The main window: saved layout, refusals without modal dialogs, busy indicator, panes."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QMessageBox, QToolButton

from imemviz.app.panes.inspector import InspectModel, rows_of
from imemviz.app.window import MainWindow
from imemviz.model import ops as O
from imemviz.model.raster import Code

from .conftest import sw_session, td_session, wait_drawn, wait_idle

pytestmark = pytest.mark.qt


def test_layout_is_saved_and_restored(qtbot, engine, settings) -> None:
    w = MainWindow(engine, settings)
    w.show()
    qtbot.waitExposed(w)
    w.docks["legend"].hide()
    w.resize(701, 655)  # inside the offscreen platform's 800x800 screen, above the minimum
    w.close()
    assert settings.value("window/state") is not None
    w2 = MainWindow(engine, settings)
    w2.show()
    qtbot.waitExposed(w2)
    assert not w2.docks["legend"].isVisible()
    assert w2.docks["inspector"].isVisible()
    assert (w2.width(), w2.height()) == (701, 655)
    w2.close()


def test_defaults_legend_visible_and_every_control_has_a_tooltip(window) -> None:
    assert window.docks["legend"].isVisible()
    names = {lab.objectName() for lab in window.legend.findChildren(type(window.message))}
    for code in Code:
        if code != Code.OUTSIDE:
            assert f"legend_{code.name}" in names
    for button in window.toolbar.findChildren(QToolButton):
        if button.defaultAction() is not None:
            assert button.defaultAction().toolTip()
    assert window.value.toolTip() and window.map.scrollbar.toolTip()
    for dock in window.docks.values():
        assert dock.widget().toolTip() or dock.widget().findChildren(type(window.message))


def test_a_refused_op_explains_itself_without_a_modal(window, qtbot) -> None:
    window.engine.apply_ops([O.Fallocate(3, 0, 0, 4096)])  # no KEEP_SIZE: EOPNOTSUPP
    wait_idle(qtbot, window.engine)
    text = window.message.text()
    assert "EOPNOTSUPP" in text and "KEEP_SIZE" in text
    assert "EOPNOTSUPP" in window.log.lines[-1]
    assert not [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    # A burst of refusals: still no dialog, every one logged.
    n = len(window.log.lines)
    for _ in range(20):
        window.engine.apply_ops([O.Close(99)])
    wait_idle(qtbot, window.engine)
    # Every one logged: the action's line (its name and outcome), then the op's.
    assert len(window.log.lines) == n + 40
    assert window.log.lines[-2].startswith("▶ Close: close failed with EBADF")
    assert not [b for b in window.findChildren(QMessageBox) if b.isVisible()]


def test_a_slow_op_shows_busy_and_the_window_stays_responsive(window, qtbot) -> None:
    """The GUI thread keeps running its event loop while the engine thread works.

    Counted, not timed: a 10 ms heartbeat must keep beating during a 0.4 s op;
    were the GUI waiting on the engine it would not beat at all until the op
    ended. (Stall durations are measured in benchmarks/bench_app.py.)
    """
    beats = [0]
    during = [0]
    timer = QTimer()

    def beat() -> None:
        beats[0] += 1
        if window.busy.isVisible():
            during[0] += 1

    timer.timeout.connect(beat)
    timer.start(10)

    def slow(session) -> None:
        t = time.perf_counter()
        x = 0
        while time.perf_counter() - t < 0.4:  # holds the GIL between bytecodes
            x += 1

    try:
        window.engine.call(slow)
        qtbot.waitUntil(window.busy.isVisible, timeout=2000)
        assert "Working" in window.message.text()
        wait_idle(qtbot, window.engine)
        qtbot.waitUntil(lambda: not window.busy.isVisible(), timeout=2000)
    finally:
        timer.stop()
    assert during[0] >= 3, f"only {during[0]} heartbeats while the engine was busy"


def test_inspector_shows_the_selected_chain(make_window, qtbot) -> None:
    w = make_window(td_session())
    w.selection.set_gfn(0x10)
    w.registry["accept_touch"].trigger()
    wait_idle(qtbot, w.engine)
    qtbot.waitUntil(
        lambda: (
            w.inspector.model.value("private mapping") is not None
            and "MAPPED" in w.inspector.model.value("private mapping")
        ),
        timeout=5000,
    )
    m = w.inspector.model
    assert m.value("gpa").startswith("0x10000")
    assert m.value("attributes") == "PRIVATE"
    assert m.value("guest_memfd") == "fd 3, index 0x10"
    assert "order 0" in m.value("folio")
    assert m.value("shared mapping") == "none"
    assert "Page 0x10000" in w.inspector.title.text()


def test_inspect_model_passes_qtmodeltester(qtmodeltester) -> None:
    model = InspectModel()
    qtmodeltester.check(model)
    vm = sw_session().vm
    from imemviz.model.query import inspect_gfn

    model.set_info(inspect_gfn(vm, 3))
    qtmodeltester.check(model)
    assert model.rowCount() == len(rows_of(inspect_gfn(vm, 3)))


def test_undo_redo_actions_follow_the_history(window, qtbot) -> None:
    assert window.registry["undo"].isEnabled()  # the layout group
    window.selection.set_gfn(0x5)
    window.registry["accept_touch"].trigger()
    wait_idle(qtbot, window.engine)
    wait_drawn(qtbot, window)
    assert window.registry["undo"].text() == "&Undo accept and touch"
    window.registry["undo"].trigger()
    wait_idle(qtbot, window.engine)
    assert window.registry["redo"].isEnabled()
    assert window.registry["redo"].text() == "&Redo accept and touch"
    assert window.engine.worker.session.vm.private.lookup(0x5) is None
    window.registry["redo"].trigger()
    wait_idle(qtbot, window.engine)
    assert window.engine.worker.session.vm.private.lookup(0x5) is not None
    assert not window.registry["redo"].isEnabled()
