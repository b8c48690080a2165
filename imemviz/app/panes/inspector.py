"""The inspector: everything about the selected gfn, straight from the contract's `inspect`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QHeaderView, QLabel, QTableView, QVBoxLayout, QWidget

from imemviz.app.records import InspectAnswer, Snapshot
from imemviz.app.selection import SelectionModel
from imemviz.app.worker import Engine
from imemviz.model.uapi import is_private_attr
from imemviz.model.units import LEVEL_NAMES

KEY = "inspector"
AFTER_OP_MS = 40
AnyIndex = QModelIndex | QPersistentModelIndex  # what Qt passes to a model's overrides

HELP = {
    "gpa": "Guest physical address of the page (without the TDX shared bit)",
    "attributes": "KVM_SET_MEMORY_ATTRIBUTES state: PRIVATE accesses go to guest_memfd, "
    "shared ones to the VMM's memory behind userspace_addr",
    "memslot": "The KVM memslot covering the gfn (as_id << 16 | id); none: the access is MMIO",
    "hva": "The VMM's virtual address of this page (memslot userspace_addr + offset)",
    "guest_memfd": "The guest_memfd file bound to the memslot and the page's index in it",
    "folio": "The guest_memfd folio holding the page: head index, order (0 = 4K, 9 = 2M, "
    "18 = 1G), head pfn, hwpoison",
    "private mapping": "The leaf in the private table (TDX: the S-EPT mirror) and its state: "
    "PENDING = added by TDH.MEM.PAGE.AUG, not accepted yet",
    "shared mapping": "The leaf in the shared EPT (TDX) / the direct root",
    "content": "The byte each backing page holds (a write fills the page)",
    "huge pages": "Whether a 2M / 1G leaf could map here: the memslot's lpage rules and "
    "KVM_LPAGE_MIXED_FLAG (attributes differ inside the huge page)",
}


def _fmt_byte(v: int | None) -> str:
    return "none" if v is None else f"{v:#04x} ({v})"


def rows_of(info: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(field, value) rows for an inspect answer."""
    if info is None:
        return [("gpa", "nothing selected: click a page on the map")]
    gfn = info["gfn"]
    out = [
        ("gpa", f"{gfn << 12:#x}  (gfn {gfn:#x})"),
        ("attributes", "PRIVATE" if is_private_attr(info["attributes"]) else "shared"),
    ]
    slot = info["memslot"]
    out.append(("memslot", "none (a guest access exits as MMIO)" if slot is None else str(slot)))
    if info.get("hva") is not None:
        out.append(("hva", f"{info['hva']:#x}"))
    g = info["gmem"]
    out.append(("guest_memfd", "none" if g is None else f"fd {g['fd']}, index {g['index']:#x}"))
    f = info["folio"]
    out.append(
        (
            "folio",
            "none allocated"
            if f is None
            else f"index {f['index']:#x}, order {f['order']}, pfn {f['pfn']:#x}"
            + (", HWPOISON" if f["hwpoison"] else ""),
        )
    )
    pm = info["private_mapping"]
    out.append(
        (
            "private mapping",
            "none" if pm is None else f"{pm['level']} leaf -> pfn {pm['pfn']:#x}, {pm['state']}",
        )
    )
    sm = info["shared_mapping"]
    out.append(
        ("shared mapping", "none" if sm is None else f"{sm['level']} leaf -> pfn {sm['pfn']:#x}")
    )
    c = info["content"]
    out.append(("content", f"private {_fmt_byte(c['private'])}; shared {_fmt_byte(c['shared'])}"))
    if info.get("huge_allowed") is not None:
        parts = []
        for lv in (LEVEL_NAMES[2], LEVEL_NAMES[3]):
            ok = info["huge_allowed"][lv] and not info["mixed"][lv]
            why = "" if ok else (" (mixed attributes)" if info["mixed"][lv] else " (memslot)")
            parts.append(f"{lv} {'allowed' if ok else 'no'}{why}")
        out.append(("huge pages", "; ".join(parts)))
    return out


class InspectModel(QAbstractTableModel):
    """Two columns (field, value) over the rows of the last inspect answer."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[str, str]] = rows_of(None)

    def set_info(self, info: Mapping[str, Any] | None) -> None:
        """New rows; cells are updated in place when the fields are the same ones."""
        rows = rows_of(info)
        if [f for f, _v in rows] != [f for f, _v in self._rows]:
            self.beginResetModel()
            self._rows = rows
            self.endResetModel()
            return
        old, self._rows = self._rows, rows
        for i, (a, b) in enumerate(zip(old, rows, strict=True)):
            if a != b:
                idx = self.index(i, 1)
                self.dataChanged.emit(
                    idx, idx, [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole]
                )

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else 2

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        field, value = self._rows[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return field if index.column() == 0 else value
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{value}\n\n{HELP.get(field, '')}" if index.column() else HELP.get(field, "")
        if role == Qt.ItemDataRole.FontRole and index.column() == 0:
            f = QFont()
            f.setBold(True)
            return f
        return None

    def headerData(self, section: int, orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if (
            role == Qt.ItemDataRole.DisplayRole
            and orientation == Qt.Orientation.Horizontal
            and 0 <= section < 2
        ):
            return ("field", "value")[section]
        return None

    def value(self, field: str) -> str | None:
        return next((v for f, v in self._rows if f == field), None)


class InspectorPane(QWidget):
    def __init__(
        self, engine: Engine, selection: SelectionModel, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("inspector")
        self.engine, self.selection = engine, selection
        self.info: Mapping[str, Any] | None = None
        self.model = InspectModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.ResizeToContents
        )
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setWordWrap(False)  # one line per field (full text in the tooltip)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.setAlternatingRowColors(True)
        self.table.setToolTip(
            "The selected page's whole chain: attribute, memslot, "
            "guest_memfd folio, private/shared leaves, contents"
        )
        self.title = QLabel("Select a page on the map")
        self.title.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.title)
        lay.addWidget(self.table, 1)
        # After an op the inspector asks again a little later, so its repaint never
        # lands in the same frame as the map's.
        self._later = QTimer(self)
        self._later.setSingleShot(True)
        self._later.setInterval(AFTER_OP_MS)
        self._later.timeout.connect(self._request)
        engine.inspectReady.connect(self._on_answer)
        engine.snapshotReady.connect(self._on_snapshot)
        selection.changed.connect(self._on_selection)

    def _request(self) -> None:
        if self.selection.gfn is not None and self.engine.snapshot is not None:
            self.engine.request_inspect(self.selection.gfn, KEY)

    def _on_selection(self, gfn, rng) -> None:
        if gfn is None:
            self.info = None
            self.model.set_info(None)
            self.title.setText("Select a page on the map")
            return
        if rng is not None and rng[1] - rng[0] > 1:
            n = rng[1] - rng[0]
            self.title.setText(
                f"Range {rng[0] << 12:#x}–{(rng[1] << 12) - 1:#x} "
                f"({n} pages); cursor on {gfn << 12:#x}"
            )
        else:
            self.title.setText(f"Page {gfn << 12:#x}")
        self._request()

    def _on_snapshot(self, snap: Snapshot) -> None:
        self._later.start()

    def _on_answer(self, ans: InspectAnswer) -> None:
        if ans.key != KEY or ans.gfn != self.selection.gfn:
            return
        self.info = ans.info
        self.model.set_info(ans.info)
