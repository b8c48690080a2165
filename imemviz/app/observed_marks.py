"""The check's disagreement marks drawn on the observed window's map.

`imemviz import --check` writes a mark where the real kernel and the model
disagree (`{"mark": {"i", "gfn", "level", "what", "kernel", "model"}}`); the
event log colours its row.  Here each mark up to the scrubbed event is drawn
where it happened: the range of its leaf (gfn aligned to its level) outlined
in red on a white halo — an outline, never a fill, so the page's own colour
stays readable — and a small red "≠" disc beside the page, at a fixed size in
pixels so that a 4K page on a zoomed-out map still shows it.  The disc's
tooltip says what the kernel and the model did; a click on it scrubs to the
event (and selects the page).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject, QGraphicsPathItem

from imemviz.app.panes.map_items import outline_path

INK = QColor(176, 0, 32)  # the severe-outcome red (map_marks.SEVERE_INK)
HALO = QColor(255, 255, 255)
MAX_GLYPHS = 200  # discs drawn at most (the latest marks in view); outlines for all
SPAN = {"4K": 1, "2M": 512, "1G": 512 * 512}


def mark_range(m: dict[str, Any]) -> tuple[int, int]:
    """The gfn range of a mark's leaf: its gfn aligned down to its level's size."""
    n = SPAN.get(str(m.get("level")), 1)
    g = int(m["gfn"])
    return g - g % n, g - g % n + n


def mark_text(m: dict[str, Any]) -> str:
    return (
        f"event {m['i']}: {m['what']} at gfn {int(m['gfn']):#x} ({m.get('level')})\n"
        f"kernel: {m.get('kernel')}\nmodel: {m.get('model')}\nclick: go to the event"
    )


class MarkGlyph(QGraphicsObject):
    """A red "≠" on a white disc beside a page, joined to its centre by a short leader;
    drawn in screen pixels."""

    SIZE = 18.0
    OFFSET = QPointF(13.0, -13.0)  # the disc's centre from the page's centre

    def __init__(self, mark: dict[str, Any]) -> None:
        super().__init__()
        self.mark = mark
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setZValue(46)
        self.setToolTip(mark_text(mark))
        self._font = QFont()
        self._font.setPixelSize(13)
        self._font.setBold(True)

    def disc(self) -> QRectF:
        s, o = self.SIZE, self.OFFSET
        return QRectF(o.x() - s / 2, o.y() - s / 2, s, s)

    def boundingRect(self) -> QRectF:
        return self.disc().adjusted(-4, -4, 4, 4).united(QRectF(-3, -3, 6, 6))

    def paint(self, painter: QPainter, *args) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        o = self.OFFSET
        for pen in (QPen(HALO, 4.5), QPen(INK, 2.0)):
            painter.setPen(pen)
            painter.drawLine(QPointF(0, 0), o)
        d = self.disc()
        painter.setPen(QPen(HALO, 4.0))
        painter.setBrush(HALO)
        painter.drawEllipse(d)
        painter.setPen(QPen(INK, 2.5))
        painter.drawEllipse(d.adjusted(1, 1, -1, -1))
        painter.setFont(self._font)
        painter.drawText(d, Qt.AlignmentFlag.AlignCenter, "≠")

    def hit(self, view: Any, scene_pos: QPointF) -> bool:
        """Whether a point of the scene is on the disc as `view` draws it.  (The scene's
        own item lookup misses items that ignore transformations inside the view box's
        clipped group, so the map's click handler asks here.)"""
        rect = self.deviceTransform(view.viewportTransform()).mapRect(self.disc())
        return rect.adjusted(-2, -2, 2, 2).contains(QPointF(view.mapFromScene(scene_pos)))


class DisagreementMarks:
    """The marks layer of one map pane (an `ObservedMapPane`)."""

    def __init__(self, pane: Any, on_click: Callable[[dict], None]) -> None:
        self.pane = pane
        self.on_click = on_click
        self.marks: list[dict[str, Any]] = []
        self.index = -1
        self.glyphs: list[MarkGlyph] = []
        self.halo = QGraphicsPathItem()
        pen = QPen(HALO, 5.0)
        pen.setCosmetic(True)
        self.halo.setPen(pen)
        self.halo.setZValue(28)
        self.ink = QGraphicsPathItem()
        pen = QPen(INK, 2.0)
        pen.setCosmetic(True)
        pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
        self.ink.setPen(pen)
        self.ink.setZValue(29)
        for it in (self.halo, self.ink):
            it.setBrush(QBrush(Qt.BrushStyle.NoBrush))
            pane.vb.addItem(it, ignoreBounds=True)
        pane.viewChanged.connect(lambda _text: self.rebuild())

    def click(self, scene_pos: QPointF) -> bool:
        """A left click on the map at `scene_pos`: on a disc, go to its mark (True)."""
        for g in reversed(self.glyphs):
            if g.hit(self.pane.view, scene_pos):
                self.on_click(g.mark)
                return True
        return False

    def set_marks(self, marks: list[dict[str, Any]]) -> None:
        self.marks = [m for m in marks if m.get("gfn") is not None]
        self.rebuild()

    def set_index(self, i: int) -> None:
        """Show the marks of events up to `i` (the state the map shows)."""
        if i != self.index:
            self.index = i
            self.rebuild()

    def shown(self) -> list[dict[str, Any]]:
        return [m for m in self.marks if int(m["i"]) <= self.index]

    def rebuild(self) -> None:
        lay = self.pane.layout_
        shown = self.shown()
        ranges = [r for r in (mark_range(m) for m in shown) if r[0] < lay.extent]
        path = outline_path(lay.display_ranges(ranges), lay.row_gfns)
        self.halo.setPath(path)
        self.ink.setPath(path)
        a, b = lay.visible_gfns()
        in_view = [m for m in shown if a <= int(m["gfn"]) < b][-MAX_GLYPHS:]
        # The discs of marks still shown stay (a click in progress keeps its item).
        old = {id(g.mark): g for g in self.glyphs}
        self.glyphs = []
        for m in in_view:
            g = old.pop(id(m), None)
            if g is None:
                g = MarkGlyph(m)
                self.pane.vb.addItem(g, ignoreBounds=True)
            x, y = lay.cell_of(int(m["gfn"]))
            g.setPos(QPointF(x + 0.5, y + 0.5))
            self.glyphs.append(g)
        for g in old.values():
            self.pane.vb.removeItem(g)
