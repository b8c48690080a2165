"""The app's document: a VM, where it started, and every op applied since, with undo/redo.

A session is the recording the user is making: the START of the contract's
header plus the ordered ops.  Ops are applied in groups (one group per user
action: "accept and touch" is two ops) and undo removes the last group.  Undo
rebuilds the state from the newest checkpoint at or before the target and
replays the ops after it: the engine is deterministic, so the result equals
the state the user had.  Checkpoints are taken when the replay cost since the
last one exceeds what a checkpoint costs; the start state is always one.

The session is also a timeline: the applied groups, then the undone ones
(the redo stack, kept with their results) after them.  `seek(k)` moves to
the state after the first k groups in either direction, from the nearest
checkpoint: checkpoints past the position stay valid for as long as that
future does (a new action after an undo replaces the future and drops
them).  Optional per-op annotations (`annotate`, e.g. the app's change
ranges and counters) are kept with the ops they describe, through undo,
redo and seeks.

Loose VMs make the common moves cost no copy.  Besides the checkpoints
(frozen, only ever copied) the session keeps up to `max_loose` mutable VMs,
each the state at some position of the timeline; a rebuild takes the one
nearest below its target when that beats copying a checkpoint, applies the
ops in between and makes it the current VM, and the VM it replaces becomes
a loose VM at its own position.  So undo swaps in the VM from before the
last group, redo swaps the undone one back when re-applying its group would
take `redo_swap_seconds` or more (its ops' results and events were kept),
and a seek back and forth swaps the two.  `prepare()` (the app calls it
while the engine thread is idle) frees the VM the last move let go of, then
readies the VM for the next undo: it advances the loose VM behind the
position over the ops it missed (the previous action's), or copies a
checkpoint in steps (`vm_copy.copy_steps`) when there is none, and stops
between ops or steps as soon as `should_stop()` says a command waits.  Every
loose VM is a copy of a checkpoint (or the current VM) with exactly the
timeline's ops applied, so it equals a replay from op 0 (the engine is
deterministic); a new action after an undo drops the ones in the replaced
future, as it drops the checkpoints there.  The checkpoints' positions are
kept sorted: the nearest one at or before a position is a bisect.

A checkpoint is a deep copy (`deepcopy_vm`): copy.deepcopy is Python code the
interpreter switches out of every few milliseconds, so the app's GUI thread
stays responsive while a big guest is copied, where pickle would hold the GIL
for the whole copy; the event log, made of immutable tuples, is copied
shallowly, which makes a deep copy about as fast as a pickle round trip.
Never imports Qt.
"""

from __future__ import annotations

import bisect
import collections
import copy
import os
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any

import attrs

from imemviz.io.atomic import OutputError, write_text
from imemviz.io.recording import header_line, op_line
from imemviz.io.script import ScriptError, open_script, start_vm
from imemviz.io.vm_copy import copy_steps
from imemviz.model.config import VMConfig
from imemviz.model.events import Event
from imemviz.model.ops import Op
from imemviz.model.result import Result
from imemviz.model.vm import VM

STATE_SUFFIXES = (".json", ".json.gz", ".json.zst")
RECORDING_SUFFIXES = (".jsonl",)
FORWARD_APPLY_OPS = 16  # a forward seek this short applies its ops rather than copy a checkpoint
MAX_LOOSE = 2  # loose VMs kept (each a whole VM: the one behind for undo, one ahead for redo)
# A redo swaps the undone VM back in only when applying its group again would take longer
# than this: a swap replaces the VM object, and a front end that caches per VM object (the
# app's event log index) then starts over, which costs more than applying a cheap group.
REDO_SWAP_S = 0.02

Progress = Callable[[int, int], None]
OnOp = Callable[[int, Op, Result, list[Event], float], None]
"""Called after each op: (index in the session, op, result, its events, seconds it took)."""
Annotate = Callable[[VM, int, Op, Result, list[Event]], Any]
"""Computes what a front end keeps per op, right after it: (vm after, index, op, result,
events) -> anything; stored in `Session.info` and kept through undo, redo and seeks."""


@attrs.frozen
class UndoneGroup:
    """An undone group: its ops and what applying them gave (deterministic)."""

    label: str
    ops: tuple[Op, ...]
    results: tuple[Result, ...]
    info: tuple[Any, ...]


@attrs.frozen
class SeekResult:
    """What `Session.seek` did: op counts before and after, and whether the VM was rebuilt
    from a checkpoint (else the ops in between were applied to it, with `on_op` called)."""

    before: int
    after: int
    rebuilt: bool

    @property
    def moved(self) -> bool:
        return self.before != self.after


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
        annotate: Annotate | None = None,
        max_loose: int = MAX_LOOSE,
        redo_swap_seconds: float = REDO_SWAP_S,
    ) -> None:
        self.start: dict[str, Any] = dict(start)
        self.vm: VM = vm if vm is not None else start_vm(self.start)
        self.source = source  # the file this session was opened from, if any
        # One line the user must see about how the file was read (a recording cut short
        # by a crash, replayed up to its last complete line), or None.
        self.warning: str | None = None
        # The VM's own op counter at the start (a scene's or a state's ops came before):
        # the session's op k is the VM's op `op_base + k` (the events carry the latter).
        self.op_base = self.vm.op_index
        self.annotate = annotate
        self.ops: list[Op] = []
        self.results: list[Result] = []
        self.times: list[float] = []  # seconds since the session started, per op
        self.info: list[Any] = []  # annotate()'s value per op (None without annotate)
        self.groups: list[int] = []  # ops per undo step, in order
        self.labels: list[str] = []  # a name per group ("accept and touch", ...)
        # The undone future, as flat lists in reverse timeline order (the next op and
        # group to redo are the last items): moving a thousand groups between the past and
        # the future is a few list slices, not a thousand objects.
        self._f_ops: list[Op] = []
        self._f_results: list[Result] = []
        self._f_info: list[Any] = []
        self._f_groups: list[int] = []  # ops per group
        self._f_labels: list[str] = []
        self._t0 = time.monotonic()
        self._min_ckpt_s = min_checkpoint_seconds
        self._max_ckpt_ops = max_ops_between_checkpoints
        self._clock = clock  # times ops and checkpoints for the checkpoint policy
        self._checkpoints: dict[int, VM] = {}
        self._ckpt_keys: list[int] = []  # the checkpoints' op counts, sorted (for bisect)
        self._ckpt_cost = 0.0  # seconds the last checkpoint took
        self._since_ckpt = 0.0  # seconds of apply() since the last checkpoint
        # Seconds each op of the timeline took to apply, by timeline op index (the past, then
        # the undone future): what replaying a stretch of it costs.
        self._cost: list[float] = []
        # Loose VMs: op count -> a mutable VM at that position of the timeline (past or
        # future), consumed by rebuilds; with the per-op events of the group ending there when
        # known (a redo swaps such a VM in and reports them).
        self._max_loose = max(0, max_loose)
        self._redo_swap_s = redo_swap_seconds
        self._loose: dict[int, VM] = {}
        self._loose_events: dict[int, list[list[Event]]] = {}
        # The per-op events of the latest group applied, and the op count it ends at.
        self._tail_events: list[list[Event]] | None = None
        self._tail_end = -1
        # A VM let go of by the last move, freed by the next prepare(): freeing a big VM
        # (millions of objects) costs as much as a copy, and need not delay the move.
        self._trash: list[VM] = []
        # A copy of a checkpoint under way in steps (prepare() paused it for a command):
        # (its op count, the checkpoint, the steps left).
        self._copying: tuple[int, VM, Generator[None, None, VM]] | None = None
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
    def open(
        cls,
        path: str | os.PathLike[str],
        progress: Progress | None = None,
        annotate: Annotate | None = None,
    ) -> Session:
        """A recording (its ops become undoable history, one group each) or a state file."""
        p = os.fspath(path)
        if p.endswith(STATE_SUFFIXES):
            s = cls._open_state(p)
            s.annotate = annotate
            return s
        try:
            # A recording cut mid-line by a crash or kill -9 opens up to its last
            # complete line (as `imemviz run --salvage` replays it), with a warning.
            with open_script(p, salvage=True) as reader:
                h = reader.header
                assert h is not None  # open_script() without ops_only always reads one
                vm = start_vm(h.start, reader.source, h.line)
                ops = [op for _line, op, _t in reader]
                warning = reader.salvaged
        except ScriptError as e:
            raise SessionError(str(e)) from None
        session = cls.from_ops(h.start, vm, ops, source=p, progress=progress, annotate=annotate)
        session.warning = warning
        return session

    @classmethod
    def from_ops(
        cls,
        start: Mapping[str, Any],
        vm: VM,
        ops: Sequence[Op],
        *,
        source: str | None = None,
        progress: Progress | None = None,
        annotate: Annotate | None = None,
        **kw: Any,
    ) -> Session:
        """A session on `vm` (the state `start` describes) with `ops` applied, one group
        each (a recording: every op can be undone, redone and sought to)."""
        session = cls(start, vm, source=source, annotate=annotate, **kw)
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
        # A new action replaces the undone future, and the checkpoints taken in it.
        self._clear_future()
        self._drop_checkpoints_after(len(self.ops))
        return self._apply(list(ops), label, on_op)

    def _apply(self, ops: Sequence[Op], label: str, on_op: OnOp | None = None) -> list[Result]:
        out = []
        vm = self.vm
        annotate = self.annotate
        cost = self._cost
        tail: list[list[Event]] = []
        for op in ops:
            t0 = self._clock()
            r = vm.apply(op)
            dt = self._clock() - t0
            self._since_ckpt += dt
            out.append(r)
            index = len(self.ops)
            if index < len(cost):
                cost[index] = dt  # a redo: the same op again
            else:
                cost.append(dt)
            tail.append(vm.last_events)
            self.ops.append(op)
            self.results.append(r)
            self.times.append(time.monotonic() - self._t0)
            self.info.append(
                annotate(vm, index, op, r, vm.last_events) if annotate is not None else None
            )
            if on_op is not None:
                on_op(index, op, r, vm.last_events, dt)
        self.groups.append(len(ops))
        self.labels.append(label or ops[0].NAME)
        self._tail_events, self._tail_end = tail, len(self.ops)
        self._maybe_checkpoint()
        return out

    def _maybe_checkpoint(self) -> None:
        """Take a checkpoint when replaying from the last one costs more than a copy."""
        n = len(self.ops)
        last = self._ckpt_base(n)
        if last < n and (
            self._since_ckpt >= max(self._min_ckpt_s, 2 * self._ckpt_cost)
            or (n - last >= self._max_ckpt_ops and self._since_ckpt >= self._ckpt_cost)
        ):
            self._take_checkpoint()

    # ------------------------------------------------------------------- undo
    @property
    def can_undo(self) -> bool:
        return bool(self.groups)

    @property
    def can_redo(self) -> bool:
        return bool(self._f_groups)

    @property
    def undo_label(self) -> str:
        return self.labels[-1] if self.labels else ""

    @property
    def redo_label(self) -> str:
        return self._f_labels[-1] if self._f_labels else ""

    def elapsed(self) -> float:
        """Seconds since the session started (the clock of `times`)."""
        return time.monotonic() - self._t0

    # ---------------------------------------------------------------- timeline
    @property
    def position(self) -> int:
        """Groups applied (the timeline's position; 0 = the start)."""
        return len(self.groups)

    @property
    def length(self) -> int:
        """Groups in the timeline: applied and undone."""
        return len(self.groups) + len(self._f_groups)

    def future(self, max_groups: int | None = None) -> list[UndoneGroup]:
        """The undone groups in timeline order (the next one to redo first); at most
        `max_groups` of them."""
        out: list[UndoneGroup] = []
        end = len(self._f_ops)
        for k in range(len(self._f_groups) - 1, -1, -1):
            if max_groups is not None and len(out) >= max_groups:
                break
            n = self._f_groups[k]
            a = end - n
            out.append(
                UndoneGroup(
                    self._f_labels[k],
                    tuple(self._f_ops[a:end][::-1]),
                    tuple(self._f_results[a:end][::-1]),
                    tuple(self._f_info[a:end][::-1]),
                )
            )
            end = a
        return out

    def future_labels(self) -> list[str]:
        return self._f_labels[::-1]

    def future_sizes(self) -> list[int]:
        return self._f_groups[::-1]

    def future_ops(self) -> list[Op]:
        return self._f_ops[::-1]

    def future_info(self, n_ops: int) -> list[Any]:
        """The annotations of the next n_ops undone ops, in timeline order."""
        return self._f_info[len(self._f_info) - n_ops :][::-1] if n_ops > 0 else []

    def group_start(self, g: int) -> int:
        """The session op index of group g's first op (g <= position), or the op count."""
        return sum(self.groups[:g])

    def undo(self) -> bool:
        """Remove the last group: the state becomes what it was before it."""
        if not self.groups:
            return False
        cur = len(self.ops)
        self._pop_groups(1)
        self._rebuild(len(self.ops), cur)
        return True

    def redo(self, on_op: OnOp | None = None) -> list[Result] | None:
        """Apply the last undone group again (same results: the engine is deterministic).
        When the VM it was undone from is still loose, with its ops' events, and applying
        the group took at least `redo_swap_seconds`, that VM comes back instead (and the
        current one stays loose, ready for the next undo); `on_op` then gets the stored
        results and events."""
        if not self._f_groups:
            return None
        n = self._f_groups[-1]
        cur = len(self.ops)
        target = cur + n
        events = self._loose_events.get(target)
        if (
            target in self._loose
            and events is not None
            and len(events) == n
            and self._replay_cost(cur, target) >= self._redo_swap_s
        ):
            self._restore_future(1)
            vm = self._loose.pop(target)
            del self._loose_events[target]
            self._swap_in(vm, cur)
            self._tail_events, self._tail_end = events, target
            self._since_ckpt = self._replay_cost(self._ckpt_base(target), target)
            if on_op is not None:
                for i in range(cur, target):
                    on_op(i, self.ops[i], self.results[i], events[i - cur], self._cost[i])
            self._maybe_checkpoint()
            return self.results[cur:target]
        label, ops = self._take_future(1)[0]
        return self._apply(ops, label, on_op)

    def seek(self, position: int, on_op: OnOp | None = None) -> SeekResult:
        """The state after the first `position` groups of the timeline (clamped), the redo
        history kept.  Backwards: rebuilt from the nearest loose VM or checkpoint at or
        before it.  Forwards: from a loose VM inside the jump (when the ops up to it took
        at least `redo_swap_seconds`), or a checkpoint inside it when the jump is longer
        than FORWARD_APPLY_OPS ops (the ops before it take their stored results); else
        the undone groups are applied to the current VM with `on_op` called per op."""
        position = max(0, min(position, self.length))
        before = len(self.ops)
        if position < self.position:
            self._pop_groups(self.position - position)
            self._rebuild(len(self.ops), before)
            return SeekResult(before, len(self.ops), True)
        m = position - self.position
        if m == 0:
            return SeekResult(before, before, False)
        sizes = self._f_groups[len(self._f_groups) - m :]
        target = before + sum(sizes)
        base = self._ckpt_base(target)
        # A loose VM inside the jump (the one a seek back left): swapped in, no copy, when
        # the ops up to it cost what a redo swap is worth (see `redo`).
        p = max((p for p in self._loose if before < p <= target), default=-1)
        swap = p > before and self._replay_cost(before, p) >= self._redo_swap_s
        if not swap and (base <= before or target - before <= FORWARD_APPLY_OPS):
            for label, ops in self._take_future(m):
                self._apply(ops, label, on_op)
            return SeekResult(before, len(self.ops), False)
        self._restore_future(m)
        self._rebuild(target, before)
        return SeekResult(before, target, True)

    def _restore_future(self, m: int) -> int:
        """Move the next m undone groups into the past with their stored results and
        annotations (the VM is not touched); returns their op count."""
        sizes = self._f_groups[len(self._f_groups) - m :]
        n = sum(sizes)
        fo, fr, fi = self._f_ops, self._f_results, self._f_info
        self.ops.extend(fo[len(fo) - n :][::-1])
        self.results.extend(fr[len(fr) - n :][::-1])
        self.info.extend(fi[len(fi) - n :][::-1])
        self.times.extend([time.monotonic() - self._t0] * n)
        self.groups.extend(sizes[::-1])
        self.labels.extend(self._f_labels[len(self._f_labels) - m :][::-1])
        del fo[len(fo) - n :], fr[len(fr) - n :], fi[len(fi) - n :]
        del self._f_groups[len(self._f_groups) - m :], self._f_labels[len(self._f_labels) - m :]
        return n

    def _take_future(self, m: int) -> list[tuple[str, list[Op]]]:
        """Remove the next m undone groups from the future: [(label, ops)] in order (the
        stored results and annotations go: applying the ops makes them again)."""
        out = []
        for _ in range(m):
            n = self._f_groups.pop()
            label = self._f_labels.pop()
            fo = self._f_ops
            ops = fo[len(fo) - n :][::-1]
            del fo[len(fo) - n :]
            del self._f_results[len(self._f_results) - n :]
            del self._f_info[len(self._f_info) - n :]
            out.append((label, ops))
        return out

    def _clear_future(self) -> None:
        for lst in (self._f_ops, self._f_results, self._f_info, self._f_groups, self._f_labels):
            lst.clear()
        del self._cost[len(self.ops) :]

    def _pop_groups(self, n: int) -> None:
        """Move the last n applied groups into the future (the state is not rebuilt)."""
        sizes = self.groups[len(self.groups) - n :]
        keep = len(self.ops) - sum(sizes)
        self._f_ops.extend(self.ops[keep:][::-1])
        self._f_results.extend(self.results[keep:][::-1])
        self._f_info.extend(self.info[keep:][::-1])
        self._f_groups.extend(sizes[::-1])
        self._f_labels.extend(self.labels[len(self.labels) - n :][::-1])
        del self.ops[keep:], self.results[keep:], self.times[keep:], self.info[keep:]
        del self.groups[len(self.groups) - n :], self.labels[len(self.labels) - n :]

    def vm_at(self, n: int) -> VM:
        """A new VM: the state after the first n ops applied (n <= the op count), from the
        newest checkpoint at or before n.  The session's own state is not touched."""
        if not 0 <= n <= len(self.ops):
            raise IndexError(f"op count {n} outside 0..{len(self.ops)}")
        base = self._ckpt_base(n)
        vm = deepcopy_vm(self._checkpoints[base])
        for op in self.ops[base:n]:
            vm.apply(op)
        return vm

    @property
    def start_vm(self) -> VM:
        """The state the session started from (read only: a checkpoint)."""
        return self._checkpoints[0]

    def fork(self) -> Session:
        """A new session with this one's start, applied history and checkpoints (shared:
        checkpoints are never changed, only copied), on a copy of the current VM, and no
        future: what a "what if" action during a replay continues from."""
        s = Session.__new__(Session)
        s.__dict__.update(self.__dict__)
        s.vm = deepcopy_vm(self.vm)
        s.ops, s.results, s.times, s.info = (
            list(self.ops),
            list(self.results),
            list(self.times),
            list(self.info),
        )
        s.groups, s.labels = list(self.groups), list(self.labels)
        s._f_ops, s._f_results, s._f_info, s._f_groups, s._f_labels = [], [], [], [], []
        s._checkpoints = {k: v for k, v in self._checkpoints.items() if k <= len(self.ops)}
        s._ckpt_keys = sorted(s._checkpoints)
        s._cost = self._cost[: len(self.ops)]
        # Loose VMs are mutable: never shared between sessions.
        s._loose, s._loose_events = {}, {}
        s._tail_events, s._tail_end = None, -1
        s._copying = None
        s._trash = []
        return s

    def _rebuild(self, keep: int, cur: int) -> None:
        """The VM after the first `keep` ops (the op lists already end there); the current
        VM is at op count `cur`.  From the nearest source at or before `keep`: the current VM
        or a loose one (no copy), or a copy of a checkpoint when that is nearer by more ops
        than a copy costs; the current VM, when not the source, becomes a loose VM."""
        live = self.vm
        cands = {p: vm for p, vm in self._loose.items() if p <= keep}
        if cur <= keep:
            cands[cur] = live  # the current VM wins a tie: nothing to swap
        p = max(cands, default=-1)
        base = self._ckpt_base(keep)
        if p < 0 or (base > p and self._replay_cost(p, base) > self._ckpt_cost):
            copied = self._copy_checkpoint(base)
            assert copied is not None  # no should_stop: never paused
            vm, p = copied, base
        else:
            vm = cands[p]
            if vm is not live:
                del self._loose[p]
                self._loose_events.pop(p, None)
        for op in self.ops[p:keep]:
            vm.apply(op)
        if vm is not live:
            self._swap_in(vm, cur)
        self._tail_events, self._tail_end = None, -1
        self._since_ckpt = self._replay_cost(self._ckpt_base(keep), keep)

    def _swap_in(self, vm: VM, cur: int) -> None:
        """Make `vm` the current VM; the one it replaces (at op count `cur`) stays loose,
        with its last group's events when they are known."""
        old = self.vm
        self.vm = vm
        events = self._tail_events if self._tail_end == cur else None
        self._add_loose(cur, old, events)

    def _add_loose(self, p: int, vm: VM, events: list[list[Event]] | None = None) -> None:
        """Keep `vm` (the state after p timeline ops) loose; at most `max_loose` are kept:
        the nearest before the position (for undo) and the nearest after it (redo) first,
        then the nearest others (one at the position itself is a spare for later)."""
        if self._max_loose <= 0:
            return
        self._loose[p] = vm
        if events is not None:
            self._loose_events[p] = events
        else:
            self._loose_events.pop(p, None)
        if len(self._loose) <= self._max_loose:
            return
        pos = len(self.ops)
        behind = [k for k in self._loose if k < pos]
        ahead = [k for k in self._loose if k > pos]
        keep = ([max(behind)] if behind else []) + ([min(ahead)] if ahead else [])
        rest = sorted((k for k in self._loose if k not in keep), key=lambda k: abs(k - pos))
        keep += rest[: max(0, self._max_loose - len(keep))]
        for k in [k for k in self._loose if k not in keep[: self._max_loose]]:
            self._discard(self._loose.pop(k))
            self._loose_events.pop(k, None)

    def _discard(self, vm: VM) -> None:
        """Let go of a VM: freed by the next prepare() (one at a time is kept for it; any
        more are freed now, so a session nobody prepares holds no more)."""
        self._trash.append(vm)
        del self._trash[:-1]

    def _replay_cost(self, start: int, end: int) -> float:
        """Seconds applying timeline ops [start, end) took."""
        return sum(self._cost[start:end])

    @property
    def undo_ready(self) -> bool:
        """Whether undoing the last group swaps in a VM kept for it (`prepare` done)."""
        return not self.groups or (len(self.ops) - self.groups[-1]) in self._loose

    def prepare(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Idle-time work: free the VM the last move let go of, then ready the next undo: a
        loose VM at the state before the last group, from the loose VM behind it advanced
        over the ops it missed, or from a copy of the nearest checkpoint when there is none
        or that is cheaper.  Stops between ops (or copy steps) when `should_stop()` is true
        (what is done stays: the loose VM stays where it got, a copy goes on next time);
        returns whether the VM is ready."""
        while self._trash:
            if should_stop():
                return False
            self._trash.pop()
        if self.undo_ready:
            return True
        target = len(self.ops) - self.groups[-1]
        behind = [p for p in self._loose if p <= target]
        p = max(behind, default=-1)
        base = self._ckpt_base(target)
        if p < 0 or (base > p and self._replay_cost(p, base) > self._ckpt_cost):
            copied = self._copy_checkpoint(base, should_stop)
            if copied is None:
                return False  # paused: the next prepare (or rebuild) goes on with it
            vm, p = copied, base
        else:
            vm = self._loose.pop(p)
            self._loose_events.pop(p, None)
        try:
            while p < target and not should_stop():
                vm.apply(self.ops[p])
                p += 1
        finally:
            self._add_loose(p, vm)
        return p == target

    def _copy_checkpoint(
        self, base: int, should_stop: Callable[[], bool] | None = None
    ) -> VM | None:
        """A copy of the checkpoint at op count `base`, in steps (`vm_copy.copy_steps`),
        going on with a copy of it paused before; None when `should_stop()` paused it."""
        src = self._checkpoints[base]
        job = self._copying
        if job is None or job[1] is not src:
            job = self._copying = (base, src, copy_steps(src))
        steps = job[2]
        try:
            while True:
                if should_stop is not None and should_stop():
                    return None
                next(steps)
        except StopIteration as done:
            self._copying = None
            vm: VM = done.value
            return vm

    def _ckpt_base(self, n: int) -> int:
        """The newest checkpoint at or before op count n (0 always exists)."""
        keys = self._ckpt_keys
        return keys[bisect.bisect_right(keys, n) - 1]

    def _take_checkpoint(self) -> None:
        n = len(self.ops)
        if n in self._checkpoints:  # a redo reached one taken before
            self._since_ckpt = 0.0
            return
        t0 = self._clock()
        self._checkpoints[n] = deepcopy_vm(self.vm)
        bisect.insort(self._ckpt_keys, n)
        self._ckpt_cost = self._clock() - t0
        self._since_ckpt = 0.0

    def _drop_checkpoints_after(self, n: int) -> None:
        """Forget the checkpoints and loose VMs past op count n (a replaced future)."""
        keys = self._ckpt_keys
        i = bisect.bisect_right(keys, n)
        for k in keys[i:]:
            del self._checkpoints[k]
        del keys[i:]
        if self._copying is not None and self._copying[0] > n:
            self._copying = None
        for k in [k for k in self._loose if k > n]:
            self._discard(self._loose.pop(k))
            self._loose_events.pop(k, None)

    @property
    def checkpoints(self) -> list[int]:
        """Op counts at which a checkpoint exists (0 always; later ones may lie in the
        undone future, for redo and seeks)."""
        return list(self._ckpt_keys)

    @property
    def loose_positions(self) -> list[int]:
        """Op counts at which a loose VM is kept (for tests and benchmarks)."""
        return sorted(self._loose)

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
