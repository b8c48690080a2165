"""Host folios: a guest_memfd file's offset space or the host pfn space, drawn like the map.

One row after the other, lowest page at the top; each pixel is the most
significant `HostCode` of the pages it covers (`imemviz.model.host_raster`),
shown as one uint8 `ImageItem` with a lookup table in the row-raster view the
map draws with too (`row_view.RowPlot`: its wheel, axis and outlines).  The spaces come from the
engine feed as interval arrays, so a redraw (resize, zoom, scroll, another
space) costs the pixels plus the intervals in view.  Hover names the folio
and the gfns it backs; a click highlights them everywhere.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainterPath
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from imemviz.app.feeds import HostSpaces, PaneFeed
from imemviz.app.highlight import Highlight
from imemviz.app.panes.row_view import RowPlot
from imemviz.app.records import Snapshot
from imemviz.app.selection import SelectionModel
from imemviz.app.worker import Engine
from imemviz.model.host_raster import (
    HOST_LEGEND,
    HostCode,
    Space,
    folio_pfns,
    host_lut,
    reduce_rows,
)
from imemviz.model.protocols import file_to_gfns, gfns_to_files, merge

SOURCE = "folios"
ROW_PX = 12  # screen pixels per row: a row is a band a person can point at
MIN_HL_PX = 6  # a highlighted page is at least this wide on screen
MAX_COLS = 1024
PFN_MODE = -1  # `mode` value of the host pfn space (file modes are fds)


def _size(pages: int) -> str:
    b = pages << 12
    for suffix, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if b >= 1 << shift:
            v = b / (1 << shift)
            return f"{v:.3g}{suffix}"
    return f"{b}B"


class FoliosPane(QWidget):
    drawn = Signal()

    def __init__(
        self, engine: Engine, feed: PaneFeed, selection: SelectionModel, parent=None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("folios")
        self.setToolTip("Host memory: guest_memfd folios by order, free and other host pages")
        self.selection = selection
        self.spaces: HostSpaces | None = None
        self.snapshot: Snapshot | None = None
        self.mode = PFN_MODE
        self.zoom = 0  # each step halves the pages per row
        self.top = 0  # first row shown
        self.page_window: tuple[int, int, int, int] | None = None  # start, row_pages, rows, cols
        self.codes: np.ndarray | None = None
        self.highlight: Highlight | None = None
        self._build()
        feed.hostReady.connect(self.set_spaces)
        engine.snapshotReady.connect(self._on_snapshot)
        selection.changed.connect(self._on_selection)
        selection.highlighted.connect(self._on_highlight)

    def _build(self) -> None:
        self.space_box = QComboBox()
        self.space_box.setObjectName("folios_space")
        self.space_box.setToolTip("Which space to draw: host pfns or a guest_memfd's offsets")
        self.space_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.space_box.currentIndexChanged.connect(self._on_space_box)
        self.zoom_in = QToolButton()
        self.zoom_in.setText("+")
        self.zoom_out = QToolButton()
        self.zoom_out.setText("−")
        self.zoom_in.setToolTip("Zoom in (Ctrl+wheel)")
        self.zoom_out.setToolTip("Zoom out (Ctrl+wheel)")
        self.zoom_in.clicked.connect(lambda: self.set_zoom(self.zoom + 1))
        self.zoom_out.clicked.connect(lambda: self.set_zoom(self.zoom - 1))
        self.header = QLabel(" ")
        self.header.setObjectName("folios_header")
        self.header.setTextFormat(Qt.TextFormat.PlainText)
        legend = " ".join(
            f"<span style='color:{'#d0d0d0' if code == HostCode.FREE else c};font-size:16px'>"
            f"&#9632;</span>&nbsp;{n}&nbsp;"
            for code, (n, c, _) in HOST_LEGEND.items()
            if code != HostCode.OUTSIDE
        )
        self.legend = QLabel(legend)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setToolTip(
            "\n".join(f"{n}: {m}" for code, (n, _, m) in HOST_LEGEND.items() if code)
        )
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground("w")
        self.axis = RowAxis(self)
        self.axis.setWidth(96)
        self.plot = RowPlot(self, self.axis, host_lut())
        self.view.addItem(self.plot)
        self.vb = self.plot.vb
        self.img = self.plot.img
        from imemviz.app import plot_theme

        plot_theme.follow(self.apply_theme)  # the theme now (dark at start too) and later
        # An outline, never a fill: a tint would change the colours that carry meaning.
        self.hl_item = self.plot.add_outline(QColor(220, 0, 120), 2.0, 10)
        self.view.scene().sigMouseMoved.connect(self._hover)
        self.vb.sigResized.connect(self.redraw)
        top = QHBoxLayout()
        top.addWidget(self.space_box)
        top.addWidget(self.zoom_out)
        top.addWidget(self.zoom_in)
        top.addWidget(self.header, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addWidget(self.legend)
        lay.addWidget(self.view, 1)

    def apply_theme(self, theme) -> None:
        """Dark or light around the host colours (imemviz.app.plot_theme)."""
        self.view.setBackground(theme.background)
        self.plot.apply_theme(theme)
        table = host_lut().copy()
        table[HostCode.OUTSIDE] = [int(theme.background[i : i + 2], 16) for i in (1, 3, 5)]
        self.img.setLookupTable(table)

    # ------------------------------------------------------------ data
    def _on_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap

    def set_spaces(self, spaces: HostSpaces) -> None:
        self.spaces = spaces
        box = self.space_box
        wanted = [(f"host pfns ({_size(spaces.pfn.limit)})", PFN_MODE)] + [
            (f"guest_memfd fd {fd} ({_size(s.limit)})", fd) for fd, s in spaces.files.items()
        ]
        if [box.itemData(i) for i in range(box.count())] != [m for _, m in wanted]:
            box.blockSignals(True)
            box.clear()
            for text, m in wanted:
                box.addItem(text, m)
            i = box.findData(self.mode)
            box.setCurrentIndex(max(i, 0))
            self.mode = box.currentData()
            box.blockSignals(False)
        self.redraw()

    def space(self) -> Space | None:
        if self.spaces is None:
            return None
        if self.mode == PFN_MODE:
            return self.spaces.pfn
        return self.spaces.files.get(self.mode)

    def set_mode(self, mode: int) -> None:
        i = self.space_box.findData(mode)
        if i >= 0:
            self.space_box.setCurrentIndex(i)

    def _on_space_box(self) -> None:
        self.mode = self.space_box.currentData()
        self.zoom = self.top = 0
        self.redraw()

    # ------------------------------------------------------------ drawing
    def _geometry(self, space: Space) -> tuple[int, int, int, int]:
        """(start, row_pages, rows, cols) of the view for the widget's size and zoom."""
        w = max(16, int(self.vb.width()))
        h = max(16, int(self.vb.height()))
        rows_fit = max(1, h // ROW_PX)
        base = max(1, math.ceil(space.limit / rows_fit))
        row_pages = max(16, 1 << max(0, math.ceil(math.log2(base)) - self.zoom))
        cols = min(w, MAX_COLS, row_pages)
        total_rows = max(1, math.ceil(space.limit / row_pages))
        self.top = max(0, min(self.top, total_rows - rows_fit))
        return self.top * row_pages, row_pages, min(rows_fit, total_rows), cols

    def redraw(self) -> None:
        space = self.space()
        if space is None:
            return
        start, row_pages, rows, cols = self._geometry(space)
        self.page_window = (start, row_pages, rows, cols)
        self.codes = reduce_rows(space, start, row_pages, rows, cols)
        self.plot.show_codes(self.codes, QRectF(0, 0, cols, rows))
        self.vb.setRange(xRange=(0, cols), yRange=(0, rows), padding=0.0)
        self.plot.relabel()
        self._draw_highlight()
        what = "pfn" if self.mode == PFN_MODE else "index"
        self.header.setText(
            f"{what} {start:#x} – {start + rows * row_pages:#x}   row = {_size(row_pages)}"
        )
        self.drawn.emit()

    def set_zoom(self, zoom: int, anchor: int | None = None) -> None:
        space = self.space()
        if space is None:
            return
        if anchor is None and self.page_window is not None:
            s, rp, rows, _ = self.page_window
            anchor = s + rows * rp // 2
        self.zoom = max(0, min(24, zoom))
        _, row_pages, rows, _ = self._geometry(space)
        if anchor is not None:
            self.top = max(0, anchor // row_pages - rows // 2)
        self.redraw()

    def show_page(self, page: int) -> None:
        """Scroll so that `page` is in view (zoom unchanged)."""
        space = self.space()
        if space is None or self.page_window is None:
            return
        s, rp, rows, _ = self.page_window
        if not s <= page < s + rows * rp:
            self.top = max(0, page // rp - rows // 2)
            self.redraw()

    def _ranges_to_path(self, ranges) -> QPainterPath:
        path = QPainterPath()
        if self.page_window is None:
            return path
        s, rp, rows, cols = self.page_window
        end = s + rows * rp
        scale = cols / rp
        # A single page in a row of thousands would be a hairline: give it a visible width.
        min_w = MIN_HL_PX * cols / max(1.0, self.vb.width())
        for a, b in ranges[:512]:
            a, b = max(a, s), min(b, end)
            if a >= b:
                continue
            r0, r1 = (a - s) // rp, (b - 1 - s) // rp
            for r in range(r0, min(r1, r0 + rows) + 1):
                x0 = (max(a, s + r * rp) - s - r * rp) * scale
                x1 = (min(b, s + (r + 1) * rp) - s - r * rp) * scale
                w = max(x1 - x0, min_w)
                path.addRect(QRectF(min(x0, cols - w), r, w, 1))
        return path

    def highlighted_ranges(self) -> list[tuple[int, int]]:
        """The ranges of the current space the highlight covers (pages of that space)."""
        hl = self.highlight
        if hl is None:
            return []
        if self.mode == PFN_MODE:
            return list(hl.pfns)
        return [(s, e) for fd, s, e in hl.files if fd == self.mode]

    def _draw_highlight(self) -> None:
        self.hl_item.setPath(self._ranges_to_path(self.highlighted_ranges()))

    # ------------------------------------------------------------ cross-highlighting
    def _slots(self):
        return self.snapshot.slots if self.snapshot is not None else ()

    def _on_selection(self, gfn, rng) -> None:
        if gfn is None or self.spaces is None:
            return
        a, b = rng if rng is not None else (gfn, gfn + 1)
        files = gfns_to_files(self._slots(), a, b)
        pfns = []
        for fd, s, e in files:
            sp = self.spaces.files.get(fd)
            if sp is not None:
                pfns += folio_pfns(sp, s, e)
        self.highlight = Highlight(((a, b),), merge(pfns), tuple(files), "selection")
        self._draw_highlight()

    def _on_highlight(self, hl: Highlight | None) -> None:
        if hl is None:  # back to what the selection implies
            self.highlight = None
            self._on_selection(self.selection.gfn, self.selection.range)
            self._draw_highlight()
            return
        if hl is not None and not hl.files and hl.gfns:
            files = [f for s, e in hl.gfns[:64] for f in gfns_to_files(self._slots(), s, e)]
            hl = Highlight(hl.gfns, hl.pfns, tuple(files), hl.source, hl.label)
        self.highlight = hl
        self._draw_highlight()
        ranges = self.highlighted_ranges()
        if ranges and hl is not None and hl.source != SOURCE:
            self.show_page(ranges[0][0])

    # ------------------------------------------------------------ mouse
    def page_at(self, x: float, y: float) -> int | None:
        if self.page_window is None:
            return None
        s, rp, rows, cols = self.page_window
        if not (0 <= x < cols and 0 <= y < rows):
            return None
        return s + int(y) * rp + int(x * rp / cols)

    def describe(self, page: int) -> tuple[str, Highlight | None]:
        """A line for the page under the mouse and what clicking it highlights."""
        space = self.space()
        if space is None:
            return "", None
        code = space.code_at(page)
        name = HOST_LEGEND[HostCode(code)][0]
        what = "pfn" if self.mode == PFN_MODE else "index"
        i = space.at(page)
        if i < 0 or space.fd[i] < 0:
            return f"{what} {page:#x}: {name}", Highlight(
                (), ((page, page + 1),) if self.mode == PFN_MODE else (), (), SOURCE
            )
        fd, index, pfn, n = space.folio_at(i, page)  # the folio in a run of folios
        gfns = file_to_gfns(self._slots(), fd, index, index + n)
        backs = ", ".join(f"gfn {g0:#x}–{g1 - 1:#x}" for g0, g1 in gfns) or "no gfn (unbound)"
        text = (
            f"{what} {page:#x}: folio {_size(n)} of fd {fd} index {index:#x}, pfn {pfn:#x}"
            f"{' HWPOISON' if code == HostCode.HWPOISON else ''}; backs {backs}"
        )
        hl = Highlight(tuple(gfns), ((pfn, pfn + n),), ((fd, index, index + n),), SOURCE, text)
        return text, hl

    def _hover(self, scene_pos) -> None:
        p = self.vb.mapSceneToView(scene_pos)
        page = self.page_at(p.x(), p.y())
        if page is not None:
            text, _ = self.describe(page)
            self.header.setText(text)
            self.view.setToolTip(text)

    def on_click(self, ev) -> None:
        p = self.vb.mapSceneToView(ev.scenePos())
        page = self.page_at(p.x(), p.y())
        if page is not None:
            ev.accept()
            self.click_page(page)

    def click_page(self, page: int) -> None:
        """Highlight the folio at `page` everywhere (the map selects the gfns it backs)."""
        text, hl = self.describe(page)
        if hl is None:
            return
        self.header.setText(text)
        span = hl.gfn_span()
        if span is not None:
            self.selection.set_range(*span)
        self.selection.set_highlight(hl)

    def on_wheel_zoom(self, steps: int, at: QPointF) -> None:
        """Ctrl+wheel (row_view.RowViewBox): zoom around the page under the cursor."""
        self.set_zoom(self.zoom + steps, self.page_at(at.x(), at.y()))

    def on_wheel_scroll(self, delta: int) -> None:
        """The wheel: three rows a notch."""
        steps = 1 if delta > 0 else -1
        self.top = max(0, self.top - 3 * steps)
        self.redraw()


class RowAxis(pg.AxisItem):
    """The left axis: the first pfn (or file index) of each row, in hex."""

    def __init__(self, pane: FoliosPane) -> None:
        super().__init__("left")
        self.pane = pane

    def tickStrings(self, values, scale, spacing):
        w = self.pane.page_window
        if w is None:
            return ["" for _ in values]
        start, rp, rows, _ = w
        return [f"{start + int(v) * rp:#x}" if 0 <= v < rows else "" for v in values]

    def tickValues(self, minVal, maxVal, size):
        w = self.pane.page_window
        if w is None:
            return []
        rows = w[2]
        step = max(1, math.ceil(rows / max(1, size / 28)))  # a label every 28 px or more
        # Ticks at row centres: a label names the row it sits on.
        return [(step, [r + 0.5 for r in range(0, rows, step)])]
