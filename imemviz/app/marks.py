"""Change marks: what the last action changed, outlined in every pane, then faded out.

`MarkController` (one per window, `window.marks`) holds the changes of the
latest user-level step (an action, an undo, a redo, a replay step or a seek:
`ActionRecord.changes`) and their opacity: full for `HOLD_S`, then fading to
nothing over `FADE_S`.  The panes draw them in their own coordinates:

- the GPA map (`panes/map_marks.py`): a thick black-on-white dashed outline
  around every changed gfn range, and a ring around any range drawn smaller
  than `MIN_MARK_PX`, so a single 4K page in a 4 TiB view still shows;
- the host folios pane (`panes/host_marks.py`): the same outline around the
  pfns or guest_memfd pages whose folios were allocated, freed or poisoned;
- the S-EPT / EPT entries and the event log: a dashed outline around the
  rows of the leaves the action mapped or changed and of its events.

No legend entry uses an outline, a dash or a ring (states are fills), so a
mark never reads as a state; black dashes on a white halo show on light and
dark cells alike.  Severe outcomes (the TD killed, EHWPOISON, a
KVM_EXIT_MEMORY_FAULT exit) do not fade: a glyph marks their gfn on the map
and a banner (`banner.py`) says what happened until it is dismissed or undone.

API for other features (framing, `--at` screenshots): `show(changes, label,
hold)`, `show_action(record)`, `latest` / `ranges()` (the latest changes, also
once faded), `hold(True)` (stop the fade, for screenshots), the `marked`
signal, and an injectable `clock` with `step(now)` to drive the fade in tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QBoxLayout

from imemviz.app.messages import ActionRecord
from imemviz.model.changes import Changes

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow

HOLD_S = 1.0  # marks stay at full strength this long ...
FADE_S = 1.5  # ... then fade out over this long
TICK_MS = 125  # fade step: 8 a second (each repaints the marks' region of the map)
MIN_MARK_PX = 14.0  # a changed range drawn smaller than this gets a ring of this size


class MarkController(QObject):
    """The latest changes and their fade; panes connect to `marked` and `opacityChanged`."""

    marked = Signal(object)  # Changes or None: new marks (or none any more)
    opacityChanged = Signal(float)

    def __init__(
        self, parent: QObject | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(parent)
        self.clock = clock
        self.latest: Changes | None = None  # stays after the fade (framing, --at)
        self.label = ""
        self.record: ActionRecord | None = None
        self.enabled = True
        self._held = False
        self._t0 = 0.0
        self._opacity = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self.step)

    # ------------------------------------------------------------------ API
    def show(self, changes: Changes | None, label: str = "", hold: bool = False) -> None:
        """Mark these changes now (replacing the previous marks); `hold`: no fade."""
        self.latest = changes if changes else None
        self.label = label
        self._held = hold
        self._t0 = self.clock()
        self._opacity = 1.0 if self.latest is not None and self.enabled else 0.0
        self.marked.emit(self.latest if self.enabled else None)
        self.opacityChanged.emit(self._opacity)
        if self._opacity > 0 and not hold:
            self._timer.start()
        else:
            self._timer.stop()

    def show_action(self, rec: ActionRecord, hold: bool = False) -> None:
        self.record = rec
        self.show(rec.changes, rec.label, hold)

    def hold(self, on: bool = True) -> None:
        """Stop (or restart) the fade: a screenshot shows the marks at full strength."""
        self._held = on
        if on:
            self._timer.stop()
            if self.latest is not None:
                self._opacity = 1.0
                self.opacityChanged.emit(1.0)
        elif self.latest is not None:
            self._t0 = self.clock()
            self._timer.start()

    def clear(self) -> None:
        self.show(None)

    def suspend(self, on: bool) -> None:
        """Hide the marks while the map shows something else than the present (a step of
        an older op): they describe the present."""
        self.enabled = not on
        if on:
            self._timer.stop()
            self._opacity = 0.0
            self.marked.emit(None)
            self.opacityChanged.emit(0.0)

    def ranges(self) -> tuple[tuple[int, int], ...]:
        """The gfn ranges of the latest changes (empty: none)."""
        return self.latest.gfns if self.latest is not None else ()

    @property
    def visible(self) -> bool:
        return self.latest is not None and self._opacity > 0

    def opacity(self) -> float:
        return self._opacity

    def opacity_at(self, now: float) -> float:
        """1 for HOLD_S after the marks appeared, then linearly down to 0 over FADE_S."""
        if self.latest is None or not self.enabled:
            return 0.0
        if self._held:
            return 1.0
        t = now - self._t0 - HOLD_S
        return 1.0 if t <= 0 else max(0.0, 1.0 - t / FADE_S)

    def step(self, now: float | None = None) -> float:
        """Advance the fade to `now` (default: the clock); returns the opacity."""
        a = self.opacity_at(self.clock() if now is None else now)
        if a != self._opacity:
            self._opacity = a
            self.opacityChanged.emit(a)
        if a <= 0:
            self._timer.stop()
        return a


def install(window: MainWindow) -> MarkController:
    """Marks in every pane, the banner and the action's line in the status bar and the log."""
    from imemviz.app.banner import SevereBanner
    from imemviz.app.panes.host_marks import FolioMarks
    from imemviz.app.panes.map_marks import MapMarks
    from imemviz.app.row_marks import EntriesMarks, EventLogMarks

    marks = MarkController(window)
    engine = window.engine
    window.map_marks = MapMarks(window.map, marks)
    p2 = getattr(window, "panes2", None)
    if p2 is not None:
        from imemviz.app.step_view import StepView

        window.folio_marks = FolioMarks(p2.folios, marks)
        window.entries_marks = EntriesMarks(p2.entries, marks)
        window.event_marks = EventLogMarks(p2.events, marks)
        window.step_view = StepView(window)
    rmp = getattr(window, "rmp", None)
    if rmp is not None:  # the SEV-SNP RMP pane (imemviz/app/panes/rmp.py)
        rmp.attach_marks(marks)
    window.banner = SevereBanner(window)
    column = window.map.layout()
    assert isinstance(column, QBoxLayout)  # the map pane's column (gpa_map.py)
    column.insertWidget(0, window.banner)
    window.banner.severeChanged.connect(window.map_marks.set_severe)

    def on_action(rec: ActionRecord) -> None:
        window.last_action = rec
        window.show_message(rec.text, error=not rec.ok)
        window.log.action(rec)
        marks.show_action(rec)
        if rec.severe:
            window.banner.show_severe(rec.severe[-1], rec)

    engine.actionDone.connect(on_action)
    return marks
