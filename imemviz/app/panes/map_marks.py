"""The GPA map's change marks and severe-outcome glyphs (see imemviz/app/marks.py).

Items in the map's view box (view coordinates: x = offset in the row, y = row):
a white halo path under a black dashed path outline every changed gfn range,
with a ring around each range drawn smaller than `MIN_MARK_PX` on screen; the
paths follow the zoom (rebuilt when the map's view changes) and fade with the
controller's opacity.  A severe outcome gets a glyph at its gfn (drawn at a
fixed size in pixels) with a short label; it stays until the banner goes.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject, QGraphicsPathItem

from imemviz.app.marks import MIN_MARK_PX, MarkController
from imemviz.app.panes.gpa_map import GpaMapPane
from imemviz.app.panes.map_items import outline_path
from imemviz.model.changes import Changes, Severe

HALO = QColor(255, 255, 255)
INK = QColor(0, 0, 0)
HALO_PX = 6.0
INK_PX = 3.0
DASHES = [2.5, 1.5]  # in pen widths: 7.5 px dashes, 4.5 px gaps
SEVERE_INK = QColor(176, 0, 32)  # the glyph's red: on a white disc, never a cell fill
MAX_RINGS = 64


def mark_pens() -> tuple[QPen, QPen]:
    """(halo, ink) pens of a change mark; cosmetic, so the width is in screen pixels."""
    halo = QPen(HALO, HALO_PX)
    halo.setCosmetic(True)
    halo.setJoinStyle(Qt.MiterJoin)
    ink = QPen(INK, INK_PX)
    ink.setCosmetic(True)
    ink.setDashPattern(DASHES)
    ink.setJoinStyle(Qt.MiterJoin)
    return halo, ink


class MapMarks:
    """Change marks on the GPA map, driven by a `MarkController`."""

    def __init__(self, pane: GpaMapPane, marks: MarkController) -> None:
        self.pane = pane
        self.marks = marks
        halo_pen, ink_pen = mark_pens()
        self.halo = QGraphicsPathItem()
        self.halo.setPen(halo_pen)
        self.halo.setZValue(26)
        self.ink = QGraphicsPathItem()
        self.ink.setPen(ink_pen)
        self.ink.setZValue(27)
        for it in (self.halo, self.ink):
            it.setBrush(QBrush(Qt.NoBrush))
            it.hide()
            pane.vb.addItem(it, ignoreBounds=True)
        self.changes: Changes | None = None
        self.rings: list[tuple[int, int]] = []  # ranges drawn with a ring (tests)
        self.glyphs: list[SevereGlyph] = []
        marks.marked.connect(self.set_changes)
        marks.opacityChanged.connect(self._set_opacity)
        pane.viewChanged.connect(lambda _text: self.rebuild())

    def set_changes(self, changes: Changes | None) -> None:
        self.changes = changes
        self.rebuild()

    def _set_opacity(self, a: float) -> None:
        for it in (self.halo, self.ink):
            it.setOpacity(a)
            it.setVisible(a > 0 and self.changes is not None)

    def rebuild(self) -> None:
        ch = self.changes
        lay = self.pane.layout_
        if ch is None or not ch.gfns:
            self.halo.hide()
            self.ink.hide()
            self.rings = []
        else:
            path = outline_path(ch.gfns, lay.row_gfns)
            r = lay.row_gfns
            px_x = max(lay.width, 1.0) / r  # screen pixels per gfn along a row
            px_y = lay.row_px()
            radius = MIN_MARK_PX / 2 + 3
            rings = []
            for a, b in ch.gfns:
                rows = (b - 1) // r - a // r + 1
                w = (b - a) * px_x if rows == 1 else lay.width
                h = rows * px_y
                if w >= MIN_MARK_PX and h >= MIN_MARK_PX:
                    continue
                rings.append((a, b))
                if len(rings) > MAX_RINGS:
                    continue
                mid = (a + b) / 2 if rows == 1 else a
                cx = mid % r if rows == 1 else (a % r) + 0.5
                cy = a // r + rows / 2
                path.addEllipse(QPointF(cx, cy), radius / px_x, radius / px_y)
            self.rings = rings
            self.halo.setPath(path)
            self.ink.setPath(path)
            self._set_opacity(self.marks.opacity())
        for g in self.glyphs:
            g.place(lay)

    # ------------------------------------------------------------------ severe
    def set_severe(self, severe: Severe | None) -> None:
        for g in self.glyphs:
            self.pane.vb.removeItem(g)
        self.glyphs = []
        if severe is None or severe.gfn is None:
            return
        g = SevereGlyph(severe)
        self.pane.vb.addItem(g, ignoreBounds=True)
        self.glyphs.append(g)
        g.place(self.pane.layout_)

    def shown_rings(self) -> list[tuple[int, int]]:
        return list(self.rings) if self.ink.isVisible() else []


class SevereGlyph(QGraphicsObject):
    """A red-on-white warning disc pointing at a gfn, with its title beside it, in screen
    pixels.  The disc sits up and to the right of the page, joined to it by a short
    leader, so the page's own colour stays visible under the mark."""

    SIZE = 26.0
    OFFSET = QPointF(24.0, -24.0)  # the disc's centre from the page's centre

    def __init__(self, severe: Severe) -> None:
        super().__init__()
        self.severe = severe
        self.setFlag(QGraphicsItem.ItemIgnoresTransformations, True)
        self.setZValue(45)
        self._font = QFont()
        self._font.setPixelSize(13)
        self._font.setBold(True)
        self._text = f"{severe.title} here"
        fm = QFontMetricsF(self._font)
        self._text_w = fm.horizontalAdvance(self._text) + 12
        self.setToolTip(severe.detail)

    def place(self, lay) -> None:
        g = self.severe.gfn
        if g is None:
            return
        r = lay.row_gfns
        self.setPos(QPointF((g % r) + 0.5, g // r + 0.5))

    def boundingRect(self) -> QRectF:
        s, o = self.SIZE, self.OFFSET
        return QRectF(-4, o.y() - s / 2 - 4, o.x() + s / 2 + 12 + self._text_w, s / 2 - o.y() + 8)

    def paint(self, painter: QPainter, *args) -> None:
        s, o = self.SIZE, self.OFFSET
        painter.setRenderHint(QPainter.Antialiasing)
        # The leader: from just outside the page's centre to the disc.
        start = QPointF(o.x(), o.y()) * (6.0 / (o.x() ** 2 + o.y() ** 2) ** 0.5)
        for pen in (QPen(QColor(255, 255, 255), 5), QPen(SEVERE_INK, 2.5)):
            painter.setPen(pen)
            painter.drawLine(start, o)
        disc = QRectF(o.x() - s / 2, o.y() - s / 2, s, s)
        painter.setPen(QPen(QColor(255, 255, 255), 6))
        painter.setBrush(QColor(255, 255, 255))
        painter.drawEllipse(disc)
        painter.setPen(QPen(SEVERE_INK, 3.5))
        painter.drawEllipse(disc.adjusted(1.5, 1.5, -1.5, -1.5))
        painter.setFont(self._font)
        mark = "✕" if self.severe.kind in ("td_killed", "vm_dead") else "!"
        painter.drawText(disc, Qt.AlignCenter, mark)
        box = QRectF(o.x() + s / 2 + 6, o.y() - 11, self._text_w, 22)
        painter.setPen(QPen(SEVERE_INK, 1.5))
        painter.setBrush(QColor(255, 255, 255, 235))
        painter.drawRoundedRect(box, 4, 4)
        painter.drawText(box, Qt.AlignCenter, self._text)
