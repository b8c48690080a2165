"""Recording a session as it goes: an observer that keeps a recording file equal to the
session's ops since recording began.

The app's engine thread calls `sync()` after every command.  New ops are
appended, one flushed line each, so a crash loses nothing already applied;
when the session went back (an undo, a seek back) the file is rewritten
without the undone ops and atomically replaced (a script has no "undo").
The header's START is the state the session had when recording began (its
start when nothing was applied yet, else the whole state embedded with
``{"state": ...}``), so the file replays from exactly there; ``t`` counts the
seconds since recording began, from the session's own op times.  Going back
past where recording began, or another session replacing this one, stops
the recording.  Never imports Qt.
"""

from __future__ import annotations

import os
from typing import Any

from imemviz.io.recording import RecordingWriter
from imemviz.io.session import Session


class RecordingStopped(Exception):
    """The recording cannot go on; the message is one line for the user."""


class SessionRecorder:
    """Writes `session`'s ops from now on to a new recording at `path`."""

    def __init__(self, session: Session, path: str | os.PathLike[str]) -> None:
        self.session = session
        self.path = os.fspath(path)
        self.base = len(session.ops)  # the session's op count when recording began
        if session.ops:
            from imemviz.io.state import state_document

            self.start: dict[str, Any] = {"state": state_document(session.vm)}
        else:
            self.start = dict(session.start)
        self._t0 = session.elapsed()
        self.written = 0
        try:
            self._writer: RecordingWriter | None = RecordingWriter(
                self.path, self.start, clock=None
            )
        except OSError as e:
            raise RecordingStopped(f"Cannot record to {self.path}: {e.strerror or e}") from None

    @property
    def closed(self) -> bool:
        return self._writer is None

    def _t(self, i: int) -> float:
        return max(0.0, self.session.times[i] - self._t0)

    def rebind(self, session: Session) -> None:
        """Follow a session forked from ours (same history: a "what if" in a replay)."""
        self.session = session

    def sync(self, session: Session) -> None:
        """Make the file hold `session`'s ops since recording began; raises
        `RecordingStopped` (and closes the file) when that is no longer possible."""
        if self._writer is None:
            return
        if session is not self.session:
            self.close()
            raise RecordingStopped("Recording stopped: another VM was loaded")
        n = len(session.ops) - self.base
        if n < 0:
            self.close()
            raise RecordingStopped("Recording stopped: undo went past where the recording began")
        try:
            if n < self.written:
                self._rewrite(n)
            for i in range(self.base + self.written, self.base + n):
                self._writer.write(session.ops[i], self._t(i))
                self.written += 1
        except (OSError, ValueError) as e:
            self.close()
            raise RecordingStopped(f"Recording stopped: cannot write {self.path}: {e}") from None

    def _rewrite(self, n: int) -> None:
        """The file again with the first n ops only: the one atomic writer replaces it
        (the old file or the new one, never a mix; a symlink stays a symlink)."""
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        ops = [(self.session.ops[i], self._t(i)) for i in range(self.base, self.base + n)]
        self._writer = RecordingWriter(self.path, self.start, clock=None, ops=ops)
        self.written = n

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
