"""Step through a kernel protocol: an op's events as steps, each explained and highlighted.

`imemviz.model.protocols.steps` groups the events (a big zap is a few phases,
each with a count); the panel shows one step at a time with what it does and
the kernel function behind it, highlights what it touches in every pane
(`SelectionModel.set_highlight`) and selects its first event in the event log.
`stepChanged` lets the window draw the state at the step (step_view.py);
"Back to the present" (Esc) ends that.
Keys: Right / N next, Left / P previous, Space play / pause, Home / End, Esc.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from imemviz.app.highlight import Highlight, from_span
from imemviz.app.selection import SelectionModel
from imemviz.model.events import format_event
from imemviz.model.protocols import Step, protocol_name, steps

SOURCE = "stepper"
PLAY_MS = 900


class StepPanel(QWidget):
    stepChanged = Signal(int)
    presentRequested = Signal()  # the user wants the present state back on the map

    def __init__(
        self,
        selection: SelectionModel,
        slots: Callable[[], Sequence],
        show_event: Callable[[int], None] | None = None,
        parent=None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("stepper")
        self.setToolTip("Step through the kernel protocol an op ran (Right/Left, Space plays)")
        self.selection = selection
        self._slots = slots
        self._show_event = show_event
        self.op: int | None = None
        self.events: list[tuple] = []
        self.first_position = 0
        self.steps: list[Step] = []
        self.current = -1
        self.title = QLabel("Right-click an event in the event log: Step through")
        self.title.setObjectName("stepper_title")
        self.title.setWordWrap(True)
        self.text = QLabel("")
        self.text.setObjectName("stepper_text")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.list = QListWidget()
        self.list.setObjectName("stepper_list")
        self.list.currentRowChanged.connect(self._on_list)
        self.prev_btn = QPushButton("◀ Prev")
        self.next_btn = QPushButton("Next ▶")
        self.play_btn = QPushButton("Play")
        self.play_btn.setCheckable(True)
        self.present_btn = QPushButton("Back to the present")
        self.present_btn.setObjectName("stepper_present")
        self.present_btn.setEnabled(False)
        self.present_btn.clicked.connect(self.presentRequested)
        self.view_note = QLabel("")
        self.view_note.setObjectName("stepper_view_note")
        self.view_note.setWordWrap(True)
        for b, tip in (
            (self.prev_btn, "Previous step (Left)"),
            (self.next_btn, "Next step (Right)"),
            (self.play_btn, "Play the steps one after the other (Space)"),
            (self.present_btn, "The map and the entries show the state now again (Esc)"),
        ):
            b.setToolTip(tip)
        self.prev_btn.clicked.connect(self.prev)
        self.next_btn.clicked.connect(self.next)
        self.play_btn.toggled.connect(self._on_play)
        self._timer = QTimer(self)
        self._timer.setInterval(PLAY_MS)
        self._timer.timeout.connect(self._tick)
        for keys, fn in (
            (("Right", "N"), self.next),
            (("Left", "P"), self.prev),
            (("Space",), self.play_btn.toggle),
            (("Home",), lambda: self.go(0)),
            (("End",), lambda: self.go(len(self.steps) - 1)),
            (("Escape",), self.presentRequested.emit),
        ):
            for k in keys:
                sc = QShortcut(QKeySequence(k), self)
                sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                sc.activated.connect(fn)
        buttons = QHBoxLayout()
        for b in (self.prev_btn, self.next_btn, self.play_btn):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addLayout(buttons)
        lay.addWidget(self.present_btn)
        lay.addWidget(self.view_note)
        lay.addWidget(self.text)
        lay.addWidget(self.list, 1)

    def load(self, op: int, events: Sequence[tuple], first_position: int = 0) -> None:
        """Step through one op's events (`first_position`: its first event in the log)."""
        self.op = op
        self.events = list(events)
        self.first_position = first_position
        self.steps = steps(self.events)
        name = f"op #{op}" if op >= 0 else "an op of the start"
        self.title.setText(
            f"{name}: {protocol_name(self.events)}, {len(self.events)} events "
            f"in {len(self.steps)} steps"
        )
        self.list.blockSignals(True)
        self.list.clear()
        for k, st in enumerate(self.steps):
            self.list.addItem(f"{k + 1}. {st.title}")
        self.list.blockSignals(False)
        self.current = -1
        if self.steps:
            self.go(0)
        else:
            self.text.setText("This op emitted no events.")

    def go(self, k: int) -> None:
        if not self.steps:
            return
        k = max(0, min(k, len(self.steps) - 1))
        self.current = k
        st = self.steps[k]
        first = self.events[st.positions[0]]
        fn = f"<br><b>kernel:</b> <code>{st.function}</code>" if st.function else ""
        count = f" ({st.count} events)" if st.count > 1 else ""
        self.text.setText(
            f"<b>Step {k + 1} of {len(self.steps)}: {st.title}</b>{count}<br>"
            f"{st.explanation}{fn}<br><small><code>{format_event(first)}</code></small>"
        )
        self.list.blockSignals(True)
        self.list.setCurrentRow(k)
        self.list.blockSignals(False)
        self.prev_btn.setEnabled(k > 0)
        self.next_btn.setEnabled(k < len(self.steps) - 1)
        hl = self.highlight_of(k)
        span = hl.gfn_span()
        if span is not None:
            self.selection.set_range(*span)
        self.selection.set_highlight(hl)
        if self._show_event is not None:
            self._show_event(self.first_position + st.positions[0])
        self.stepChanged.emit(k)

    def set_view_note(self, text: str, drawing: bool) -> None:
        """What the map shows while stepping (the state at the step, or the present)."""
        self.view_note.setText(text)
        self.present_btn.setEnabled(drawing)

    def highlight_of(self, k: int) -> Highlight:
        st = self.steps[k]
        return from_span(st.span, self._slots(), SOURCE, st.title)

    def next(self) -> None:
        if self.current < len(self.steps) - 1:
            self.go(self.current + 1)
        else:
            self.play_btn.setChecked(False)

    def prev(self) -> None:
        if self.current > 0:
            self.go(self.current - 1)

    def _on_list(self, row: int) -> None:
        if row >= 0:
            self.go(row)

    def _on_play(self, on: bool) -> None:
        self.play_btn.setText("Pause" if on else "Play")
        if on:
            self._timer.start()
        else:
            self._timer.stop()

    def _tick(self) -> None:
        self.next()
