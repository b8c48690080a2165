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
from collections import deque

from PySide6.QtCore import QTimer
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QVBoxLayout, QWidget

from imemviz.app.records import OpRecord
from imemviz.app.worker import Engine
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
        self._bodies: deque[str] = deque(maxlen=4000)  # as the widget's block limit
        from imemviz.app import plot_theme

        plot_theme.hub().changed.connect(self.recolour)

    def on_op(self, rec: OpRecord) -> None:
        line = rec.line
        ret = dict(line["ret"]) if line["ret"] else {}
        res = "ok" if rec.ok else f"<b>{line['errno']}</b>"
        ret_text = json.dumps(_plain(ret), separators=(", ", ": ")) if ret else ""
        colour = "{ok}" if rec.ok else "{error}"
        plain = f"#{rec.index} {op_text(rec.op)} -> {'ok' if rec.ok else line['errno']} {ret_text}"
        body = (
            f"<span style='color:{{muted}}'>#{rec.index}</span> "
            f"<code>{_brace(html.escape(op_text(rec.op)))}</code> → "
            f"<span style='color:{colour}'>{res}</span> "
            f"<span style='color:{{muted}}'>{_brace(html.escape(ret_text))}</span>"
        )
        if rec.explanation:
            body += f"<br>&nbsp;&nbsp;<i>{_brace(html.escape(rec.explanation))}</i>"
            plain += " | " + rec.explanation
        if self.show_events and rec.events:
            shown = [html.escape(format_event(e)) for e in rec.events[:MAX_EVENTS_SHOWN]]
            more = len(rec.events) - len(shown)
            ev = "; ".join(shown) + (f"; … {more} more" if more > 0 else "")
            body += (
                f"<br>&nbsp;&nbsp;<span style='color:{{muted}};font-size:small'>{_brace(ev)}</span>"
            )
        if self._awaiting is None:
            self._awaiting = time.monotonic()
        self._append(body, plain, rec.index)

    def action(self, rec) -> None:
        """A user-level step (messages.ActionRecord): its name and outcome, as a header line
        above the ops it applied when they are still waiting to be shown."""
        icon = {"undo": "↶", "redo": "↷", "seek": "⇥"}.get(rec.kind, "▶")
        colour = "{text}" if rec.ok else "{error}"
        body = f"<b style='color:{colour}'>{icon} {_brace(html.escape(rec.text))}</b>"
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
        if len(self._bodies) == self._bodies.maxlen:
            self._bodies.popleft()  # deque.insert refuses a full deque
        self._bodies.insert(len(self._bodies) - (len(self._pending) - 1) + at, body)

    def note(self, text: str, level: str = "info") -> None:
        colour = {"info": "{info}", "error": "{error}", "step": "{step}"}.get(level, "{text}")
        first = text.splitlines()[0] if text else ""
        self._append(f"<span style='color:{colour}'>{_brace(html.escape(first))}</span>", text)

    def _append(self, body: str, plain: str, op: int | None = None) -> None:
        """`body` is HTML with {ok}, {error}, {info}, {step}, {muted}, {text} for the
        theme's colours (literal braces doubled): a theme switch recolours every entry."""
        self.lines.append(plain)
        self._bodies.append(body)
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
        colours = _colours()
        self.text.appendHtml("".join(f"<p>{b.format(**colours)}</p>" for b in bodies))
        self.text.moveCursor(QTextCursor.MoveOperation.End)

    def recolour(self, _theme=None) -> None:
        """Redraw every entry in the current theme's colours (the light theme's blue and
        red are hard to read on dark)."""
        self._awaiting = None  # show what is queued now: it is redrawn from _bodies below
        self.flush()
        colours = _colours()
        self.text.clear()
        self.text.appendHtml("".join(f"<p>{b.format(**colours)}</p>" for b in self._bodies))
        self.text.moveCursor(QTextCursor.MoveOperation.End)


def _brace(text: str) -> str:
    """Literal text inside a body template: its braces doubled."""
    return text.replace("{", "{{").replace("}", "}}")


def _colours() -> dict[str, str]:
    from imemviz.app import plot_theme

    t = plot_theme.current()
    return {
        "ok": t.ok,
        "error": t.error,
        "info": t.info,
        "step": t.step,
        "muted": t.muted,
        "text": t.text,
    }


def _plain(v):
    if isinstance(v, dict) or hasattr(v, "items"):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    return v
