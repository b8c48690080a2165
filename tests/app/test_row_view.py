"""The row-raster view both the GPA map and the host folios pane draw with (row_view.py)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainterPath, QWheelEvent
from PySide6.QtWidgets import QApplication

from imemviz.app import plot_theme
from imemviz.app.panes.code_image import CodeImage
from imemviz.app.panes.row_view import RowPlot

pytestmark = pytest.mark.qt

ROWS, COLS = 8, 16


class Owner:
    """A pane in miniature: records what the view hands it."""

    def __init__(self) -> None:
        self.zooms: list[tuple[int, float, float]] = []
        self.scrolls: list[int] = []
        self.clicks: list[QPointF] = []

    def on_wheel_zoom(self, steps: int, at: QPointF) -> None:
        self.zooms.append((steps, at.x(), at.y()))

    def on_wheel_scroll(self, delta: int) -> None:
        self.scrolls.append(delta)

    def on_click(self, ev) -> None:
        ev.accept()
        self.clicks.append(self.plot.vb.mapToView(ev.pos()))


def lut() -> np.ndarray:
    table = np.zeros((256, 3), np.uint8)
    table[1] = (200, 0, 0)
    table[2] = (0, 0, 200)
    return table


@pytest.fixture
def view(qtbot):
    owner = Owner()
    plot = RowPlot(owner, pg.AxisItem("left"), lut())
    owner.plot = plot
    widget = pg.PlotWidget(plotItem=plot)
    widget.resize(400, 300)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    codes = np.ones((ROWS, COLS), np.uint8)
    codes[:, COLS // 2 :] = 2
    plot.show_codes(codes, QRectF(0, 0, COLS, ROWS))
    plot.vb.setRange(xRange=(0, COLS), yRange=(0, ROWS), padding=0.0)
    QApplication.processEvents()
    return widget, plot, owner


def at_cell(widget, plot, x: float, y: float) -> QPoint:
    return widget.mapFromScene(plot.vb.mapViewToScene(QPointF(x, y)))


def wheel(widget, pos: QPoint, dy: int, mods=Qt.KeyboardModifier.NoModifier) -> None:
    vp = widget.viewport()
    ev = QWheelEvent(
        QPointF(pos),
        QPointF(vp.mapToGlobal(pos)),
        QPoint(0, 0),
        QPoint(0, dy),
        Qt.MouseButton.NoButton,
        mods,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(vp, ev)


def test_the_image_is_the_fast_path_with_rows_going_down(view) -> None:
    widget, plot, _ = view
    img = plot.img
    assert isinstance(img, CodeImage)
    assert img.lut is not None and tuple(img.lut[1][:3]) == (200, 0, 0)
    assert tuple(img.levels) == (0, 255) and not img.autoDownsample
    assert plot.vb.yInverted()
    assert not any(plot.vb.state["mouseEnabled"])
    assert plot.bottom_axis is None and not plot.getAxis("bottom").isVisible()
    # Row 0 at the top: the left half of the top row is code 1 (red), the right code 2.
    grab = widget.grab().toImage()
    left = grab.pixelColor(at_cell(widget, plot, 2.5, 0.5))
    right = grab.pixelColor(at_cell(widget, plot, COLS - 2.5, 0.5))
    assert (left.red(), left.blue()) == (200, 0)
    assert (right.red(), right.blue()) == (0, 200)


def test_ctrl_wheel_zooms_at_the_cursor_and_the_wheel_scrolls(view) -> None:
    widget, plot, owner = view
    pos = at_cell(widget, plot, 3.5, 5.5)
    wheel(widget, pos, 120, Qt.KeyboardModifier.ControlModifier)
    wheel(widget, pos, -240, Qt.KeyboardModifier.ControlModifier)
    assert [s for s, _, _ in owner.zooms] == [1, -1]  # one step a notch, whatever the delta
    for _, x, y in owner.zooms:
        assert x == pytest.approx(3.5, abs=0.2) and y == pytest.approx(5.5, abs=0.2)
    wheel(widget, pos, -120)
    wheel(widget, pos, 240)
    assert owner.scrolls == [-120, 240]  # the pane decides how far a notch goes
    assert len(owner.zooms) == 2


def test_clicks_go_to_the_owner_in_view_coordinates(view, qtbot) -> None:
    widget, plot, owner = view
    qtbot.mouseClick(
        widget.viewport(), Qt.MouseButton.LeftButton, pos=at_cell(widget, plot, 6.5, 2.5)
    )
    assert len(owner.clicks) == 1
    assert owner.clicks[0].x() == pytest.approx(6.5, abs=0.2)
    assert owner.clicks[0].y() == pytest.approx(2.5, abs=0.2)


def test_outlines_are_cosmetic_and_outside_the_bounds(view) -> None:
    _, plot, _ = view
    before = plot.vb.childrenBounds()
    item = plot.add_outline(QColor(220, 0, 120), 2.0, 10, Qt.PenStyle.DashLine)
    path = QPainterPath()
    path.addRect(QRectF(-100, -100, 1000, 1000))  # far outside the image
    item.setPath(path)
    assert item.pen().isCosmetic() and item.pen().widthF() == 2.0
    assert item.pen().style() == Qt.PenStyle.DashLine
    assert item.zValue() == 10 and item.parentItem() is plot.vb.childGroup
    assert plot.vb.childrenBounds() == before  # an outline never moves the view


def test_theme_and_relabel(view) -> None:
    _, plot, _ = view
    theme = plot_theme.DARK  # not the colours the plot starts in
    assert plot.left_axis.pen().color() != QColor(theme.axis)
    plot.apply_theme(theme)
    assert plot.left_axis.pen().color() == QColor(theme.axis)
    assert plot.left_axis.textPen().color() == QColor(theme.text)
    plot.left_axis.picture = object()  # pyqtgraph's cached labels
    plot.relabel()
    assert plot.left_axis.picture is None


def test_a_bottom_axis_is_shown_and_themed(qtbot) -> None:
    owner = Owner()
    bottom = pg.AxisItem("bottom")
    plot = RowPlot(owner, pg.AxisItem("left"), lut(), bottom)
    widget = pg.PlotWidget(plotItem=plot)
    qtbot.addWidget(widget)
    assert plot.getAxis("bottom") is bottom and bottom.isVisible()
    plot.apply_theme(plot_theme.DARK)
    assert bottom.textPen().color() == QColor(plot_theme.DARK.text)


def test_the_folios_pane_zooms_and_scrolls_with_the_wheel(make_window, qtbot) -> None:
    """The host folios pane's wheel goes through the shared view: Ctrl+wheel zooms one
    step around the page under the cursor, the wheel scrolls three rows a notch."""
    from imemviz.app.panes.folios import PFN_MODE

    from .conftest import td_session

    w = make_window(td_session())
    w.panes2.feed.always = True
    w.docks["folios"].raise_()
    w.resizeDocks([w.docks["folios"]], [400], Qt.Orientation.Vertical)
    pane = w.panes2.folios
    qtbot.waitUntil(
        lambda: pane.spaces is not None and pane.page_window is not None, timeout=10_000
    )
    pane.set_mode(PFN_MODE)
    qtbot.waitUntil(lambda: pane.page_window[2] >= 8, timeout=10_000)  # rows to scroll
    start, row_pages, rows, cols = pane.page_window
    page = start + (rows // 2) * row_pages + row_pages // 2
    pos = at_cell(pane.view, pane.plot, cols / 2, rows // 2 + 0.5)
    wheel(pane.view, pos, 120, Qt.KeyboardModifier.ControlModifier)
    assert pane.zoom == 1 and pane.page_window[1] == row_pages // 2
    s, rp, n, _ = pane.page_window
    assert s <= page < s + n * rp  # the page under the cursor stays in view
    pane.top = 0
    pane.redraw()
    s, rp, n, _ = pane.page_window
    assert pane.space().limit > (n + 3) * rp  # room to scroll three rows down
    wheel(pane.view, pos, -120)
    assert pane.top == 3 and pane.page_window[0] == 3 * rp
    wheel(pane.view, pos, 120)
    wheel(pane.view, pos, 120)
    assert pane.top == 0  # not above the first row
    assert pane.zoom == 1  # the plain wheel never zooms
