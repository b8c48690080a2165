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
handled the snapshot it just published (the GUI side acknowledges its version
from a zero-time timer, which runs after the queued snapshot, raster and paint
events), for at most `LIMIT_S`: a GUI that is busy elsewhere (a test looping on
submits, a modal dialog) costs the engine no more than that per state.  The
engine thread without a GUI (headless tests of the worker) never waits: the fence
is armed by the GUI side (`Engine`).
"""

from __future__ import annotations

import threading
import time

LIMIT_S = 0.030  # the longest the engine thread waits for the GUI's frame
# The first frame of a newly opened session (a new layout, every pane reset) takes the
# GUI longer, and the engine's feeds after it are long (a 20,000-op recording: ~25 ms of
# Python): on a loaded machine 30 ms ran out before the GUI had painted, and the feeds
# then took the GIL from that paint.  An open is not hurried by the wait.
OPEN_LIMIT_S = 0.250


class FrameFence:
    """Versions published (engine thread) and acknowledged (GUI thread)."""

    def __init__(self) -> None:
        self.armed = False  # set by the GUI side: someone acknowledges
        self._acked = 0
        self._cond = threading.Condition()
        self.waited_s = 0.0  # total time the engine thread waited (benchmarks)

    def ack(self, version: int) -> None:
        """GUI thread: the snapshot of `version` is handled and drawn."""
        with self._cond:
            if version > self._acked:
                self._acked = version
            self._cond.notify_all()

    def wait(self, version: int, limit: float = LIMIT_S) -> None:
        """Engine thread: wait until the GUI acknowledged `version` (or `limit` s)."""
        if not self.armed:
            return
        t0 = time.perf_counter()
        with self._cond:
            self._cond.wait_for(lambda: self._acked >= version, timeout=limit)
        self.waited_s += time.perf_counter() - t0
