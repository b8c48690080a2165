"""Replaying a recording in the app: the controller (the pane is replay_pane.py).

The controller drives the same engine path as live use: a step forward is
one ``apply_ops`` through the worker (the log, the map and the counters see
an ordinary op); a step back or a jump rebuilds a Session from the
recording's start with the first k ops applied, each as its own undo step,
and swaps it in (quietly).  The timeline logic (pacing, captions, states) is
the Qt-free `imemviz.io.replay`.

The caption overlay (caption.py) shows the text of the last ``note`` op
before the current position.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal

from imemviz.app.caption import CaptionOverlay
from imemviz.io.replay import StateCache, Timeline
from imemviz.io.script import ScriptError
from imemviz.io.session import Session, deepcopy_vm
from imemviz.model.ops import Note

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow
    from imemviz.app.worker import OpRecord, Snapshot

FORWARD_APPLY_MAX = 8  # a forward seek this short applies ops; longer ones rebuild


class ReplayController(QObject):
    """Plays a `Timeline` into the window's engine: play/pause, step, step back, seek, speed."""

    positionChanged = Signal(int)
    loaded = Signal(object)  # Timeline
    playingChanged = Signal(bool)

    def __init__(self, window: MainWindow, overlay: CaptionOverlay) -> None:
        super().__init__(window)
        self.window = window
        self.engine = window.engine
        self.overlay = overlay
        self.timeline: Timeline | None = None
        self.position = 0
        self.speed = 1.0
        self.as_recorded = True
        self.playing = False
        self._cache: StateCache | None = None
        self._swaps = 0  # session swaps we posted and whose snapshot has not come yet
        self._session_no: int | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._tick)
        self.engine.snapshotReady.connect(self._on_snapshot)
        self.engine.opApplied.connect(self._on_op)

    @property
    def active(self) -> bool:
        return self.timeline is not None

    # ------------------------------------------------------------------ loading
    def load(self, source: str | os.PathLike[str] | Timeline, autoplay: bool = False) -> bool:
        """Load a recording and show its start; False (and a message) if it is unusable."""
        try:
            tl = source if isinstance(source, Timeline) else Timeline.load(source)
            vm0 = tl.start_vm()
        except ScriptError as e:
            self.window.show_message(str(e), error=True)
            return False
        self.pause()
        self.timeline = tl
        self._cache = StateCache(tl, start=vm0)
        self.as_recorded = tl.has_times
        self.position = 0
        self._swap(Session(tl.start, deepcopy_vm(vm0), source=tl.source))
        self.loaded.emit(tl)
        self._moved()
        self.window.show_message(
            f"Replaying {os.path.basename(tl.source)}: {len(tl)} ops, "
            f"{len(tl.note_indexes)} captions"
        )
        if autoplay:
            self.play()
        return True

    def close(self) -> None:
        self.pause()
        self.timeline = None
        self._cache = None
        self.overlay.set_caption(None)
        self.loaded.emit(None)

    # ------------------------------------------------------------------ control
    def play(self) -> None:
        if self.timeline is None or self.playing:
            return
        if self.position >= len(self.timeline):
            self.seek(0)
        self.playing = True
        self.playingChanged.emit(True)
        self._schedule()

    def pause(self) -> None:
        self._timer.stop()
        if self.playing:
            self.playing = False
            self.playingChanged.emit(False)

    def toggle(self) -> None:
        if self.playing:
            self.pause()
        else:
            self.play()

    def step(self) -> bool:
        """Apply the next op (through the worker, as a live action would)."""
        tl = self.timeline
        if tl is None or self.position >= len(tl):
            return False
        op = tl.ops[self.position]
        self.engine.apply_ops([op], f"replay #{self.position}")
        self.position += 1
        self._moved()
        return True

    def advance(self, count: int) -> int:
        """Apply the next `count` ops as one command (one publish: a video export's bursts);
        returns how many were applied."""
        tl = self.timeline
        if tl is None or count <= 0:
            return 0
        ops = list(tl.ops[self.position : self.position + count])
        if ops:
            self.engine.apply_ops(ops, f"replay #{self.position}..#{self.position + len(ops) - 1}")
            self.position += len(ops)
            self._moved()
        return len(ops)

    def step_back(self) -> bool:
        if self.timeline is None or self.position == 0:
            return False
        self.seek(self.position - 1)
        return True

    def seek(self, k: int) -> None:
        """Show the state after the first k ops."""
        tl = self.timeline
        if tl is None:
            return
        k = max(0, min(k, len(tl)))
        if k == self.position:
            return
        if self.position < k <= self.position + FORWARD_APPLY_MAX:
            while self.position < k:
                self.step()
            return
        assert self._cache is not None
        s = Session(tl.start, self._cache.vm_at(0), source=tl.source)
        for op in tl.ops[:k]:
            s.apply_group([op], op.NAME)
        self.position = k
        self._swap(s)
        self._moved()

    def set_speed(self, speed: float, as_recorded: bool | None = None) -> None:
        self.speed = max(0.01, speed)
        if as_recorded is not None:
            self.as_recorded = as_recorded
        if self.playing:
            self._schedule()

    def interval_ms(self) -> int:
        """How long the current position stays before the next step, at the chosen speed."""
        tl = self.timeline
        if tl is None:
            return 0
        d = tl.durations(as_recorded=self.as_recorded)
        return round(1000 * d[min(self.position, len(d) - 1)] / self.speed)

    # ------------------------------------------------------------------ internals
    def _swap(self, session: Session) -> None:
        self._swaps += 1
        self.engine.set_session(session, announce=False)

    def _moved(self) -> None:
        if self.timeline is not None:
            self.overlay.set_caption(self.timeline.caption_at(self.position))
        self.positionChanged.emit(self.position)

    def _schedule(self) -> None:
        self._timer.stop()
        if self.playing:
            self._timer.start(self.interval_ms())

    def _tick(self) -> None:
        if not self.playing or self.timeline is None:
            return
        if not self.engine.idle:
            self._timer.start(10)  # let the engine (and the map) catch up first
            return
        if not self.step():
            self.pause()
            return
        if self.position >= len(self.timeline):
            self.pause()
            return
        self._schedule()

    def _on_snapshot(self, snap: Snapshot) -> None:
        if snap.session == self._session_no:
            return
        self._session_no = snap.session
        if self._swaps:
            self._swaps -= 1
        elif self.timeline is not None:
            self.close()  # the user opened something else: the replay is over

    def _on_op(self, rec: OpRecord) -> None:
        # Live captions (Add caption, or a note applied by hand) show too.
        if isinstance(rec.op, Note) and (self.timeline is None or not self.playing):
            self.overlay.set_caption(rec.op.text)
        elif rec.changed:
            self.overlay.avoid(rec.changed)
