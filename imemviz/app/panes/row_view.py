"""One row-raster view: an address space drawn as rows of pages in one uint8 code image.

The GPA map (`gpa_map.py`) and the host folios pane (`folios.py`) draw alike, and
`RowPlot` is what they share: a pyqtgraph PlotItem around a `RowViewBox` (rows go
down, the mouse never pans, no context menu of pyqtgraph's own), one `CodeImage`
of uint8 codes with a 256-entry lookup table at fixed levels (pyqtgraph's fast
path, never autoDownsample), the address axis on the left (and an optional
bottom one) in the theme's colours, and outlines of page ranges drawn with
cosmetic pens (an outline, never a fill: a tint would change the colours that
carry meaning).  The mouse belongs to the pane: the view box hands it clicks,
drags and hovers, and decodes the wheel (Ctrl+wheel zooms at the cursor, the
wheel scrolls).  What differs stays in each pane: its geometry of rows, its
axis labels, what a click does.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from imemviz.app.panes.code_image import CodeImage

AXIS_PEN = "#444"  # light-theme axis line and text until the pane applies a theme
AXIS_TEXT = "#222"


class RowViewOwner(Protocol):
    """What a pane drawing a `RowPlot` answers (`on_click`, `on_drag` and `on_hover`
    are optional: without them the view box does what pyqtgraph's does)."""

    def on_wheel_zoom(self, steps: int, at: QPointF) -> None:
        """Ctrl+wheel: zoom in (steps > 0) or out by one step at `at` (view coordinates)."""

    def on_wheel_scroll(self, delta: int) -> None:
        """The wheel: scroll by `delta` (eighths of a degree, 120 a notch; > 0 is up)."""


def wheel_delta(ev: Any) -> int:
    """The wheel event's delta (pyqtgraph's scene event or a Qt QWheelEvent)."""
    return int(ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y())


class RowViewBox(pg.ViewBox):
    """A ViewBox whose mouse and wheel handling belongs to its owner (the pane)."""

    def __init__(self, owner: RowViewOwner) -> None:
        super().__init__(enableMenu=False, defaultPadding=0.0, invertY=True)
        self.owner = owner
        self.setMouseEnabled(False, False)
        self.disableAutoRange()

    def wheelEvent(self, ev, axis=None):
        ev.accept()
        delta = wheel_delta(ev)
        if not delta:
            return
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.owner.on_wheel_zoom(1 if delta > 0 else -1, self.mapToView(ev.pos()))
        else:
            self.owner.on_wheel_scroll(delta)

    def mouseClickEvent(self, ev):
        handler = getattr(self.owner, "on_click", None)
        if handler is None:
            super().mouseClickEvent(ev)
        else:
            handler(ev)

    def mouseDragEvent(self, ev, axis=None):
        handler = getattr(self.owner, "on_drag", None)
        if handler is None:
            super().mouseDragEvent(ev, axis)
        else:
            handler(ev)

    def hoverEvent(self, ev):
        handler = getattr(self.owner, "on_hover", None)
        if handler is not None:
            handler(ev)


class RowPlot(pg.PlotItem):
    """The plot of a row-raster view: view box, code image, address axes, outlines.

    Put it in a `pg.PlotWidget(plotItem=...)` or a `pg.GraphicsLayoutWidget`."""

    def __init__(
        self,
        owner: RowViewOwner,
        left: pg.AxisItem,
        lut: np.ndarray,
        bottom: pg.AxisItem | None = None,
    ) -> None:
        self.vb = RowViewBox(owner)
        axes = {"left": left} if bottom is None else {"left": left, "bottom": bottom}
        super().__init__(viewBox=self.vb, axisItems=axes)
        self.left_axis = left
        self.bottom_axis = bottom
        self.hideButtons()
        self.setMenuEnabled(False)
        if bottom is None:
            self.hideAxis("bottom")
        for ax in self.axes_shown():
            ax.setPen(pg.mkPen(AXIS_PEN))
            ax.setTextPen(pg.mkPen(AXIS_TEXT))
        self.img = CodeImage(axisOrder="row-major")  # converted once, not every paint
        self.img.setAutoDownsample(False)
        self.img.setLookupTable(lut)
        self.img.setLevels((0, 255))
        self.vb.addItem(self.img)

    def axes_shown(self) -> list[pg.AxisItem]:
        return [ax for ax in (self.left_axis, self.bottom_axis) if ax is not None]

    def apply_theme(self, theme: Any) -> None:
        """The axes in the theme's colours (imemviz.app.plot_theme); the pane sets the rest."""
        for ax in self.axes_shown():
            ax.setPen(pg.mkPen(theme.axis))
            ax.setTextPen(pg.mkPen(theme.text))

    def show_codes(self, codes: np.ndarray, rect: QRectF) -> None:
        """Draw `codes` (rows, cols uint8) over `rect` in view coordinates."""
        self.img.setImage(codes, autoLevels=False, levels=(0, 255), autoDownsample=False)
        self.img.setRect(rect)

    def relabel(self) -> None:
        """New row labels: pyqtgraph caches the left axis's picture by range, and a new
        zoom (or new folds) over the same range changes what the rows are."""
        self.left_axis.picture = None
        self.left_axis.update()

    def add_outline(
        self,
        colour: QColor,
        width: float,
        z: float,
        style: Qt.PenStyle = Qt.PenStyle.SolidLine,
    ) -> QGraphicsPathItem:
        """A path item over the image drawn with a cosmetic pen (as wide at any zoom),
        not counted in the view's bounds."""
        item = QGraphicsPathItem()
        pen = QPen(colour, width, style)
        pen.setCosmetic(True)
        item.setPen(pen)
        item.setZValue(z)
        self.vb.addItem(item, ignoreBounds=True)
        return item
