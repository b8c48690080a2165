"""Gfn ranges outlined on the GPA map in a colour of their own: what a comparison found
(File > Compare with...) or where faults are held (the state summary).

Like the cross-highlight overlay (map_highlight.py), an item in the map's view box,
redrawn when its ranges or the map's zoom change, so the map module needs no change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QBrush, QColor, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from imemviz.app.panes.gpa_map import GpaMapPane
from imemviz.app.panes.map_items import outline_path

MAX_RANGES = 512  # more would cost more to draw than they tell


class RangeOverlay(QObject):
    def __init__(
        self,
        pane: GpaMapPane,
        colour: QColor,
        *,
        fill_alpha: int = 40,
        dashed: bool = False,
        markers: bool = False,
    ) -> None:
        super().__init__(pane)
        self.pane = pane
        self.colour = QColor(colour)
        # Markers: a symbol of fixed size (and a label) at the start of each range, so a
        # single page stays findable when a row holds millions of them.
        self.scatter: pg.ScatterPlotItem | None = None
        self.labels: list[pg.TextItem] = []
        self._texts: tuple[str, ...] = ()
        if markers:
            self.scatter = pg.ScatterPlotItem(
                size=16,
                symbol="t",
                pen=pg.mkPen("k", width=1),
                brush=pg.mkBrush(colour),
                pxMode=True,
            )
            self.scatter.setZValue(23)
            pane.vb.addItem(self.scatter, ignoreBounds=True)
        self.item = QGraphicsPathItem()
        pen = QPen(colour, 2.5)
        pen.setCosmetic(True)  # a single page stays visible at any zoom
        if dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        self.item.setPen(pen)
        fill = QColor(colour)
        fill.setAlpha(fill_alpha)
        self.item.setBrush(QBrush(fill))
        self.item.setZValue(21)
        self.item.hide()
        pane.vb.addItem(self.item, ignoreBounds=True)
        self._ranges: tuple[tuple[int, int], ...] = ()
        self._row_gfns = 0
        pane.viewChanged.connect(lambda _text: self._redraw_if_zoomed())

    def set_ranges(self, ranges: Iterable[tuple[int, int]], texts: Sequence[str] = ()) -> None:
        self._ranges = tuple(r for r in ranges if r[1] > r[0])[:MAX_RANGES]
        self._texts = tuple(texts)
        self.redraw()

    def ranges(self) -> tuple[tuple[int, int], ...]:
        return self._ranges if self.item.isVisible() else ()

    def _redraw_if_zoomed(self) -> None:
        if self.pane.layout_.row_gfns != self._row_gfns:
            self.redraw()

    def redraw(self) -> None:
        row = self.pane.layout_.row_gfns
        self._row_gfns = row
        if not self._ranges or not row:
            self.item.hide()
            self._markers(row)
            return
        self.item.setPath(outline_path(self._ranges, row))
        self.item.show()
        self._markers(row)

    def _markers(self, row: int) -> None:
        if self.scatter is None:
            return
        for t in self.labels:
            self.pane.vb.removeItem(t)
        self.labels = []
        ranges = self._ranges if self.item.isVisible() else ()
        spots = [(a % row + 0.5, a // row + 0.5) for a, _b in ranges[:64]] if row else []
        self.scatter.setData(pos=spots)
        for (x, y), text in zip(spots, self._texts, strict=False):
            label = pg.TextItem(
                text, color=(0, 0, 0), fill=pg.mkBrush(self.colour), anchor=(-0.1, -0.4)
            )
            label.setPos(x, y)
            label.setZValue(24)
            self.pane.vb.addItem(label, ignoreBounds=True)
            self.labels.append(label)
