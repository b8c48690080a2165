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
from imemviz.app.panes.gpa_map import MARGIN_PX, GpaMapPane
from imemviz.app.panes.map_items import outline_path
from imemviz.model.changes import Changes, Severe

HALO = QColor(255, 255, 255)
INK = QColor(0, 0, 0)
HALO_PX = 6.0
INK_PX = 3.0
DASHES = [2.5, 1.5]  # in pen widths: 7.5 px dashes, 4.5 px gaps
SEVERE_INK = QColor(176, 0, 32)  # the glyph's red: on a white disc, never a cell fill
MAX_RINGS = 64
RING_PX = 15.0  # radius of the ring around a change too small to see


def mark_pens(scale: float = 1.0) -> tuple[QPen, QPen]:
    """(halo, ink) pens of a change mark; cosmetic, so the width is in screen pixels
    (times the UI scale: presentation mode draws lines bigger)."""
    halo = QPen(HALO, HALO_PX * scale)
    halo.setCosmetic(True)
    halo.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
    ink = QPen(INK, INK_PX * scale)
    ink.setCosmetic(True)
    ink.setDashPattern(DASHES)
    ink.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
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
            it.setBrush(QBrush(Qt.BrushStyle.NoBrush))
            it.hide()
            pane.vb.addItem(it, ignoreBounds=True)
        self.changes: Changes | None = None
        self.rings: list[tuple[int, int]] = []  # ranges drawn with a ring (tests)
        self.glyphs: list[SevereGlyph] = []
        self.scale = 1.0  # the map's UI scale the items are drawn at
        self.tag = Tag(dashed=True)
        self.tag.setZValue(44)
        self.tag.hide()
        pane.vb.addItem(self.tag, ignoreBounds=True)
        marks.marked.connect(self.set_changes)
        marks.opacityChanged.connect(self._set_opacity)
        pane.viewChanged.connect(lambda _text: self.rebuild())

    def set_changes(self, changes: Changes | None) -> None:
        self.changes = changes
        self.rebuild()

    def _set_opacity(self, a: float) -> None:
        on = a > 0 and self.changes is not None and bool(self.changes.gfns)
        for it in (self.halo, self.ink, self.tag):
            it.setOpacity(a)
            it.setVisible(on)
        # The tag only says what a ring stands for (a change too small to see; a big
        # outline speaks for itself and the status bar names it), and not next to a
        # severe outcome's glyph, which names the place already.
        if not self.rings or self.glyphs:
            self.tag.hide()

    def _rescale(self) -> None:
        """Follow the map's UI scale (presentation mode): thicker lines, bigger rings,
        tags and glyphs, as the map's own outlines and labels grow."""
        scale = getattr(self.pane, "ui_scale", 1.0)
        if scale == self.scale:
            return
        self.scale = scale
        halo_pen, ink_pen = mark_pens(scale)
        self.halo.setPen(halo_pen)
        self.ink.setPen(ink_pen)
        self.tag.set_scale(scale)
        for g in self.glyphs:
            g.set_scale(scale)

    def rebuild(self) -> None:
        self._rescale()
        ch = self.changes
        lay = self.pane.layout_
        if ch is None or not ch.gfns:
            self.halo.hide()
            self.ink.hide()
            self.tag.hide()
            self.rings = []
        else:
            # In display coordinates: rows folded into a band are not drawn (map_fold.py).
            r = lay.row_gfns
            displayed = [(g, lay.display_ranges([g])) for g in ch.gfns]
            shown = [(g, d[0]) for g, d in displayed if d]
            path = outline_path([d for _g, d in shown], r)
            px_x = max(lay.width, 1.0) / r  # screen pixels per gfn along a row
            px_y = lay.row_px()
            radius = RING_PX * self.scale
            rings = []
            for g, (a, b) in shown:
                rows = (b - 1) // r - a // r + 1
                w = (b - a) * px_x if rows == 1 else lay.width
                h = rows * px_y
                if w >= MIN_MARK_PX * self.scale and h >= MIN_MARK_PX * self.scale:
                    continue
                rings.append(g)
                if len(rings) > MAX_RINGS:
                    continue
                mid = (a + b) / 2 if rows == 1 else a
                cx = mid % r if rows == 1 else (a % r) + 0.5
                cy = a // r + rows / 2
                # Kept inside the view: a change in the first or last row is still ringed.
                top = lay.top + (radius + 2 - MARGIN_PX) / px_y
                bottom = lay.top + lay.rows_visible() - (radius + 2 - MARGIN_PX) / px_y
                cy = min(max(cy, top), max(top, bottom))
                edge = (radius + 2) / px_x
                cx = min(max(cx, edge), max(edge, r - edge))
                path.addEllipse(QPointF(cx, cy), radius / px_x, radius / px_y)
            self.rings = rings
            self.halo.setPath(path)
            self.ink.setPath(path)
            # A tag naming the action next to the first change in view (or the first),
            # above it, or below it when that would leave the view (shown with rings).
            g0 = self._first_in_view(ch.gfns)
            a0, b0 = (lay.display_ranges([g0]) or [g0])[0]
            rows = (b0 - 1) // r - a0 // r + 1
            self.tag.set_text(_tag_text(self.marks.label, ch))
            gap = radius + 4 if any(x <= g0[0] < y for x, y in rings) else 6.0
            tall = self.tag.height() + 8
            y_px = (a0 // r - lay.top) * px_y
            below = y_px - gap - tall < 0
            self.tag.anchor = gap if not below else -(gap + tall + (px_y if rows == 1 else 0))
            x = (a0 % r) + (b0 - a0 if rows == 1 else 1) / 2
            # Not past the right edge of the rows (the tag is ~300 px wide).
            x = min(x, max(0.0, r - (self.tag.width() + 8) / px_x))
            self.tag.setPos(QPointF(x, a0 // r))
            self._set_opacity(self.marks.opacity())
        for glyph in self.glyphs:
            glyph.place(lay)

    def _first_in_view(self, ranges) -> tuple[int, int]:
        a, b = self.pane.layout_.visible_gfns()
        for s, e in ranges:
            if s < b and a < e:
                return max(s, a), min(e, b)
        return ranges[0]

    # ------------------------------------------------------------------ severe
    def set_severe(self, severe: Severe | None) -> None:
        for g in self.glyphs:
            self.pane.vb.removeItem(g)
        self.glyphs = []
        if severe is None or severe.gfn is None:
            return
        g = SevereGlyph(severe)
        g.set_scale(self.scale)
        self.pane.vb.addItem(g, ignoreBounds=True)
        self.glyphs.append(g)
        g.place(self.pane.layout_)

    def shown_rings(self) -> list[tuple[int, int]]:
        return list(self.rings) if self.ink.isVisible() else []


def _tag_text(label: str, ch: Changes) -> str:
    n = ch.pages
    what = f"{n:,} page{'s' if n != 1 else ''} changed"
    return f"{label}: {what}" if label else what


class Tag(QGraphicsObject):
    """A short text in a white box, drawn at a fixed size in pixels above its anchor
    point (`anchor` px up, so it clears a ring or the cell it names)."""

    def __init__(self, text: str = "", dashed: bool = False) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self._font = QFont()
        self._font.setPixelSize(13)
        self._font.setBold(True)
        self.dashed = dashed
        self.anchor = 6.0
        self.ui_scale = 1.0
        self._text = ""
        self._w = 0.0
        self.set_text(text)

    def set_scale(self, scale: float) -> None:
        """Text and lines `scale` times their size (presentation mode)."""
        if scale == self.ui_scale and self._w:
            return
        self.ui_scale = scale
        self._font.setPixelSize(round(13 * scale))
        self.set_text(self._text)

    def height(self) -> float:
        return 22.0 * self.ui_scale

    def set_text(self, text: str) -> None:
        self.prepareGeometryChange()
        self._text = text
        self._w = QFontMetricsF(self._font).horizontalAdvance(text) + 16 * self.ui_scale
        self.update()

    def text(self) -> str:
        return self._text

    def width(self) -> float:
        return self._w

    def boundingRect(self) -> QRectF:
        h = self.height()
        return QRectF(-4, -self.anchor - h - 8, self._w + 8, h + 10)

    def paint(self, painter: QPainter, *args) -> None:
        h = self.height()
        box = QRectF(0, -self.anchor - h - 4, self._w, h)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        halo, ink = mark_pens()
        halo.setWidthF(4.0 * self.ui_scale)
        ink.setWidthF(2.0 * self.ui_scale)
        painter.setBrush(QColor(255, 255, 255))
        painter.setPen(halo)
        painter.drawRoundedRect(box, 3, 3)
        painter.setPen(ink if self.dashed else QPen(INK, 1.5))
        painter.drawRoundedRect(box, 3, 3)
        painter.setPen(QPen(INK))
        painter.setFont(self._font)
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self._text)


class SevereGlyph(QGraphicsObject):
    """A red-on-white warning disc pointing at a gfn, with its title beside it, in screen
    pixels.  The disc sits up and to the right of the page, joined to it by a short
    leader, so the page's own colour stays visible under the mark."""

    SIZE = 26.0
    UP = QPointF(24.0, -24.0)  # the disc's centre from the page's centre
    DOWN = QPointF(24.0, 24.0)  # ... when the page is near the top of the view

    def __init__(self, severe: Severe) -> None:
        super().__init__()
        self.severe = severe
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setZValue(45)
        self._font = QFont()
        self._font.setPixelSize(13)
        self._font.setBold(True)
        self._text = f"{severe.title} here"
        fm = QFontMetricsF(self._font)
        self._text_w = fm.horizontalAdvance(self._text) + 12
        self.offset = self.UP
        self.setToolTip(severe.detail)

    def set_scale(self, scale: float) -> None:
        """Drawn `scale` times its size (presentation mode): the item's own transform."""
        self.setScale(scale)

    def place(self, lay) -> None:
        g = self.severe.gfn
        if g is None:
            return
        x, y = lay.cell_of(g)  # display coordinates (a folded page: its band)
        y_px = (y - lay.top) * lay.row_px()
        self.prepareGeometryChange()
        self.offset = self.DOWN if y_px < self.SIZE + 16 else self.UP
        self.setPos(QPointF(x + 0.5, y + 0.5))

    def boundingRect(self) -> QRectF:
        s = self.SIZE
        return QRectF(-4, -s - 28, 28 + s + 12 + self._text_w, 2 * s + 56)

    def paint(self, painter: QPainter, *args) -> None:
        s, o = self.SIZE, self.offset
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
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
        painter.drawText(disc, Qt.AlignmentFlag.AlignCenter, mark)
        box = QRectF(o.x() + s / 2 + 6, o.y() - 11, self._text_w, 22)
        painter.setPen(QPen(SEVERE_INK, 1.5))
        painter.setBrush(QColor(255, 255, 255, 235))
        painter.drawRoundedRect(box, 4, 4)
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self._text)
