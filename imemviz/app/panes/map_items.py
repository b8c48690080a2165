"""pyqtgraph items of the GPA map: hex address axes, per-page labels, outline paths."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QPainter,
    QPainterPath,
    QPen,
    QPicture,
    QPolygonF,
    QStaticText,
    QTransform,
)
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject

from imemviz.app.palette import LEGEND_BY_CODE, is_dark
from imemviz.app.panes.label_layer import LabelLayer
from imemviz.app.panes.map_layout import MapLayout, fmt_gpa, nice_step, staircase
from imemviz.model.raster import Code
from imemviz.model.units import fmt_size

# Short names drawn inside cells when zoomed in far enough, and whether text on a
# code's colour is drawn light (both from the palette).
SHORT = {code: LEGEND_BY_CODE[code].short for code in Code}
DARK = [is_dark(c) for c in Code]
SHORT_BY_CODE = [SHORT[c] for c in Code]  # indexed by the int code: no Code() per cell
OUTSIDE = int(Code.OUTSIDE)
LABELS_AFTER_MS = 8  # a new session's cell labels: a paint this long after its cells'


def warm_picture(axis: pg.AxisItem) -> bool:
    """Draw an axis's picture now, as its `paint` would (pyqtgraph keeps it until the
    range or the size changes): a new session's first frame then only plays it.  True
    when there was one to draw."""
    if axis.picture is not None or not axis.isVisible():
        return False
    picture = QPicture()
    painter = QPainter(picture)
    try:
        if axis.style["tickFont"]:
            painter.setFont(axis.style["tickFont"])
        specs = axis.generateDrawSpecs(painter)
        if specs is not None:
            axis.drawPicture(painter, *specs)
    finally:
        painter.end()
    axis.picture = picture
    return True


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
        # Only where there are rows: not in the margins, not below the guest's end.
        minVal, maxVal = max(minVal, 0), min(maxVal, self._layout().rows_total())
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
    """Text inside each visible cell once cells are large enough: its GPA and its state
    ("P 4K") in cells of FULL_PX and more, the state alone in cells of SHORT_PX (the
    row's address is on the axis), nothing below.  Sizes grow with the UI scale
    (presentation mode).  Texts are QStaticText, cached: a repaint after an op lays out
    nothing again; the grid and texts are kept as an image (`LabelLayer`) in which an
    op's new raster redraws only the rows whose codes changed.
    """

    FULL_PX = (58.0, 26.0)
    SHORT_PX = (30.0, 14.0)
    MIN_W, MIN_H = FULL_PX
    CACHE_MAX = 4096

    def __init__(self) -> None:
        super().__init__()
        self._codes: np.ndarray | None = None
        self._row0 = 0
        self._layout: MapLayout | None = None
        self._texts: dict[str, QStaticText] = {}
        self._layer = LabelLayer()
        # Set for a new session's first frame: a full draw of the labels waits a turn.
        self.defer = False
        self.deferred = 0  # paints that left the labels to the next turn (tests)
        self.set_scale(1.0)
        self.setZValue(5)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    def set_scale(self, scale: float) -> None:
        self.scale_ = scale
        self._font = QFont()
        self._font.setPixelSize(round(10 * scale))
        self._line = 12.0 * scale
        self._text_h = QFontMetricsF(self._font).height() + 1
        self._texts = {}
        self._layer.invalidate()
        self.update()

    def set_data(self, codes: np.ndarray | None, row0: int, layout: MapLayout) -> None:
        self.prepareGeometryChange()
        self._codes, self._row0, self._layout = codes, row0, layout
        self.update()

    def tier(self) -> int:
        """2: address and state, 1: state only, 0: no labels at this zoom."""
        lay = self._layout
        if lay is None or self._codes is None or self._codes.shape[1] != lay.row_gfns:
            return 0
        return self._tier_of(lay)

    def _tier_of(self, lay: MapLayout) -> int:
        w, h = lay.cell_px()
        s = self.scale_
        if w >= self.FULL_PX[0] * s and h >= self.FULL_PX[1] * s:
            return 2
        if w >= self.SHORT_PX[0] * s and h >= self.SHORT_PX[1] * s:
            return 1
        return 0

    def active(self) -> bool:
        return self.tier() > 0

    def warm_texts(self, layout: MapLayout, limit: int | None = None) -> tuple[int, bool]:
        """Lay out now the address texts of the cells `layout` shows (QStaticText's
        prepare: ~16 us a text, ~4-8 ms for a view of labelled tiles), so the paint that
        follows only draws them.  A new session's first frame has it done ahead, a slice
        of at most `limit` new texts per turn, while the engine draws the raster (gpa_map's
        warm-up).  How many it made, and whether every text is there."""
        if self._tier_of(layout) != 2:
            return 0, True
        r = layout.row_gfns
        fm = layout.foldmap()
        y0 = max(0, int(layout.top))
        y1 = math.ceil(layout.top + layout.rows_visible())
        made = 0
        for d in range(y0, y1):
            lin, fold = fm.at_display_row(d)
            if fold >= 0:
                continue
            for col in range(r):
                s = fmt_gpa((lin * r + col) * 4096)
                if s not in self._texts:
                    if limit is not None and made >= limit:
                        return made, False
                    self._text(s)
                    made += 1
        return made, True

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
            t.setTextFormat(Qt.TextFormat.PlainText)
            t.prepare(QTransform(), self._font)
            self._texts[s] = t
        return t

    def paint(self, painter: QPainter, option=None, *args) -> None:
        tier = self.tier()
        if not tier:
            return
        assert self._codes is not None and self._layout is not None
        lay = self._layout
        r = lay.row_gfns
        # All the rows in view, whatever this paint exposes: the layer keeps their
        # picture, and a small repaint (a mark's fade) blits the part it needs.
        y0 = max(self._row0, int(lay.top))
        y1 = min(self._row0 + self._codes.shape[0], math.ceil(lay.top + lay.rows_visible()))
        if y1 <= y0:
            return
        tr = painter.transform()
        origin = tr.map(QPointF(0, 0))
        ox, oy = origin.x(), origin.y()
        cw = tr.map(QPointF(1, 0)).x() - ox
        ch = tr.map(QPointF(0, 1)).y() - oy
        fm = lay.foldmap()
        linear = tuple(fm.at_display_row(d) for d in range(y0, y1))
        codes = self._codes[y0 - self._row0 : y1 - self._row0]
        font_px = self._font.pixelSize()
        key = (tier, ox, oy, cw, ch, r, linear, font_px)
        m = 4 * self.scale_
        # Texts start inside their cell and may run a little past the last one.
        bounds = QRectF(ox - m, oy + y0 * ch - m, (r + 1) * cw + 2 * m, (y1 - y0) * ch + 2 * m)

        def band(y: int) -> tuple[float, float]:
            return oy + y * ch, oy + (y + 1) * ch

        def draw(p: QPainter, a: int, b: int) -> None:
            self._draw(p, tier, ox, oy, cw, ch, r, a, b, linear[a - y0 : b - y0], codes[a - y0 :])

        painter.save()
        painter.resetTransform()
        try:
            drawn = self._layer.paint(painter, key, bounds, y0, codes, band, draw, self.defer)
        finally:
            painter.restore()
        if not drawn:
            # A new session's first frame: its cells now, their labels (a full draw of
            # the layer, 5-8 ms) in a paint of their own, a frame later: not a zero
            # timer, which Qt may run before the timers and input already due.
            self.defer = False
            self.deferred += 1
            QTimer.singleShot(LABELS_AFTER_MS, self.update)

    def _draw(
        self,
        painter: QPainter,
        tier: int,
        ox: float,
        oy: float,
        cw: float,
        ch: float,
        r: int,
        y0: int,
        y1: int,
        linear: tuple[tuple[int, int], ...],
        codes: np.ndarray,
    ) -> None:
        """The grid and texts of display rows [y0, y1) (`codes[0]` is row y0's), in view
        pixels: first the lines of every row, then the texts."""
        painter.setFont(self._font)
        pens = (QPen(QColor(20, 20, 20)), QPen(QColor(255, 255, 255)))
        # A light grid: every page its own tile.
        painter.setPen(QPen(QColor(255, 255, 255, 170), 1))
        x0, x1 = ox, ox + r * cw
        # One call for the whole grid (a call per line was ~250 calls of Python a view).
        lines = [QLineF(x0, oy + row * ch, x1, oy + row * ch) for row in range(y0, y1 + 1)]
        xs = [ox + col * cw for col in range(1, r)]
        for i, (_lin, fold) in enumerate(linear):
            if fold >= 0:
                continue
            ya, yb = oy + (y0 + i) * ch, oy + (y0 + i + 1) * ch
            lines.extend(QLineF(x, ya, x, yb) for x in xs)
        painter.drawLines(lines)
        pad = 3 * self.scale_
        # A row's redraw (LabelLayer) clips to its band: its neighbours' texts that stay
        # outside the clip are not drawn (a text's pixels stay in its line's box).
        clip = painter.clipBoundingRect() if painter.hasClipping() else None
        fh = self._text_h

        def shown(y: float) -> bool:
            return clip is None or (y <= clip.bottom() + 1 and y + fh >= clip.top() - 1)

        for row in range(y0, y1):
            lin, fold = linear[row - y0]
            if fold >= 0:
                continue
            line = codes[row - y0]
            ytop = oy + row * ch + 2
            if tier == 2:
                y_gpa, y_short = ytop, ytop + ch - 4 - self._line
                gpa = shown(y_gpa)
            else:
                y_short = ytop + (ch - self._line) / 2 - 2
                gpa = False
            short_shown = shown(y_short)
            if not (gpa or short_shown):
                continue
            pen = -1
            for col, code in enumerate(line.tolist()):
                if code == OUTSIDE:
                    continue
                x = ox + col * cw + pad
                if DARK[code] != pen:  # a pen change per run of like cells, not per cell
                    pen = DARK[code]
                    painter.setPen(pens[pen])
                short = SHORT_BY_CODE[code]
                if gpa:
                    painter.drawStaticText(
                        QPointF(x, y_gpa), self._text(fmt_gpa((lin * r + col) * 4096))
                    )
                if short and short_shown:
                    t = self._text(short)
                    # A state too long for its cell (BLOCKED in a small tile) is left to
                    # the colour: drawn, it ran over the next cells' texts.
                    if t.size().width() <= cw - pad:
                        painter.drawStaticText(QPointF(x, y_short), t)
