"""The GPA map: the guest physical address space as rows of pages, zoomable and scrollable.

One pyqtgraph ImageItem draws the raster of uint8 codes the engine thread
computes for the visible rows (a 256-entry LUT, fixed levels: the fast path).
Memslots are outlined and labelled, holes labelled, the selection drawn on
top.  Mouse: click = the default action (accept and touch a TDX private
page, a guest read elsewhere), Ctrl+click selects only, Shift+click or a
left drag selects a range, right click opens the context menu, the wheel
scrolls, Ctrl+wheel zooms at the cursor, a middle drag pans.  Keys: arrows
move the selection (Shift extends), PageUp/PageDown scroll, Home/End jump.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QCursor, QFont, QPen
from PySide6.QtWidgets import (
    QGraphicsPathItem,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QScrollBar,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from imemviz.app.panes.map_items import CellLabels, GpaAxis, OffsetAxis, outline_path
from imemviz.app.panes.map_layout import MapLayout, fmt_gpa
from imemviz.app.selection import SelectionModel
from imemviz.app.worker import Engine, InspectAnswer, RasterAnswer, RasterRequest, Snapshot
from imemviz.model.raster import NCODES, code_name, lut
from imemviz.model.units import fmt_size

KEY = "gpa_map"
SCROLL_SCALE_MAX = 1 << 30
GUTTER_PX = 170  # right of the rows: memslot and hole labels with their brackets
MARGIN_PX = 7  # above the first and below the last row, so edge tick labels fit
LABEL_PX = 40  # height of a three-line gutter label


class MapViewBox(pg.ViewBox):
    """A ViewBox whose mouse and wheel handling belongs to the pane."""

    def __init__(self, pane: GpaMapPane) -> None:
        super().__init__(enableMenu=False, defaultPadding=0.0, invertY=True)
        self.pane = pane
        self.setMouseEnabled(False, False)
        self.disableAutoRange()

    def wheelEvent(self, ev, axis=None):
        self.pane.on_wheel(ev)
        ev.accept()

    def mouseClickEvent(self, ev):
        self.pane.on_click(ev)

    def mouseDragEvent(self, ev, axis=None):
        self.pane.on_drag(ev)

    def hoverEvent(self, ev):
        self.pane.on_hover(ev)


class GpaMapPane(QWidget):
    clicked = Signal(object)  # gfn: run the default action
    contextMenuRequested = Signal(object, object)  # gfn, global QPoint
    hoverChanged = Signal(object)  # gfn or None
    viewChanged = Signal(str)  # a one-line description of the zoom
    drawn = Signal()  # the raster of the current view and state is on screen

    def __init__(
        self, engine: Engine, selection: SelectionModel, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("gpa_map")
        self.engine = engine
        self.selection = selection
        self.layout_ = MapLayout()
        self.snapshot: Snapshot | None = None
        self._wanted: RasterRequest | None = None
        self._shown: RasterAnswer | None = None
        self._hover_gfn: int | None = None
        self._drag_from: int | None = None
        self._pan_from: tuple[float, float] | None = None
        self._build()
        engine.snapshotReady.connect(self._on_snapshot)
        engine.rasterReady.connect(self._on_raster)
        engine.inspectReady.connect(self._on_inspect)
        selection.changed.connect(self._on_selection)

    # ------------------------------------------------------------------ widgets
    def _build(self) -> None:
        self.setFocusPolicy(Qt.StrongFocus)
        self.setToolTip("")
        self.vb = MapViewBox(self)
        self.left_axis = GpaAxis(lambda: self.layout_)
        self.bottom_axis = OffsetAxis(lambda: self.layout_)
        self.view = pg.PlotWidget(
            viewBox=self.vb, axisItems={"left": self.left_axis, "bottom": self.bottom_axis}
        )
        self.view.setBackground("w")
        self.view.setFocusPolicy(Qt.NoFocus)
        plot = self.view.getPlotItem()
        plot.hideButtons()
        plot.setMenuEnabled(False)
        plot.setLabel("bottom", "offset in row")
        for ax in (self.left_axis, self.bottom_axis):
            ax.setPen(pg.mkPen("#444"))
            ax.setTextPen(pg.mkPen("#222"))
        self._axis_width = 0
        self.img = pg.ImageItem(axisOrder="row-major")
        self.img.setAutoDownsample(False)
        self.img.setLookupTable(lut())
        self.img.setLevels((0, 255))
        self.vb.addItem(self.img)
        self.outline = QGraphicsPathItem()
        pen = QPen(QColor(25, 25, 25), 1.6)
        pen.setCosmetic(True)
        self.outline.setPen(pen)
        self.outline.setZValue(10)
        self.vb.addItem(self.outline, ignoreBounds=True)
        self.hatch = QGraphicsPathItem()
        self.hatch.setPen(QPen(Qt.NoPen))
        self.hatch.setBrush(QBrush(QColor(120, 120, 120), Qt.BDiagPattern))
        self.hatch.setZValue(8)
        self.vb.addItem(self.hatch, ignoreBounds=True)
        self.brackets = QGraphicsPathItem()
        bpen = QPen(QColor(40, 40, 40), 3.0)
        bpen.setCosmetic(True)
        bpen.setCapStyle(Qt.FlatCap)
        self.brackets.setPen(bpen)
        self.brackets.setZValue(10)
        self.vb.addItem(self.brackets, ignoreBounds=True)
        self.range_item = QGraphicsPathItem()
        rpen = QPen(QColor(0, 0, 0), 1.5, Qt.DashLine)
        rpen.setCosmetic(True)
        self.range_item.setPen(rpen)
        # An outline only: a tint would shift the cells' colours towards other legend
        # entries (private 4K orange under a dark tint reads as private 1G brown).
        self.range_item.setBrush(QBrush(Qt.NoBrush))
        self.range_item.setZValue(20)
        self.vb.addItem(self.range_item, ignoreBounds=True)
        self.cursor_item = QGraphicsRectItem()
        cpen = QPen(QColor(0, 0, 0), 2.5)
        cpen.setCosmetic(True)
        self.cursor_item.setPen(cpen)
        self.cursor_item.setZValue(30)
        self.cursor_item.hide()
        self.vb.addItem(self.cursor_item, ignoreBounds=True)
        self.hover_item = QGraphicsRectItem()
        hpen = QPen(QColor(90, 90, 90), 1.0, Qt.DotLine)
        hpen.setCosmetic(True)
        self.hover_item.setPen(hpen)
        self.hover_item.setZValue(25)
        self.hover_item.hide()
        self.vb.addItem(self.hover_item, ignoreBounds=True)
        self.cells = CellLabels()
        self.vb.addItem(self.cells, ignoreBounds=True)
        self._labels: list[pg.TextItem] = []
        self._label_font = QFont()
        self._label_font.setPixelSize(11)
        self.scrollbar = QScrollBar(Qt.Vertical)
        self.scrollbar.setToolTip(
            "Scroll through the guest physical address space (mouse wheel; Ctrl+wheel zooms)"
        )
        self.scrollbar.valueChanged.connect(self._on_scrollbar)
        self.header = QLabel(" ")
        self.header.setObjectName("gpa_map_header")
        self.header.setTextFormat(Qt.PlainText)
        self.header.setToolTip("The page under the mouse, and the zoom (bytes per row)")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.view, 1)
        row.addWidget(self.scrollbar)
        col = QVBoxLayout(self)
        col.setContentsMargins(2, 2, 2, 2)
        col.setSpacing(2)
        col.addWidget(self.header)
        col.addLayout(row, 1)
        self.vb.sigResized.connect(self._on_resize)
        self.view.setToolTip("")

    # ------------------------------------------------------------------ public
    @property
    def row_gfns(self) -> int:
        return self.layout_.row_gfns

    def zoom(self, steps: int, anchor_gfn: int | None = None) -> None:
        """Zoom in (steps > 0) or out, keeping `anchor_gfn` (default: the selection) in view."""
        lay = self.layout_
        if anchor_gfn is None:
            anchor_gfn = self.selection.gfn
        frac = 0.5
        if anchor_gfn is not None:
            frac = (anchor_gfn / lay.row_gfns - lay.top) / max(lay.rows_visible(), 1e-9)
            if not 0.0 <= frac <= 1.0:
                frac = 0.5
        lay.zoom(steps, anchor_gfn, frac)
        self.refresh()

    def zoom_all(self) -> None:
        self.layout_.fit()
        self.refresh()

    def show_range(self, start: int, end: int) -> None:
        self.layout_.show_range(start, end)
        self.refresh()

    def is_drawn(self) -> bool:
        """The raster on screen is the current view of the current state."""
        s = self._shown
        snap = self.engine.snapshot
        return (
            s is not None
            and snap is not None
            and s.version == snap.version
            and s.request == self._wanted
        )

    def gfn_pos(self, gfn: int) -> QPoint:
        """The centre of gfn's cell in `self.view` widget coordinates (for tests)."""
        x, y = self.layout_.cell_of(gfn)
        scene = self.vb.mapViewToScene(QPointF(x + 0.5, y + 0.5))
        return self.view.mapFromScene(scene)

    # ------------------------------------------------------------------ engine
    def _on_snapshot(self, snap: Snapshot) -> None:
        prev = self.snapshot
        first = prev is None or snap.session != prev.session
        self.snapshot = snap
        lay = self.layout_
        was_fit = lay.row_gfns == lay.fit_row_gfns() and lay.top == 0
        lay.extent = max(snap.extent, 1)
        if first or (prev.extent != snap.extent and was_fit):
            lay.fit()  # showing the whole guest: keep showing all of it
        if first or prev.extent != snap.extent or prev.slots != snap.slots:
            self.refresh()
        elif self._wanted is not None and self._wanted.touches(snap.changed):
            pass  # the engine pushes the new raster of our standing view right after this
        elif self._shown is not None and self._shown.request == self._wanted:
            # Nothing visible changed: the raster on screen is current for this version.
            self._shown = RasterAnswer(self._shown.request, snap.version, self._shown.codes)
            self.drawn.emit()

    def _on_raster(self, ans: RasterAnswer) -> None:
        if ans.request.key != KEY or ans.request.row_gfns != self.layout_.row_gfns:
            return
        req = ans.request
        if (
            self._shown is not None
            and ans.version < self._shown.version
            and req == self._shown.request
        ):
            return  # an older answer overtaken by a pushed one
        self.img.setImage(ans.codes, autoLevels=False, levels=(0, 255), autoDownsample=False)
        self.img.setRect(QRectF(0, req.start // req.row_gfns, req.row_gfns, req.rows))
        self.img.show()
        self._shown = ans
        self.cells.set_data(ans.codes, req.start // req.row_gfns, self.layout_)
        if self.is_drawn():
            self.drawn.emit()

    def _on_inspect(self, ans: InspectAnswer) -> None:
        if ans.key != "hover" or ans.gfn != self._hover_gfn:
            return
        QToolTip.showText(QCursor.pos(), tooltip_html(ans.info), self.view)

    # ------------------------------------------------------------------ drawing
    def refresh(self) -> None:
        """Apply the layout to the view, redraw overlays, ask for the raster."""
        lay = self.layout_
        lay.clamp()
        self._fit_axis()
        rows_v = lay.rows_visible()
        m = MARGIN_PX / lay.row_px()
        self.vb.setRange(
            xRange=(0, lay.row_gfns * self._x_scale()),
            yRange=(lay.top - m, lay.top + rows_v + m),
            padding=0.0,
            update=True,
        )
        self._sync_scrollbar()
        self._update_overlays()
        if self._shown is not None and self._shown.request.row_gfns != lay.row_gfns:
            self.img.hide()  # the old raster is in other coordinates
            self.cells.set_data(None, 0, lay)
        self._request_raster()
        self._emit_view()

    def _request_raster(self) -> None:
        lay = self.layout_
        row0, rows, cols = lay.raster_window()
        self._wanted = RasterRequest(KEY, row0 * lay.row_gfns, lay.row_gfns, rows, cols)
        if self.engine.snapshot is not None:
            self.engine.request_raster(self._wanted)

    def _fit_axis(self) -> None:
        """Make the left axis as wide as its widest label (pyqtgraph drops labels that overflow)."""
        from PySide6.QtGui import QFontMetrics

        widest = fmt_gpa(max(self.layout_.extent - 1, 0) * 4096)
        w = QFontMetrics(self.left_axis.font()).horizontalAdvance(widest + "0") + 14
        if w != self._axis_width:
            self._axis_width = w
            self.left_axis.setWidth(w)

    def _emit_view(self) -> None:
        lay = self.layout_
        a, b = lay.visible_gfns()
        per_px = lay.row_gfns / max(lay.width, 1)
        detail = (
            f"{per_px:.0f} pages per pixel"
            if per_px >= 2
            else f"{lay.width / lay.row_gfns:.0f} px per page"
        )
        self.viewChanged.emit(
            f"row = {fmt_size(lay.row_gfns * 4096)} · {detail} · "
            f"showing {fmt_gpa(a * 4096)}–{fmt_gpa(b * 4096 - 1)}"
        )

    def _update_overlays(self) -> None:
        lay = self.layout_
        snap = self.snapshot
        slots = [s for s in (snap.slots if snap else ()) if s.id >> 16 == 0]
        self.outline.setPath(
            outline_path(((s.base_gfn, min(s.end_gfn, lay.extent)) for s in slots), lay.row_gfns)
        )
        gaps = holes(slots, lay.extent)
        self.hatch.setPath(outline_path(gaps, lay.row_gfns))
        self._place_labels(slots, gaps)
        self._on_selection(self.selection.gfn, self.selection.range)

    def _place_labels(self, slots, gaps) -> None:
        """Labels in the gutter at each region's first visible row, pushed apart to not overlap."""
        from PySide6.QtGui import QPainterPath

        lay = self.layout_
        r = lay.row_gfns
        top, bottom = lay.top, lay.top + lay.rows_visible()
        px = lay.row_px()
        regions: list[tuple[int, int, str, str]] = []
        for s in slots:
            gm = (
                f"guest_memfd {s.gmem_fd}"
                if s.gmem_fd is not None
                else "guest_memfd closed"
                if s.flags & 4
                else "no guest_memfd"
            )
            regions.append(
                (
                    s.base_gfn,
                    min(s.end_gfn, lay.extent),
                    f"slot {s.id} · {fmt_size(s.npages * 4096)}\n"
                    f"@ {fmt_gpa(s.base_gfn * 4096)}\n{gm}",
                    "#111",
                )
            )
        for a, b in gaps:
            regions.append(
                (
                    a,
                    b,
                    f"hole · {fmt_size((b - a) * 4096)}\n@ {fmt_gpa(a * 4096)}\nMMIO (no memslot)",
                    "#555",
                )
            )
        regions.sort()
        path = QPainterPath()
        x_line = r * (1 + 6 / max(lay.width, 1))
        x_text = r * (1 + 12 / max(lay.width, 1))
        placed: list[tuple[str, float, str]] = []
        next_free = top
        for a, b, text, colour in regions:
            y0 = a / r
            y1 = b / r
            if y1 <= top or y0 >= bottom:
                continue
            vy0, vy1 = max(y0, top), min(y1, bottom)
            path.moveTo(x_line, vy0 + 0.5 / px)
            path.lineTo(x_line, max(vy1 - 0.5 / px, vy0 + 3 / px))
            if y0 >= top:  # a tick where the region starts
                path.moveTo(x_line, y0 + 0.5 / px)
                path.lineTo(x_line + r * 5 / max(lay.width, 1), y0 + 0.5 / px)
            y = max(vy0, next_free)
            if y > bottom - LABEL_PX / px:  # no room below: as low as fits, if it clears
                y = bottom - LABEL_PX / px
                if y < next_free - 1e-9:
                    continue
            placed.append((text, y, colour))
            next_free = y + (LABEL_PX + 4) / px
        self.brackets.setPath(path)
        while len(self._labels) < len(placed):
            t = pg.TextItem(anchor=(0, 0))
            t.setFont(self._label_font)
            t.setZValue(40)
            self.vb.addItem(t, ignoreBounds=True)
            self._labels.append(t)
        for i, t in enumerate(self._labels):
            if i >= len(placed):
                t.hide()
                continue
            text, y, colour = placed[i]
            t.setText(text, color=colour)
            t.setPos(x_text, y)
            t.show()

    def _on_selection(self, gfn, rng) -> None:
        lay = self.layout_
        if rng is not None and rng[1] - rng[0] > 1:
            self.range_item.setPath(outline_path([rng], lay.row_gfns))
            self.range_item.show()
        else:
            self.range_item.hide()
        if gfn is not None:
            x, y = lay.cell_of(gfn)
            self.cursor_item.setRect(QRectF(x, y, 1, 1))
            self.cursor_item.show()
        else:
            self.cursor_item.hide()

    # ------------------------------------------------------------------ scrolling
    def _scroll_scale(self) -> int:
        return max(1, math.ceil(self.layout_.rows_total() / SCROLL_SCALE_MAX))

    def _sync_scrollbar(self) -> None:
        lay = self.layout_
        k = self._scroll_scale()
        sb = self.scrollbar
        sb.blockSignals(True)
        sb.setRange(0, math.ceil(lay.max_top() / k))
        sb.setPageStep(max(1, int(lay.rows_visible() / k)))
        sb.setSingleStep(max(1, int(lay.rows_visible() / k / 20)))
        sb.setValue(round(lay.top / k))
        sb.blockSignals(False)

    def _on_scrollbar(self, value: int) -> None:
        self.layout_.top = float(value * self._scroll_scale())
        self.refresh()

    def _x_scale(self) -> float:
        """View width over the rows' width: the gutter sits right of x = row_gfns."""
        total = self.vb.boundingRect().width()
        return max(total, 1.0) / max(self.layout_.width, 1.0)

    def _on_resize(self) -> None:
        r = self.vb.boundingRect()
        lay = self.layout_
        first = lay.width == MapLayout().width and lay.height == MapLayout().height
        lay.resize(max(r.width() - GUTTER_PX, 16), max(r.height() - 2 * MARGIN_PX, 16))
        if first:
            lay.fit()
        self.refresh()

    # ------------------------------------------------------------------ mouse
    def _gfn_of(self, item_pos) -> int:
        p = self.vb.mapToView(item_pos)
        return self.layout_.gfn_at(p.x(), p.y())

    def on_wheel(self, ev) -> None:
        delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
        if not delta:
            return
        if ev.modifiers() & Qt.ControlModifier:
            lay = self.layout_
            p = self.vb.mapToView(ev.pos())
            g = math.floor(p.y()) * lay.row_gfns + min(max(p.x(), 0), lay.row_gfns)
            frac = (p.y() - lay.top) / max(lay.rows_visible(), 1e-9)
            lay.zoom(1 if delta > 0 else -1, g, min(max(frac, 0.0), 1.0))
            self.refresh()
        else:
            self.layout_.scroll_rows(-delta / 120 * 60 / self.layout_.row_px())
            self.refresh()

    def on_click(self, ev) -> None:
        gfn = self._gfn_of(ev.pos())
        mods = ev.modifiers()
        if ev.button() == Qt.LeftButton:
            ev.accept()
            self.setFocus()
            if mods & Qt.ShiftModifier:
                self.selection.set_gfn(gfn, extend=True)
                return
            self.selection.set_gfn(gfn)
            if not mods & Qt.ControlModifier:
                self.clicked.emit(gfn)
        elif ev.button() == Qt.RightButton:
            ev.accept()
            rng = self.selection.range
            if rng is None or not rng[0] <= gfn < rng[1]:
                self.selection.set_gfn(gfn)
            self.contextMenuRequested.emit(
                gfn, QPoint(int(ev.screenPos().x()), int(ev.screenPos().y()))
            )

    def on_drag(self, ev) -> None:
        ev.accept()
        if ev.button() == Qt.MiddleButton:
            if ev.isStart():
                self._pan_from = (ev.buttonDownPos().y(), self.layout_.top)
            if self._pan_from is not None:
                y0, top0 = self._pan_from
                self.layout_.top = top0 - (ev.pos().y() - y0) / self.layout_.row_px()
                self.refresh()
            if ev.isFinish():
                self._pan_from = None
            return
        if ev.button() != Qt.LeftButton:
            return
        if ev.isStart():
            self._drag_from = self._gfn_of(ev.buttonDownPos())
        if self._drag_from is None:
            return
        g = self._gfn_of(ev.pos())
        a, b = sorted((self._drag_from, g))
        self.selection.set_range(a, b + 1, cursor=g)
        if ev.isFinish():
            self._drag_from = None

    def on_hover(self, ev) -> None:
        if ev.isExit():
            self._set_hover(None)
            return
        self._set_hover(self._gfn_of(ev.pos()))

    def _set_hover(self, gfn: int | None) -> None:
        if gfn == self._hover_gfn:
            return
        self._hover_gfn = gfn
        self.hoverChanged.emit(gfn)
        if gfn is None:
            self.hover_item.hide()
            QToolTip.hideText()
            return
        x, y = self.layout_.cell_of(gfn)
        self.hover_item.setRect(QRectF(x, y, 1, 1))
        self.hover_item.show()
        self.header.setText(self._describe(gfn))
        self.engine.request_inspect(gfn, "hover")

    def _describe(self, gfn: int) -> str:
        text = f"gpa {fmt_gpa(gfn * 4096)}  gfn {gfn:#x}"
        snap = self.snapshot
        slot = snap.slot_at(gfn) if snap else None
        text += f"  slot {slot.id}" if slot else "  no memslot"
        code = self.code_at(gfn)
        if code is not None:
            text += f"  ·  {code_name(code)}"
        return text

    def code_at(self, gfn: int) -> int | None:
        """The code drawn for gfn's pixel in the raster on screen (None: not drawn)."""
        s = self._shown
        if s is None:
            return None
        req = s.request
        row = gfn // req.row_gfns - req.start // req.row_gfns
        if not 0 <= row < req.rows or req.row_gfns != self.layout_.row_gfns:
            return None
        col = (gfn % req.row_gfns) * req.cols // req.row_gfns
        code = int(s.codes[row, col])
        return code if code < NCODES else None

    # ------------------------------------------------------------------ keys
    def keyPressEvent(self, ev) -> None:
        g = self.selection.gfn
        lay = self.layout_
        key, mods = ev.key(), ev.modifiers()
        extend = bool(mods & Qt.ShiftModifier)
        page_rows = max(1, int(lay.rows_visible()) - 1)
        moves = {
            Qt.Key_Left: -1,
            Qt.Key_Right: 1,
            Qt.Key_Up: -lay.row_gfns,
            Qt.Key_Down: lay.row_gfns,
            Qt.Key_PageUp: -page_rows * lay.row_gfns,
            Qt.Key_PageDown: page_rows * lay.row_gfns,
        }
        if key in moves:
            start = g if g is not None else lay.gfn_at(0, lay.top)
            new = min(max(start + moves[key], 0), lay.extent - 1)
            self.selection.set_gfn(new, extend=extend)
            lay.ensure_visible(new)
            self.refresh()
            ev.accept()
            return
        if key in (Qt.Key_Home, Qt.Key_End):
            new = 0 if key == Qt.Key_Home else lay.extent - 1
            self.selection.set_gfn(new, extend=extend)
            lay.ensure_visible(new)
            self.refresh()
            ev.accept()
            return
        super().keyPressEvent(ev)


def holes(slots, extent: int) -> list[tuple[int, int]]:
    """Gfn ranges in [0, extent) that no memslot covers."""
    out = []
    pos = 0
    for s in sorted(slots, key=lambda s: s.base_gfn):
        if s.base_gfn > pos:
            out.append((pos, min(s.base_gfn, extent)))
        pos = max(pos, s.end_gfn)
    if pos < extent:
        out.append((pos, extent))
    return [(a, b) for a, b in out if a < b]


def tooltip_html(info) -> str:
    """The whole chain of one gfn, from `inspect`, as a small HTML table."""
    gfn = info["gfn"]
    rows = [("gpa", f"{fmt_gpa(gfn * 4096)} (gfn {gfn:#x})")]
    rows.append(("attributes", "PRIVATE" if info["attributes"] & 8 else "shared"))
    slot = info["memslot"]
    rows.append(("memslot", "none: a guest access is MMIO" if slot is None else str(slot)))
    if info.get("hva") is not None:
        rows.append(("hva", fmt_gpa(info["hva"])))
    g = info["gmem"]
    rows.append(("guest_memfd", "none" if g is None else f"fd {g['fd']} index {g['index']:#x}"))
    f = info["folio"]
    rows.append(
        (
            "folio",
            "none"
            if f is None
            else f"order {f['order']} pfn {f['pfn']:#x}" + (" HWPOISON" if f["hwpoison"] else ""),
        )
    )
    pm = info["private_mapping"]
    rows.append(
        (
            "private leaf",
            "none" if pm is None else f"{pm['level']} pfn {pm['pfn']:#x} {pm['state']}",
        )
    )
    sm = info["shared_mapping"]
    rows.append(("shared leaf", "none" if sm is None else f"{sm['level']} pfn {sm['pfn']:#x}"))
    c = info["content"]
    rows.append(("content", f"private {_byte(c['private'])}, shared {_byte(c['shared'])}"))
    body = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    return f"<table cellspacing=0 cellpadding=1>{body}</table>"


def _byte(v) -> str:
    return "none" if v is None else f"{v:#04x}"
