"""The event log: every event the engine emitted, newest last, as a virtual table.

Events stay the engine's tuples (`(op, name, *fields)`); next to them the
model keeps one byte per event (the name's id), so a kind filter is one
lookup-table gather over a million bytes.  `data()` formats a cell with
`format_event` only when it is on screen.  Clicking an event highlights what
it names (gfns, pfns, guest_memfd pages) in every pane; right click steps
through the op it belongs to.

Ops are numbered as everywhere else in the app: the session's op index
(`#k` in the log and the timeline).  The events themselves carry the VM's op
counter, which runs ahead by the ops of the start (a scene's, a state's);
`base` converts, and the start's own events show as "start".
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QSplitter,
    QTableView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from imemviz.app.feeds import PaneFeed
from imemviz.app.highlight import Highlight, from_span
from imemviz.app.records import OpRecord, Snapshot
from imemviz.app.selection import SelectionModel
from imemviz.app.worker import Engine
from imemviz.model.events import format_event
from imemviz.model.protocols import (
    EVENT_NAMES,
    EXPLAIN,
    GROUPS,
    NAME_ID,
    event_span,
    group_of,
    index_events,
)

COLUMNS = ("op", "event", "fields")
MAX_ROWS = 4_000_000  # beyond this the oldest events go (the VM's own log keeps 200,000)
SOURCE = "event_log"
_Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()


class EventLogModel(QAbstractTableModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.events: list[tuple] = []
        self._ids = array("B")
        self.op_first: dict[int, int] = {}  # VM op number -> position of its first event
        self.base = 0  # the VM's op number of session op 0
        self.marked: tuple[int, int] | None = None  # event positions [a, b) of the marked ops
        self.mark_alpha = 0.0
        self.enabled: set[str] | None = None  # None: every kind
        self.view: np.ndarray | None = None  # positions shown; None: all

    # ------------------------------------------------------------ data in
    def reset(
        self,
        events: list[tuple],
        index: tuple[bytes, dict[int, int]] | None = None,
        base: int | None = None,
    ) -> None:
        """All events anew; `index` is `index_events(events)` when the engine made it;
        `base` the VM's op number of session op 0."""
        self.beginResetModel()
        if base is not None:
            self.base = base
        self.marked = None
        ids, first = index if index is not None else index_events(events)
        self.events = list(events)
        self._ids = array("B", ids)
        self.op_first = dict(first)
        self._refilter()
        self.endResetModel()

    def _append(self, events) -> None:
        ids, first = index_events(events, len(self.events))
        self.events.extend(events)
        self._ids.frombytes(ids)
        for op, pos in first.items():
            self.op_first.setdefault(op, pos)

    def append(self, events: tuple | list) -> None:
        """Events of one new op, at the end."""
        if not events:
            return
        if len(self.events) + len(events) > MAX_ROWS:
            self.reset(self.events[len(events) + MAX_ROWS // 4 :] + list(events))
            return
        base = len(self.events)
        if self.view is None:
            self.beginInsertRows(_ROOT, base, base + len(events) - 1)
            self._append(events)
            self.endInsertRows()
            return
        self._append(events)
        ids = self.ids()[base:]
        new = base + np.flatnonzero(self._lut()[ids])
        if len(new):
            n = len(self.view)
            self.beginInsertRows(_ROOT, n, n + len(new) - 1)
            self.view = np.concatenate((self.view, new))
            self.endInsertRows()

    def ids(self) -> np.ndarray:
        return np.frombuffer(self._ids, np.uint8) if len(self._ids) else np.zeros(0, np.uint8)

    def _lut(self) -> np.ndarray:
        lut = np.zeros(256, bool)
        for name in self.enabled or ():
            if name in NAME_ID:
                lut[NAME_ID[name]] = True
        return lut

    def set_enabled(self, names: set[str] | None) -> None:
        self.beginResetModel()
        self.enabled = None if names is None or set(EVENT_NAMES) <= names else set(names)
        self._refilter()
        self.endResetModel()

    def _refilter(self) -> None:
        if self.enabled is None:
            self.view = None
        else:
            self.view = np.flatnonzero(self._lut()[self.ids()])

    # ------------------------------------------------------------ Qt model
    def rowCount(self, parent: _Index = _ROOT) -> int:
        if parent.isValid():
            return 0
        return len(self.events) if self.view is None else len(self.view)

    def columnCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if (
            role == Qt.ItemDataRole.DisplayRole
            and orientation == Qt.Orientation.Horizontal
            and 0 <= section < len(COLUMNS)
        ):
            return COLUMNS[section]
        return None

    def position(self, row: int) -> int:
        return row if self.view is None else int(self.view[row])

    def row_of(self, position: int) -> int:
        if self.view is None:
            return position if 0 <= position < len(self.events) else -1
        i = int(np.searchsorted(self.view, position))
        return i if i < len(self.view) and self.view[i] == position else -1

    def data(self, index: _Index, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < self.rowCount():
            return None
        ev = self.events[self.position(index.row())]
        c = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if c == 0:
                k = ev[0] - self.base
                return str(k) if k >= 0 else "start"
            if c == 1:
                return ev[1]
            if c == 2:
                return format_event(ev)[len(ev[1]) + 1 :]
        if role == Qt.ItemDataRole.ToolTipRole:
            expl, fn = EXPLAIN.get(ev[1], ("", ""))
            text = f"{expl}" + (f"\nkernel: {fn}" if fn else "")
            if ev[0] < self.base:
                text += (
                    f"\n(op {ev[0] + 1} of the {self.base} ops of the start: the scene or "
                    "state this session opened)"
                )
            return text
        return None

    def op_events(self, op: int) -> tuple[int, list[tuple]]:
        """(first position, events) of session op `op` (negative: the start's ops)."""
        vm_op = op + self.base
        first = self.op_first.get(vm_op)
        if first is None:
            return -1, []
        end = first
        while end < len(self.events) and self.events[end][0] == vm_op:
            end += 1
        return first, self.events[first:end]

    def session_ops(self) -> list[int]:
        """The session op numbers that have events here (the start's are negative)."""
        return [k - self.base for k in self.op_first]

    def mark_ops(self, ops: tuple[int, ...]) -> None:
        """Mark the rows of these session ops (the latest action's), for the fade."""
        spans = [sp for sp in map(self.op_span, ops) if sp is not None]
        self.marked = (min(a for a, _ in spans), max(b for _, b in spans)) if spans else None

    def op_span(self, op: int) -> tuple[int, int] | None:
        first, evs = self.op_events(op)
        return (first, first + len(evs)) if evs else None


class EventLogPane(QWidget):
    stepRequested = Signal(object)  # op index

    def __init__(
        self, engine: Engine, feed: PaneFeed, selection: SelectionModel, parent=None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("event_log")
        self.setToolTip("Every event the engine emitted; click one to highlight what it touches")
        self.selection = selection
        self.snapshot: Snapshot | None = None
        self.model = EventLogModel(self)
        self._syncing = False

        self.kinds = QTreeWidget()
        self.kinds.setObjectName("event_kinds")
        self.kinds.setHeaderLabels(["show"])
        self.kinds.setToolTip("Which events the table shows, by group and by name")
        for group in GROUPS:
            top = QTreeWidgetItem([group])
            top.setFlags(
                top.flags() | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsAutoTristate
            )
            top.setCheckState(0, Qt.CheckState.Checked)
            for name in EVENT_NAMES:
                if group_of(name) == group:
                    it = QTreeWidgetItem([name])
                    it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                    it.setCheckState(0, Qt.CheckState.Checked)
                    it.setToolTip(0, EXPLAIN.get(name, ("", ""))[0])
                    top.addChild(it)
            self.kinds.addTopLevelItem(top)
        self._filter_timer = QTimer(self)
        self._filter_timer.setSingleShot(True)
        self._filter_timer.setInterval(30)
        self._filter_timer.timeout.connect(self._apply_kinds)
        self.kinds.itemChanged.connect(lambda *_: self._filter_timer.start())

        self.table = QTableView()
        self.table.setObjectName("event_table")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        vh = self.table.verticalHeader()
        vh.hide()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vh.setDefaultSectionSize(20)
        hh = self.table.horizontalHeader()
        hh.setStretchLastSection(True)
        self.table.setColumnWidth(0, 50)
        self.table.setColumnWidth(1, 240)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._on_menu)
        # More entries for the right-click menu: f(menu, event) (copy as text: copy_text.py).
        self.menu_hooks: list = []
        self.table.selectionModel().currentRowChanged.connect(self._on_row)

        self.follow = QCheckBox("follow tail")
        self.follow.setObjectName("event_follow")
        self.follow.setChecked(True)
        self.follow.setToolTip("Scroll to the newest event after every op")
        self.count = QLabel("")
        head = QHBoxLayout()
        head.addWidget(self.follow)
        head.addStretch(1)
        head.addWidget(self.count)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.kinds)
        split.addWidget(self.table)
        split.setSizes([200, 700])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(head)
        lay.addWidget(split, 1)

        feed.logReset.connect(self._on_reset)
        engine.opApplied.connect(self._on_op)
        engine.snapshotReady.connect(self._on_snapshot)

    # ------------------------------------------------------------ data
    def _on_reset(self, log: tuple) -> None:
        events, index, *rest = log
        self.model.reset(events, index, rest[0] if rest else None)
        self._after_change()

    def _on_op(self, rec: OpRecord) -> None:
        self.model.append(rec.events)
        self._after_change()

    def _on_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap

    def _after_change(self) -> None:
        self.count.setText(f"{self.model.rowCount():,} of {len(self.model.events):,} events")
        if self.follow.isChecked():
            self.table.scrollToBottom()

    def _apply_kinds(self) -> None:
        names = set()
        for i in range(self.kinds.topLevelItemCount()):
            group = self.kinds.topLevelItem(i)
            assert group is not None  # i < topLevelItemCount()
            for k in range(group.childCount()):
                it = group.child(k)
                if it is not None and it.checkState(0) == Qt.CheckState.Checked:
                    names.add(it.text(0))
        self.model.set_enabled(names)
        self._after_change()

    # ------------------------------------------------------------ user
    def _on_row(self, current: QModelIndex, _prev: QModelIndex) -> None:
        if self._syncing or not current.isValid():
            return
        ev = self.model.events[self.model.position(current.row())]
        slots = self.snapshot.slots if self.snapshot is not None else ()
        hl = from_span(event_span(ev), slots, SOURCE, format_event(ev))
        self.select_highlight(hl)

    def select_highlight(self, hl: Highlight) -> None:
        """Select the highlight's gfns on the map (the inspector follows) and highlight it."""
        self._syncing = True
        try:
            span = hl.gfn_span()
            if span is not None:
                self.selection.set_range(*span)
            self.selection.set_highlight(hl)
        finally:
            self._syncing = False

    def show_position(self, position: int) -> None:
        """Select the event at `position` (in the unfiltered log) without emitting anything."""
        row = self.model.row_of(position)
        if row < 0:
            return
        self._syncing = True
        try:
            self.table.selectRow(row)
            self.table.scrollTo(
                self.model.index(row, 0), QAbstractItemView.ScrollHint.PositionAtCenter
            )
        finally:
            self._syncing = False

    def _on_menu(self, pos) -> None:
        idx = self.table.indexAt(pos)
        if not idx.isValid():
            return
        op = self.model.events[self.model.position(idx.row())][0] - self.model.base
        menu = QMenu(self)
        menu.setObjectName("event_menu")
        act = menu.addAction(f"Step through op #{op}" if op >= 0 else "Step through this op")
        act.triggered.connect(lambda: self.stepRequested.emit(op))
        for hook in self.menu_hooks:
            hook(menu, self.model.events[self.model.position(idx.row())])
        menu.popup(self.table.viewport().mapToGlobal(pos))
        self._menu = menu
