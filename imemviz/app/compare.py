"""File > Compare with...: what differs between the state on screen and a state file,
on the map (ranges outlined in orange) and as a list (click a line to go there).

`install(window)` adds the action and a "Compare" dock.  The comparison is
`imemviz diff` (imemviz.io.diff, every field that changes behaviour), run on
the engine thread against the current state; its lines come from
`imemviz.io.summary.diff_entries`, each with the gfn ranges it concerns (a
folio range through the memslots bound to its file).  "Copy as text" gives
what `imemviz diff` prints.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NamedTuple

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from imemviz.app import messages as M
from imemviz.app.menus import menu_of
from imemviz.app.range_overlay import RangeOverlay
from imemviz.io.summary import DiffEntry, diff_entries

KEY = "compare"  # the engine's answers to this pane (messages.Answer.key)

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow

COMPARE_COLOUR = QColor(255, 110, 0)
RANGES_ROLE = Qt.ItemDataRole.UserRole + 1


class _Slot(NamedTuple):
    """What file_to_gfns needs of a memslot."""

    id: int
    base_gfn: int
    npages: int
    gmem_fd: int | None
    gmem_pgoff: int


class Comparison(NamedTuple):
    path: str
    op_count: int  # ops applied to the state on screen when it was compared
    equal: bool
    entries: tuple[DiffEntry, ...]
    text: str  # as `imemviz diff CURRENT PATH` prints it


def compare_with(session: Any, path: str) -> Comparison:
    """Diff the session's state (A) against the state file at `path` (B): engine thread.

    Raises SessionError for a file that cannot be used (one line, like `imemviz diff`).
    """
    from imemviz.io.diff import diff_sides, format_diff, side
    from imemviz.io.session import SessionError
    from imemviz.io.state import StateError, load_state

    try:
        other = load_state(path)
    except StateError as e:
        text = str(e)
        raise SessionError(text if text.startswith(path) else f"{path}: {text}") from None
    except OSError as e:
        raise SessionError(f"{path}: cannot read: {e.strerror or e}") from None
    vm = session.vm
    d = diff_sides(side(vm), side(other))
    slots = [
        _Slot(s.id, s.base_gfn, s.npages, s.gmem_file.fd if s.gmem_file else None, s.gmem_pgoff)
        for s in vm.memslots.all()
        if s.npages and s.as_id == 0
    ]
    name = os.path.basename(session.source) if session.source else "the state on screen"
    return Comparison(
        path,
        vm.op_index,
        bool(d["equal"]),
        tuple(diff_entries(d, slots)),
        format_diff(d, name, path),
    )


class ComparePane(QWidget):
    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.setObjectName("compare")
        self.setToolTip(
            "What differs between the state on screen and another state file "
            "(File > Compare with...): click a line to show its gfns"
        )
        self.window_ = window
        self.controller: Compare | None = None
        self.comparison: Comparison | None = None
        self.header = QLabel("File > Compare with... shows here what differs from a state file.")
        self.header.setObjectName("compare_header")
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.TextFormat.PlainText)
        self.list = QListWidget()
        self.list.setObjectName("compare_list")
        self.list.itemClicked.connect(self._go)
        self.list.itemActivated.connect(self._go)
        copy = QPushButton("Copy as text")
        copy.setObjectName("compare_copy")
        copy.setToolTip("The comparison as `imemviz diff` prints it")
        copy.clicked.connect(self.copy)
        again = QPushButton("Compare again")
        again.setObjectName("compare_again")
        again.setToolTip("Compare the state on screen now with the same file")
        again.clicked.connect(self.again)
        clear = QPushButton("Clear")
        clear.setObjectName("compare_clear")
        clear.setToolTip("Remove the comparison from the map")
        clear.clicked.connect(self.clear)
        buttons = QHBoxLayout()
        for b in (copy, again, clear):
            buttons.addWidget(b)
        buttons.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.header)
        lay.addWidget(self.list, 1)
        lay.addLayout(buttons)

    def again(self) -> None:
        if self.comparison is not None and self.controller is not None:
            self.controller.start(self.comparison.path)

    def show_comparison(self, c: Comparison) -> None:
        self.comparison = c
        n = len(c.entries)
        name = os.path.basename(c.path)
        self.header.setText(
            f"{name}: the same state as on screen (op {c.op_count})"
            if c.equal
            else f"{name} differs from the state on screen (op {c.op_count}): {n} line"
            + ("s" if n != 1 else "")
            + "; orange on the map"
        )
        self.list.clear()
        for e in c.entries:
            text = f"{e.section}: {e.text}" if e.section else e.text
            item = QListWidgetItem(text)
            item.setData(RANGES_ROLE, list(e.gfns))
            item.setToolTip(text + ("\nclick: show these gfns on the map" if e.gfns else ""))
            self.list.addItem(item)

    def ranges(self) -> list[tuple[int, int]]:
        if self.comparison is None:
            return []
        return [r for e in self.comparison.entries for r in e.gfns]

    def _go(self, item: QListWidgetItem) -> None:
        ranges = item.data(RANGES_ROLE) or []
        if not ranges:
            return
        a, b = ranges[0]
        w = self.window_
        w.selection.set_range(a, b)
        w.map.show_range(a, b)

    def copy(self) -> str:
        text = self.comparison.text if self.comparison is not None else ""
        QGuiApplication.clipboard().setText(text)
        self.window_.show_message("Comparison copied as text")
        return text

    def clear(self) -> None:
        self.comparison = None
        self.list.clear()
        self.header.setText("File > Compare with... shows here what differs from a state file.")
        if self.controller is not None:
            self.controller.overlay.set_ranges(())


class Compare:
    """The action, the pane, the overlay and the engine-thread job."""

    def __init__(self, w: MainWindow) -> None:
        self.window = w
        self.pane = ComparePane(w)
        self.pane.controller = self
        self.pane.setMinimumSize(120, 60)
        self.dock = w.add_pane(self.pane, "Compare", Qt.DockWidgetArea.BottomDockWidgetArea)
        log = w.docks.get("log")
        if log is not None:
            w.tabifyDockWidget(log, self.dock)
            log.raise_()
        self.overlay = RangeOverlay(w.map, COMPARE_COLOUR, fill_alpha=50)
        w.engine.answered.connect(self._on_answer)
        self.action = QAction("Compare &with…", w)
        self.action.setObjectName("act_compare")
        self.action.setShortcut(QKeySequence("Ctrl+Shift+D"))
        self.action.setToolTip(
            "What differs between the state on screen and a state file (imemviz diff), "
            "on the map and as a list (Ctrl+Shift+D)"
        )
        self.action.setStatusTip(self.action.toolTip())
        self.action.triggered.connect(self.ask)
        w.addAction(self.action)
        for menu_action in w.menuBar().actions():
            menu = menu_of(menu_action)
            if menu_action.text().replace("&", "") == "File" and menu is not None:
                # After "Save recording...": the file actions that read or write states.
                before = next(
                    (a for a in menu.actions() if a.objectName() == "act_load_default"), None
                )
                # before None appends (Qt takes nullptr; PySide6's stub omits None)
                menu.insertAction(before, self.action)  # type: ignore[arg-type]
                break

    def ask_path(self) -> str:
        path, _ = QFileDialog.getOpenFileName(
            self.window,
            "Compare with state file",
            "",
            "State files (*.json *.json.gz *.json.zst);;All files (*)",
        )
        return path

    def ask(self) -> None:
        if self.window.engine.snapshot is None:
            self.window.show_message("Open or create a VM first: there is nothing to compare.")
            return
        path = self.ask_path()
        if path:
            self.start(path)

    def start(self, path: str) -> None:
        """Compare the current state with `path` (on the engine thread)."""
        self.window.show_message(f"Comparing with {path}…")
        self.window.engine.post(M.CompareWith(KEY, path))

    def _on_answer(self, a: M.Answer) -> None:
        if a.key != KEY:
            return
        if a.error is not None:
            self.window.show_message(a.error, error=True)
        else:
            self._done(a.value)

    def _done(self, c: Comparison) -> None:
        self.pane.show_comparison(c)
        self.overlay.set_ranges(self.pane.ranges())
        self.dock.show()
        self.dock.raise_()
        if self.dock.height() < 200:  # the bottom docks start one log line tall
            self.window.resizeDocks([self.dock], [240], Qt.Orientation.Vertical)
        self.window.show_message(
            f"{os.path.basename(c.path)}: "
            + ("the same state" if c.equal else f"{len(c.entries)} differences (orange on the map)")
        )


def install(w: MainWindow) -> Compare:
    return Compare(w)
