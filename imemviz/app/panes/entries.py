"""S-EPT / EPT entries: every leaf of both roots as a virtual table, plus a per-level summary.

The model holds the numpy arrays the engine feed publishes (`LeafArrays`) and
a view: an index array into them, filtered by masks and ordered by a
precomputed or radix sort, so filtering, sorting and scrolling a million
leaves cost a few numpy passes; `data()` formats only the cells on screen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QSplitter,
    QTableView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from imemviz.app.elided_label import ElidedLabel
from imemviz.app.feeds import LeafArrays, PaneFeed
from imemviz.app.highlight import Highlight
from imemviz.app.panes.entry_tree import address_node, populate
from imemviz.app.selection import SelectionModel
from imemviz.model.mmu import STATE_NAMES

COLUMNS = ("root", "gfn", "gpa", "level", "pfn", "state", "memslot")
LEVEL_TEXT = {1: "4K", 2: "2M", 3: "1G"}
ROOT_TEXT = {0: "private", 1: "shared"}
ROOT_TEXT_TDX = {0: "S-EPT", 1: "shared EPT"}
SOURCE = "entries"
ENTRY_TEXT = {1: "4K", 2: "2M", 3: "1G", 4: "512G"}  # what an S-EPT page's entries map
MAX_TABLE_ITEMS = 2000  # S-EPT pages listed per level in the tree
_Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()


def _empty() -> LeafArrays:
    z = np.zeros(0, np.int64)
    u = np.zeros(0, np.uint8)
    return LeafArrays(0, u, z, u, z, u, np.zeros(0, np.int32), np.zeros((0, 3), np.int64), False)


class EntriesModel(QAbstractTableModel):
    """Rows are `view` positions into the leaf arrays (filtered, then sorted)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.leaves = _empty()
        self.view = np.zeros(0, np.int64)
        self.roots: set[int] | None = None  # filters: None = all
        self.levels: set[int] | None = None
        self.states: set[int] | None = None
        self.sort_column = 1
        self.sort_order = Qt.SortOrder.AscendingOrder
        self._orders: dict[int, np.ndarray] = {}
        self._pos: np.ndarray | None = None

    # ------------------------------------------------------------ data in
    def set_leaves(self, leaves: LeafArrays) -> None:
        self.beginResetModel()
        self.leaves = leaves
        self._orders = {}
        self._rebuild()
        self.endResetModel()

    def set_filter(self, roots=None, levels=None, states=None) -> None:
        self.beginResetModel()
        self.roots, self.levels, self.states = roots, levels, states
        self._rebuild()
        self.endResetModel()

    def _mask(self) -> np.ndarray | None:
        lv = self.leaves
        mask = None
        for values, col in (
            (self.roots, lv.root),
            (self.levels, lv.level),
            (self.states, lv.state),
        ):
            if values is None:
                continue
            lut = np.zeros(256, bool)
            lut[list(values)] = True
            m = lut[col]  # one uint8 gather per filter
            mask = m if mask is None else mask & m
        return mask

    def _order(self, column: int) -> np.ndarray:
        """Stable order of every leaf by `column` (cached per data)."""
        o = self._orders.get(column)
        if o is None:
            o = self.leaves.orders.get(column)
        if o is None:
            lv = self.leaves
            key = {
                0: lv.root,
                3: lv.level,
                4: lv.pfn,
                5: lv.state,
                6: lv.slot.astype(np.int16),
            }.get(column)
            # gfn and gpa: the arrays come sorted by gfn.  Small integer keys get numpy's
            # radix sort (stable sort of <= 16-bit types); pfn was sorted by the engine feed.
            if key is None:
                o = np.arange(len(lv), dtype=np.int64)
            elif column == 4 and lv.pfn_order is not None:
                o = lv.pfn_order
            else:
                o = np.argsort(key, kind="stable")
            self._orders[column] = o
        return o

    def _rebuild(self) -> None:
        o = self._order(self.sort_column)
        mask = self._mask()
        v = o if mask is None else o[mask[o]]
        self.view = v[::-1] if self.sort_order == Qt.SortOrder.DescendingOrder else v
        self._pos = None  # row of each leaf, built on the first lookup

    # ------------------------------------------------------------ Qt model
    def rowCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.view)

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

    def data(self, index: _Index, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or role not in (
            Qt.ItemDataRole.DisplayRole,
            Qt.ItemDataRole.ToolTipRole,
        ):
            return None
        r, c = index.row(), index.column()
        if not 0 <= r < len(self.view):
            return None
        i = int(self.view[r])
        lv = self.leaves
        if c == 0:
            return (ROOT_TEXT_TDX if lv.is_tdx else ROOT_TEXT)[int(lv.root[i])]
        if c == 1:
            return f"{int(lv.gfn[i]):#x}"
        if c == 2:
            return f"{int(lv.gfn[i]) << 12:#x}"
        if c == 3:
            return LEVEL_TEXT.get(int(lv.level[i]), "?")
        if c == 4:
            return f"{int(lv.pfn[i]):#x}"
        if c == 5:
            return STATE_NAMES.get(int(lv.state[i]), "?")
        if c == 6:
            s = int(lv.slot[i])
            return "none" if s < 0 else str(s)
        return None

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        self.sort_column, self.sort_order = column, order
        self._rebuild()
        self.layoutChanged.emit()

    # ------------------------------------------------------------ lookups
    def leaf_of_row(self, row: int) -> int:
        return int(self.view[row])

    def rows_of_leaves(self, leaves: np.ndarray) -> np.ndarray:
        """Rows of these leaves in the view (-1: filtered out)."""
        if self._pos is None:
            pos = np.full(len(self.leaves), -1, np.int64)
            pos[self.view] = np.arange(len(self.view), dtype=np.int64)
            self._pos = pos
        return self._pos[leaves]

    def row_of_leaf(self, i: int) -> int:
        return int(self.rows_of_leaves(np.asarray([i]))[0])

    def _first_row(self, leaves: np.ndarray) -> int:
        rows = self.rows_of_leaves(leaves)
        rows = rows[rows >= 0]
        return int(rows[0]) if len(rows) else -1

    def find_gfn(self, gfn: int) -> int:
        """The row of the first leaf (in view) whose span holds gfn, or -1."""
        lv = self.leaves
        if not len(lv):
            return -1
        n = np.left_shift(1, 9 * (lv.level.astype(np.int64) - 1))
        # Leaves are sorted by gfn and a 1G leaf spans at most 2**18 gfns before it.
        lo = int(np.searchsorted(lv.gfn, gfn - (1 << 18), side="left"))
        hi = int(np.searchsorted(lv.gfn, gfn, side="right"))
        return self._first_row(np.arange(lo, hi)[(lv.gfn[lo:hi] + n[lo:hi]) > gfn])

    def find_pfn(self, pfn: int) -> int:
        lv = self.leaves
        n = np.left_shift(1, 9 * (lv.level.astype(np.int64) - 1))
        return self._first_row(np.flatnonzero((lv.pfn <= pfn) & (pfn < lv.pfn + n)))

    def highlight_of_row(self, row: int) -> Highlight:
        i = self.leaf_of_row(row)
        lv = self.leaves
        n = 1 << (9 * (int(lv.level[i]) - 1))
        g, p = int(lv.gfn[i]), int(lv.pfn[i])
        label = f"{self.data(self.index(row, 0))} {LEVEL_TEXT[int(lv.level[i])]} leaf gfn {g:#x}"
        return Highlight(((g, g + n),), ((p, p + n),), (), SOURCE, label)


class EntriesPane(QWidget):
    """The table, its filters and search, and the per-level summary tree."""

    jumpRequested = Signal(object, object)  # gfn start, end: the map shows them

    def __init__(self, feed: PaneFeed, selection: SelectionModel, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("entries")
        self.setToolTip("Every S-EPT / EPT leaf of both roots; click a row to highlight it")
        self.selection = selection
        self.model = EntriesModel(self)
        self._syncing = False

        self.root_box = self._combo(
            "root", [("all roots", None), ("private / S-EPT", {0}), ("shared", {1})]
        )
        self.level_box = self._combo(
            "level", [("all levels", None), ("4K", {1}), ("2M", {2}), ("1G", {3})]
        )
        self.state_box = self._combo(
            "state", [("all states", None)] + [(n, {k}) for k, n in STATE_NAMES.items()]
        )
        self.search = QLineEdit()
        self.search.setObjectName("entries_search")
        self.search.setPlaceholderText("find gfn or pfn (hex), e.g. 0x810 or pfn 0x1f000")
        self.search.setToolTip("A gfn in hex, or 'pfn' and a pfn; Enter jumps to the leaf")
        self.search.returnPressed.connect(self._on_search)
        # One line, elided when the pane is narrow (the Timeline beside it, the side
        # column running down while a step is shown); the whole text is its tooltip.
        self.count = ElidedLabel("")
        self.search.setMinimumWidth(160)
        self.search.setMaximumWidth(360)  # its hint's width; the rest is the count's

        self.table = QTableView()
        self.table.setObjectName("entries_table")
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        vh = self.table.verticalHeader()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # a million rows: no per-row sizes
        vh.setDefaultSectionSize(20)
        self.table.horizontalHeader().setStretchLastSection(True)
        # The state right after the gfn (the model's order is unchanged): in a narrow pane
        # (1280x720, beside the Timeline) it is what a step-through is about (BLOCKED, PENDING).
        self.table.horizontalHeader().moveSection(COLUMNS.index("state"), 2)
        self.table.selectionModel().currentRowChanged.connect(self._on_row)
        self.table.doubleClicked.connect(self._on_double)

        self.tree = QTreeWidget()
        self.tree.setObjectName("entries_tree")
        self.tree.setHeaderLabels(["level", "entries"])
        self.tree.setToolTip(
            "Leaves per root and level, and the non-leaf S-EPT pages; "
            "click a line to filter the table"
        )
        self.tree.itemClicked.connect(self._on_tree)
        self.tree.itemExpanded.connect(self._on_expand)
        self.tree.itemCollapsed.connect(self._on_collapse)
        self._expanded: set[tuple] = set()  # address-tree regions kept open across updates

        # The filter row; the change marks add their note to it (row_marks.py).
        self.filter_row = QHBoxLayout()
        for wdg in (self.root_box, self.level_box, self.state_box, self.search, self.count):
            self.filter_row.addWidget(wdg)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.tree)
        split.addWidget(self.table)
        split.setSizes([170, 600])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(self.filter_row)
        lay.addWidget(split, 1)

        feed.leavesReady.connect(self.set_leaves)
        selection.changed.connect(self._on_selection)
        selection.highlighted.connect(self._on_highlight)

    def _combo(self, name: str, items) -> QComboBox:
        box = QComboBox()
        box.setObjectName(f"entries_{name}")
        box.setToolTip(f"Show only leaves of this {name}")
        for text, value in items:
            box.addItem(text, value)
        box.currentIndexChanged.connect(self._on_filter)
        return box

    # ------------------------------------------------------------ data
    def set_leaves(self, leaves: LeafArrays) -> None:
        self.model.set_leaves(leaves)
        self._update_count()
        self._fill_tree(leaves)
        # The selected page's leaf stays in view across new data (and a step view's).
        self._on_selection(self.selection.gfn, self.selection.range)

    def _fill_tree(self, lv: LeafArrays) -> None:
        self.tree.clear()
        names = ROOT_TEXT_TDX if lv.is_tdx else ROOT_TEXT
        for root in (0, 1):
            m = lv.root == root
            top = QTreeWidgetItem([names[root], f"{int(m.sum()):,}"])
            top.setData(0, Qt.ItemDataRole.UserRole, (root, None))
            for level in (3, 2, 1):  # 1G -> 2M -> 4K, as the walk goes
                n = int((m & (lv.level == level)).sum())
                it = QTreeWidgetItem([f"{LEVEL_TEXT[level]} leaves", f"{n:,}"])
                it.setData(0, Qt.ItemDataRole.UserRole, (root, level))
                top.addChild(it)
            if root == 0 and lv.is_tdx:
                top.addChild(self._sept_pages(lv.tables))
            top.addChild(address_node(root, "by address (1G → 2M → 4K)"))
            self.tree.addTopLevelItem(top)
            top.setExpanded(True)
            self._reexpand(top)
        self.tree.resizeColumnToContents(0)

    def _reexpand(self, item: QTreeWidgetItem) -> None:
        for k in range(item.childCount()):
            child = item.child(k)
            assert child is not None  # k < childCount()
            data = child.data(0, Qt.ItemDataRole.UserRole)
            if data and data[0] == "region" and tuple(data[1:4]) in self._expanded:
                child.setExpanded(True)  # itemExpanded fills it
                self._reexpand(child)

    def _on_expand(self, item: QTreeWidgetItem) -> None:
        data = item.data(0, Qt.ItemDataRole.UserRole)
        if data and data[0] == "region":
            populate(item, self.model.leaves)
            self._expanded.add(tuple(data[1:4]))

    def _on_collapse(self, item: QTreeWidgetItem) -> None:
        data = item.data(0, Qt.ItemDataRole.UserRole)
        if data and data[0] == "region":
            self._expanded.discard(tuple(data[1:4]))

    def _sept_pages(self, t: np.ndarray) -> QTreeWidgetItem:
        """The non-leaf S-EPT pages by the level of the entries they hold (the walk from
        the top); each page: the gfns it maps and its host pfn (click: highlighted)."""
        sept = QTreeWidgetItem(["S-EPT pages (non-leaf)", f"{len(t):,}"])
        sept.setToolTip(
            0, "Pages TDH.MEM.SEPT.ADD gave the TDX module; never freed while the TD runs"
        )
        for level in sorted(set(t[:, 0].tolist()), reverse=True):
            rows = t[t[:, 0] == level]
            rows = rows[np.argsort(rows[:, 1], kind="stable")]
            span = 1 << (9 * level)
            grp = QTreeWidgetItem(
                [f"holding {ENTRY_TEXT.get(level, level)} entries", f"{len(rows):,}"]
            )
            for _lv, g, pfn in rows[:MAX_TABLE_ITEMS].tolist():
                it = QTreeWidgetItem([f"gfn {g:#x}–{g + span - 1:#x}", f"pfn {pfn:#x}"])
                it.setData(0, Qt.ItemDataRole.UserRole, ("table", g, g + span, pfn))
                grp.addChild(it)
            sept.addChild(grp)
        return sept

    def _update_count(self) -> None:
        text = f"{self.model.rowCount():,} of {len(self.model.leaves):,}"
        step = self.model.leaves.step
        # A step view shows the leaves as they were at a protocol step: say so.
        self.count.setText(f"at {step}: {text}" if step else text)
        self.count.setStyleSheet("color: #4a148c; font-weight: bold" if step else "")

    # ------------------------------------------------------------ user
    def _on_filter(self) -> None:
        self.model.set_filter(
            self.root_box.currentData(), self.level_box.currentData(), self.state_box.currentData()
        )
        self._update_count()

    def _on_tree(self, item: QTreeWidgetItem) -> None:
        data = item.data(0, Qt.ItemDataRole.UserRole)
        if not data:
            return
        if data[0] == "table":  # an S-EPT page: its gfns on the map, its page in host memory
            _, g0, g1, pfn = data
            hl = Highlight(((g0, g1),), ((pfn, pfn + 1),), (), SOURCE, f"S-EPT page {pfn:#x}")
            self._syncing = True
            try:
                self.selection.set_range(g0, g1)
                self.selection.set_highlight(hl)
            finally:
                self._syncing = False
            return
        if data[0] == "leaf":
            row = self.model.row_of_leaf(data[1])
            if row < 0:  # filtered out of the table: show every leaf again
                self.root_box.setCurrentIndex(0)
                self.level_box.setCurrentIndex(0)
                self.state_box.setCurrentIndex(0)
                row = self.model.row_of_leaf(data[1])
            self.select_row(row, emit=True)
            return
        if data[0] == "region":
            _, _root, shift, start, end = data
            if shift < 30:  # a 1G or 2M region: select it on the map
                self.selection.set_range(start, end)
            return
        root, level = data
        self.root_box.setCurrentIndex(1 + root)
        self.level_box.setCurrentIndex(0 if level is None else {1: 1, 2: 2, 3: 3}[level])

    def _on_search(self) -> None:
        text = self.search.text().strip().lower()
        is_pfn = text.startswith("pfn")
        text = text.removeprefix("pfn").removeprefix("gfn").strip()
        try:
            value = int(text, 16)
        except ValueError:
            self.count.setText("not a hex number")
            return
        row = self.model.find_pfn(value) if is_pfn else self.model.find_gfn(value)
        if row < 0:
            self.count.setText("no leaf there")
            return
        self.select_row(row, emit=True)

    def select_row(self, row: int, emit: bool = False) -> None:
        self._syncing = not emit
        try:
            self.table.selectRow(row)
            self.table.scrollTo(
                self.model.index(row, 0), QAbstractItemView.ScrollHint.PositionAtCenter
            )
        finally:
            self._syncing = False

    def _on_row(self, current: QModelIndex, _prev: QModelIndex) -> None:
        if self._syncing or not current.isValid():
            return
        hl = self.model.highlight_of_row(current.row())
        g = hl.gfns[0]
        self._syncing = True
        try:
            self.selection.set_range(g[0], g[1])
            self.selection.set_highlight(hl)
        finally:
            self._syncing = False

    def _on_double(self, index: QModelIndex) -> None:
        g = self.model.highlight_of_row(index.row()).gfns[0]
        self.jumpRequested.emit(g[0], g[1])

    def _on_selection(self, gfn, _rng) -> None:
        if self._syncing or gfn is None:
            return
        row = self.model.find_gfn(gfn)
        if row >= 0:
            self.select_row(row)
        else:
            self.table.clearSelection()

    def _on_highlight(self, hl: Highlight | None) -> None:
        if self._syncing or hl is None or hl.source == SOURCE:
            return
        row = -1
        if hl.gfns:
            row = self.model.find_gfn(hl.gfns[0][0])
        if row < 0 and hl.pfns:
            row = self.model.find_pfn(hl.pfns[0][0])
        if row >= 0:
            self.select_row(row)

    def selected_leaf(self) -> int | None:
        idx = self.table.currentIndex()
        return self.model.leaf_of_row(idx.row()) if idx.isValid() else None
