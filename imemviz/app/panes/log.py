"""The message area: every op with its result, why refused ops were refused, and notes.

Non-modal by design: a refused op never opens a dialog; its errno and the
kernel rule behind it appear here and in the status bar.  Each user-level
step (an action, an undo, a redo, a seek) gets a header line naming it and
its outcome (`action`), above the ops it applied.
"""

from __future__ import annotations

import html
import json
import time

from PySide6.QtCore import QTimer
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QVBoxLayout, QWidget

from imemviz.app.worker import Engine, OpRecord
from imemviz.model.events import format_event
from imemviz.model.ops import op_to_dict

MAX_EVENTS_SHOWN = 12
FLUSH_MS = 40  # the log widget is updated this long after the first new entry
FLUSH_AT = 200  # ... or at once when this many are queued
HOLD_S = 1.0  # an action's op lines wait this long at most for its header line


def op_text(op) -> str:
    d = op_to_dict(op)
    name = d.pop("op")
    return (
        name
        + " "
        + " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in d.items())
    )


class LogPane(QWidget):
    def __init__(self, engine: Engine, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("log")
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(4000)
        self.text.setToolTip(
            "Every op applied, its result and, for refused ops, the kernel rule behind the errno"
        )
        self.setToolTip(self.text.toolTip())
        self.show_events = True
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.text)
        engine.opApplied.connect(self.on_op)
        engine.failed.connect(lambda m: self.note(m, "error"))
        engine.message.connect(lambda m: self.note(m, "info"))
        self.lines: list[str] = []  # plain text of every entry (tests, copy)
        self._pending: list[str] = []
        self._pending_ops: list[int | None] = []  # the op index of each pending entry
        self._awaiting: float | None = None  # when the ops of an unfinished action came
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self.flush)

    def on_op(self, rec: OpRecord) -> None:
        line = rec.line
        ret = dict(line["ret"]) if line["ret"] else {}
        res = "ok" if rec.ok else f"<b>{line['errno']}</b>"
        ret_text = json.dumps(_plain(ret), separators=(", ", ": ")) if ret else ""
        colour = "#1b5e20" if rec.ok else "#b71c1c"
        plain = f"#{rec.index} {op_text(rec.op)} -> {'ok' if rec.ok else line['errno']} {ret_text}"
        body = (
            f"<span style='color:#555'>#{rec.index}</span> "
            f"<code>{html.escape(op_text(rec.op))}</code> → "
            f"<span style='color:{colour}'>{res}</span> "
            f"<span style='color:#555'>{html.escape(ret_text)}</span>"
        )
        if rec.explanation:
            body += f"<br>&nbsp;&nbsp;<i>{html.escape(rec.explanation)}</i>"
            plain += " | " + rec.explanation
        if self.show_events and rec.events:
            shown = [html.escape(format_event(e)) for e in rec.events[:MAX_EVENTS_SHOWN]]
            more = len(rec.events) - len(shown)
            ev = "; ".join(shown) + (f"; … {more} more" if more > 0 else "")
            body += f"<br>&nbsp;&nbsp;<span style='color:#777;font-size:small'>{ev}</span>"
        if self._awaiting is None:
            self._awaiting = time.monotonic()
        self._append(body, plain, rec.index)

    def action(self, rec) -> None:
        """A user-level step (messages.ActionRecord): its name and outcome, as a header line
        above the ops it applied when they are still waiting to be shown."""
        icon = {"undo": "↶", "redo": "↷", "seek": "⇥"}.get(rec.kind, "▶")
        colour = "#1a1a1a" if rec.ok else "#b71c1c"
        body = f"<b style='color:{colour}'>{icon} {html.escape(rec.text)}</b>"
        plain = f"{icon} {rec.text}"
        self._awaiting = None
        if not self._timer.isActive() and self._pending:
            self._timer.start()
        at = None
        if rec.kind in ("action", "redo") and rec.count:
            at = next((i for i, op in enumerate(self._pending_ops) if op == rec.first), None)
        if at is None:
            self._append(body, plain)
            return
        self._pending.insert(at, body)
        self._pending_ops.insert(at, None)
        self.lines.insert(len(self.lines) - (len(self._pending) - 1) + at, plain)

    def note(self, text: str, level: str = "info") -> None:
        colour = {"info": "#0d47a1", "error": "#b71c1c", "step": "#4a148c"}.get(level, "#000")
        first = text.splitlines()[0] if text else ""
        self._append(f"<span style='color:{colour}'>{html.escape(first)}</span>", text)

    def _append(self, body: str, plain: str, op: int | None = None) -> None:
        self.lines.append(plain)
        self._pending.append(body)
        self._pending_ops.append(op)
        if len(self._pending) >= FLUSH_AT:
            self.flush()
        elif not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Show the queued entries (batched: a burst of ops costs one layout and one paint,
        and the map's repaint after an op is not kept waiting for the log's)."""
        self._timer.stop()
        if not self._pending:
            return
        if (
            self._awaiting is not None
            and len(self._pending) < FLUSH_AT
            and time.monotonic() - self._awaiting < HOLD_S
        ):
            self._timer.start()  # the action's header line goes above its ops: wait for it
            return
        self._awaiting = None
        bodies, self._pending = self._pending, []
        self._pending_ops = []
        self.text.appendHtml("".join(f"<p>{b}</p>" for b in bodies))
        self.text.moveCursor(QTextCursor.End)


def _plain(v):
    if isinstance(v, dict) or hasattr(v, "items"):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    return v
