"""The RMP pane: an SEV-SNP guest's Reverse Map Table, one row per host pfn run.

Rows come from `model/rmp_rows.py` (built on the engine thread by `RmpFeed` after
every op, and for the state at a protocol step while the step-through is on).  The
state column carries its colour and a glyph (`rmp_palette`); the pane is
cross-highlighted with the map: a gfn range selected there highlights the rows of
the pfns behind it, a click on a row selects its gfns (and highlights its pfns in the
host panes).  The rows the last action's RMPUPDATEs, PSMASH, PVALIDATE or launch
commands changed get the map's change mark (`Changes.rmp`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QStyle,
    QStyledItemDelegate,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from imemviz.app.highlight import Highlight
from imemviz.app.rmp_palette import COLOURS, GLYPHS, MEANING
from imemviz.app.selection import SelectionModel
from imemviz.model.rmp_rows import STATE_NAMES, RmpRows, empty, rmp_rows

if TYPE_CHECKING:
    from imemviz.app.marks import MarkController
    from imemviz.app.window import MainWindow
    from imemviz.app.worker import Engine

COLUMNS = ("pfn range", "pages", "state", "size", "ASID", "gpa", "immutable", "VMSA")
SOURCE = "rmp"
_Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()


class RmpFeed(QObject):
    """Builds the RMP rows on the engine thread; `rowsReady(RmpRows)` on the GUI thread.

    Rows are built while the pane is visible (`want`; `always` for tests and
    screenshots), and once when an SNP guest appears (so the pane can come forward);
    a hidden pane's rows go stale and are built when it shows again."""

    rowsReady = Signal(object)

    def __init__(self, engine: Engine, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.want = False
        self.always = False
        self._stale = True
        self._snp = False
        self.destroyed.connect(engine.worker.attach_feeds(self._feed, self._step_feed))

    # These run on the engine thread.
    def _feed(
        self, session: Any, version: int, _no: int, _changed: Any, reset: bool = False
    ) -> None:
        self._emit(session.vm, version, "")

    def _step_feed(self, vm: Any, version: int, label: str) -> None:
        if vm is not None:
            self._emit(vm, version, label)

    def refresh(self, vm: Any, version: int, _leaves: bool, _host: bool) -> None:
        """RefreshFeeds: the pane became visible; build its rows if they are stale."""
        if self._stale and (self.want or self.always):
            self._emit(vm, version, "")

    def _emit(self, vm: Any, version: int, step: str) -> None:
        snp = getattr(vm, "snp", None) is not None
        first, was = snp and not self._snp, self._snp
        self._snp = snp
        if not snp:
            if was:  # a VM of another type now: one empty table
                self.engine.worker.deliver(self.rowsReady, rmp_rows(vm, version, step))
            self._stale = False
            return
        if self.want or self.always or first:
            self.engine.worker.deliver(self.rowsReady, rmp_rows(vm, version, step))
            self._stale = False
        else:
            self._stale = True

    # GUI thread.
    def set_wanted(self, visible: bool) -> None:
        self.want = visible
        if visible and self._stale and self.engine.snapshot is not None:
            from imemviz.app.messages import RefreshFeeds

            self.engine.post(RefreshFeeds(False, False))


def _keep_state_colour(self, option, index) -> None:
    """A selected row keeps its state cell's colour (the selection shows on the others)."""
    QStyledItemDelegate.initStyleOption(self, option, index)
    if index.column() == 2:
        option.state &= ~QStyle.StateFlag.State_Selected


class _StateDelegate(QStyledItemDelegate):
    initStyleOption = _keep_state_colour


class RmpModel(QAbstractTableModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows: RmpRows = empty()
        self.marked = np.zeros(0, bool)  # rows the last action changed

    def set_rows(self, rows: RmpRows) -> None:
        self.beginResetModel()
        self.rows = rows
        self.marked = np.zeros(len(rows), bool)
        self.endResetModel()

    def rowCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return {
                0: "Host pfns of the run (first–last)",
                1: "Pages (pfns) in the run",
                2: "AMD page state: hypervisor, firmware, guest-invalid, guest-valid",
                3: "RMP entry size: 2M entries are authoritative over 512 aligned pfns",
                4: "The guest's ASID the pages are assigned to",
                5: "Guest physical address of the run's first pfn (its RMP gpa)",
                6: "Immutable: only the firmware may change the entry",
                7: "The page is a vCPU's VMSA (save area)",
            }[section]
        return None

    def data(self, index: _Index, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r, c = index.row(), index.column()
        rows = self.rows
        if not 0 <= r < len(rows):
            return None
        st = int(rows.state[r])
        if role == Qt.ItemDataRole.BackgroundRole and c == 2:
            return QBrush(QColor(COLOURS[st][0]))
        if role == Qt.ItemDataRole.ForegroundRole and c == 2:
            return QBrush(QColor(COLOURS[st][1]))
        if role == Qt.ItemDataRole.ToolTipRole:
            return MEANING[st]
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        assigned = st != 0
        if c == 0:
            p, n = int(rows.pfn[r]), int(rows.count[r])
            return f"{p:#x}" if n == 1 else f"{p:#x}–{p + n - 1:#x}"
        if c == 1:
            n = int(rows.count[r])
            k = n // 512 if rows.size_2m[r] else 0
            return f"{n:,}" + (f" ({k}×2M)" if k else "")
        if c == 2:
            return f"{GLYPHS[st]} {STATE_NAMES[st]}"
        if c == 3:
            return ("2M" if rows.size_2m[r] else "4K") if assigned else "–"
        if c == 4:
            return str(rows.asid) if assigned else "–"
        if c == 5:
            g = int(rows.gfn[r])
            if g < 0:
                return "–"
            return f"{g << 12:#x}" if assigned else f"({g << 12:#x})"
        if c == 6:
            return "immutable" if rows.immutable[r] else ""
        if c == 7:
            return "VMSA" if rows.vmsa[r] else ""
        return None

    def highlight_of_row(self, r: int) -> Highlight:
        rows = self.rows
        p, n, g = int(rows.pfn[r]), int(rows.count[r]), int(rows.gfn[r])
        # A VMSA's gpa is no guest memory (svm.h's INITIAL_VMSA_GPA): only its pfn lights up.
        gfns = () if g < 0 or rows.vmsa[r] else ((g, g + n),)
        label = f"RMP {STATE_NAMES[int(rows.state[r])]} pfn {p:#x}"
        return Highlight(gfns, ((p, p + n),), (), SOURCE, label)


class RmpPane(QWidget):
    """The table and a line saying what it shows (the present or a step, totals)."""

    def __init__(self, feed: RmpFeed, selection: SelectionModel, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("rmp")
        self.setToolTip(
            "SEV-SNP Reverse Map Table: the host pages behind the guest, one row per run; "
            "click a row to select its gfns"
        )
        self.selection = selection
        self.model = RmpModel(self)
        self.highlighted_rows: list[int] = []
        self._syncing = False
        self.summary = QLabel("not an SEV-SNP guest: no RMP")
        self.summary.setObjectName("rmp_summary")
        # Two lines rather than a cut one when the pane is narrow (a step shown at 1280x720).
        self.summary.setWordWrap(True)
        self.marks_note = QLabel("")
        self.marks_note.setObjectName("rmp_marks_note")
        self.table = QTableView()
        self.table.setObjectName("rmp_table")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().hide()
        vh = self.table.verticalHeader()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vh.setDefaultSectionSize(20)
        hh = self.table.horizontalHeader()
        hh.setStretchLastSection(True)
        for c, w in enumerate((150, 90, 120, 40, 44, 120, 72)):
            self.table.setColumnWidth(c, w)
        self.table.setItemDelegate(_StateDelegate(self.table))
        self.table.clicked.connect(self._on_click)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.marks_note)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        feed.rowsReady.connect(self.set_rows)
        selection.changed.connect(self._on_selection)
        selection.highlighted.connect(self._on_highlight)

    # ------------------------------------------------------------ data
    def set_rows(self, rows: RmpRows) -> None:
        self.model.set_rows(rows)
        self.set_mark_ranges(self._mark_ranges)
        self._update_summary()
        self._on_selection(self.selection.gfn, self.selection.range)

    def _update_summary(self) -> None:
        rows = self.model.rows
        if not len(rows) and rows.asid == 0:
            self.summary.setText("not an SEV-SNP guest: no RMP")
            self.summary.setStyleSheet("")
            return
        n = rows.count
        parts = []
        for st in (1, 3, 2, 0):
            pages = int(n[rows.state == st].sum())
            if pages:
                parts.append(f"{GLYPHS[st]} {STATE_NAMES[st]} {pages:,}")
        two_m = int(n[rows.size_2m].sum()) // 512
        text = f"{len(rows):,} runs, pages by state: " + " · ".join(parts or ["none"])
        text += f" · 2M entries: {two_m:,} · {GLYPHS[0]} other host pages: hypervisor"
        if rows.truncated:
            text += " (first runs only)"
        if rows.step:
            text = f"at {rows.step}: " + text
        self.summary.setText(text)
        self.summary.setStyleSheet("color: #4a148c; font-weight: bold" if rows.step else "")

    # ------------------------------------------------------------ marks
    _mark_ranges: tuple[tuple[int, int], ...] = ()

    def set_mark_ranges(self, ranges: tuple[tuple[int, int], ...]) -> None:
        """Rows meeting these pfn ranges (an action's `Changes.rmp`) get the change mark."""
        self._mark_ranges = tuple(ranges)
        rows = self.model.rows
        mask = np.zeros(len(rows), bool)
        for s, e in ranges:
            mask[rows.rows_of_pfns(s, e)] = True
        self.model.marked = mask
        k = int(mask.sum())
        self.marks_note.setText(f"latest action changed {k:,} outlined run(s)" if k else "")
        self.table.viewport().update()

    def attach_marks(self, marks: MarkController) -> None:
        """The change marks of the last action (imemviz/app/marks.py installs them)."""
        from imemviz.app.row_marks import RowMarkDelegate

        class Delegate(RowMarkDelegate):
            initStyleOption = _keep_state_colour

        self.table.setItemDelegate(Delegate(self.table, marks, self.is_marked))
        marks.marked.connect(lambda ch: self.set_mark_ranges(ch.rmp if ch is not None else ()))
        marks.opacityChanged.connect(lambda _a: self.table.viewport().update())

    def is_marked(self, row: int) -> bool:
        m = self.model.marked
        return 0 <= row < len(m) and bool(m[row])

    # ------------------------------------------------------------ cross-highlight
    def _select_rows(self, rows: np.ndarray) -> None:
        self._syncing = True
        try:
            sm = self.table.selectionModel()
            sel = QItemSelection()
            last = self.model.columnCount() - 1
            for r in rows[:2000].tolist():
                sel.select(self.model.index(r, 0), self.model.index(r, last))
            sm.select(sel, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            self.highlighted_rows = rows.tolist()
            if len(rows):
                self.table.scrollTo(self.model.index(int(rows[0]), 0))
        finally:
            self._syncing = False

    def _on_selection(self, gfn, rng) -> None:
        if self._syncing:
            return
        if gfn is None and rng is None:
            self._select_rows(np.zeros(0, np.int64))
            return
        a, b = rng if rng is not None else (gfn, gfn + 1)
        self._select_rows(self.model.rows.rows_of_gfns(a, b))

    def _on_highlight(self, hl: Highlight | None) -> None:
        if self._syncing or hl is None or getattr(hl, "source", "") == SOURCE:
            return
        rows = self.model.rows
        found = [rows.rows_of_pfns(s, e) for s, e in hl.pfns[:64]]
        found += [rows.rows_of_gfns(s, e) for s, e in hl.gfns[:64]]
        if found:
            self._select_rows(np.unique(np.concatenate(found)))

    def _on_click(self, index: QModelIndex) -> None:
        if not index.isValid():
            return
        hl = self.model.highlight_of_row(index.row())
        self._syncing = True
        try:
            if hl.gfns:
                g0, g1 = hl.gfns[0]
                self.selection.set_range(g0, g1)
            self.selection.set_highlight(hl)
        finally:
            self._syncing = False
        self.highlighted_rows = [index.row()]


def install(w: MainWindow) -> RmpPane:
    """The pane, tabbed beside the S-EPT / EPT entries, with its feed and change marks."""
    from PySide6.QtCore import Qt as _Qt

    feed = RmpFeed(w.engine, w)
    pane = RmpPane(feed, w.selection)
    pane.setMinimumSize(120, 60)
    dock = w.add_pane(pane, "RMP (SEV-SNP)", _Qt.DockWidgetArea.BottomDockWidgetArea)
    entries = w.docks.get("entries")
    if entries is not None:
        w.tabifyDockWidget(entries, dock)
        # The tab right after the entries' one: the tabs installed after it move behind.
        for name in ("folios", "counters"):
            later = w.docks.get(name)
            if later is not None:
                w.tabifyDockWidget(dock, later)
    log_dock = w.docks.get("log")
    if log_dock is not None:
        log_dock.raise_()
    shown = {"snp": False}
    # Only SNP guests have an RMP: on other VMs the tab would be an empty table in the
    # way (View > RMP still shows it).  The feed announces an SNP VM when one appears.
    dock.hide()

    def bring_forward(rows: RmpRows) -> None:
        # An SNP guest opened or created: its RMP is what the viewer came for.
        snp = rows.asid != 0
        if snp and not shown["snp"]:
            dock.show()
            dock.raise_()
            if dock.height() < 200 and not dock.isFloating():
                w.resizeDocks([dock], [200], _Qt.Orientation.Vertical)  # a header and six rows
        elif not snp and shown["snp"]:
            dock.hide()  # a VM of another type replaced the SNP guest
        shown["snp"] = snp

    feed.rowsReady.connect(bring_forward)
    dock.visibilityChanged.connect(feed.set_wanted)
    pane.feed = feed  # type: ignore[attr-defined]
    return pane
