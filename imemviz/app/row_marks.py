"""Change marks in the two tables: the S-EPT / EPT entries and the event log.

A row the latest action touched (a leaf it mapped or changed; one of its
events) gets the map's mark: a dashed black-on-white outline around the whole
row, drawn by an item delegate over the normal cell, fading with the window's
`MarkController`.  Leaves the action removed are no rows any more: the entries
pane says how many in a line above the table.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPointF
from PySide6.QtWidgets import QLabel, QStyledItemDelegate, QTableView

from imemviz.app.marks import MarkController
from imemviz.app.panes.entries import EntriesPane
from imemviz.app.panes.event_log import EventLogPane
from imemviz.app.panes.map_marks import mark_pens
from imemviz.model.changes import Changes


class RowMarkDelegate(QStyledItemDelegate):
    """Paints cells as usual, then the mark's outline on rows `is_marked(row)` says."""

    def __init__(self, view: QTableView, marks: MarkController, is_marked) -> None:
        super().__init__(view)
        self.view = view
        self.marks = marks
        self.is_marked = is_marked
        self.halo, self.ink = mark_pens()
        for pen in (self.halo, self.ink):
            pen.setWidthF(pen.widthF() * 0.6)

    def paint(self, painter, option, index: QModelIndex | QPersistentModelIndex) -> None:
        super().paint(painter, option, index)
        a = self.marks.opacity()
        if a <= 0 or not self.is_marked(index.row()):
            return
        r = option.rect.adjusted(1, 1, -1, -1)
        last = index.model().columnCount() - 1
        # One outline around a run of marked rows: top and bottom edges at its ends only.
        top = not self.is_marked(index.row() - 1)
        bottom = not self.is_marked(index.row() + 1)
        painter.save()
        painter.setOpacity(a)
        for pen in (self.halo, self.ink):
            painter.setPen(pen)
            if top:
                painter.drawLine(QPointF(r.left(), r.top()), QPointF(r.right(), r.top()))
            if bottom:
                painter.drawLine(QPointF(r.left(), r.bottom()), QPointF(r.right(), r.bottom()))
            if index.column() == 0:
                painter.drawLine(QPointF(r.left(), r.top()), QPointF(r.left(), r.bottom()))
            if index.column() == last:
                painter.drawLine(QPointF(r.right(), r.top()), QPointF(r.right(), r.bottom()))
        painter.restore()


class EntriesMarks:
    """The leaves the latest action mapped or changed, outlined in the entries table."""

    def __init__(self, pane: EntriesPane, marks: MarkController) -> None:
        self.pane = pane
        self.marks = marks
        self.changes: Changes | None = None
        self.marked_leaves = np.zeros(0, bool)  # per leaf of the pane's arrays
        self.note = QLabel("")
        self.note.setObjectName("entries_marks_note")
        self.note.setToolTip("What the latest action did to the leaves (outlined rows)")
        pane.filter_row.addWidget(self.note)
        self.delegate = RowMarkDelegate(pane.table, marks, self.is_marked)
        pane.table.setItemDelegate(self.delegate)
        marks.marked.connect(self.set_changes)
        marks.opacityChanged.connect(lambda _a: pane.table.viewport().update())
        pane.model.modelReset.connect(self._recompute)

    def set_changes(self, changes: Changes | None) -> None:
        self.changes = changes
        self._recompute()

    def _recompute(self) -> None:
        lv = self.pane.model.leaves
        mask = np.zeros(len(lv), bool)
        ch = self.changes
        if ch is not None and len(lv):
            for root, s, e in ch.leaves:
                lo = int(np.searchsorted(lv.gfn, s, side="left"))
                hi = int(np.searchsorted(lv.gfn, e, side="left"))
                if hi > lo:
                    mask[lo:hi] |= lv.root[lo:hi] == root
        self.marked_leaves = mask
        parts = []
        if ch is not None and (ch.leaves_added or ch.leaves_removed or mask.any()):
            if mask.any():
                parts.append(f"{int(mask.sum()):,} outlined")
            if ch.leaves_removed:
                parts.append(f"{ch.leaves_removed:,} removed")
        self.note.setText(("latest action: " + ", ".join(parts)) if parts else "")
        self.pane.table.viewport().update()

    def is_marked(self, row: int) -> bool:
        m = self.pane.model
        if not len(self.marked_leaves) or not 0 <= row < len(m.view):
            return False
        i = int(m.view[row])
        return i < len(self.marked_leaves) and bool(self.marked_leaves[i])

    def marked_rows(self) -> list[int]:
        """Rows of the table that are outlined (tests)."""
        m = self.pane.model
        if not len(self.marked_leaves):
            return []
        return np.flatnonzero(self.marked_leaves[m.view]).tolist()


class EventLogMarks:
    """The events of the latest action's ops, outlined in the event log."""

    def __init__(self, pane: EventLogPane, marks: MarkController) -> None:
        self.pane = pane
        self.marks = marks
        self.changes: Changes | None = None
        self.delegate = RowMarkDelegate(pane.table, marks, self.is_marked)
        pane.table.setItemDelegate(self.delegate)
        marks.marked.connect(self.set_changes)
        marks.opacityChanged.connect(lambda _a: pane.table.viewport().update())
        pane.model.modelReset.connect(self._recompute)

    def set_changes(self, changes: Changes | None) -> None:
        self.changes = changes
        self._recompute()

    def _recompute(self) -> None:
        ops = self.changes.ops if self.changes is not None else ()
        self.pane.model.mark_ops(tuple(ops))
        self.pane.table.viewport().update()

    def is_marked(self, row: int) -> bool:
        span = self.pane.model.marked
        if span is None:
            return False
        p = self.pane.model.position(row)
        return span[0] <= p < span[1]

    def marked_positions(self) -> tuple[int, int] | None:
        return self.pane.model.marked
