"""The Timeline is a thin strip across the window above the log and its tabs: the bottom
panes keep the whole width (every column of the entries at 1280x720), the strip costs
one line of controls, and its list of steps shows when it is dragged taller."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from imemviz.io.session import Session

from .conftest import wait_drawn

pytestmark = pytest.mark.qt


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_the_bottom_panes_keep_the_whole_width(make_window, qtbot, size) -> None:
    w = make_window(Session.scene("default"), size=size, fold=True)
    strip, log, entries = w.presenter.dock, w.docks["log"], w.docks["entries"]
    entries.raise_()
    qtbot.waitUntil(lambda: not entries.visibleRegion().isEmpty(), timeout=5000)
    assert entries.width() == w.width() and log.width() == w.width()
    # Every column of the entries table is in view, none cut at the right.
    table = w.panes2.entries.table
    assert table.horizontalHeader().length() <= table.viewport().width()
    # The strip: right under the map, above the bottom panes, one line of controls.
    assert w.map.geometry().bottom() < strip.geometry().top()
    assert strip.geometry().bottom() < entries.geometry().top()
    pane = w.presenter.pane
    assert not pane.list.isVisible()
    assert pane.height() <= pane.strip_height() + 4
    for control in (pane.play_btn, pane.slider, pane.title):
        assert control.isVisible() and pane.rect().contains(control.geometry())
    assert pane.slider.width() >= 200


def test_the_strip_shows_its_steps_when_taller(make_window, qtbot) -> None:
    w = make_window(size=(1280, 720))
    strip, pane = w.presenter.dock, w.presenter.pane
    w.resizeDocks([strip], [200], Qt.Orientation.Vertical)
    qtbot.waitUntil(pane.list.isVisible, timeout=5000)
    assert pane.list.height() >= 2 * pane.list.verticalHeader().defaultSectionSize()
    w.resizeDocks([strip], [pane.strip_height()], Qt.Orientation.Vertical)
    qtbot.waitUntil(lambda: not pane.list.isVisible(), timeout=5000)
    wait_drawn(qtbot, w)


def test_the_start_says_what_it_holds(make_window) -> None:
    """At launch the default scene's ops are the start, not actions: the Timeline says so
    rather than a bare "0 actions"."""
    w = make_window(Session.scene("default"), fold=True)
    base = w.engine.snapshot.op_base
    assert base > 0
    pane = w.presenter.pane
    assert f"start: {base} ops of the scene" in pane.title.text()
    assert pane.model.data(pane.model.index(0)) == f"(start: {base} ops of the scene)"
