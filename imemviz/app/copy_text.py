"""Copy as text, and as op JSON, everything a user would paste into a bug report.

Edit > Copy as text (Ctrl+C) and Edit > Copy as op JSON (Ctrl+Shift+J) copy
what has the focus: the inspector's rows, the selected S-EPT / EPT entry, the
selected event, or else the map's selection.  The inspector and entries
tables have the two actions in their right-click menu too, and the event
log's menu adds "copy the op's events" and "copy the op as a script line".

Op JSON is what a script holds: one op per line in the contract's canonical
form, so a reader pastes it into a script and runs it (`inspect` lines for
pages and entries; for an event, the op that emitted it, fetched from the
session on the engine thread).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QWidget

from imemviz.app import messages as M
from imemviz.app.menus import menu_of
from imemviz.app.panes.inspector import rows_of
from imemviz.io.recording import op_line
from imemviz.model import ops as O
from imemviz.model.events import event_dict, format_event

KEY = "copy op"  # the engine's answers to this (messages.Answer.key)

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow

MAX_PAGES = 16  # inspect lines for a selected range: its first pages


def _inspect_line(gfn: int) -> str:
    return op_line(O.Inspect(gfn << 12))


def selection_text(w: MainWindow) -> str:
    sel = w.selection
    if sel.gfn is None:
        return ""
    snap = w.engine.snapshot
    a, b = sel.span() or (sel.gfn, sel.gfn + 1)
    lines = [
        f"selection: gpa {a << 12:#x}-{(b << 12) - 1:#x} (gfn {a:#x}-{b - 1:#x}, "
        f"{b - a} page{'s' if b - a != 1 else ''})"
    ]
    if snap is not None:
        slot = snap.slot_at(sel.gfn)
        lines.append(
            f"VM: {snap.config.type}, {snap.op_count} ops; memslot "
            + ("none" if slot is None else f"{slot.id & 0xFFFF} at gpa {slot.base_gfn << 12:#x}")
        )
    info = w.inspector.info
    if info is not None and info.get("gfn") == sel.gfn:
        lines.append(f"page {sel.gfn << 12:#x}:")
        lines += [f"  {f}: {v}" for f, v in rows_of(info)]
    return "\n".join(lines)


def selection_ops(w: MainWindow) -> str:
    sel = w.selection
    if sel.gfn is None:
        return ""
    a, b = sel.span() or (sel.gfn, sel.gfn + 1)
    pages = list(range(a, min(b, a + MAX_PAGES)))
    if b - a > MAX_PAGES:
        pages.append(b - 1)
    return "\n".join(_inspect_line(g) for g in pages)


def inspector_text(w: MainWindow) -> str:
    info = w.inspector.info
    if info is None:
        return ""
    return "\n".join([w.inspector.title.text(), *(f"{f}: {v}" for f, v in rows_of(info))])


def inspector_ops(w: MainWindow) -> str:
    info = w.inspector.info
    if info is None:
        return ""
    # The op, then its answer as the result line's `ret` (what `imemviz run` prints).
    return _inspect_line(info["gfn"]) + "\n" + json.dumps({"ret": _plain(info)})


def _plain(v: Any) -> Any:
    if isinstance(v, dict) or hasattr(v, "items"):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def entry_row(w: MainWindow) -> dict[str, str] | None:
    pane = w.panes2.entries
    idx = pane.table.currentIndex()
    if not idx.isValid():
        return None
    model = pane.model
    cols = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    return {c: model.data(model.index(idx.row(), k)) for k, c in enumerate(cols)}


def entry_text(w: MainWindow) -> str:
    row = entry_row(w)
    if row is None:
        return ""
    return "\t".join(row) + "\n" + "\t".join(str(v) for v in row.values())


def entry_ops(w: MainWindow) -> str:
    row = entry_row(w)
    if row is None:
        return ""
    return _inspect_line(int(row["gfn"], 16)) + "\n" + json.dumps({"entry": row})


def current_event(w: MainWindow) -> tuple | None:
    pane = w.panes2.events
    idx = pane.table.currentIndex()
    if not idx.isValid():
        return None
    return pane.model.events[pane.model.position(idx.row())]


def event_text(ev: tuple) -> str:
    return f"op #{ev[0]}: {format_event(ev)}"


def op_events_text(w: MainWindow, op: int) -> str:
    _first, evs = w.panes2.events.model.op_events(op)
    return "\n".join(event_text(ev) for ev in evs)


class CopyText:
    def __init__(self, w: MainWindow) -> None:
        self.window = w
        w.engine.answered.connect(self._on_answer)
        self.copied = ""  # what was copied last (tests)
        self.as_text = self._action(
            "copy_text",
            "&Copy as text",
            "Ctrl+C",
            "Copy what has the focus (the inspector, an entry, an event, else the map's "
            "selection) as text for a bug report",
            lambda: self.copy(json_=False),
        )
        self.as_json = self._action(
            "copy_json",
            "Copy as &op JSON",
            "Ctrl+Shift+J",
            "Copy what has the focus as script lines (the contract's op JSON): inspect "
            "lines for pages and entries, the op that emitted an event",
            lambda: self.copy(json_=True),
        )
        for menu_action in w.menuBar().actions():
            menu = menu_of(menu_action)
            if menu_action.text().replace("&", "") == "Edit" and menu is not None:
                menu.addSeparator()
                menu.addAction(self.as_text)
                menu.addAction(self.as_json)
                break
        # The two tables' right-click menus: the same actions, on that pane.
        for table in (w.inspector.table, w.panes2.entries.table):
            table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
            for act in (self.as_text, self.as_json):
                table.addAction(act)
        w.panes2.events.menu_hooks.append(self._event_menu)

    def _action(self, name: str, text: str, key: str, tip: str, fn: Any) -> QAction:
        act = QAction(text, self.window)
        act.setObjectName(f"act_{name}")
        act.setShortcut(QKeySequence(key))
        act.setToolTip(f"{tip} ({key})")
        act.setStatusTip(tip)
        act.triggered.connect(fn)
        self.window.addAction(act)
        return act

    def _set(self, text: str, message: str) -> None:
        self.copied = text
        QGuiApplication.clipboard().setText(text)
        self.window.show_message(message)

    def _focus(self) -> str:
        w = self.window
        f: QWidget | None = QGuiApplication.focusObject()  # type: ignore[assignment]
        for name, widget in (
            ("inspector", w.inspector),
            ("entries", w.panes2.entries),
            ("events", w.panes2.events),
        ):
            if isinstance(f, QWidget) and (f is widget or widget.isAncestorOf(f)):
                return name
        return "map"

    def copy(self, json_: bool) -> None:
        w = self.window
        where = self._focus()
        what = "as op JSON" if json_ else "as text"
        if where == "inspector":
            text = inspector_ops(w) if json_ else inspector_text(w)
        elif where == "entries":
            text = entry_ops(w) if json_ else entry_text(w)
        elif where == "events":
            ev = current_event(w)
            if ev is None:
                text = ""
            elif json_:
                self.copy_op(ev[0], json.dumps(event_dict(ev)))
                return
            else:
                text = event_text(ev)
        else:
            text = selection_ops(w) if json_ else selection_text(w)
        if not text:
            w.show_message("Nothing to copy: select a page, an entry or an event first.")
            return
        self._set(text, f"Copied the {where if where != 'map' else 'selection'} {what}")

    def copy_op(self, op: int, prefix: str = "") -> None:
        """The op that emitted op index `op`, as its script line (asked of the engine)."""
        self.window.engine.post(M.OpLine(KEY, op, prefix))

    def _on_answer(self, a: M.Answer) -> None:
        if a.key == KEY:
            text, message = a.value
            self._set(text, message)

    def _event_menu(self, menu: Any, ev: tuple) -> None:
        op = ev[0]
        menu.addSeparator()
        a = menu.addAction("Copy event as text")
        a.triggered.connect(lambda: self._set(event_text(ev), "Copied the event as text"))
        b = menu.addAction(f"Copy op #{op}'s events as text")
        b.triggered.connect(
            lambda: self._set(op_events_text(self.window, op), f"Copied op #{op}'s events")
        )
        c = menu.addAction(f"Copy op #{op} as op JSON (a script line)")
        c.triggered.connect(lambda: self.copy_op(op))


def install(w: MainWindow) -> CopyText:
    return CopyText(w)
