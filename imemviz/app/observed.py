"""The observed-timeline window: what a real host traced, in the simulator's panes.

`imemviz OUT` (an observed timeline from `imemviz import`) opens this window
instead of the simulator's: the GPA map (the same pane, fed by
`ObservedEngine`), a scrubber over real time, the event log (every event with
the kernel's own text; disagreements with the model marked there and on the
map, observed_marks.py), rates
(faults/s, conversions/s) with the phases of the VM's life, counters of the
state at the scrubbed point, the inspector of the page under the cursor and
the legend, including the colours for what the trace cannot tell.  A vCPU
filter narrows the event log and the rates.  File > Import trace… (here and
in the simulator's window) runs `imemviz import` on a worker thread with a
progress bar and Cancel.
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt, QThread, Signal, Slot
from PySide6.QtGui import QAction, QColor, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QScrollArea,
    QSlider,
    QTableView,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from imemviz.app import observed_palette
from imemviz.app.observed_engine import ObservedEngine
from imemviz.app.observed_marks import DisagreementMarks
from imemviz.app.panes.gpa_map import GpaMapPane
from imemviz.app.panes.legend import swatch
from imemviz.app.panes.map_layout import fmt_gpa
from imemviz.app.records import RasterAnswer
from imemviz.app.selection import SelectionModel
from imemviz.io.trace import observed_raster as OR
from imemviz.io.trace import observed_stats as OS
from imemviz.io.trace.timeline import ObservedTimeline
from imemviz.model.raster import NCODES, Code

_OPEN_WINDOWS: list[QMainWindow] = []  # keep windows opened from the simulator alive


# ------------------------------------------------------------------ the map
class ObservedMapPane(GpaMapPane):
    """The simulator's GPA map drawing observed codes (with the unknowns)."""

    def _build(self) -> None:
        super()._build()
        self.img.setLookupTable(observed_palette.observed_lut())
        self.block_labels.name_of = observed_palette.code_name
        self.fold_bands.name_of = observed_palette.code_name  # type: ignore[method-assign]

    def apply_theme(self, theme) -> None:
        super().apply_theme(theme)  # it sets the simulator's table: unknowns were magenta
        self.img.setLookupTable(observed_palette.observed_lut(theme.dark))

    def _on_raster(self, ans: RasterAnswer) -> None:
        super()._on_raster(ans)
        if self._shown is ans:
            # Cell labels know the simulator's codes only: unknowns get none.
            codes = np.where(ans.codes >= NCODES, np.uint8(Code.OUTSIDE), ans.codes)
            self.cells.set_data(codes, ans.request.start // ans.request.row_gfns, self.layout_)

    mark_layer: Any = None  # the window's DisagreementMarks

    def on_click(self, ev) -> None:
        if (
            self.mark_layer is not None
            and ev.button() == Qt.MouseButton.LeftButton
            and self.mark_layer.click(ev.scenePos())
        ):
            ev.accept()
            return
        super().on_click(ev)

    def code_at(self, gfn: int) -> int | None:
        """The code drawn for gfn (a folded gfn: its band's), None where it is not shown."""
        s = self._shown
        if s is None:
            return None
        req, r = s.request, s.request.row_gfns
        if r != self.layout_.row_gfns:
            return None
        pieces = req.pieces or ((req.start, req.rows, -1),)
        at = 0
        for k, (g, n, fill) in enumerate(pieces):
            # a band stands for the gfns up to the next piece; rows for their own
            end = pieces[k + 1][0] if fill >= 0 and k + 1 < len(pieces) else g + n * r
            if g <= gfn < end:
                if fill >= 0:
                    return fill
                return int(s.codes[at + (gfn - g) // r, (gfn % r) * req.cols // r])
            at += n
        return None

    def _describe(self, gfn: int) -> str:
        code = self.code_at(gfn)
        text = f"gpa {fmt_gpa(gfn * 4096)}  gfn {gfn:#x}"
        return text + (f"  ·  {observed_palette.code_name(code)}" if code is not None else "")

    def _on_inspect(self, ans) -> None:
        if ans.key != "hover" or ans.gfn != self._hover_gfn:
            return
        from PySide6.QtGui import QCursor
        from PySide6.QtWidgets import QToolTip

        QToolTip.showText(QCursor.pos(), info_html(ans.info), self.view)


def info_html(info: dict[str, Any]) -> str:
    rows = [("gpa", f"{fmt_gpa(info['gfn'] * 4096)} (gfn {info['gfn']:#x})")]
    rows.append(("attribute", info["attribute"] or "unknown (no event has said)"))
    slot = info["memslot"]
    if isinstance(slot, dict):
        gm = f", guest_memfd fd {slot['gmem_fd']}" if slot["gmem_fd"] >= 0 else ""
        rows.append(("memslot", f"{slot['slot']} (as {slot['as_id']}){gm}"))
    else:
        rows.append(("memslot", str(slot) if slot is not None else "none: a hole"))
    if info["leaves"]:
        for lf in info["leaves"]:
            kind = {True: "private", False: "shared", None: "private or shared unknown"}[
                lf["private"]
            ]
            rows.append(("leaf", f"{lf['level']} pfn {lf['pfn']:#x}, {kind}"))
    else:
        rows.append(("leaf", "none"))
    rows.append(("folio, host page", "not in the trace"))
    body = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    return f"<table cellspacing=0 cellpadding=1>{body}</table>"


# ------------------------------------------------------------------ event log
class EventModel(QAbstractTableModel):
    """Rows are event indices (all, or one vCPU's); text is read from the file on demand."""

    HEAD = ("#", "time", "vCPU", "event", "what the trace printed")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tl: ObservedTimeline | None = None
        self.rows = np.zeros(0, dtype=np.int64)
        self.marked: set[int] = set()
        self._cache: OrderedDict[int, dict] = OrderedDict()

    def set_timeline(self, tl: ObservedTimeline, vcpu: int | None) -> None:
        self.beginResetModel()
        self.tl = tl
        self.rows = np.arange(len(tl)) if vcpu is None else np.flatnonzero(tl.vcpu == vcpu)
        self.marked = {int(m["i"]) for m in tl.marks}
        self._cache.clear()
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return len(self.HEAD)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEAD[section]
        return None

    def _event(self, i: int) -> dict:
        d = self._cache.get(i)
        if d is None:
            assert self.tl is not None
            d = self.tl.event_at(i)
            self._cache[i] = d
            if len(self._cache) > 2000:
                self._cache.popitem(last=False)
        return d

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or self.tl is None:
            return None
        i = int(self.rows[index.row()])
        if role == Qt.ItemDataRole.BackgroundRole and i in self.marked:
            return QColor(255, 215, 215)
        if role == Qt.ItemDataRole.ToolTipRole and i in self.marked:
            ms = [m for m in self.tl.marks if m["i"] == i]
            return "\n".join(f"{m['what']}: kernel {m['kernel']}; model {m['model']}" for m in ms)
        if role == Qt.ItemDataRole.ToolTipRole and index.column() == 4:
            d = self._event(i)
            return d.get("d")
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        c = index.column()
        if c == 0:
            return str(i)
        if c == 1:
            return f"{self.tl.ts[i] - self.tl.ts[0]:.6f}"
        if c == 2:
            v = int(self.tl.vcpu[i])
            return "" if v < 0 else str(v)
        d = self._event(i)
        if c == 3:
            return d["e"]
        # A decoded event (the RMP dumps of dmesg: io/trace/rmp_dump.py): printed, then decoded.
        return d["p"] if "d" not in d else f"{d['p']}  ⇒  {d['d']}"


# ------------------------------------------------------------------ the window
def _scrolled(w: QWidget, width: int = 0) -> QScrollArea:
    """`w` scrolling up and down only, at least as wide as it wants (or `width`)."""
    area = QScrollArea()
    area.setWidget(w)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    bar = area.verticalScrollBar().sizeHint().width()
    area.setMinimumWidth(max(width, w.sizeHint().width()) + bar)
    return area


class ObservedWindow(QMainWindow):
    def __init__(self, path: str, engine: ObservedEngine | None = None) -> None:
        super().__init__()
        self.setObjectName("observed_window")
        self.setWindowTitle(f"imemviz – observed: {os.path.basename(path)}")
        self.path = path
        self.engine = engine or ObservedEngine(self)
        self.selection = SelectionModel(self)
        self.tl: ObservedTimeline | None = None
        self.index = -1
        self.vcpu: int | None = None
        self._drawn_index = -2
        self.map = ObservedMapPane(self.engine, self.selection)  # type: ignore[arg-type]
        self.setCentralWidget(self.map)
        self.mark_layer = DisagreementMarks(self.map, self._on_mark_clicked)
        self.map.mark_layer = self.mark_layer
        self._build_scrubber()
        self._build_docks()
        self._build_menu()
        self.status = QLabel("Loading…")
        self.statusBar().addWidget(self.status, 1)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(200)
        self.statusBar().addPermanentWidget(self.progress)
        self.zoom_label = QLabel("")
        self.statusBar().addPermanentWidget(self.zoom_label)
        self.map.viewChanged.connect(self.zoom_label.setText)
        e = self.engine
        e.loaded.connect(self._on_loaded)
        e.progress.connect(self._on_progress)
        e.failed.connect(self._on_failed)
        e.pointReady.connect(self._on_point)
        self.selection.changed.connect(self._on_selection)
        self.resize(1600, 1000)
        if engine is None:
            self.engine.start()
        self.engine.load(path)

    # widgets
    def _build_scrubber(self) -> None:
        bar = QWidget()
        row = QHBoxLayout(bar)
        row.setContentsMargins(4, 2, 4, 2)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("scrubber")
        self.slider.setRange(0, 0)
        self.slider.setToolTip("Scrub through real time: the state after each event")
        self.slider.valueChanged.connect(self._on_slider)
        self.time_label = QLabel("t = –")
        self.time_label.setMinimumWidth(260)
        self.vcpu_box = QComboBox()
        self.vcpu_box.setObjectName("vcpu_filter")
        self.vcpu_box.setToolTip("Show one vCPU's events and rates")
        self.vcpu_box.addItem("all vCPUs", None)
        self.vcpu_box.currentIndexChanged.connect(self._on_vcpu)
        row.addWidget(QLabel("time"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.time_label)
        row.addWidget(self.vcpu_box)
        from PySide6.QtWidgets import QToolBar

        tb = QToolBar("Timeline", self)
        tb.setObjectName("observed_timeline_bar")
        tb.setMovable(False)
        tb.addWidget(bar)
        self.addToolBar(Qt.ToolBarArea.BottomToolBarArea, tb)

    def _build_docks(self) -> None:
        self.events = EventModel(self)
        self.table = QTableView()
        self.table.setObjectName("observed_events")
        self.table.setModel(self.events)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.clicked.connect(self._on_event_clicked)
        for c, wdt in enumerate((70, 90, 45, 190)):
            self.table.setColumnWidth(c, wdt)
        log_dock = self._dock("Event log", self.table, Qt.DockWidgetArea.BottomDockWidgetArea)
        rates = QWidget()
        col = QVBoxLayout(rates)
        col.setContentsMargins(2, 2, 2, 2)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(120)  # readable curves even at 1280x720
        self.plot.setBackground("w")
        self.plot.setLabel("bottom", "seconds since the first event")
        self.plot.setLabel("left", "events / s")
        # The key sits above the plot, one row, not over the curves (a legend inside the
        # plot area hid the faults/s curve, which runs along the top).
        self.rates_key = QLabel("")
        self.rates_key.setObjectName("observed_rates_key")
        self.time_cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#b71c1c", width=1.5))
        self.plot.addItem(self.time_cursor)
        self.phase_label = QLabel("")
        self.phase_label.setWordWrap(True)
        col.addWidget(self.rates_key)
        col.addWidget(self.plot, 1)
        col.addWidget(self.phase_label)
        rates_dock = self._dock("Rates", rates, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.splitDockWidget(log_dock, rates_dock, Qt.Orientation.Horizontal)
        self.resizeDocks([log_dock, rates_dock], [900, 500], Qt.Orientation.Horizontal)
        self.resizeDocks([log_dock], [300], Qt.Orientation.Vertical)
        self.inspector = QTextEdit()
        self.inspector.setReadOnly(True)
        self.inspector.setObjectName("observed_inspector")
        insp = self._dock("Inspector", self.inspector, Qt.DockWidgetArea.RightDockWidgetArea)
        self.counters = QLabel("")
        self.counters.setObjectName("observed_counters")
        self.counters.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        # Counters and legend scroll rather than set the window's minimum height: the
        # window fits a 1280x720 projector.
        counters = self._dock(
            "Counters",
            _scrolled(self.counters, self.fontMetrics().horizontalAdvance("x" * 26)),
            Qt.DockWidgetArea.RightDockWidgetArea,
        )
        legend = QWidget()
        grid = QGridLayout(legend)
        grid.setVerticalSpacing(1)
        for r, entry in enumerate(observed_palette.legend()):
            sw = QLabel()
            sw.setPixmap(swatch(entry))
            lab = QLabel(entry.name)
            lab.setToolTip(entry.description)
            sw.setToolTip(entry.description)
            grid.addWidget(sw, r, 0)
            grid.addWidget(lab, r, 1)
        grid.setRowStretch(grid.rowCount(), 1)
        legend_dock = self._dock("Legend", _scrolled(legend), Qt.DockWidgetArea.RightDockWidgetArea)
        # The inspector is empty until a page is picked: the counters and legend first.
        self.resizeDocks([insp, counters, legend_dock], [110, 330, 300], Qt.Orientation.Vertical)

    def _dock(self, title: str, w: QWidget, area) -> QDockWidget:
        d = QDockWidget(title, self)
        d.setObjectName("dock_observed_" + title.lower().replace(" ", "_"))
        d.setWidget(w)
        self.addDockWidget(area, d)
        return d

    def _build_menu(self) -> None:
        m = self.menuBar().addMenu("&File")
        a = QAction("&Import trace…", self)
        a.setToolTip("Read kernel and QEMU traces into an observed timeline and open it")
        a.triggered.connect(lambda: import_dialog(self))
        m.addAction(a)
        a = QAction("Export as &Perfetto trace…", self)
        a.triggered.connect(self._export_perfetto)
        m.addAction(a)
        a = QAction("&Close", self)
        a.setShortcut(QKeySequence("Ctrl+W"))
        a.triggered.connect(self.close)
        m.addAction(a)

    # engine
    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _on_failed(self, msg: str) -> None:
        self.status.setText(msg.splitlines()[0])
        self.status.setStyleSheet("color: #b71c1c")

    def _on_loaded(self, tl: ObservedTimeline) -> None:
        self.tl = tl
        self.progress.hide()
        st = tl.settings
        failures = sum(1 for m in tl.marks if m.get("kind") == "rmp_failure")
        self.status.setText(
            f"{len(tl)} events · {st.get('vm_type')} VM · {st.get('vendor')} · "
            f"{len(tl.marks) - failures} disagreements with the model"
            + (f" · {failures} RMPUPDATE failures" if failures else "")
        )
        ov = OS.overview(tl)  # computed by the engine's thread
        self.vcpu_box.blockSignals(True)
        for v in ov.vcpus:
            self.vcpu_box.addItem(f"vCPU {v}", v)
        self.vcpu_box.blockSignals(False)
        self.events.set_timeline(tl, None)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(len(tl) - 1, 0))
        self.slider.setValue(max(len(tl) - 1, 0))
        self.slider.blockSignals(False)
        self.index = len(tl) - 1
        self.mark_layer.index = self.index
        self.mark_layer.set_marks(tl.marks)
        self._draw_rates()
        names = ", ".join(f"{n} {b - a:.3f} s" for n, a, b in ov.phases)
        self.phase_label.setText(f"Phases: {names}" if names else "")

    def _draw_rates(self) -> None:
        assert self.tl is not None
        if self.vcpu is None:
            x, ys = OS.overview(self.tl).rates
        else:
            x, ys = OS.rates(self.tl, vcpu=self.vcpu)
        self.plot.clear()
        self.plot.addItem(self.time_cursor)
        colours = ("#0072b2", "#d55e00", "#009e73")
        key = []
        for (name, y), c in zip(ys.items(), colours, strict=False):
            self.plot.plot(x, y, pen=pg.mkPen(c, width=1.5), name=name)
            key.append(f'<span style="color:{c}">&#9472;&#9472;</span>&nbsp;{name}')
        self.rates_key.setText("&nbsp;&nbsp;&nbsp;".join(key))

    def _on_point(self, i: int, counters: dict) -> None:
        self._drawn_index = i
        tl = self.tl
        if tl is None or not len(tl):
            return
        t = float(tl.ts[max(i, 0)] - tl.ts[0])
        self.time_label.setText(f"t = {t:.6f} s · event {i + 1} of {len(tl)}")
        self.time_cursor.setValue(t)
        self.counters.setText("\n".join(f"{k}: {v}" for k, v in counters.items()))
        self.mark_layer.set_index(i)
        self._on_selection(self.selection.gfn, self.selection.range)

    def _on_slider(self, value: int) -> None:
        self.index = value
        self.engine.go(value)

    def go(self, index: int) -> None:
        self.slider.setValue(index)

    def _on_vcpu(self, _pos: int) -> None:
        self.vcpu = self.vcpu_box.currentData()
        if self.tl is not None:
            self.events.set_timeline(self.tl, self.vcpu)
            self._draw_rates()

    def _on_event_clicked(self, index) -> None:
        if self.tl is None:
            return
        i = int(self.events.rows[index.row()])
        self.go(i)
        g = int(self.tl.gfn[i])
        if g >= 0:
            self.selection.set_gfn(g)
            self.map.layout_.ensure_visible(g)
            self.map.refresh()

    def _on_mark_clicked(self, mark: dict) -> None:
        """A disagreement's disc on the map: scrub to its event, select its page and row."""
        i = int(mark["i"])
        self.go(i)
        self.selection.set_gfn(int(mark["gfn"]))
        rows = self.events.rows
        k = int(np.searchsorted(rows, i))
        if k < len(rows) and rows[k] == i:
            self.table.selectRow(k)
            self.table.scrollTo(self.events.index(k, 0))

    def _on_selection(self, gfn, _rng) -> None:
        w = self.engine.worker
        if gfn is None or w._state is None:
            return
        info = OR.gfn_info(w._state, gfn, w._attr_default, w._slots_known)
        self.inspector.setHtml(info_html(info))

    def _export_perfetto(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export Perfetto trace", "", "Perfetto (*.pftrace)"
        )
        if not path:
            return
        from imemviz.io.trace.perfetto_export import PerfettoMissing, export_observed

        try:
            export_observed(self.path, path)
            self.status.setText(f"Perfetto trace written to {path}")
        except (PerfettoMissing, OSError, ValueError) as e:
            self._on_failed(str(e))

    def wait_drawn(self) -> bool:
        return self.tl is not None and self._drawn_index == self.index and self.map.is_drawn()

    def closeEvent(self, ev) -> None:
        self.engine.stop()
        if self in _OPEN_WINDOWS:
            _OPEN_WINDOWS.remove(self)
        super().closeEvent(ev)


def open_observed(path: str) -> ObservedWindow:
    """Open an observed timeline in its own window (kept alive until closed)."""
    w = ObservedWindow(path)
    _OPEN_WINDOWS.append(w)
    w.show()
    return w


# ------------------------------------------------------------------ import dialog
class _ImportWorker(QObject):
    progress = Signal(int, int)
    done = Signal(object, str)  # result or None, error message

    def __init__(self) -> None:
        super().__init__()
        self.cancel = False

    @Slot(list, str)
    def run(self, paths: list, out: str) -> None:
        from imemviz.io.trace.import_process import import_in_child
        from imemviz.io.trace.import_types import ImportError_

        try:
            # In a child process: on this thread it would share the GIL with the GUI.
            res = import_in_child(paths, out, None, None, self.progress.emit, lambda: self.cancel)
        except ImportError_ as e:
            self.done.emit(None, str(e))
            return
        except Exception as e:  # an importer bug: say it, keep the app
            self.done.emit(None, f"import: internal error: {e!r}")
            return
        self.done.emit(res, "")


class ImportDialog(QDialog):
    """Progress and Cancel for one import running on a worker thread."""

    start = Signal(list, str)

    def __init__(self, paths: list[str], out: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("import_dialog")
        self.setWindowTitle("Import trace")
        self.out = out
        self.result_ = None
        self.error = ""
        col = QVBoxLayout(self)
        col.addWidget(QLabel(f"Reading {len(paths)} file(s) into\n{out}"))
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        col.addWidget(self.bar)
        self.message = QLabel("")
        col.addWidget(self.message)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.rejected.connect(self.cancel)
        col.addWidget(self.buttons)
        self.worker_thread = QThread()
        self.worker = _ImportWorker()
        self.worker.moveToThread(self.worker_thread)
        self.worker.progress.connect(self._on_progress)
        self.worker.done.connect(self._on_done)
        self.start.connect(self.worker.run)
        self.worker_thread.start()
        self.start.emit(list(paths), out)

    def _on_progress(self, done: int, total: int) -> None:
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(1000 * done / max(total, 1)))

    def cancel(self) -> None:
        self.worker.cancel = True
        self.message.setText("Cancelling…")

    def _on_done(self, res, error: str) -> None:
        self.result_, self.error = res, error
        self.worker_thread.quit()
        self.worker_thread.wait(30_000)
        if res is not None:
            self.accept()
        else:
            self.message.setText(error)
            self.message.setStyleSheet("color: #b71c1c")
            self.bar.setRange(0, 1)
            self.bar.setValue(0)
            self.buttons.setStandardButtons(QDialogButtonBox.StandardButton.Close)
            self.buttons.rejected.connect(self.reject)

    def closeEvent(self, ev) -> None:
        self.worker.cancel = True
        self.worker_thread.quit()
        self.worker_thread.wait(30_000)
        super().closeEvent(ev)


def import_dialog(
    parent: QWidget, paths: list[str] | None = None, out: str | None = None
) -> ImportDialog | None:
    """File > Import trace…: choose traces and an output, import off the GUI thread, open it."""
    if paths is None:
        paths, _ = QFileDialog.getOpenFileNames(
            parent,
            "Import kernel / QEMU traces",
            "",
            "Traces (*.txt *.log *.dat *.trace);;All files (*)",
        )
        if not paths:
            return None
    if out is None:
        out, _ = QFileDialog.getSaveFileName(
            parent,
            "Save the observed timeline",
            os.path.splitext(paths[0])[0] + ".observed.jsonl",
            "Observed timelines (*.jsonl)",
        )
        if not out:
            return None
    dlg = ImportDialog(paths, out, parent)

    def done(code: int) -> None:
        if code == QDialog.DialogCode.Accepted:
            open_observed(out)

    dlg.finished.connect(done)
    dlg.show()
    return dlg


def run_observed(
    app,
    path: str,
    screenshot: str | None = None,
    *,
    size: tuple[int, int] | None = None,
    at: int | None = None,
) -> int:
    """`imemviz OUT` for an observed timeline: the window, or (screenshot) a PNG of it, of
    a window of `size`, scrubbed to just after its first `at` events."""

    from imemviz.app.main import (
        SCREENSHOT_SIZE,
        SCREENSHOT_TIMEOUT_S,
        save_screenshot,
        wait_until,
    )

    w = ObservedWindow(os.path.abspath(path))
    failures: list[str] = []
    w.engine.failed.connect(failures.append)
    try:
        w.resize(*(size or SCREENSHOT_SIZE))
        w.show()
        if not screenshot:
            return int(app.exec())
        if at is not None:
            if not wait_until(
                app, lambda: w.tl is not None or bool(failures), SCREENSHOT_TIMEOUT_S
            ):
                return save_screenshot(app, w, screenshot, False, failures)
            if w.tl is not None and at > len(w.tl):
                print(
                    f"imemviz: --at {at}: {path} has {len(w.tl)} events (N from 1 to {len(w.tl)})",
                    file=sys.stderr,
                )
                return 2
            w.go(at - 1)
        ok = wait_until(app, lambda: w.wait_drawn() or bool(failures), SCREENSHOT_TIMEOUT_S)
        return save_screenshot(app, w, screenshot, ok, failures)
    finally:
        w.close()
