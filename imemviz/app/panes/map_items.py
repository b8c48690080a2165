"""pyqtgraph items of the GPA map: hex address axes, per-page labels, outline paths."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QPainter,
    QPainterPath,
    QPen,
    QPolygonF,
    QStaticText,
    QTransform,
)
from PySide6.QtWidgets import QGraphicsObject

from imemviz.app.palette import LEGEND_BY_CODE
from imemviz.app.panes.map_layout import MapLayout, fmt_gpa, nice_step, staircase
from imemviz.model.raster import Code
from imemviz.model.units import fmt_size

# Short names drawn inside cells when zoomed in far enough.
SHORT = {
    Code.OUTSIDE: "",
    Code.HOLE: "hole",
    Code.SHARED_EMPTY: "",
    Code.PRIVATE_EMPTY: "",
    Code.SHARED_POPULATED: "S page",
    Code.SHARED_KEPT: "S+folio",
    Code.PRIVATE_ALLOCATED: "P folio",
    Code.NO_BACKING: "no gmem",
    Code.SHARED_1G: "S 1G",
    Code.SHARED_2M: "S 2M",
    Code.SHARED_4K: "S 4K",
    Code.PRIVATE_1G: "P 1G",
    Code.PRIVATE_2M: "P 2M",
    Code.PRIVATE_4K: "P 4K",
    Code.BLOCKED: "BLOCKED",
    Code.PENDING_1G: "PEND 1G",
    Code.PENDING_2M: "PEND 2M",
    Code.PENDING_4K: "PENDING",
    Code.HWPOISON: "POISON",
}


def _dark(code: int) -> bool:
    r, g, b = LEGEND_BY_CODE[Code(code)].rgb
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 128


DARK = [_dark(c) for c in Code]


class GpaAxis(pg.AxisItem):
    """Left axis: the GPA of each row's first page, in hex, on power-of-two rows."""

    def __init__(self, layout: Callable[[], MapLayout], **kw) -> None:
        super().__init__("left", **kw)
        self._layout = layout
        self.enableAutoSIPrefix(False)

    def tickValues(self, minVal: float, maxVal: float, size: float):
        minVal, maxVal = sorted((minVal, maxVal))  # an inverted view gives them reversed
        if size <= 0 or maxVal <= minVal:
            return []
        px = size / (maxVal - minVal)  # pixels per display row
        step = nice_step(28 / px)
        lo, hi = math.ceil(minVal / step), math.floor(maxVal / step)
        values = [k * step for k in range(lo, hi + 1)]
        fm = self._layout().foldmap()
        if fm:
            # The row after each fold band gets its address: the jump is on the axis.
            after = [f.drow + fm.band for f in fm.folds_between(minVal - fm.band, maxVal)]
            after = [a for a in after if minVal <= a <= maxVal]
            values = [v for v in values if all(abs(v - a) * px >= 16 for a in after)]
            values = sorted(set(values) | set(after))
        return [(step, values)]

    def tickStrings(self, values, scale, spacing):
        lay = self._layout()
        fm = lay.foldmap()
        out = []
        for v in values:
            row, fold = fm.at_display_row(round(v))
            out.append("" if fold >= 0 else fmt_gpa(row * lay.row_gfns * 4096))
        return out


class OffsetAxis(pg.AxisItem):
    """Bottom axis: the offset inside a row, as a size (+0, +4K, +2M ...)."""

    def __init__(self, layout: Callable[[], MapLayout], **kw) -> None:
        super().__init__("bottom", **kw)
        self._layout = layout
        self.enableAutoSIPrefix(False)

    def tickValues(self, minVal: float, maxVal: float, size: float):
        minVal, maxVal = sorted((minVal, maxVal))
        if size <= 0 or maxVal <= minVal:
            return []
        r = self._layout().row_gfns
        maxVal = min(maxVal, r)  # no ticks over the label gutter
        step = nice_step(70 * r / max(self._layout().width, 1))
        lo, hi = math.ceil(minVal / step), math.floor(maxVal / step)
        return [(step, [k * step for k in range(lo, hi + 1)])]

    def tickStrings(self, values, scale, spacing):
        return ["+" + fmt_size(round(v) * 4096) for v in values]


def outline_path(ranges: Iterable[tuple[int, int]], row_gfns: int) -> QPainterPath:
    path = QPainterPath()
    for a, b in ranges:
        if b > a:
            path.addPolygon(QPolygonF([QPointF(x, y) for x, y in staircase(a, b, row_gfns)]))
            path.closeSubpath()
    return path


class CellLabels(QGraphicsObject):
    """Text inside each visible cell (GPA and state) once cells are large enough.

    Texts are QStaticText, cached: a repaint after an op lays out nothing again.
    """

    MIN_W, MIN_H = 58.0, 26.0
    CACHE_MAX = 4096

    def __init__(self) -> None:
        super().__init__()
        self._codes: np.ndarray | None = None
        self._row0 = 0
        self._layout: MapLayout | None = None
        self._font = QFont()
        self._font.setPixelSize(10)
        self._line = 12.0
        self._texts: dict[str, QStaticText] = {}
        self.setZValue(5)

    def set_data(self, codes: np.ndarray | None, row0: int, layout: MapLayout) -> None:
        self.prepareGeometryChange()
        self._codes, self._row0, self._layout = codes, row0, layout
        self.update()

    def active(self) -> bool:
        lay = self._layout
        if lay is None or self._codes is None or self._codes.shape[1] != lay.row_gfns:
            return False
        w, h = lay.cell_px()
        return w >= self.MIN_W and h >= self.MIN_H

    def boundingRect(self) -> QRectF:
        if self._codes is None or self._layout is None:
            return QRectF()
        rows = self._codes.shape[0]
        return QRectF(0, self._row0, self._layout.row_gfns, rows)

    def _text(self, s: str) -> QStaticText:
        t = self._texts.get(s)
        if t is None:
            if len(self._texts) > self.CACHE_MAX:
                self._texts.clear()
            t = QStaticText(s)
            t.setTextFormat(Qt.PlainText)
            t.prepare(QTransform(), self._font)
            self._texts[s] = t
        return t

    def paint(self, painter: QPainter, *args) -> None:
        if not self.active():
            return
        assert self._codes is not None and self._layout is not None
        lay = self._layout
        tr = painter.transform()
        painter.save()
        painter.resetTransform()
        painter.setFont(self._font)
        r = lay.row_gfns
        y0 = max(self._row0, int(lay.top))
        y1 = min(self._row0 + self._codes.shape[0], math.ceil(lay.top + lay.rows_visible()))
        pens = (QPen(QColor(20, 20, 20)), QPen(QColor(255, 255, 255)))
        origin = tr.map(QPointF(0, 0))
        cw = tr.map(QPointF(1, 0)).x() - origin.x()
        ch = tr.map(QPointF(0, 1)).y() - origin.y()
        # A light grid: every page its own tile.
        painter.setPen(QPen(QColor(255, 255, 255, 170), 1))
        x0, x1 = origin.x(), origin.x() + r * cw
        fm = lay.foldmap()
        linear = [fm.at_display_row(d) for d in range(y0, y1)]
        for row in range(y0, y1 + 1):
            y = origin.y() + row * ch
            painter.drawLine(QPointF(x0, y), QPointF(x1, y))
        for i, (_lin, fold) in enumerate(linear):
            if fold >= 0:
                continue
            ya, yb = origin.y() + (y0 + i) * ch, origin.y() + (y0 + i + 1) * ch
            for col in range(1, r):
                x = origin.x() + col * cw
                painter.drawLine(QPointF(x, ya), QPointF(x, yb))
        for row in range(y0, y1):
            lin, fold = linear[row - y0]
            if fold >= 0:
                continue
            line = self._codes[row - self._row0]
            ytop = origin.y() + row * ch + 2
            for col in range(r):
                code = int(line[col])
                if code == Code.OUTSIDE:
                    continue
                x = origin.x() + col * cw + 3
                painter.setPen(pens[DARK[code]])
                painter.drawStaticText(
                    QPointF(x, ytop), self._text(fmt_gpa((lin * r + col) * 4096))
                )
                short = SHORT[Code(code)]
                if short:
                    painter.drawStaticText(
                        QPointF(x, ytop + ch - 4 - self._line), self._text(short)
                    )
        painter.restore()
