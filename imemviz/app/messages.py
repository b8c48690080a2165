"""What crosses the thread boundary: typed commands to the engine thread and the immutable
records it publishes about user actions, the session's timeline and the step-through.

Qt-free (no Qt import), so the messages are plain frozen attrs objects that the
worker dispatches on by type (`EngineWorker.HANDLERS`) and tests build without
a GUI.  Every command is applied in order on the engine thread; none is dropped.
The other records (`OpRecord`, `Snapshot`, rasters) live in `records.py`.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping
from itertools import accumulate
from typing import Any, ClassVar

import attrs

from imemviz.io.plans import Plan
from imemviz.io.replay import Timeline
from imemviz.model.changes import NONE, Changes, Severe
from imemviz.model.ops import Note, Op


# ------------------------------------------------------------------ commands
@attrs.frozen
class Command:
    """Base of the engine commands; `NAME` is what the busy bar and the log call it."""

    NAME: ClassVar[str] = "command"

    @property
    def label(self) -> str:
        return self.NAME


@attrs.frozen
class ApplyPlan(Command):
    """Apply a plan (or a function of the VM returning one) as one undo step."""

    NAME: ClassVar[str] = "plan"
    title: str
    plan: Plan | Callable[[Any], Plan]

    @property
    def label(self) -> str:
        return self.title


@attrs.frozen
class Undo(Command):
    NAME: ClassVar[str] = "undo"


@attrs.frozen
class Redo(Command):
    NAME: ClassVar[str] = "redo"


@attrs.frozen
class Seek(Command):
    """Move the timeline to `position` (groups applied; a replay: ops of the recording)."""

    NAME: ClassVar[str] = "seek"
    position: int


@attrs.frozen
class Open(Command):
    """A state file, or a recording whose ops become the timeline (all applied)."""

    NAME: ClassVar[str] = "open"
    path: str


@attrs.frozen
class LoadRecording(Command):
    """Replay a recording (a path or a parsed `Timeline`): its ops become the timeline,
    at `position`; the pane paces and captions it."""

    NAME: ClassVar[str] = "replay"
    source: str | Timeline
    position: int = 0


@attrs.frozen
class CloseReplay(Command):
    """The replay is over: the session stays, as a live one."""

    NAME: ClassVar[str] = "close replay"


@attrs.frozen
class LoadScene(Command):
    NAME: ClassVar[str] = "scene"
    name: str


@attrs.frozen
class NewVm(Command):
    NAME: ClassVar[str] = "new"
    config: Mapping[str, Any]
    ops: tuple[Op, ...] = ()


@attrs.frozen
class SetSession(Command):
    """Swap in a session built elsewhere (tests, benchmarks); `announce`: log "Opened"."""

    NAME: ClassVar[str] = "session"
    session: Any  # imemviz.io.session.Session, handed over: the caller keeps no reference
    announce: bool = True


@attrs.frozen
class SaveState(Command):
    NAME: ClassVar[str] = "save_state"
    path: str


@attrs.frozen
class SaveRecording(Command):
    NAME: ClassVar[str] = "save_recording"
    path: str


@attrs.frozen
class StepView(Command):
    """Draw the state at step `step` of session op `op` (its protocol steps from
    `protocols.steps` of `events`); `op` None: back to the present."""

    NAME: ClassVar[str] = "step view"
    op: int | None
    step: int = -1
    events: tuple[tuple, ...] = ()


@attrs.frozen
class RefreshFeeds(Command):
    """A pane became visible: build its data now (PaneFeed)."""

    NAME: ClassVar[str] = "refresh"
    leaves: bool = False
    host: bool = False


@attrs.frozen
class StartRecording(Command):
    NAME: ClassVar[str] = "record"
    path: str


@attrs.frozen
class StopRecording(Command):
    NAME: ClassVar[str] = "stop recording"


@attrs.frozen
class WriteBundle(Command):
    """Write a bug-report bundle of the current session; the problems go to `reply`."""

    NAME: ClassVar[str] = "bundle"
    path: str
    tracebacks: tuple[str, ...] = ()
    reply: concurrent.futures.Future | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Query(Command):
    """A question about the session: the worker answers it on `answered` with an
    `Answer` carrying the same `key`, so the pane that asked knows its reply."""

    NAME: ClassVar[str] = "query"
    key: str


@attrs.frozen
class ResolvePfn(Query):
    """Go to a host pfn: which gfn, folio or host page holds it (goto.pfn_target)."""

    NAME: ClassVar[str] = "go to pfn"
    pfn: int


@attrs.frozen
class CompareWith(Query):
    """Compare the session's state with a state file or recording (compare.compare_with)."""

    NAME: ClassVar[str] = "compare"
    path: str


@attrs.frozen
class OpLine(Query):
    """The script line of the session op that emitted op index `op`, after `prefix`."""

    NAME: ClassVar[str] = "copy op"
    op: int
    prefix: str = ""


@attrs.frozen
class RecheckFeeds(Command):
    """Run again, checking everything, the feeds that keep a `recheck` flag (the State
    summary's Check again, and its tab coming forward after a skipped check)."""

    NAME: ClassVar[str] = "check again"


@attrs.frozen
class ExportPerfetto(Command):
    """Write the session as a Perfetto trace (io.trace.perfetto_export.export_session)."""

    NAME: ClassVar[str] = "export Perfetto"
    path: str


@attrs.frozen
class Answer:
    """A query's reply: `value` (its result), or `error`, a message for the user."""

    key: str
    value: Any = None
    error: str | None = None


@attrs.frozen
class Call(Command):
    """Run fn(session) on the engine thread: tests and benchmarks only."""

    NAME: ClassVar[str] = "call"
    fn: Callable[[Any], Any]


# Commands after which the cyclic GC is frozen (they build millions of engine objects).
BIG_COMMANDS: tuple[type, ...] = (Open, LoadRecording, LoadScene, NewVm, SetSession, Undo, Seek)
# Commands that leave the state as it is (a step view stays on through them).
READ_ONLY: tuple[type, ...] = (
    Query,
    RecheckFeeds,
    ExportPerfetto,
    StepView,
    RefreshFeeds,
    SaveState,
    SaveRecording,
    StartRecording,
    StopRecording,
    WriteBundle,
)


# ------------------------------------------------------------------ records
@attrs.frozen
class OpInfo:
    """What the worker keeps per op in the session (`Session.info`): the counters after
    it and what it changed."""

    stats: tuple[int, ...]
    changes: Changes
    exit: int = 0  # 1: KVM_EXIT_MEMORY_FAULT, 2: KVM_EXIT_MMIO (the Counters' exit curves)
    failed: bool = False  # the op failed with an errno
    # The gfn ranges whose map codes the op may have changed (raster.changed_ranges; None:
    # anything): an undo or a short seek redraws only those, from the rebuilt state.
    raster: tuple[tuple[int, int], ...] | None = ()


@attrs.frozen
class ActionRecord:
    """One user-level step: an action (a plan), an undo, a redo or a seek.

    `text` is the status line (the action's name and its outcome); `changes`
    what the marks show (the action's ops; an undo: what the undone ops had
    changed; a seek forwards: the op now last); `main` the op whose protocol
    F8 opens (the action's first op: a conversion, not its trailing punch).
    """

    kind: str  # "action", "undo", "redo", "seek"
    label: str  # "Convert to shared + discard", "Undo: Convert to shared"
    text: str
    first: int  # session index of the first op concerned
    count: int  # ops applied or undone
    main: int | None
    ok: bool
    changes: Changes = NONE
    position: int = 0  # session op count after it
    rule: str = ""  # the kernel rule behind the first refused op (model/explain.py)

    @property
    def severe(self) -> tuple[Severe, ...]:
        return self.changes.severe


@attrs.frozen
class TimelineInfo:
    """The session's timeline for the timeline pane: one entry per group (a replay: per
    op of the recording), applied ones first.  Sent when its structure changes; the
    position comes with every `Snapshot`."""

    session: int
    structure: int
    labels: tuple[str, ...]
    sizes: tuple[int, ...]  # ops per group
    ops: tuple[Op, ...]  # every op, in order
    timeline: Timeline | None = None  # a replay: the recording (pacing, captions)
    # Derived where the info is made (the engine thread): walking 20,000 ops on the GUI
    # thread cost ~20 ms of stall when a recording opened.
    notes: tuple[int, ...] = attrs.field(init=False)  # op indexes of captions (Note ops)
    firsts: tuple[int, ...] = attrs.field(init=False)  # first op of each group, then the end

    @notes.default
    def _find_notes(self) -> tuple[int, ...]:
        return tuple(i for i, op in enumerate(self.ops) if isinstance(op, Note))

    @firsts.default
    def _find_firsts(self) -> tuple[int, ...]:
        return tuple(accumulate(self.sizes, initial=0))

    @property
    def replay(self) -> bool:
        return self.timeline is not None

    def __len__(self) -> int:
        return len(self.labels)


@attrs.frozen
class StepShown:
    """The map and entries now draw the state at a step (or the present: `op` None)."""

    op: int | None
    step: int = -1
    steps: int = 0
    title: str = ""
    in_progress: tuple[tuple[int, int], ...] = ()
    exact: bool = True
    changed: tuple[tuple[int, int], ...] = ()  # the op's changed gfn ranges (model/changes.py)


@attrs.frozen
class RecordingStatus:
    """The recorder's state after a command: `path` None when not recording."""

    path: str | None
    ops_written: int = 0
    error: str = ""
