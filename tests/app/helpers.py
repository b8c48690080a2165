"""Reading what the map shows, and driving it like a user."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QMouseEvent
from PySide6.QtWidgets import QApplication

from imemviz.app.palette import LEGEND_BY_CODE
from imemviz.app.window import MainWindow
from imemviz.model.raster import Code
from imemviz.model.vm import VM


def lut_colour(code: Code) -> QColor:
    return QColor(*LEGEND_BY_CODE[code].rgb)


def pixel_at_gfn(window: MainWindow, gfn: int) -> QColor:
    """The colour on screen at the centre of gfn's cell: the state's colour (its pattern,
    the second channel, and the tile's label are hidden for the grab;
    tests/app/test_navigation.py checks the patterns)."""
    pane = window.map
    pane.patterns.setVisible(False)
    pane.cells.setVisible(False)
    try:
        img = pane.view.grab().toImage()
    finally:
        pane.patterns.setVisible(True)
        pane.cells.setVisible(True)
    return img.pixelColor(pane.gfn_pos(gfn))


def assert_shows(window: MainWindow, gfn: int, code: Code) -> None:
    got = pixel_at_gfn(window, gfn)
    want = lut_colour(code)
    assert (got.red(), got.green(), got.blue()) == (want.red(), want.green(), want.blue()), (
        f"gfn {gfn:#x}: screen shows {got.name()}, {code.name} is {want.name()}"
    )


def session_vm(window: MainWindow) -> VM:
    s = window.engine.worker.session
    assert s is not None
    return s.vm


def click_gfn(
    qtbot, window: MainWindow, gfn: int, button=Qt.LeftButton, modifier=Qt.NoModifier
) -> None:
    pane = window.map
    qtbot.mouseClick(pane.view.viewport(), button, modifier, pane.gfn_pos(gfn))


def drag(window: MainWindow, g0: int, g1: int) -> None:
    """A left-button drag from gfn g0's cell to g1's (real mouse events to the viewport)."""
    pane = window.map
    vp = pane.view.viewport()
    p0, p1 = pane.gfn_pos(g0), pane.gfn_pos(g1)

    def send(kind, pos: QPoint, buttons) -> None:
        ev = QMouseEvent(
            kind, QPointF(pos), QPointF(vp.mapToGlobal(pos)), Qt.LeftButton, buttons, Qt.NoModifier
        )
        QApplication.sendEvent(vp, ev)

    send(QMouseEvent.MouseButtonPress, p0, Qt.LeftButton)
    for k in range(1, 6):
        mid = p0 + (p1 - p0) * (k / 5)
        send(QMouseEvent.MouseMove, mid, Qt.LeftButton)
    send(QMouseEvent.MouseButtonRelease, p1, Qt.NoButton)
