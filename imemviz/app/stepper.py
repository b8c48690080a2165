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

import attrs
import shiboken6
from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from imemviz.app.highlight import Highlight, from_span
from imemviz.app.selection import SelectionModel
from imemviz.model.events import format_event
from imemviz.model.protocols import Step, protocol_name, steps

SOURCE = "stepper"
PLAY_MS = 900
LIST_ROWS = 4  # the list of steps shows this many; the step's text gets the rest
MAX_DOCK_SHARE = 0.8  # a step's text may take up to this share of the window's height


@attrs.define
class ColumnHold:
    """The window's layout before fit_text first changed it (its dock state, and the
    corner it took, which saveState does not keep), given back when the panel goes."""

    window: QMainWindow
    state: QByteArray
    corner: tuple[Qt.Corner, Qt.DockWidgetArea] | None = None


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
        self.text.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        # The step's text wraps to the panel's width; the dock grows to show all of it
        # (fit_text), and what the window cannot give scrolls.
        self.text_area = QScrollArea()
        self.text_area.setObjectName("stepper_text_area")
        self.text_area.setWidgetResizable(True)
        self.text_area.setFrameShape(QFrame.Shape.NoFrame)
        self.text_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.text_area.setWidget(self.text)
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
        # The list of steps over the step's text: what room is left is below the text.
        lay.addWidget(self.list)
        lay.addWidget(self.text_area, 1)
        self._fit_timer = QTimer(self)
        self._fit_timer.setSingleShot(True)
        self._fit_timer.setInterval(0)
        self._fit_timer.timeout.connect(self.fit_text)
        self.hold: ColumnHold | None = None  # the layout fit_text changed, to give back
        self._fit_from: int | None = None  # the dock's height when fit_text last grew it
        self._watched: QDockWidget | None = None
        # The layout is given back once the tab switch or the close that hid the panel
        # is over (never from inside the dock layout's own handling of it).
        self._restore_timer = QTimer(self)
        self._restore_timer.setSingleShot(True)
        self._restore_timer.setInterval(0)
        self._restore_timer.timeout.connect(self.restore_column)
        self.list.setFixedHeight(self._list_height())

    def _list_height(self) -> int:
        rows = min(max(len(self.steps), 2), LIST_ROWS)
        row = self.list.sizeHintForRow(0) if self.list.count() else -1
        if row <= 0:
            row = self.list.fontMetrics().height() + 2
        return row * rows + 2 * self.list.frameWidth() + 2

    def text_overflow(self) -> int:
        """Pixels of the step's text below the visible part of its area (0: all shown)."""
        vp = self.text_area.viewport()
        return max(0, self.text.heightForWidth(vp.width()) - vp.height())

    def _dock(self) -> tuple[QDockWidget, QMainWindow] | None:
        dock = self.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        if (
            dock is None
            or dock.isFloating()
            or not dock.isVisible()
            or dock.visibleRegion().isEmpty()  # behind another tab: moved off-screen
        ):
            return None
        mw = dock.parentWidget()
        return (dock, mw) if isinstance(mw, QMainWindow) else None

    def fit_text(self) -> None:
        """Give the step's whole text room: the dock grows in its column, taking from the
        docks under it (the legend) down to their minimum; when that is not enough
        (1280x720), the side column runs down to the status bar (the docks under the map
        get narrower) for as long as the panel is shown.  Past MAX_DOCK_SHARE of the
        window the text scrolls."""
        lay = self.layout()
        if lay is not None:
            lay.activate()
        need = self.text_overflow()
        found = self._dock()
        if not need or found is None:
            return
        dock, mw = found
        self._watch(dock)
        area = mw.dockWidgetArea(dock)
        want = min(dock.height() + need + 2, int(mw.height() * MAX_DOCK_SHARE))
        if want <= dock.height():
            return
        # The room comes from the other docks of the column; resizeDocks is told every
        # size, else it spreads the change its own way.
        take = want - dock.height()
        docks, sizes = [dock], [want]
        tabbed = set(mw.tabifiedDockWidgets(dock))
        for other in mw.findChildren(QDockWidget):
            if (
                other is dock
                or other in tabbed
                or other.isFloating()
                or not other.isVisible()
                or other.visibleRegion().isEmpty()
                or mw.dockWidgetArea(other) != area
            ):
                continue
            give = min(take, max(0, other.height() - other.minimumSizeHint().height()))
            take -= give
            docks.append(other)
            sizes.append(other.height() - give)
        sizes[0] = want - take
        if sizes[0] > dock.height() and self._fit_from != dock.height():
            self._hold(mw)
            mw.resizeDocks(docks, sizes, Qt.Orientation.Vertical)
            # Once more when laid out: the column's separators, a scroll bar gone or the
            # longer column can leave a few pixels to take; a pass that did not grow the
            # dock is the last.
            self._fit_from = dock.height()
            self._fit_timer.start()
        corner = (
            Qt.Corner.BottomRightCorner
            if area == Qt.DockWidgetArea.RightDockWidgetArea
            else Qt.Corner.BottomLeftCorner
        )
        if (
            take > 0
            and area
            in (Qt.DockWidgetArea.RightDockWidgetArea, Qt.DockWidgetArea.LeftDockWidgetArea)
            and mw.corner(corner) != area
        ):
            hold = self._hold(mw)
            if hold.corner is None:
                hold.corner = (corner, mw.corner(corner))
            mw.setCorner(corner, area)
            self._fit_timer.start()  # once more in the longer column

    def _hold(self, mw: QMainWindow) -> ColumnHold:
        """The layout before fit_text's first change (kept until the panel goes)."""
        if self.hold is None or self.hold.window is not mw:
            self.hold = ColumnHold(mw, mw.saveState())
        return self.hold

    def take_hold(self) -> ColumnHold | None:
        """The layout to give back, handed over without giving it back (presentation
        mode keeps it while it hides the panel, and hands it back when it ends)."""
        self._restore_timer.stop()
        hold, self.hold = self.hold, None
        return hold

    def _watch(self, dock: QDockWidget) -> None:
        # A tab put in front of the panel's only moves it off-screen (no hideEvent): the
        # dock's visibilityChanged says so.
        if self._watched is not dock:
            self._watched = dock
            dock.visibilityChanged.connect(self._on_dock_visible)

    def _on_dock_visible(self, visible: bool) -> None:
        if visible:
            self._restore_timer.stop()  # back in front before the layout was given back
        elif self.hold is not None:
            self._restore_timer.start()

    def hideEvent(self, ev) -> None:
        # The dock closed: the column as it was.
        if self.hold is not None:
            self._restore_timer.start()
        super().hideEvent(ev)

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        if self.steps:
            self._fit_timer.start()

    def restore_column(self) -> None:
        """The layout as it was before fit_text lengthened the column, exactly (every
        dock's geometry); what the user did since to the docks' tabs and visibility (the
        tab that hid the panel, a dock closed) stays."""
        self._restore_timer.stop()
        hold, self.hold = self.hold, None
        if hold is None or not shiboken6.isValid(hold.window):
            return
        mw = hold.window
        if self.isVisible() and not self.visibleRegion().isEmpty():
            return  # shown again: what it changed is still needed
        docks = [d for d in mw.findChildren(QDockWidget) if d.parentWidget() is mw]
        front = [d for d in docks if d.isVisible() and not d.visibleRegion().isEmpty()]
        closed = [d for d in docks if d.isHidden()]
        if hold.corner is not None:
            mw.setCorner(*hold.corner)
        mw.restoreState(hold.state)
        for d in closed:
            d.hide()
        for d in front:
            d.raise_()

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
        self.list.setFixedHeight(self._list_height())
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
        # After stepChanged: its slots add to the text (the RMP note, step_rmp.py).
        self._fit_timer.start()

    def set_view_note(self, text: str, drawing: bool) -> None:
        """What the map shows while stepping (the state at the step, or the present)."""
        self.view_note.setText(text)
        # While the map draws the step, its band above the plot says so: the line here
        # would take the step's text's room.
        self.view_note.setVisible(not drawing)
        self.present_btn.setEnabled(drawing)
        self._fit_timer.start()

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
