"""The engine thread steps aside while the GUI draws a new state (one frame).

After publishing a state the engine thread still has work: the panes' feeds (the
event log's index, the entries, the folios, the State summary's held faults ...),
the overview's raster, the next command.  Run at once, that work competes for the
GIL with the GUI thread, which is handling the same snapshot: setting the image,
the marks, painting the map.  Every return of the GUI from Qt into Python (each
item's paint, each slot) then waits for the engine thread to give the GIL up,
up to `sys.getswitchinterval()` each time, and a few ms of GUI work become tens
of ms of stall (measured on a seek: 10 ms of GUI CPU in a 30-80 ms stall).

`FrameFence` lets the engine thread wait, without the GIL, until the GUI has
handled what it just sent, for at most `LIMIT_S`: a GUI that is busy elsewhere (a
test looping on submits, a modal dialog) costs the engine no more than that per
wait, and once a wait ran out the rest of that publish does not wait (`hurried`).
The engine thread without a GUI (headless tests of the worker) never waits: the
fence is armed by the GUI side (`Engine`).

Pacing (s20).  The engine sends the GUI one piece of work at a time: the snapshot
(with the map's raster), then on a new session the map's raster, then each pane's
feed and the timeline, each followed by a `paced(token)` signal and a wait for that
token.  The GUI acknowledges a token two timer hops after it handled it
(`AckLater`): the first zero-interval timer runs in the timer phase of the event
loop's turn that delivered it, the second in the next turn's, after that turn's
posted events (the repaint the piece scheduled, posted at low priority while the
piece was handled).  So the engine computes while the GUI is idle and waits while
the GUI works: no turn of the GUI shares the GIL with the engine's Python, and the
panes' updates arrive in separate turns instead of piling into one drain of Qt's
posted events (measured in docs/benchmarks.md, "fifth pass (s20)").
"""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QObject, QTimer

LIMIT_S = 0.030  # the longest the engine thread waits for the GUI's frame of an op
# A reset (a seek, an undo) sends its pieces one per GUI turn: the longest wait for each.
# A GUI blocked elsewhere costs that publish this once (then `hurried`); a GUI slowed by
# a loaded machine keeps its pieces in turns of their own (30 ms, then 100 ms, ran out
# at load ~6-8 and the rest of the pieces flooded into one turn).
PACE_LIMIT_S = 0.250
# The first frame of a newly opened session (a new layout, every pane reset) takes the
# GUI longer, and the engine's feeds after it are long (a 20,000-op recording: ~25 ms of
# Python): on a loaded machine 30 ms ran out before the GUI had painted, and the feeds
# then took the GIL from that paint.  An open is not hurried by the wait.
OPEN_LIMIT_S = 0.250


class FrameFence:
    """Tokens issued (engine thread) and acknowledged (GUI thread)."""

    def __init__(self) -> None:
        self.armed = False  # set by the GUI side: someone acknowledges
        self._acked = 0
        self._issued = 0
        self._cond = threading.Condition()
        self.waited_s = 0.0  # total time the engine thread waited (benchmarks)
        self.waits = 0  # waits that waited (tests, benchmarks)
        self.hurried = False  # a wait ran out: the engine goes on without waiting

    def issue(self) -> int:
        """Engine thread: a new token to send the GUI (after the piece it acknowledges)."""
        self._issued += 1
        return self._issued

    def ack(self, version: int) -> None:
        """GUI thread: the snapshot of `version` is handled and drawn."""
        with self._cond:
            if version > self._acked:
                self._acked = version
            self._cond.notify_all()

    def wait(self, version: int, limit: float = LIMIT_S) -> bool:
        """Engine thread: wait until the GUI acknowledged `version` (or `limit` s); False
        when it did not in time (and `hurried` is set: the caller's next waits are moot)."""
        if not self.armed or self.hurried:
            return True
        t0 = time.perf_counter()
        with self._cond:
            ok = self._cond.wait_for(lambda: self._acked >= version, timeout=limit)
        self.waited_s += time.perf_counter() - t0
        self.waits += 1
        if not ok:
            self.hurried = True
        return ok


class AckLater(QObject):
    """GUI thread: acknowledge a token two timer hops after it arrived (see the module).

    `hops` timers in a row: a zero-interval timer started during a turn of the event
    loop runs in that turn's timer phase, possibly before a repaint the same turn
    scheduled (repaints are posted at low priority and handled in the next turn's
    drain).  The second timer runs after that drain: the piece is handled and painted.
    """

    def __init__(self, fence: FrameFence, parent: QObject | None = None, hops: int = 2) -> None:
        super().__init__(parent)
        self.fence = fence
        self.hops = hops
        self._token = 0
        self._left = 0
        self._timer = QTimer(self)
        self._timer.setObjectName("frame_fence_ack")
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._hop)

    def later(self, token: int) -> None:
        """The engine sent `token` after a piece of work: acknowledge it once drawn."""
        self._token = max(self._token, token)
        self._left = self.hops
        self._timer.start()

    def _hop(self) -> None:
        self._left -= 1
        if self._left > 0:
            self._timer.start()
        else:
            self.fence.ack(self._token)
