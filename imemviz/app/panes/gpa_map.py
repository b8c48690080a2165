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
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, QTimer, Signal
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

from imemviz.app.palette import code_name, lut
from imemviz.app.panes.map_animator import MapAnimator
from imemviz.app.panes.map_frame import View, ViewHistory
from imemviz.app.panes.map_items import (
    CellLabels,
    GpaAxis,
    OffsetAxis,
    outline_path,
    warm_picture,
)
from imemviz.app.panes.map_layout import MapLayout, fmt_gpa
from imemviz.app.panes.map_overlays import BlockLabels, FoldBands, PatternLayer
from imemviz.app.panes.paint_hold import PaintHold
from imemviz.app.panes.row_view import RowPlot
from imemviz.app.records import InspectAnswer, RasterAnswer, RasterRequest, Snapshot
from imemviz.app.selection import SelectionModel
from imemviz.app.worker import Engine
from imemviz.model.raster import NCODES
from imemviz.model.uapi import is_private_attr
from imemviz.model.units import fmt_size

KEY = "gpa_map"
SCROLL_SCALE_MAX = 1 << 30
WARM_TEXTS = 128  # cell label texts laid out per turn ahead of a new session's first frame
GUTTER_PX = 170  # right of the rows: memslot and hole labels with their brackets
MARGIN_PX = 7  # above the first and below the last row, so edge tick labels fit
LABEL_PX = 40  # height of a three-line gutter label


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
        self._shown_d0 = 0  # display row of the raster on screen's first row
        self.ui_scale = 1.0  # presentation mode draws text and lines bigger
        self.gutter_px = GUTTER_PX
        self.label_px: float = LABEL_PX
        self.focus: tuple[tuple[int, int], ...] = ()  # gfn ranges kept unfolded (framing)
        self.opened: list[tuple[int, int]] = []  # folds the user opened (their runs)
        self.history = ViewHistory()  # Back / Forward through framings
        self.animator = MapAnimator(self)
        self.warmed: list[bool] = []  # the axes' pictures drawn ahead of the last first frame
        self.warmed_texts = 0  # the cell labels' texts laid out ahead of it
        self._build()
        self.paint_hold = PaintHold(self)  # one repaint per op: marks and raster together
        # A new session's axes are drawn two timer hops after its snapshot, while the
        # engine draws the raster: its first frame, one turn later, only plays them.
        self._warm_left = 0
        self._warm_timer = QTimer(self)
        self._warm_timer.setSingleShot(True)
        self._warm_timer.setInterval(0)
        self._warm_timer.timeout.connect(self._warm_hop)
        engine.snapshotReady.connect(self._on_snapshot)
        engine.rasterReady.connect(self._on_raster)
        engine.inspectReady.connect(self._on_inspect)
        selection.changed.connect(self._on_selection)
        from imemviz.app import plot_theme

        plot_theme.hub().changed.connect(self.apply_theme)
        self.apply_theme(plot_theme.current())

    # ------------------------------------------------------------------ widgets
    def _build(self) -> None:
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setToolTip("")
        self.left_axis = GpaAxis(lambda: self.layout_)
        self.bottom_axis = OffsetAxis(lambda: self.layout_)
        self.plot = RowPlot(self, self.left_axis, lut(), self.bottom_axis)
        self.vb = self.plot.vb
        self.view = pg.PlotWidget(plotItem=self.plot)
        self.view.setBackground("w")
        self.view.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.plot.setLabel("bottom", "offset in row")
        self._text_colour = "#111"
        self._muted_colour = "#555"
        self._axis_width = 0
        self.img = self.plot.img
        self.outline = self.plot.add_outline(QColor(25, 25, 25), 1.6, 10)
        self.hatch = QGraphicsPathItem()
        self.hatch.setPen(QPen(Qt.PenStyle.NoPen))
        self.hatch.setBrush(QBrush(QColor(120, 120, 120), Qt.BrushStyle.BDiagPattern))
        self.hatch.setZValue(8)
        self.vb.addItem(self.hatch, ignoreBounds=True)
        self.brackets = self.plot.add_outline(QColor(40, 40, 40), 3.0, 10)
        bpen = self.brackets.pen()
        bpen.setCapStyle(Qt.PenCapStyle.FlatCap)
        self.brackets.setPen(bpen)
        # The selected range: a dashed outline on a white halo, never a tint (a tint turns
        # one legend colour into another: private 4K orange into private 1G brown).
        self.range_halo = self.plot.add_outline(QColor(255, 255, 255), 4.0, 19)
        self.range_item = self.plot.add_outline(QColor(0, 0, 0), 2.0, 20, Qt.PenStyle.DashLine)
        self.cursor_item = QGraphicsRectItem()
        cpen = QPen(QColor(0, 0, 0), 2.5)
        cpen.setCosmetic(True)
        self.cursor_item.setPen(cpen)
        self.cursor_item.setZValue(30)
        self.cursor_item.hide()
        self.vb.addItem(self.cursor_item, ignoreBounds=True)
        self.hover_item = QGraphicsRectItem()
        hpen = QPen(QColor(90, 90, 90), 1.0, Qt.PenStyle.DotLine)
        hpen.setCosmetic(True)
        self.hover_item.setPen(hpen)
        self.hover_item.setZValue(25)
        self.hover_item.hide()
        self.vb.addItem(self.hover_item, ignoreBounds=True)
        self.cells = CellLabels()
        self.vb.addItem(self.cells, ignoreBounds=True)
        self.patterns = PatternLayer(self.cells)
        self.vb.addItem(self.patterns, ignoreBounds=True)
        self.fold_bands = FoldBands()
        self.vb.addItem(self.fold_bands, ignoreBounds=True)
        self.block_labels = BlockLabels(self.cells)
        self.vb.addItem(self.block_labels, ignoreBounds=True)
        self._labels: list[pg.TextItem] = []
        self._label_font = QFont()
        self._label_font.setPixelSize(11)
        self.scrollbar = QScrollBar(Qt.Orientation.Vertical)
        self.scrollbar.setToolTip(
            "Scroll through the guest physical address space (mouse wheel; Ctrl+wheel zooms)"
        )
        self.scrollbar.valueChanged.connect(self._on_scrollbar)
        self.header = QLabel(" ")
        self.header.setObjectName("gpa_map_header")
        self.header.setTextFormat(Qt.TextFormat.PlainText)
        self.header.setToolTip("The page under the mouse, and the zoom (bytes per row)")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.view, 1)
        row.addWidget(self.scrollbar)
        self.side_row = row  # the minimap goes between the map and its scroll bar
        col = QVBoxLayout(self)
        col.setContentsMargins(2, 2, 2, 2)
        col.setSpacing(2)
        col.addWidget(self.header)
        col.addLayout(row, 1)
        self.vb.sigResized.connect(self._on_resize)
        self.view.setToolTip("")

    def set_ui_scale(self, scale: float) -> None:
        """Text, lines and patterns `scale` times their size (presentation mode)."""
        self.ui_scale = scale
        self.gutter_px = round(GUTTER_PX * scale)
        self.label_px = LABEL_PX * scale
        self._label_font.setPixelSize(round(11 * scale))
        for t in self._labels:
            t.setFont(self._label_font)
        tick = QFont()
        tick.setPixelSize(round(11 * scale))
        for ax in (self.left_axis, self.bottom_axis):
            ax.setStyle(tickFont=tick)
            ax.label.setFont(tick)
        for item, width in (
            (self.outline, 1.6),
            (self.brackets, 3.0),
            (self.range_halo, 4.0),
            (self.range_item, 2.0),
            (self.cursor_item, 2.5),
        ):
            pen = item.pen()
            pen.setWidthF(width * scale)
            item.setPen(pen)
        self.cells.set_scale(scale)
        self.patterns.set_scale(scale)
        self.fold_bands.font.setPixelSize(round(11 * scale))
        self.fold_bands._texts.clear()
        self.block_labels.set_font_px(round(13 * scale))
        self._axis_width = 0  # _fit_axis measures again with the new font
        self._on_resize()

    def apply_theme(self, theme) -> None:
        """Light or dark around the states' colours (imemviz.app.plot_theme)."""
        self.theme = theme
        self.view.setBackground(theme.background)
        self.plot.apply_theme(theme)
        self.bottom_axis.setLabel("offset in row", color=theme.text)
        self.img.setLookupTable(lut(theme.dark))
        for item, colour in (
            (self.outline, theme.outline),
            (self.brackets, theme.text),
            (self.range_item, theme.selection),
            (self.range_halo, theme.halo),
            (self.cursor_item, theme.selection),
            (self.hover_item, theme.muted),
        ):
            pen = item.pen()
            pen.setColor(QColor(colour))
            item.setPen(pen)
        self.hatch.setBrush(QBrush(QColor(theme.hole_ink), Qt.BrushStyle.BDiagPattern))
        self.fold_bands.background = QColor(theme.background)
        self.fold_bands.text_colour = QColor(theme.text)
        self.block_labels.background = QColor(theme.background)
        self.block_labels.text_colour = QColor(theme.text)
        self.block_labels.update()
        self._text_colour, self._muted_colour = theme.text, theme.muted
        if self.snapshot is not None:
            self._update_overlays()
        self.fold_bands.update()

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
            frac = (lay.display_y(anchor_gfn) - lay.top) / max(lay.rows_visible(), 1e-9)
            if not 0.0 <= frac <= 1.0:
                frac = 0.5
        lay.zoom(steps, anchor_gfn, frac)
        self.refresh()

    def zoom_all(self, animate: bool = False) -> None:
        self.opened.clear()
        self._update_pins()
        probe = self.layout_.copy()
        probe.fit()
        self.go_to(View.of(probe), animate)

    def show_range(self, start: int, end: int, animate: bool = False) -> None:
        """Zoom so [start, end) fills the view (Z), remembering the view for Back."""
        self.focus = ((start, end),)
        self._update_pins()
        probe = self.layout_.copy()
        probe.show_range(start, end)
        self.go_to(View.of(probe), animate)

    def go_to(self, view: View, animate: bool = False, record: bool = True) -> None:
        """Frame `view` (smoothly with `animate`); `record` keeps the current one for Back."""
        current = View.of(self.layout_)
        if record:
            self.history.push(current)
        if animate:
            self.animator.start(current, view)
        else:
            self.animator.stop()
            view.apply(self.layout_)
            self.refresh()

    def back(self, animate: bool = True) -> bool:
        view = self.history.go_back(View.of(self.layout_))
        if view is not None:
            self.go_to(view, animate, record=False)
        return view is not None

    def forward(self, animate: bool = True) -> bool:
        view = self.history.go_forward(View.of(self.layout_))
        if view is not None:
            self.go_to(view, animate, record=False)
        return view is not None

    def set_fold(self, on: bool) -> None:
        """Fold long runs of empty memory (View > Fold empty memory)."""
        self.layout_.set_fold(on)
        self.refresh()

    def open_fold(self, fold) -> None:
        """Unfold one band (a click on it): its run stays open until Zoom all."""
        self.opened.append(fold.run)
        self._update_pins()
        self.refresh()

    def _update_pins(self) -> None:
        """Ranges never folded: the selected page and the ends of the selected range, the
        focus (what is being framed) and the folds the user opened."""
        pins = list(self.focus) + list(self.opened)
        g, rng = self.selection.gfn, self.selection.range
        if g is not None:
            pins.append((g, g + 1))
        if rng is not None:
            pins += [(rng[0], rng[0] + 1), (rng[1] - 1, rng[1])]
        self.layout_.set_pins(pins)

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
        extent_changed = prev is not None and prev.extent != snap.extent
        slots_changed = prev is not None and prev.slots != snap.slots
        self.snapshot = snap
        lay = self.layout_
        was_fit = lay.row_gfns == lay.fit_row_gfns() and lay.top == 0
        folds_before = lay.foldmap().key()
        lay.extent = max(snap.extent, 1)
        lay.set_runs(snap.runs, None if first else snap.changed)
        if first:
            self.focus = ()
            self.opened.clear()
            self.history.clear()
            self.animator.stop()
            self._update_pins()
            # A new session's first frame waits for its raster: painted now it would show
            # the new layout blank (axes, bands, scroll bar: ~6 ms of GUI time) and be
            # painted again a turn later with the raster.  One paint, in a turn of its own.
            self.paint_hold.hold()
            self.cells.defer = True  # its labels in the turn after its cells
            self._warm_left = 2  # after this turn's posted layouts (frame_fence.AckLater)
            self._warm_timer.start()
        if first or (extent_changed and was_fit):
            lay.fit()  # showing the whole guest: keep showing all of it
        if first or extent_changed or slots_changed or lay.foldmap().key() != folds_before:
            self.refresh()
        elif self._wanted is not None and self._wanted.touches(snap.changed):
            pass  # the engine pushes the new raster of our standing view right after this
        elif self._shown is not None and self._shown.request == self._wanted:
            # Nothing visible changed: the raster on screen is current for this version.
            self._shown = RasterAnswer(self._shown.request, snap.version, self._shown.codes)
            self.drawn.emit()

    def _warm_hop(self) -> None:
        self._warm_left -= 1
        if self._warm_left > 0:
            self._warm_timer.start()
            return
        self.warmed = [warm_picture(ax) for ax in (self.left_axis, self.bottom_axis)]
        # The cell labels' texts next, a slice per turn (WARM_TEXTS: ~2 ms each).
        self.warmed_texts = 0
        QTimer.singleShot(0, self._warm_texts)

    def _warm_texts(self) -> None:
        made, done = self.cells.warm_texts(self.layout_, WARM_TEXTS)
        self.warmed_texts += made
        if not done:
            QTimer.singleShot(0, self._warm_texts)

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
        d0 = self.layout_.foldmap().display_row(req.start // req.row_gfns)
        self.img.setImage(ans.codes, autoLevels=False, levels=(0, 255), autoDownsample=False)
        self.img.setRect(QRectF(0, d0, req.row_gfns, req.rows))
        self.img.show()
        self._shown = ans
        self._shown_d0 = d0
        self.cells.set_data(ans.codes, d0, self.layout_)
        self.patterns.set_data(ans.codes, d0, self.layout_)
        self.block_labels.set_data(ans.codes, d0, self.layout_)
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
        # pyqtgraph applies a new range to its items at the next paint (prepareForPaint),
        # and the labels and markers it moves then ask for another paint: the map was
        # painted twice for one new view (1-4 ms more, often in the same stall).  Applied
        # now, their updates join the one paint.
        self.vb.updateMatrix()
        # The left axis labels display rows with addresses: a new zoom or new folds over
        # the same display range change its labels, which pyqtgraph caches by range.
        key = (lay.row_gfns, lay.foldmap().key())
        if key != getattr(self, "_axis_key", None):
            self._axis_key = key
            self.plot.relabel()
        self._sync_scrollbar()
        self._update_overlays()
        if self._shown is not None and (
            self._shown.request.row_gfns != lay.row_gfns
            or self._shown_d0
            != lay.foldmap().display_row(self._shown.request.start // lay.row_gfns)
        ):
            self.img.hide()  # the old raster is in other coordinates
            self.cells.set_data(None, 0, lay)
            self.patterns.set_data(None, 0, lay)
            self.block_labels.set_data(None, 0, lay)
        self.fold_bands.set_layout(lay)
        self._request_raster()
        self._emit_view()

    def _request_raster(self) -> None:
        lay = self.layout_
        _row0, rows, cols = lay.raster_window()
        pieces = lay.raster_pieces()
        if len(pieces) == 1 and pieces[0][2] < 0:
            self._wanted = RasterRequest(KEY, pieces[0][0], lay.row_gfns, rows, cols)
        else:
            self._wanted = RasterRequest(KEY, pieces[0][0], lay.row_gfns, rows, cols, pieces)
        if self.engine.snapshot is not None:
            self.engine.request_raster(self._wanted)

    def _fit_axis(self) -> None:
        """Make the left axis as wide as its widest label (pyqtgraph drops labels that overflow)."""
        from PySide6.QtGui import QFontMetrics

        widest = fmt_gpa(max(self.layout_.extent - 1, 0) * 4096)
        fm = QFontMetrics(self.left_axis.font())
        w = fm.horizontalAdvance(widest + "0") + 14
        # A guest shorter by a digit or two keeps the width: opening a recording (its
        # start has no memslot yet) or seeking across a memslot's creation would resize
        # the plot: a relayout, a new raster and a second full paint of the map.
        if w > self._axis_width or w < self._axis_width - fm.horizontalAdvance("000"):
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
            outline_path(
                lay.display_ranges((s.base_gfn, min(s.end_gfn, lay.extent)) for s in slots),
                lay.row_gfns,
            )
        )
        gaps = holes(slots, lay.extent)
        self.hatch.setPath(outline_path(lay.display_ranges(gaps), lay.row_gfns))
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
                    self._text_colour,
                )
            )
        for a, b in gaps:
            regions.append(
                (
                    a,
                    b,
                    f"hole · {fmt_size((b - a) * 4096)}\n@ {fmt_gpa(a * 4096)}\nMMIO (no memslot)",
                    self._muted_colour,
                )
            )
        regions.sort()
        path = QPainterPath()
        x_line = r * (1 + 6 / max(lay.width, 1))
        x_text = r * (1 + 12 / max(lay.width, 1))
        placed: list[tuple[str, float, str]] = []
        next_free = top
        for a, b, text, colour in regions:
            y0 = lay.display_y(a)
            y1 = lay.display_y(b) if b < lay.extent else float(lay.rows_total())
            if y1 <= top or y0 >= bottom:
                continue
            vy0, vy1 = max(y0, top), min(y1, bottom)
            path.moveTo(x_line, vy0 + 0.5 / px)
            path.lineTo(x_line, max(vy1 - 0.5 / px, vy0 + 3 / px))
            if y0 >= top:  # a tick where the region starts
                path.moveTo(x_line, y0 + 0.5 / px)
                path.lineTo(x_line + r * 5 / max(lay.width, 1), y0 + 0.5 / px)
            y = max(vy0, next_free)
            if y > bottom - self.label_px / px:  # no room below: as low as fits, if it clears
                y = bottom - self.label_px / px
                if y < next_free - 1e-9:
                    continue
            placed.append((text, y, colour))
            next_free = y + (self.label_px + 4) / px
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
            # Oriented now, not at the paint: a label new or shown again is turned to the
            # view in pyqtgraph's prepareForPaint, and that asked for a second paint.
            t.updateTransform()

    def _on_selection(self, gfn, rng) -> None:
        before = self.layout_.foldmap().key()
        self._update_pins()
        if self.layout_.foldmap().key() != before:
            self.refresh()  # the selection opened a fold: redraw (this runs again from there)
            return
        lay = self.layout_
        if rng is not None and rng[1] - rng[0] > 1:
            path = outline_path(lay.display_ranges([rng]), lay.row_gfns)
            self.range_item.setPath(path)
            self.range_halo.setPath(path)
            self.range_item.show()
            self.range_halo.show()
        else:
            self.range_item.hide()
            self.range_halo.hide()
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
        at_fit = lay.row_gfns == lay._fit and lay.top == 0  # showing everything: keep it so
        lay.resize(max(r.width() - self.gutter_px, 16), max(r.height() - 2 * MARGIN_PX, 16))
        if first or at_fit:
            lay.fit()
        self.refresh()

    # ------------------------------------------------------------------ mouse
    def _gfn_of(self, item_pos) -> int:
        p = self.vb.mapToView(item_pos)
        return self.layout_.gfn_at(p.x(), p.y())

    def on_wheel_zoom(self, steps: int, at: QPointF) -> None:
        """Ctrl+wheel (row_view.RowViewBox): zoom keeping the page under the cursor there."""
        self.animator.stop()
        lay = self.layout_
        g = lay.gfn_at(at.x(), at.y())
        frac = (at.y() - lay.top) / max(lay.rows_visible(), 1e-9)
        lay.zoom(steps, g, min(max(frac, 0.0), 1.0))
        self.refresh()

    def on_wheel_scroll(self, delta: int) -> None:
        """The wheel: 60 px of rows a notch."""
        self.animator.stop()
        self.layout_.scroll_rows(-delta / 120 * 60 / self.layout_.row_px())
        self.refresh()

    def on_click(self, ev) -> None:
        gfn = self._gfn_of(ev.pos())
        mods = ev.modifiers()
        fold = self.layout_.fold_at(self.vb.mapToView(ev.pos()).y())
        if fold is not None and ev.button() == Qt.MouseButton.LeftButton and not mods:
            ev.accept()
            self.open_fold(fold)
            return
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.setFocus()
            if mods & Qt.KeyboardModifier.ShiftModifier:
                self.selection.set_gfn(gfn, extend=True)
                return
            self.selection.set_gfn(gfn)
            if not mods & Qt.KeyboardModifier.ControlModifier:
                self.clicked.emit(gfn)
        elif ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            rng = self.selection.range
            if rng is None or not rng[0] <= gfn < rng[1]:
                self.selection.set_gfn(gfn)
            self.contextMenuRequested.emit(
                gfn, QPoint(int(ev.screenPos().x()), int(ev.screenPos().y()))
            )

    def on_drag(self, ev) -> None:
        ev.accept()
        self.animator.stop()
        if ev.button() == Qt.MouseButton.MiddleButton:
            if ev.isStart():
                self._pan_from = (ev.buttonDownPos().y(), self.layout_.top)
            if self._pan_from is not None:
                y0, top0 = self._pan_from
                self.layout_.top = top0 - (ev.pos().y() - y0) / self.layout_.row_px()
                self.refresh()
            if ev.isFinish():
                self._pan_from = None
            return
        if ev.button() != Qt.MouseButton.LeftButton:
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
        if req.row_gfns != self.layout_.row_gfns:
            return None
        fm = self.layout_.foldmap()
        if fm.fold_of_row(gfn // req.row_gfns) >= 0:
            return None
        row = fm.display_row(gfn // req.row_gfns) - self._shown_d0
        if not 0 <= row < req.rows:
            return None
        col = (gfn % req.row_gfns) * req.cols // req.row_gfns
        code = int(s.codes[row, col])
        return code if code < NCODES else None

    # ------------------------------------------------------------------ keys
    def keyPressEvent(self, ev) -> None:
        g = self.selection.gfn
        lay = self.layout_
        key, mods = ev.key(), ev.modifiers()
        extend = bool(mods & Qt.KeyboardModifier.ShiftModifier)
        page_rows = max(1, int(lay.rows_visible()) - 1)
        moves = {
            Qt.Key.Key_Left: -1,
            Qt.Key.Key_Right: 1,
            Qt.Key.Key_Up: -lay.row_gfns,
            Qt.Key.Key_Down: lay.row_gfns,
            Qt.Key.Key_PageUp: -page_rows * lay.row_gfns,
            Qt.Key.Key_PageDown: page_rows * lay.row_gfns,
        }
        if key in moves:
            start = g if g is not None else lay.gfn_at(0, lay.top)
            new = min(max(start + moves[key], 0), lay.extent - 1)
            self.selection.set_gfn(new, extend=extend)
            lay.ensure_visible(new)
            self.refresh()
            ev.accept()
            return
        if key in (Qt.Key.Key_Home, Qt.Key.Key_End):
            new = 0 if key == Qt.Key.Key_Home else lay.extent - 1
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
    rows.append(("attributes", "PRIVATE" if is_private_attr(info["attributes"]) else "shared"))
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
