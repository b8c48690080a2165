"""The timeline of a recording being replayed: pacing, captions and states at any op.

Qt-free, so the app's replay pane, the video export and the tests share it.
A `Timeline` is the start plus the ops of one recording; position ``k`` means
"the first k ops are applied" (0 = the start, ``len(ops)`` = the end).

Pacing: `durations` gives how long each position stays on screen.  With
``t`` stamps on every op ("as recorded") position k lasts until the next op's
``t``; without them each op gets a fixed pace and a caption (a ``note`` op)
is held longer so people can read it.  `frame_counts` turns that into a
fixed number of video frames per position by cumulative rounding, so the
frame count of an export is known from the file alone.

`StateCache` rebuilds the VM at any position from the nearest checkpoint at or
before it (deep copies taken every `interval` ops), so seeking backwards
costs at most `interval` op applies plus one copy.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Mapping
from typing import Any

import attrs

from imemviz.io.script import Script, read_script, start_vm
from imemviz.model.ops import Note, Op
from imemviz.model.vm import VM

DEFAULT_PACE_S = 0.5  # seconds per op when the recording has no "t"
NOTE_HOLD_S = 2.5  # ... and per caption, so it can be read aloud
TAIL_S = 2.0  # the final state stays this long (a video does not end on a flash)
LEAD_S = 0.5  # the start state, before the first op (when not as recorded)
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@attrs.frozen
class Timeline:
    """A recording in memory: START, ops and their optional ``t`` stamps."""

    source: str
    start: Mapping[str, Any]
    ops: tuple[Op, ...]
    times: tuple[float | None, ...]
    header_line: int = 1

    @classmethod
    def from_script(cls, script: Script) -> Timeline:
        return cls(
            script.source,
            dict(script.header.start),
            tuple(op for _l, op, _t in script.ops),
            tuple(t for _l, _op, t in script.ops),
            script.header.line,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Timeline:
        """Read a recording; raises `ScriptError` (one line) when it is unusable."""
        return cls.from_script(read_script(path))

    def __len__(self) -> int:
        return len(self.ops)

    @property
    def has_times(self) -> bool:
        """Whether every op carries a ``t`` (then "as recorded" pacing is possible)."""
        return bool(self.ops) and all(t is not None for t in self.times)

    @property
    def note_indexes(self) -> list[int]:
        return [i for i, op in enumerate(self.ops) if isinstance(op, Note)]

    def caption_at(self, position: int) -> str | None:
        """The caption on screen after `position` ops: the text of the last note before it."""
        for i in range(min(position, len(self.ops)) - 1, -1, -1):
            op = self.ops[i]
            if isinstance(op, Note):
                return op.text
        return None

    def start_vm(self) -> VM:
        return start_vm(self.start, self.source, self.header_line)

    def durations(
        self,
        *,
        as_recorded: bool = True,
        pace: float = DEFAULT_PACE_S,
        note_hold: float = NOTE_HOLD_S,
        tail: float = TAIL_S,
    ) -> list[float]:
        """Seconds each position 0..len stays on screen (len+1 values, at speed 1).

        As recorded (only when every op has ``t``): position 0 lasts until the
        first op's ``t`` (at least `LEAD_S`), position k until op k's ``t``.
        Otherwise position 0 lasts `LEAD_S` and each op `pace`, a note `note_hold`.
        """
        n = len(self.ops)
        if as_recorded and self.has_times:
            ts = [float(t) for t in self.times]  # type: ignore[arg-type]
            out = [max(ts[0], LEAD_S)]
            out += [max(ts[k + 1] - ts[k], 0.0) for k in range(n - 1)]
        else:
            out = [LEAD_S]
            out += [note_hold if isinstance(op, Note) else pace for op in self.ops[:-1]]
        if n:
            out.append(max(tail, note_hold if isinstance(self.ops[-1], Note) else 0.0))
        else:
            out = [tail]
        return out

    def frame_counts(self, fps: float, **kw: Any) -> list[int]:
        """Video frames per position 0..len: cumulative rounding of `durations` at `fps`.

        Positions shorter than a frame get 0 (a burst of ops shows as one step);
        the total is round(fps * total duration) and at least 1.
        """
        counts = []
        elapsed = 0.0
        shown = 0
        for d in self.durations(**kw):
            elapsed += d
            upto = round(elapsed * fps)
            counts.append(upto - shown)
            shown = upto
        if shown == 0:
            counts[-1] = 1
        return counts


class StateCache:
    """VMs at any position of a timeline, from checkpoints every `interval` ops."""

    def __init__(self, timeline: Timeline, interval: int = 64, start: VM | None = None) -> None:
        from imemviz.io.session import deepcopy_vm  # the Session's own copy (fast, GIL-friendly)

        self._copy = deepcopy_vm
        self.timeline = timeline
        self.interval = max(1, interval)
        vm0 = start if start is not None else timeline.start_vm()
        self._checkpoints: dict[int, VM] = {0: vm0}
        self._keys: list[int] = [0]  # the checkpoints' positions, sorted (a bisect finds one)

    @property
    def checkpoints(self) -> list[int]:
        return list(self._keys)

    def vm_at(self, position: int) -> VM:
        """A new VM equal to the start with the first `position` ops applied."""
        n = len(self.timeline)
        if not 0 <= position <= n:
            raise IndexError(f"position {position} outside 0..{n}")
        base = self._keys[bisect.bisect_right(self._keys, position) - 1]
        vm = self._copy(self._checkpoints[base])
        for k in range(base, position):
            vm.apply(self.timeline.ops[k])
            if (k + 1) % self.interval == 0 and (k + 1) not in self._checkpoints:
                self._checkpoints[k + 1] = self._copy(vm)
                bisect.insort(self._keys, k + 1)
        return vm


def recording_title(path: str | os.PathLike[str]) -> str | None:
    """A recording's title: its first line when that is a ``# comment`` (scenes have one)."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not first.startswith("#"):
        return None
    title = first.lstrip("#").strip()
    # The default scene's first line reads 'imemviz built-in scene "default": ...'.
    if title.startswith("imemviz built-in scene") and ": " in title:
        title = title.split(": ", 1)[1]
    return title or None


def run_timeline(timeline: Timeline) -> VM:
    """The final VM of a timeline, applied straight through (what `imemviz run` computes)."""
    vm = timeline.start_vm()
    for op in timeline.ops:
        vm.apply(op)
    return vm
