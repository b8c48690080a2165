"""The session's timeline in the app: play, step, step back and seek, for a live session and
for a recording being replayed alike (the pane is replay_pane.py).

The engine thread owns the timeline (`io/session.py`: the applied groups,
then the undone ones; a replay: the recording's ops, one group each) and does
every move from the session's checkpoints: this controller only posts
`Seek(k)` (and `LoadRecording` / `CloseReplay`) and follows the position each
`Snapshot` carries.  Seeking a live session is like undoing to that point,
keeping the redo history; stepping forwards is a redo.  Pacing and captions
come from the recording (`imemviz.io.replay.Timeline`); a live session steps
at the default pace.

The caption overlay (caption.py) shows the text of the last ``note`` op
before the current position.
"""

from __future__ import annotations

import bisect
import os
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from imemviz.app.caption import CaptionOverlay
from imemviz.app.messages import TimelineInfo
from imemviz.io.replay import DEFAULT_PACE_S, Timeline
from imemviz.model.ops import Note

if TYPE_CHECKING:
    from imemviz.app.records import OpRecord, Snapshot
    from imemviz.app.window import MainWindow


class ReplayController(QObject):
    """Play/pause, step, step back, seek and speed over the session's timeline."""

    positionChanged = Signal(int)
    loaded = Signal(object)  # Timeline of a replay that starts, None when it ends
    playingChanged = Signal(bool)
    timelineChanged = Signal(object)  # TimelineInfo

    def __init__(self, window: MainWindow, overlay: CaptionOverlay) -> None:
        super().__init__(window)
        self.window = window
        self.engine = window.engine
        self.overlay = overlay
        self.info: TimelineInfo | None = None
        self.timeline: Timeline | None = None  # the recording being replayed, if any
        self.position = 0
        self.length = 0
        self.speed = 1.0
        self.as_recorded = True
        self.playing = False
        self._autoplay = False
        self._loading = False  # a LoadRecording is on its way to the engine thread
        self._ends: np.ndarray = np.zeros(1, np.int64)  # op count after each group
        self._notes: tuple[int, ...] = ()  # op indexes of captions
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._tick)
        self.engine.snapshotReady.connect(self._on_snapshot)
        self.engine.timelineChanged.connect(self._on_timeline)
        self.engine.opApplied.connect(self._on_op)
        self.engine.failed.connect(self._on_failed)

    @property
    def active(self) -> bool:
        """A recording is being replayed."""
        return self.timeline is not None

    # ------------------------------------------------------------------ loading
    def load(self, source: str | os.PathLike[str] | Timeline, autoplay: bool = False) -> bool:
        """Replay a recording from its start (read and applied on the engine thread);
        False (and a message) when the file is not there."""
        if not isinstance(source, Timeline):
            source = os.fspath(source)
            if not os.path.isfile(source):
                self.window.show_message(f"{source}: no such file", error=True)
                return False
        self.pause()
        self._autoplay = autoplay
        self._loading = True
        self.engine.load_recording(source, 0)
        return True

    def close(self) -> None:
        """End the replay: the session stays, as a live one."""
        self.pause()
        if self.timeline is not None:
            self.engine.close_replay()

    # ------------------------------------------------------------------ control
    def play(self) -> None:
        if self._loading:  # starts once the recording is there
            self._autoplay = True
            if not self.playing:
                self.playing = True
                self.playingChanged.emit(True)
            return
        if self.playing and self._timer.isActive():
            return
        if self.length == 0:
            return
        if self.position >= self.length:
            self.seek(0)
        if not self.playing:
            self.playing = True
            self.playingChanged.emit(True)
        self._schedule()

    def pause(self) -> None:
        self._timer.stop()
        self._autoplay = False
        if self.playing:
            self.playing = False
            self.playingChanged.emit(False)

    def toggle(self) -> None:
        if self.playing:
            self.pause()
        else:
            self.play()

    def step(self) -> bool:
        """One step forwards (the recording's next op; a live session: redo)."""
        if self.position >= self.length:
            return False
        self.seek(self.position + 1)
        return True

    def advance(self, count: int) -> int:
        """`count` steps forwards as one command (a video export's bursts); returns how many."""
        n = max(0, min(count, self.length - self.position))
        if n:
            self.seek(self.position + n)
        return n

    def step_back(self) -> bool:
        if self.position == 0:
            return False
        self.seek(self.position - 1)
        return True

    def seek(self, k: int) -> None:
        """Show the state after the first k steps of the timeline."""
        k = max(0, min(k, self.length))
        if k == self.position:
            return
        self.engine.seek(k)
        self.position = k  # the snapshot confirms it
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
            return round(1000 * DEFAULT_PACE_S / self.speed)
        d = tl.durations(as_recorded=self.as_recorded)
        return round(1000 * d[min(self.position, len(d) - 1)] / self.speed)

    def op_count(self, position: int) -> int:
        """Ops applied at a timeline position (a live session's steps are whole actions)."""
        return int(self._ends[max(0, min(position, len(self._ends) - 1))])

    def caption_at(self, position: int) -> str | None:
        """The caption on screen at a position: the last note before it."""
        n = self.op_count(position)
        i = bisect.bisect_left(self._notes, n) - 1
        if i < 0 or self.info is None:
            return None
        op = self.info.ops[self._notes[i]]
        return op.text if isinstance(op, Note) else None

    # ------------------------------------------------------------------ internals
    def _on_timeline(self, info: TimelineInfo) -> None:
        was = self.timeline
        self.info = info
        self.timeline = info.timeline
        self.length = len(info)
        self._ends = np.concatenate(([0], np.cumsum(np.asarray(info.sizes, np.int64))))
        self._notes = info.notes  # found on the engine thread
        self.timelineChanged.emit(info)
        if info.timeline is not None and info.timeline is not was:
            self._loading = False
            self.as_recorded = info.timeline.has_times
            self.position = 0
            self.loaded.emit(info.timeline)
            self._moved()
            if self._autoplay:
                self._autoplay = False
                self.playing = False
                self.play()
        elif info.timeline is None and was is not None:
            self.pause()
            self.overlay.set_caption(None)
            self.loaded.emit(None)  # the replay is over

    def _on_failed(self, message: str) -> None:
        if self._loading:  # the recording could not be loaded (the message says why)
            self._loading = False
            self.pause()

    def _on_snapshot(self, snap: Snapshot) -> None:
        self.length = snap.length
        # The position of the last command queued: intermediate snapshots of a burst of
        # seeks must not pull the slider back.
        if self.engine.pending <= 1 and snap.position != self.position:
            self.position = snap.position
            self._moved()
        if self.playing and self.position >= self.length:
            self.pause()

    def _moved(self) -> None:
        if self.timeline is not None:
            self.overlay.set_caption(self.caption_at(self.position))
        self.positionChanged.emit(self.position)

    def _schedule(self) -> None:
        self._timer.stop()
        if self.playing:
            self._timer.start(self.interval_ms())

    def _tick(self) -> None:
        if not self.playing:
            return
        if not self.engine.idle:
            self._timer.start(10)  # let the engine (and the map) catch up first
            return
        if not self.step() or self.position >= self.length:
            self.pause()
            return
        self._schedule()

    def _on_op(self, rec: OpRecord) -> None:
        # Live captions (Add caption, or a note applied by hand) show too.
        if isinstance(rec.op, Note) and (self.timeline is None or not self.playing):
            self.overlay.set_caption(rec.op.text)
        elif rec.changed:
            self.overlay.avoid(rec.changed)
