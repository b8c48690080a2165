"""Two layers of the GPA map drawn over its image: state patterns and fold bands.

`PatternLayer` draws the palette's second channel (`imemviz.app.palette.Pattern`):
dots, stripes, crosses over every run of cells whose state has one, wherever the run
is at least `MIN_PATTERN_PX` on screen both ways.  The runs come from the raster
(`pattern_runs`, numpy), so the cost is the runs on screen, not the guest.
`FoldBands` draws each fold band (`map_fold`): torn edges, and what was folded away
("1.9G private, no folio · 0x1200000–0x7bffffff"), so the address jump is explicit.

Both paint in device pixels (the painter's transform reset), so patterns keep their
spacing at every zoom and text stays crisp.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetrics,
    QPainter,
    QPen,
    QPixmap,
    QPolygonF,
    QStaticText,
    QTransform,
)
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject

from imemviz.app.palette import LEGEND_BY_CODE, PATTERN_OF, Pattern, is_dark
from imemviz.app.panes.map_layout import MapLayout, fmt_gpa
from imemviz.model.raster import NCODES, Code

MIN_PATTERN_PX = 6.0  # a run smaller than this on screen (either way) shows its colour only
MAX_PATTERN_RUNS = 6000
MAX_LABELLED_BANDS = 80  # more fold bands than this on screen: only the first get a label  # beyond this many runs on screen, only the first ones get a pattern
STRIP_PAD = 3  # px above and below a fold band's picture: its torn edges stick out
ZIG_AMP = 2.0  # px: how far a torn edge zigzags up and down
TILE = 8  # pattern tile size in pixels at UI scale 1

# Which codes carry a drawn pattern (holes have their own hatch item on the map).
_HAS_PATTERN = np.array(
    [PATTERN_OF[c] not in (Pattern.NONE, Pattern.HATCH) for c in range(NCODES)]
    + [False] * (256 - NCODES),
    dtype=bool,
)


def exposed_rows(option: object, top: float, bottom: float) -> tuple[float, float]:
    """The display rows [top, bottom) of the view that this paint must draw: only the
    exposed part when Qt repaints a small region (a change mark fading, the hover box),
    so a layer does not redo every band and label of the view for a few pixels."""
    ex = getattr(option, "exposedRect", None)
    if ex is None:
        return top, bottom
    ex = ex() if callable(ex) else ex
    if ex.isEmpty():
        return top, bottom
    return max(top, ex.top()), min(bottom, ex.bottom())


def size_text(n: int) -> str:
    """Bytes for a label: 7.5M, 1.9G, 4K (binary units, one decimal when it matters)."""
    for suffix, shift in (("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.1f}{suffix}" if v < 100 and round(v, 1) != int(v) else f"{v:.0f}{suffix}"
    return f"{n}B"


def pattern_runs(codes: np.ndarray) -> np.ndarray:
    """(n, 4) int64 rows (raster row, first col, end col, code) of the runs of cells whose
    code has a pattern, row by row (no Qt)."""
    if codes.size == 0:
        return np.zeros((0, 4), np.int64)
    cols = codes.shape[1]
    flat = codes.reshape(-1)
    start = np.ones(flat.shape, bool)
    start[1:] = flat[1:] != flat[:-1]
    start[::cols] = True  # every row starts a run
    idx = np.flatnonzero(start)
    ends = np.append(idx[1:], flat.size)
    code = flat[idx]
    keep = _HAS_PATTERN[code]
    idx, ends, code = idx[keep], ends[keep], code[keep]
    row, c0 = np.divmod(idx, cols)
    c1 = ends - row * cols
    return np.stack([row, c0, c1, code.astype(np.int64)], axis=1)


def pattern_tile(pattern: Pattern, ink: QColor, scale: float = 1.0) -> QPixmap:
    """A square tile of the pattern in `ink` on transparent."""
    n = max(TILE, round(TILE * scale))
    pm = QPixmap(n, n)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, pattern in (Pattern.DIAGONAL_CROSS,))
    w = max(1.0, 1.6 * scale)
    pen = QPen(ink, w)
    pen.setCapStyle(Qt.PenCapStyle.FlatCap)
    p.setPen(pen)
    h = n / 2
    if pattern == Pattern.DOTS:
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(ink)
        d = max(2.0, 2.2 * scale)
        p.drawEllipse(QRectF(h - d / 2, h - d / 2, d, d))
    elif pattern == Pattern.VERTICAL:
        p.drawLine(QPointF(h, 0), QPointF(h, n))
    elif pattern == Pattern.HORIZONTAL:
        p.drawLine(QPointF(0, h), QPointF(n, h))
    elif pattern == Pattern.GRID:
        p.drawLine(QPointF(h, 0), QPointF(h, n))
        p.drawLine(QPointF(0, h), QPointF(n, h))
    elif pattern == Pattern.DIAGONAL_CROSS:
        for dx in (-n, 0, n):
            p.drawLine(QPointF(dx, 0), QPointF(dx + n, n))
            p.drawLine(QPointF(dx, n), QPointF(dx + n, 0))
    elif pattern == Pattern.HATCH:
        for dx in (-n, 0, n):
            p.drawLine(QPointF(dx, n), QPointF(dx + n, 0))
    p.end()
    return pm


def ink_for(code: int) -> QColor:
    """The pattern's ink on a code's colour: light on dark colours, dark on light ones."""
    return QColor(255, 255, 255, 170) if is_dark(code) else QColor(0, 0, 0, 120)


class PatternLayer(QGraphicsObject):
    """The patterns of the states on screen, from the raster the map shows."""

    def __init__(self, cells=None) -> None:
        super().__init__()
        self.cells = cells  # CellLabels: tiles that name their state need no pattern
        self._runs = np.zeros((0, 4), np.int64)
        self._d0 = 0
        self._cols = 1
        self._layout: MapLayout | None = None
        self._brushes: dict[int, QBrush] = {}
        self.ui_scale = 1.0  # presentation mode: bigger patterns
        self.setZValue(4)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    def set_scale(self, scale: float) -> None:
        self.ui_scale = scale
        self._brushes.clear()
        self.update()

    def brush(self, code: int) -> QBrush:
        b = self._brushes.get(code)
        if b is None:
            b = QBrush(pattern_tile(PATTERN_OF[code], ink_for(code), self.ui_scale))
            self._brushes[code] = b
        return b

    def set_data(self, codes: np.ndarray | None, d0: int, layout: MapLayout) -> None:
        self.prepareGeometryChange()
        self._layout = layout
        if codes is None:
            self._runs = np.zeros((0, 4), np.int64)
        else:
            self._runs = pattern_runs(codes)
            self._cols = codes.shape[1]
        self._d0 = d0
        self.update()

    def runs(self) -> np.ndarray:
        """(row, c0, c1, code) of what is patterned (tests)."""
        return self._runs

    def boundingRect(self) -> QRectF:
        lay = self._layout
        if lay is None or not len(self._runs):
            return QRectF()
        return QRectF(0, self._d0, lay.row_gfns, int(self._runs[-1, 0]) + 1)

    def paint(self, painter: QPainter, option=None, *args) -> None:
        lay = self._layout
        if lay is None or not len(self._runs):
            return
        if self.cells is not None and self.cells.tier() > 0:
            return  # each tile names its state: text, the clearer second channel
        top, bottom = exposed_rows(option, -math.inf, math.inf)
        tr = painter.transform()
        o = tr.map(QPointF(0, self._d0))
        cw = (tr.map(QPointF(lay.row_gfns, 0)).x() - tr.map(QPointF(0, 0)).x()) / self._cols
        ch = tr.map(QPointF(0, 1)).y() - tr.map(QPointF(0, 0)).y()
        if ch < MIN_PATTERN_PX:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(Qt.PenStyle.NoPen)
        runs = self._runs[:MAX_PATTERN_RUNS]
        if math.isfinite(top):  # only the rows this paint redraws
            d = runs[:, 0] + self._d0
            runs = runs[(d + 1 > top) & (d < bottom)]
        for row, c0, c1, code in runs.tolist():
            w = (c1 - c0) * cw
            if w < MIN_PATTERN_PX:
                continue
            painter.fillRect(QRectF(o.x() + c0 * cw, o.y() + row * ch, w, ch), self.brush(code))
        painter.restore()


class FoldBands(QGraphicsObject):
    """Torn edges and a label on every fold band in view."""

    def __init__(self) -> None:
        super().__init__()
        self._layout: MapLayout | None = None
        self.background = QColor(255, 255, 255)
        self.text_colour = QColor(40, 40, 40)
        self.font = QFont()
        self.font.setPixelSize(11)
        self._texts: dict[str, QStaticText] = {}
        self._strips: dict[tuple, QPixmap | None] = {}  # band edges and labels, drawn once
        self.moving = False  # a framing animation runs: edges only (map_animator.py)
        self.setZValue(9)  # under the memslot outlines
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    def set_layout(self, layout: MapLayout) -> None:
        self.prepareGeometryChange()
        self._layout = layout
        self.update()

    def boundingRect(self) -> QRectF:
        lay = self._layout
        if lay is None:
            return QRectF()
        return QRectF(0, 0, lay.row_gfns, lay.rows_total())

    def _static(self, text: str) -> QStaticText:
        """Laid-out label texts, cached (a repaint lays out nothing again)."""
        st = self._texts.get(text)
        if st is None:
            if len(self._texts) > 2048:
                self._texts.clear()
            st = QStaticText(text)
            st.setTextFormat(Qt.TextFormat.PlainText)
            st.prepare(QTransform(), self.font)
            self._texts[text] = st
        return st

    @staticmethod
    def name_of(code: int) -> str:
        """A folded code's name (the observed window names its own codes)."""
        return LEGEND_BY_CODE[Code(code)].name

    def label(self, fold, r: int) -> str:
        a, b = fold.row0 * r, fold.row1 * r
        name = self.name_of(fold.code)
        return (
            f"⋯ {size_text((b - a) * 4096)} {name} folded: "
            f"{fmt_gpa(a * 4096)} – {fmt_gpa(b * 4096 - 1)} ⋯"
        )

    def paint(self, painter: QPainter, option=None, *args) -> None:
        lay = self._layout
        if lay is None:
            return
        fm = lay.foldmap()
        if not fm:
            return
        top, bottom = exposed_rows(option, lay.top, lay.top + lay.rows_visible())
        folds = fm.folds_between(top - fm.band, bottom + 1)
        if not folds:
            return
        tr = painter.transform()
        x0 = tr.map(QPointF(0, 0)).x()
        x1 = tr.map(QPointF(lay.row_gfns, 0)).x()
        band_px = tr.map(QPointF(0, fm.band)).y() - tr.map(QPointF(0, 0)).y()
        dev = painter.device()
        dpr = dev.devicePixelRatioF() if dev is not None else 1.0
        painter.save()
        painter.resetTransform()
        try:
            edges = self._edges(x1 - x0, band_px, dpr)
            xc = (x0 + x1) / 2
            for k, f in enumerate(folds):
                ya = tr.map(QPointF(0, f.drow)).y()
                painter.drawPixmap(QPointF(round(x0), round(ya) - STRIP_PAD), edges)
                if k >= MAX_LABELLED_BANDS or self.moving:
                    continue  # too many, or in motion: the edges say it all
                pill = self._pill(self.label(f, lay.row_gfns), band_px, dpr)
                if pill is not None:
                    size = pill.deviceIndependentSize()
                    painter.drawPixmap(
                        QPointF(
                            round(xc - size.width() / 2), round(ya + (band_px - size.height()) / 2)
                        ),
                        pill,
                    )
        finally:
            painter.restore()

    def _cached(self, key: tuple, make: Callable[[], QPixmap | None]) -> QPixmap | None:
        """Band pictures, drawn once and then only copied: a paint (an op, a fading change
        mark) draws every band of the view without drawing their edges and labels again."""
        key = (*key, self.background.rgba(), self.text_colour.rgba(), self.font.key())
        if key in self._strips:
            return self._strips[key]
        if len(self._strips) > 512:
            self._strips.clear()
        pm = make()
        self._strips[key] = pm
        return pm

    def _edges(self, width: float, h: float, dpr: float) -> QPixmap:
        """A band's two torn edges (one zigzag each, no antialiasing), `h` px apart."""
        w, hh = max(1, round(width)), max(1, round(h))

        def make() -> QPixmap:
            pm = QPixmap(round(w * dpr), round((hh + 2 * STRIP_PAD) * dpr))
            pm.setDevicePixelRatio(dpr)  # crisp on a HiDPI screen
            pm.fill(Qt.GlobalColor.transparent)
            p = QPainter(pm)
            try:
                n = max(2, math.ceil(w / 8.0))
                zig = QPolygonF(
                    [QPointF(k * w / n, ZIG_AMP if k % 2 else -ZIG_AMP) for k in range(n + 1)]
                )
                p.setPen(QPen(self.background, 1))  # a 1 px pen: the fast path
                for y in (STRIP_PAD, STRIP_PAD + hh):
                    p.translate(0, y)
                    p.drawPolyline(zig)
                    p.translate(0, -y)
            finally:
                p.end()
            return pm

        pm = self._cached(("edges", w, hh, dpr), make)
        assert pm is not None
        return pm

    def _pill(self, text: str, h: float, dpr: float) -> QPixmap | None:
        """A band's label on its rounded background (None: the band is too thin)."""

        def make() -> QPixmap | None:
            fmx = QFontMetrics(self.font)
            if h < fmx.height() - 2:
                return None
            st = self._static(text)
            size = st.size()
            tw, th = size.width() + 12, min(h - 2 * ZIG_AMP, size.height() + 2)
            pm = QPixmap(math.ceil(tw * dpr), math.ceil(th * dpr))
            pm.setDevicePixelRatio(dpr)
            pm.fill(Qt.GlobalColor.transparent)
            p = QPainter(pm)
            try:
                bg = QColor(self.background)
                bg.setAlpha(215)
                p.setRenderHint(QPainter.RenderHint.Antialiasing)
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(bg)
                p.drawRoundedRect(QRectF(0, 0, tw, th), th / 2, th / 2)
                p.setPen(self.text_colour)
                p.setFont(self.font)
                p.drawStaticText(QPointF(6, (th - size.height()) / 2), st)
            finally:
                p.end()
            return pm

        return self._cached(("pill", text, round(h), dpr), make)


def _legend_name(code: int) -> str | None:
    try:
        return LEGEND_BY_CODE[Code(code)].name
    except (ValueError, KeyError):
        return None


class BlockLabels(QGraphicsObject):
    """The state's name written on every block of whole rows of one state, so the view
    reads without the legend ("private 4K" on the firmware, "shared 2M" on a bounce
    buffer).  Only where tiles carry no labels of their own and the block is at least
    MIN_BLOCK_PX high."""

    MIN_BLOCK_PX = 24.0

    def __init__(self, cells) -> None:
        super().__init__()
        self.cells = cells  # CellLabels: no block labels when tiles have their own
        self._codes: np.ndarray | None = None
        self._d0 = 0
        self._layout: MapLayout | None = None
        self.background = QColor(255, 255, 255)
        self.text_colour = QColor(30, 30, 30)
        self.font = QFont()
        self.font.setPixelSize(13)
        self.font.setBold(True)
        self._texts: dict[str, QStaticText] = {}
        self._blocks: tuple[tuple, list[tuple[int, int, int]]] | None = None
        self._exposed: QRectF | None = None  # the device rect this paint redraws
        # The name written on a block of `code` (None: no label).  A map with codes of its
        # own (the observed timeline's unknowns) gives its own.
        self.name_of: Callable[[int], str | None] = _legend_name
        self.setZValue(13)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    def set_font_px(self, px: int) -> None:
        self.font.setPixelSize(px)
        self._texts.clear()
        self.update()

    def set_data(self, codes: np.ndarray | None, d0: int, layout: MapLayout) -> None:
        self.prepareGeometryChange()
        self._codes, self._d0, self._layout = codes, d0, layout
        self.update()

    def blocks(self) -> list[tuple[int, int, int]]:
        """(first display row, rows, code) of each block of uniform whole rows in view.

        Computed with numpy once per raster and fold map, not on every paint (an op
        repaints the map several times)."""
        lay, codes = self._layout, self._codes
        if lay is None or codes is None or not len(codes):
            return []
        fm = lay.foldmap()
        cached = self._blocks
        if cached is not None:
            c_codes, c_d0, c_fm = cached[0]
            if c_codes is codes and c_d0 == self._d0 and c_fm is fm:
                return cached[1]
        uniform = (codes == codes[:, :1]).all(axis=1)
        row_code = codes[:, 0].astype(np.int64)
        ok = uniform & (row_code != Code.OUTSIDE)
        ok &= ~fm.in_band(np.arange(len(codes), dtype=np.int64) + self._d0)
        tag = np.where(ok, row_code, -1)
        start = np.flatnonzero(np.concatenate([[True], tag[1:] != tag[:-1]]))
        ends = np.append(start[1:], len(tag))
        keep = tag[start] >= 0
        out = [
            (self._d0 + int(a), int(b - a), int(c))
            for a, b, c in zip(start[keep], ends[keep], tag[start[keep]], strict=True)
        ]
        self._blocks = ((codes, self._d0, fm), out)
        return out

    def boundingRect(self) -> QRectF:
        lay, codes = self._layout, self._codes
        if lay is None or codes is None:
            return QRectF()
        return QRectF(0, self._d0, lay.row_gfns, len(codes))

    def paint(self, painter: QPainter, option=None, *args) -> None:
        lay = self._layout
        if lay is None or self._codes is None or self.cells.tier() > 0:
            return
        tr = painter.transform()
        x0 = tr.map(QPointF(0, 0)).x()
        x1 = tr.map(QPointF(lay.row_gfns, 0)).x()
        top, bottom = lay.top, lay.top + lay.rows_visible()
        ex = getattr(option, "exposedRect", None)
        self._exposed = tr.mapRect(ex) if ex is not None and not ex.isEmpty() else None
        # save/restore around a try: an exception between them would leave the painter
        # unbalanced, which crashes Qt at the end of the paint.
        painter.save()
        try:
            self._paint_blocks(painter, tr, x0, x1, top, bottom)
        finally:
            painter.restore()

    def _paint_blocks(
        self, painter: QPainter, tr: QTransform, x0: float, x1: float, top: float, bottom: float
    ) -> None:
        painter.resetTransform()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        bg = QColor(self.background)
        bg.setAlpha(200)
        blocks = self.blocks()
        if not blocks:
            return
        # Which blocks are tall enough on screen for a label: numpy over all of them (a
        # view may hold hundreds of thin ones), the painter's scale being y = m22 * row + dy.
        arr = np.asarray(blocks, np.float64)
        d, n = arr[:, 0], arr[:, 1]
        a = np.maximum(d, top)
        b = np.minimum(d + n, bottom)
        ys_a = tr.m22() * a + tr.dy()
        ys_b = tr.m22() * b + tr.dy()
        tall = ys_b - ys_a >= self.MIN_BLOCK_PX
        ex = self._exposed
        if ex is not None:  # its label lies in its rows: only rows this paint redraws
            tall &= (ys_b > ex.top()) & (ys_a < ex.bottom())
        for i in np.flatnonzero(tall).tolist():
            code = blocks[i][2]
            ya, yb = float(ys_a[i]), float(ys_b[i])
            name = self.name_of(code)
            if not name:
                continue
            st = self._static(name)
            size = st.size()
            tw, th = size.width() + 16, size.height() + 4
            box = QRectF((x0 + x1 - tw) / 2, (ya + yb - th) / 2, tw, th)
            if self._exposed is not None and not box.intersects(self._exposed):
                continue  # outside the region this paint redraws
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(bg)
            painter.drawRoundedRect(box, th / 2, th / 2)
            painter.setPen(self.text_colour)
            painter.drawStaticText(QPointF(box.left() + 8, box.top() + 2), st)

    def _static(self, text: str) -> QStaticText:
        st = self._texts.get(text)
        if st is None:
            st = QStaticText(text)
            st.setTextFormat(Qt.TextFormat.PlainText)
            st.prepare(QTransform(), self.font)
            self._texts[text] = st
        return st
