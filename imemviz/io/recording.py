"""Writing recordings: the header, then one op line at a time, each flushed.

The app's recorder appends every op as it is applied, so a crash loses
nothing already recorded; the file is a script `imemviz run` replays to the
same state.  Op lines use `op_to_dict`'s canonical form.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain
from typing import Any, TextIO

from imemviz.io.atomic import AtomicFile
from imemviz.io.script import FORMAT, START_KINDS, VERSION
from imemviz.model.ops import Op, op_to_dict


def _op_lines(ops: Iterable[tuple[Op, float | None]]) -> Iterator[str]:
    for op, t in ops:
        yield op_line(op, t)


def _create(path: str, text: str) -> TextIO:
    """`path` holding `text`, written atomically, then open for appending."""
    out = AtomicFile(path)
    if out.special:
        # A FIFO or a device is a stream: write to it as one, from the start.
        out.discard()
        f = open(path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        f.write(text)
        f.flush()
        return f
    try:
        out.write(text)
    except BaseException:
        out.discard()
        raise
    out.commit()
    return open(out.real, "a", encoding="utf-8", newline="\n")


def header_line(start: Mapping[str, Any]) -> str:
    """The header line (no newline) for a START object: {"vm": ...}, {"scene": ...} or {"state": ...}."""
    if len(start) != 1 or next(iter(start)) not in START_KINDS:
        raise ValueError(f"start must have exactly one of {', '.join(START_KINDS)}: {start!r}")
    return json.dumps(
        {"format": FORMAT, "version": VERSION, "start": dict(start)}, ensure_ascii=False
    )


def op_line(op: Op, t: float | None = None) -> str:
    """One op line (no newline); `t` is seconds since the recording started."""
    d = op_to_dict(op)
    if t is not None:
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"t must be a non-negative number of seconds, got {t!r}")
        # Milliseconds are plenty for replay pacing and keep lines short.
        d["t"] = round(t, 3)
    return json.dumps(d, ensure_ascii=False)


class RecordingWriter:
    """Appends ops to a new recording at `path` (replacing any file there).

    The file is created by the one atomic writer (imemviz.io.atomic) with the
    header and the `ops` given (op, t) already in it, so a replaced recording
    is the old one or the new one, never a mix; a symlink stays a symlink and
    a device or FIFO is written in place.  Every later op is appended and
    flushed.  With a `clock` (default: time.monotonic) each line gets "t", the
    seconds since the writer was created; pass ``clock=None`` for a script
    without timing.  Use as a context manager or call `close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        start: Mapping[str, Any],
        *,
        clock: Callable[[], float] | None = time.monotonic,
        ops: Iterable[tuple[Op, float | None]] = (),
    ) -> None:
        # Built before anything is opened: a bad start leaves no file.
        text = "".join(line + "\n" for line in chain([header_line(start)], _op_lines(ops)))
        self.path = os.fspath(path)
        self._clock = clock
        self._t0 = clock() if clock is not None else 0.0
        self._file: TextIO | None = _create(self.path, text)

    def _write(self, line: str) -> None:
        if self._file is None:
            raise ValueError(f"recording {self.path} is closed")
        self._file.write(line + "\n")
        # Flushed per line: what the recorder has written survives an app crash.
        self._file.flush()

    def write(self, op: Op, t: float | None = None) -> None:
        """Append one op; `t` overrides the clock's time."""
        if t is None and self._clock is not None:
            t = self._clock() - self._t0
        self._write(op_line(op, t))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def closed(self) -> bool:
        return self._file is None

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
