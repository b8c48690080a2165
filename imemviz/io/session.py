"""The app's document: a VM, where it started, and every op applied since, with undo/redo.

A session is the recording the user is making: the START of the contract's
header plus the ordered ops.  Ops are applied in groups (one group per user
action: "accept and touch" is two ops) and undo removes the last group.  Undo
rebuilds the state from the newest checkpoint at or before the target and
replays the ops after it: the engine is deterministic, so the result equals
the state the user had.  Checkpoints are taken when the replay cost since the
last one exceeds what a checkpoint costs; the start state is always one.  A
checkpoint is a deep copy (`deepcopy_vm`): copy.deepcopy is Python code the
interpreter switches out of every few milliseconds, so the app's GUI thread
stays responsive while a big guest is copied, where pickle would hold the GIL
for the whole copy; the event log, made of immutable tuples, is copied
shallowly, which makes a deep copy about as fast as a pickle round trip.
Never imports Qt.
"""

from __future__ import annotations

import collections
import copy
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from imemviz.io.atomic import OutputError, write_text
from imemviz.io.recording import header_line, op_line
from imemviz.io.script import ScriptError, open_script, start_vm
from imemviz.model.config import VMConfig
from imemviz.model.ops import Op
from imemviz.model.result import Result
from imemviz.model.vm import VM

STATE_SUFFIXES = (".json", ".json.gz", ".json.zst")
RECORDING_SUFFIXES = (".jsonl",)

Progress = Callable[[int, int], None]
OnOp = Callable[[int, Op, Result, list[tuple], float], None]
"""Called after each op: (index in the session, op, result, its events, seconds it took)."""


class SessionError(Exception):
    """A file could not be opened or saved; the message is one line for the user."""


def deepcopy_vm(vm: VM) -> VM:
    """An independent copy of a VM: `copy.deepcopy`, with the event log's immutable
    tuples copied shallowly (a third of the cost of a big VM otherwise)."""
    log = vm.events.log
    memo: dict[int, Any] = {id(log): collections.deque(log, log.maxlen)}
    return copy.deepcopy(vm, memo)


class Session:
    """One VM with its start, its op history in groups, undo/redo and file output.

    `start` is the contract's START object (``{"vm": ...}``, ``{"scene": ...}``
    or ``{"state": ...}``); `vm` the state it describes (built from `start`
    when omitted).
    """

    def __init__(
        self,
        start: Mapping[str, Any],
        vm: VM | None = None,
        *,
        source: str | None = None,
        min_checkpoint_seconds: float = 0.25,
        max_ops_between_checkpoints: int = 256,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.start: dict[str, Any] = dict(start)
        self.vm: VM = vm if vm is not None else start_vm(self.start)
        self.source = source  # the file this session was opened from, if any
        # One line the user must see about how the file was read (a recording cut short
        # by a crash, replayed up to its last complete line), or None.
        self.warning: str | None = None
        self.ops: list[Op] = []
        self.results: list[Result] = []
        self.times: list[float] = []  # seconds since the session started, per op
        self.groups: list[int] = []  # ops per undo step, in order
        self.labels: list[str] = []  # a name per group ("accept and touch", ...)
        self._redo: list[tuple[str, list[Op]]] = []
        self._t0 = time.monotonic()
        self._min_ckpt_s = min_checkpoint_seconds
        self._max_ckpt_ops = max_ops_between_checkpoints
        self._clock = clock  # times ops and checkpoints for the checkpoint policy
        self._checkpoints: dict[int, VM] = {}
        self._ckpt_cost = 0.0  # seconds the last checkpoint took
        self._since_ckpt = 0.0  # seconds of apply() since the last checkpoint
        self._take_checkpoint()

    # ------------------------------------------------------------------ opening
    @classmethod
    def new(cls, config: Mapping[str, Any] | VMConfig) -> Session:
        """A fresh VM (``{"vm": VMCONFIG}``); raises ConfigError for a bad config."""
        cfg = config if isinstance(config, VMConfig) else VMConfig.from_dict(dict(config))
        return cls({"vm": cfg.to_dict()}, VM(cfg))

    @classmethod
    def scene(cls, name: str = "default") -> Session:
        """A built-in scene; raises SessionError when it is missing or broken."""
        try:
            return cls({"scene": name})
        except ScriptError as e:
            raise SessionError(str(e)) from None

    @classmethod
    def open(cls, path: str | os.PathLike[str], progress: Progress | None = None) -> Session:
        """A recording (its ops become undoable history) or a state file."""
        p = os.fspath(path)
        if p.endswith(STATE_SUFFIXES):
            return cls._open_state(p)
        return cls._open_recording(p, progress)

    @classmethod
    def _open_recording(cls, path: str, progress: Progress | None) -> Session:
        try:
            # A recording cut mid-line by a crash or kill -9 opens up to its last
            # complete line (as `imemviz run --salvage` replays it), with a warning.
            with open_script(path, salvage=True) as reader:
                h = reader.header
                assert h is not None
                session = cls(h.start, start_vm(h.start, reader.source, h.line), source=path)
                ops = [op for _line, op, _t in reader]
                session.warning = reader.salvaged
        except ScriptError as e:
            raise SessionError(str(e)) from None
        for i, op in enumerate(ops):
            session.apply_group([op], op.NAME)
            if progress is not None and (i % 64 == 0 or i == len(ops) - 1):
                progress(i + 1, len(ops))
        return session

    @classmethod
    def _open_state(cls, path: str) -> Session:
        try:
            from imemviz.io.state import read_document, vm_from_document
        except ImportError as e:
            raise SessionError(
                f"{path}: state files are not supported by this build ({e})"
            ) from None
        try:
            # One bounded read (decompression and value limits), one parse: the
            # document is kept as the session's start, for recordings made from here.
            doc = read_document(path)
            vm = vm_from_document(doc)
        except OSError as e:
            raise SessionError(f"{path}: cannot read: {e.strerror or e}") from None
        except Exception as e:  # StateError and friends: one line for the user
            msg = str(e)
            raise SessionError(msg if msg.startswith(path) else f"{path}: {msg}") from None
        return cls({"state": doc}, vm, source=path)

    # ----------------------------------------------------------------- applying
    def apply(self, op: Op) -> Result:
        """Apply one op as its own undo step."""
        return self.apply_group([op], op.NAME)[0]

    def apply_group(
        self, ops: Sequence[Op], label: str = "", on_op: OnOp | None = None
    ) -> list[Result]:
        """Apply ops in order as one undo step (an empty list changes nothing)."""
        if not ops:
            return []
        self._redo.clear()
        return self._apply(list(ops), label, on_op)

    def _apply(self, ops: list[Op], label: str, on_op: OnOp | None = None) -> list[Result]:
        self._drop_checkpoints_after(len(self.ops))
        out = []
        vm = self.vm
        for op in ops:
            t0 = self._clock()
            r = vm.apply(op)
            dt = self._clock() - t0
            self._since_ckpt += dt
            out.append(r)
            self.ops.append(op)
            self.results.append(r)
            self.times.append(time.monotonic() - self._t0)
            if on_op is not None:
                on_op(len(self.ops) - 1, op, r, vm.last_events, dt)
        self.groups.append(len(ops))
        self.labels.append(label or ops[0].NAME)
        ops_since = len(self.ops) - max(self._checkpoints)
        if self._since_ckpt >= max(self._min_ckpt_s, 2 * self._ckpt_cost) or (
            ops_since >= self._max_ckpt_ops and self._since_ckpt >= self._ckpt_cost
        ):
            self._take_checkpoint()
        return out

    # ------------------------------------------------------------------- undo
    @property
    def can_undo(self) -> bool:
        return bool(self.groups)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_label(self) -> str:
        return self.labels[-1] if self.labels else ""

    @property
    def redo_label(self) -> str:
        return self._redo[-1][0] if self._redo else ""

    def undo(self) -> bool:
        """Remove the last group: the state becomes what it was before it."""
        if not self.groups:
            return False
        n = self.groups.pop()
        label = self.labels.pop()
        keep = len(self.ops) - n
        self._redo.append((label, self.ops[keep:]))
        self._rebuild(keep)
        return True

    def redo(self, on_op: OnOp | None = None) -> list[Result] | None:
        """Apply the last undone group again (same results: the engine is deterministic)."""
        if not self._redo:
            return None
        label, ops = self._redo.pop()
        return self._apply(ops, label, on_op)

    def _rebuild(self, keep: int) -> None:
        base = max(k for k in self._checkpoints if k <= keep)
        vm = deepcopy_vm(self._checkpoints[base])
        t0 = self._clock()
        for op in self.ops[base:keep]:
            vm.apply(op)
        del self.ops[keep:], self.results[keep:], self.times[keep:]
        self.vm = vm
        self._since_ckpt = self._clock() - t0
        self._drop_checkpoints_after(keep)

    def _take_checkpoint(self) -> None:
        t0 = self._clock()
        self._checkpoints[len(self.ops)] = deepcopy_vm(self.vm)
        self._ckpt_cost = self._clock() - t0
        self._since_ckpt = 0.0

    def _drop_checkpoints_after(self, n: int) -> None:
        for k in [k for k in self._checkpoints if k > n]:
            del self._checkpoints[k]

    @property
    def checkpoints(self) -> list[int]:
        """Op counts at which a checkpoint exists (0 always)."""
        return sorted(self._checkpoints)

    # ------------------------------------------------------------------ files
    def recording_lines(self, with_times: bool = True) -> Iterable[str]:
        yield header_line(self.start)
        for op, t in zip(self.ops, self.times, strict=True):
            yield op_line(op, t if with_times else None)

    def save_recording(self, path: str | os.PathLike[str], with_times: bool = True) -> None:
        """The contract's recording: the start header and every op; written atomically."""
        p = os.fspath(path)
        try:
            write_text(p, "".join(line + "\n" for line in self.recording_lines(with_times)))
        except OSError as e:
            raise SessionError(str(e) if isinstance(e, OutputError) else _cannot(p, e)) from None

    def save_state(self, path: str | os.PathLike[str]) -> None:
        """The current state as a state file (format by extension)."""
        p = os.fspath(path)
        try:
            from imemviz.io.state import save_state
        except ImportError as e:
            raise SessionError(f"{p}: state files are not supported by this build ({e})") from None
        try:
            save_state(self.vm, p)
        except OSError as e:
            raise SessionError(str(e) if isinstance(e, OutputError) else _cannot(p, e)) from None


def _cannot(path: str, e: OSError) -> str:
    return f"{path}: cannot write: {e.strerror or e}"
