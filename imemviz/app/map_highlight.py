"""The map's half of cross-highlighting: every gfn range of the current `Highlight`
outlined in magenta on the GPA map (the selection only shows their bounding range).
An outline, never a fill: a magenta tint over light blue read as the legend's
BLOCKED purple, and the step-through must show the cells' own colours.

An overlay item in the map's view box, redrawn when the highlight changes and when
the map's zoom changes (its items are in gfn coordinates: x = offset in the row,
y = row), so the map module itself needs no change.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QBrush, QColor, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from imemviz.app.highlight import Highlight
from imemviz.app.panes.gpa_map import GpaMapPane
from imemviz.app.panes.map_items import outline_path
from imemviz.app.selection import SelectionModel

MAX_RANGES = 256  # more would cost more to draw than they tell


class MapHighlight(QObject):
    def __init__(self, pane: GpaMapPane, selection: SelectionModel) -> None:
        super().__init__(pane)
        self.pane = pane
        self.item = QGraphicsPathItem()
        pen = QPen(QColor(200, 0, 140), 2.5)
        pen.setCosmetic(True)  # a single page stays visible at any zoom
        self.item.setPen(pen)
        # An outline with a white halo, never a tint: a fill would turn the legend's
        # colours into others (magenta over light blue reads as BLOCKED purple).
        self.item.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        self.item.setZValue(22)
        self.halo = QGraphicsPathItem()
        hpen = QPen(QColor(255, 255, 255), 5.0)
        hpen.setCosmetic(True)
        self.halo.setPen(hpen)
        self.halo.setZValue(21)
        pane.vb.addItem(self.halo, ignoreBounds=True)
        pane.vb.addItem(self.item, ignoreBounds=True)
        self.highlight: Highlight | None = None
        self._row_gfns = 0
        selection.highlighted.connect(self.set_highlight)
        pane.viewChanged.connect(lambda _text: self._redraw_if_zoomed())

    def set_highlight(self, hl: Highlight | None) -> None:
        self.highlight = hl
        self.redraw()

    def _redraw_if_zoomed(self) -> None:
        if self.pane.layout_.row_gfns != self._row_gfns:
            self.redraw()

    def redraw(self) -> None:
        hl = self.highlight
        row = self.pane.layout_.row_gfns
        self._row_gfns = row
        if hl is None or not hl.gfns:
            self.item.hide()
            self.halo.hide()
            return
        lay = self.pane.layout_
        path = outline_path(lay.display_ranges(hl.gfns[:MAX_RANGES]), row)
        self.item.setPath(path)
        self.halo.setPath(path)
        self.item.show()
        self.halo.show()

    def ranges(self) -> tuple[tuple[int, int], ...]:
        """What the overlay outlines (tests)."""
        if self.highlight is None or not self.item.isVisible():
            return ()
        return self.highlight.gfns[:MAX_RANGES]
