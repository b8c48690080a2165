"""The engine thread: a worker QObject owns the Session; the GUI talks to it through `Engine`.

Commands are typed objects (`imemviz.app.messages`: apply a plan, undo, redo,
seek, open, replay, step view, record, save...) that go into one FIFO and run
in order, dispatched by type: none is ever dropped.  Raster and inspect
requests are coalesced by key (the latest wins) and answered when the FIFO is
empty.  Everything the worker publishes is immutable: `OpRecord` per op, an
`ActionRecord` per user-level step (its name, outcome and changes), a
`Snapshot` after every command, the session's `TimelineInfo` when its shape
changes, `RasterAnswer` and `InspectAnswer`.  Panes never touch engine
objects.  The session (with the replay being played and the recording being
written) belongs to this thread: undo, seeks and opening files run here, from
the session's checkpoints.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from imemviz.app import frame_fence
from imemviz.app import messages as M
from imemviz.app.frame_fence import AckLater, FrameFence
from imemviz.app.messages import ActionRecord, OpInfo, StepShown, TimelineInfo
from imemviz.app.outcomes import action_record, op_info, title, undone_record
from imemviz.app.pane_source import PaneSource
from imemviz.app.raster_codes import drawn_extent, request_codes
from imemviz.app.raster_memo import LongRunsMemo, RasterMemo
from imemviz.app.records import (
    InspectAnswer,
    OpRecord,
    RasterAnswer,
    RasterRequest,
    Snapshot,
    freeze,
    slot_infos,
)
from imemviz.io.plans import Plan
from imemviz.io.replay import Timeline
from imemviz.io.script import ScriptError
from imemviz.io.session import Session, SessionError, deepcopy_vm
from imemviz.io.session_recorder import RecordingStopped, SessionRecorder
from imemviz.model.changes import NONE, action_text
from imemviz.model.explain import explain
from imemviz.model.op_stats import op_stats
from imemviz.model.ops import Op
from imemviz.model.protocols import protocol_name, steps
from imemviz.model.query import inspect_gfn, stats_dict
from imemviz.model.raster import StepCache, changed_ranges, merge_ranges
from imemviz.model.step_state import StepReplayer
from imemviz.model.vm import VM

Planner = Callable[[VM], Plan]
FORWARD_RECORDS = 8  # a forward seek of at most this many groups publishes an OpRecord per op
PREPARE_DELAY_MS = 100  # idle time before the engine readies the next undo


class EngineWorker(QObject):
    """Lives on the engine thread; never call its methods from the GUI but `post_*`."""

    opApplied = Signal(object)  # OpRecord
    actionDone = Signal(object)  # ActionRecord, after the snapshot of its command
    snapshotReady = Signal(object)  # Snapshot
    timelineChanged = Signal(object)  # TimelineInfo
    rasterReady = Signal(object)  # RasterAnswer
    inspectReady = Signal(object)  # InspectAnswer
    stepShown = Signal(object)  # StepShown
    recordingStatus = Signal(object)  # messages.RecordingStatus
    commandStarted = Signal(str)
    commandFinished = Signal(str)
    progress = Signal(int, int)
    failed = Signal(str)  # a command that could not run (file errors, engine bugs)
    message = Signal(str)  # a note for the user (a plan with nothing to do)
    answered = Signal(object)  # messages.Answer to a messages.Query
    paced = Signal(int)  # a FrameFence token, after a piece of work the GUI acknowledges
    _wake = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._inbox: deque[M.Command] = deque()
        self._rasters: dict[str, RasterRequest] = {}
        self._views: dict[str, RasterRequest] = {}  # standing: redrawn after every change
        self._inspects: dict[str, int] = {}
        self.session: Session | None = None
        self._cache: StepCache | None = None
        self._memo = RasterMemo()  # last raster per view: a change redraws its rows only
        self._runs_memo = LongRunsMemo()
        self._version = 0
        self._session_no = 0
        self._structure = 0
        self._stopping = False
        # The recording being replayed: its own session (never changed by the user: a
        # "what if" action forks a live session from it), and the position in it.
        self._replay: Session | None = None
        self._replay_tl: Timeline | None = None
        self._replay_pos = 0
        # The step view: which op and step the map shows, its replayer and raster cache.
        self._step_key: tuple[int, int, int] | None = None
        self._stepper: StepReplayer | None = None
        self._step_cache: StepCache | None = None
        self._step_vm: VM | None = None
        self._step_label = ""
        self._recorder: SessionRecorder | None = None
        # The ActionRecord of the command running, sent just before its snapshot: the GUI
        # draws the marks and the new raster in one frame.
        self._pending_action: ActionRecord | None = None
        # Extra feeds run on this thread after every publish: f(session, version, session_no,
        # changed ranges, reset).  Panes add them (imemviz.app.feeds); each emits its own
        # signal.  `step_feeds` get the state a StepView shows: f(vm or None, version, label).
        self.feeds: list[Callable[..., None]] = []
        self.step_feeds: list[Callable[[Any, int, str], None]] = []
        # The feeds wait (without the GIL) for the GUI to draw the state: frame_fence.py.
        self.fence = FrameFence()
        self._fenced_session = -1  # the session of the last state published
        # While the feeds run, what they send waits here (`deliver`): sent one piece per
        # GUI turn once they are all computed (frame_fence.py, "Pacing").
        self._held: list[tuple[Any, Any]] | None = None
        self._pacing = False  # the last publish sends its pieces one per GUI turn
        self._owed = 0  # the token sent after the last rasters, not waited for yet
        self._prepared: tuple[int, int] | None = None  # (session id, version) undo readied for
        # The next undo is readied PREPARE_DELAY_MS after the engine went idle: the GUI has
        # drawn what the command changed by then, and the two do not share the CPU.
        self._idle_timer = QTimer(self)
        self._idle_timer.setSingleShot(True)
        self._idle_timer.setInterval(PREPARE_DELAY_MS)
        self._idle_timer.timeout.connect(self._prepare_undo)
        self._wake.connect(self._drain)
        self.HANDLERS: dict[type, Callable[[Any], None]] = {
            M.ApplyPlan: self._cmd_plan,
            M.Undo: self._cmd_undo,
            M.Redo: self._cmd_redo,
            M.Seek: self._cmd_seek,
            M.Open: self._cmd_open,
            M.LoadRecording: self._cmd_load_recording,
            M.CloseReplay: self._cmd_close_replay,
            M.LoadScene: self._cmd_scene,
            M.NewVm: self._cmd_new,
            M.SetSession: self._cmd_session,
            M.SaveState: self._cmd_save_state,
            M.SaveRecording: self._cmd_save_recording,
            M.StepView: self._cmd_step_view,
            M.RefreshFeeds: self._cmd_refresh,
            M.StartRecording: self._cmd_start_recording,
            M.StopRecording: self._cmd_stop_recording,
            M.WriteBundle: self._cmd_write_bundle,
            M.ResolvePfn: self._cmd_resolve_pfn,
            M.CompareWith: self._cmd_compare,
            M.OpLine: self._cmd_op_line,
            M.ExportPerfetto: self._cmd_export_perfetto,
            M.RecheckFeeds: self._cmd_recheck,
            M.Call: self._cmd_call,
        }

    def attach_feeds(
        self,
        feed: Callable[..., None],
        step_feed: Callable[[Any, int, str], None] | None = None,
    ) -> Callable[..., None]:
        """Run `feed` after every change (and `step_feed` for each step view); returns the
        detach, which may run any number of times (a closed window's feed must not run on:
        it would emit through a deleted object)."""
        self.feeds.append(feed)
        if step_feed is not None:
            self.step_feeds.append(step_feed)

        def detach(*_args: Any) -> None:
            if feed in self.feeds:
                self.feeds.remove(feed)
            if step_feed is not None and step_feed in self.step_feeds:
                self.step_feeds.remove(step_feed)

        return detach

    def deliver(self, signal: Any, payload: Any) -> None:
        """Engine thread: a feed sends `payload` through `signal` (a bound signal of an
        object on the GUI thread).  During a publish it is held and sent after every
        feed has run, one piece per GUI turn; otherwise (a step view, a refresh) now."""
        if self._held is not None:
            self._held.append((signal, payload))
        else:
            signal.emit(payload)

    def _settle(self) -> None:
        """Before new work: wait (without the GIL) until the GUI has painted the rasters
        last sent, if it has not yet."""
        if self._owed:
            self.fence.hurried = False
            self.fence.wait(self._owed, frame_fence.LIMIT_S)
            self._owed = 0

    def _pace(self, limit: float = frame_fence.LIMIT_S) -> None:
        """Wait (without the GIL) until the GUI has handled and drawn what was just sent."""
        if self.fence.armed and not self.fence.hurried:
            token = self.fence.issue()
            self.paced.emit(token)
            self.fence.wait(token, limit)

    # ---------------------------------------------------------- thread-safe posts
    def post(self, command: M.Command) -> None:
        with self._lock:
            self._inbox.append(command)
        self._wake.emit()

    def post_raster(self, req: RasterRequest) -> None:
        """Compute this raster now, and again after every change that touches it."""
        with self._lock:
            self._rasters[req.key] = req
            self._views[req.key] = req
        self._wake.emit()

    def post_inspect(self, key: str, gfn: int) -> None:
        with self._lock:
            self._inspects[key] = gfn
        self._wake.emit()

    # ------------------------------------------------------------ engine thread
    def request_stop(self) -> None:
        """Thread-safe: drop what is still queued once the current command is done."""
        with self._lock:
            self._stopping = True
            self._inbox.clear()

    @Slot()
    def _drain(self) -> None:
        while not self._stopping:
            with self._lock:
                cmd = self._inbox.popleft() if self._inbox else None
            if cmd is not None:
                self._settle()
                self._run(cmd)
                continue
            with self._lock:
                rasters, self._rasters = self._rasters, {}
                inspects, self._inspects = self._inspects, {}
            if not rasters and not inspects:
                self._idle_timer.start()  # then ready the next undo, if still idle
                return
            if self.session is None:
                continue
            self._settle()
            try:
                for req in rasters.values():
                    self._raster(req)
                for key, gfn in inspects.items():
                    info = freeze(inspect_gfn(self.session.vm, gfn))
                    self.inspectReady.emit(InspectAnswer(key, gfn, self._version, info))
            except Exception as e:  # an engine bug must not stop the thread
                self.failed.emit(f"drawing: internal error: {e!r}\n{traceback.format_exc()}")
            if rasters and self.fence.armed:
                # The GUI paints what came (a framing's step, a scroll, the overview): the
                # engine's next work waits, without the GIL, until it has (`_settle`); an
                # engine with nothing more to do does not wait.
                self._owed = self.fence.issue()
                self.paced.emit(self._owed)

    @Slot()
    def _prepare_undo(self) -> None:
        """Idle: ready the live session's next undo (`Session.prepare`: a VM kept for it,
        so the undo swaps it in instead of copying a checkpoint), stopping between ops (or
        copy steps) as soon as anything is queued; the next idle time goes on with it.
        The replay's own session is left alone: its seeks are timed as they were."""
        s = self.session
        key = (id(s), self._version)
        if s is None or s is self._replay or self._prepared == key:
            return

        def stop() -> bool:
            return bool(self._inbox or self._rasters or self._inspects or self._stopping)

        if stop():
            return  # the drain that is coming starts the timer again

        gc_on = gc.isenabled()
        gc.disable()  # a copy of a big VM: no full collection in the middle (see _run)
        t0 = time.perf_counter()
        try:
            if s.prepare(stop) or not stop():
                self._prepared = key
        except Exception as e:  # an engine bug must not stop the thread
            self._prepared = key
            self.failed.emit(f"preparing undo: internal error: {e!r}\n{traceback.format_exc()}")
        finally:
            if time.perf_counter() - t0 > 0.005:
                gc.freeze()  # a copy made: out of the collector's reach, as in _run
            if gc_on:
                gc.enable()

    def _run(self, cmd: M.Command) -> None:
        label = cmd.label
        self.commandStarted.emit(str(label))
        big = isinstance(cmd, M.BIG_COMMANDS)
        gc_on = gc.isenabled()
        if big and gc_on:
            # A big command allocates millions of objects: a full collection in the middle
            # would scan them all holding the GIL (50-70 ms of frozen GUI on a 20,000-op
            # recording).  Engine objects make no reference cycles; collection waits until
            # the command is done and what it built is frozen out of the collector's reach.
            gc.disable()
        try:
            if self._step_key is not None and not isinstance(cmd, M.READ_ONLY):
                self._end_step_view()  # the state changes: back to the present first
            self.HANDLERS[type(cmd)](cmd)
        except SessionError as e:
            self.failed.emit(str(e))
        except Exception as e:  # an engine bug must not kill the thread
            self.failed.emit(f"{label}: internal error: {e!r}\n{traceback.format_exc()}")
        finally:
            self._flush_action()  # a command that published nothing still reports it
            self._sync_recorder()
            if big:
                # Move what now exists out of the cyclic GC's reach: a full collection
                # over millions of engine objects would hold the GIL (and freeze the GUI)
                # for tens of ms at a time.  Engine state is freed by reference counting
                # (it makes no reference cycles), so nothing it drops stays frozen.
                gc.freeze()
                if gc_on:
                    gc.enable()
            self.commandFinished.emit(str(label))

    # ------------------------------------------------------------ actions
    def _annotate(self, vm: VM, index: int, op: Op, r: Any, events: list[tuple]) -> OpInfo:
        return op_info(vm, index, op, r, events)

    def _cmd_plan(self, cmd: M.ApplyPlan) -> None:
        s = self._need_session()
        plan = cmd.plan
        if callable(plan):
            plan = plan(s.vm)
        if not plan.ops:
            if plan.note:
                self.message.emit(f"{plan.label}: {plan.note}")
            return
        if plan.note:
            self.message.emit(plan.note)
        if self._replay is not None and s is self._replay:
            s = self._fork_replay()
        first = len(s.ops)
        changed = self._apply(s, list(plan.ops), plan.label or cmd.title)
        self._structure += 1
        self._action("action", plan.label or cmd.title, s, first, len(s.ops) - first)
        self._publish(changed)
        self._publish_timeline()

    def _apply(self, s: Session, ops: list[Op] | None, label: str) -> list[tuple[int, int]] | None:
        """Apply ops (None: redo) publishing an OpRecord per op; returns the changed ranges."""
        on_op, extent, done = self._op_publisher(s)
        if ops is None:
            s.redo(on_op)
        else:
            s.apply_group(ops, label, on_op)
        return done(extent)

    def _op_publisher(self, s: Session) -> tuple[Callable, int, Callable]:
        """An on_op callback publishing OpRecords, and a function giving the changed ranges
        (and refreshing the raster cache) once the ops are applied."""
        extent = self._extent(s.vm)
        ranges: list[list[tuple[int, int]] | None] = [[]]

        def on_op(index: int, op: Op, r, events: list[tuple], dt: float) -> None:
            vm = s.vm
            info = s.info[index] if index < len(s.info) else None
            ch = info.raster if info is not None else changed_ranges(vm, events)
            if ch is None:
                ranges[0] = None
            elif ranges[0] is not None:
                ranges[0].extend(ch)
            self.opApplied.emit(
                OpRecord(
                    index,
                    op,
                    freeze(r.line(index, op.NAME)),
                    tuple(events),
                    None if ch is None else tuple(ch),
                    explain(op.NAME, r.ok, r.errno, r.ret, events),
                    dt,
                    info.stats if info is not None else op_stats(vm),
                    info.changes if info is not None else NONE,
                )
            )

        def done(extent0: int) -> list[tuple[int, int]] | None:
            out = ranges[0]
            if self._extent(s.vm) != extent0:
                out = None
            self._update_cache(out)
            return out

        return on_op, extent, done

    def _action(self, kind: str, label: str, s: Session, first: int, count: int) -> None:
        """Publish the ActionRecord of ops [first, first + count) just applied."""
        self._emit_action(action_record(kind, label, s, first, count))

    def _cmd_undo(self, cmd: M.Undo) -> None:
        s = self._need_session()
        if not s.can_undo:
            return
        label = s.undo_label
        n = s.groups[-1]
        extent = self._extent(s.vm)
        s.undo()
        if self._replay is not None and s is self._replay:
            self._replay_pos = s.position
        changed = self._splice_undone(s, s.future_info(n), extent)
        self._undone("undo", f"Undo: {title(label)}", s, n)
        self._publish(changed, reset=True)

    def _splice_undone(
        self, s: Session, infos: list, extent: int, max_ops: int = 64
    ) -> list[tuple[int, int]] | None:
        """After the session moved over these ops (an undo, a short seek), redraw the gfn
        ranges they changed from the rebuilt state rather than the whole guest; None (and a
        full rebuild) when they may have changed anything or are too many."""
        ranges: list[tuple[int, int]] = []
        if len(infos) > max_ops or self._extent(s.vm) != extent:
            self._reset_cache()
            return None
        for info in infos:
            if info is None or info.raster is None:
                self._reset_cache()
                return None
            ranges.extend(info.raster)
        self._update_cache(ranges)
        return ranges

    def _undone(self, kind: str, label: str, s: Session, n_ops: int) -> None:
        """The ActionRecord of ops undone (they are now the first of the future)."""
        self._emit_action(undone_record(kind, label, s, n_ops))

    def _cmd_redo(self, cmd: M.Redo) -> None:
        s = self._need_session()
        if not s.can_redo:
            return
        label = s.redo_label
        first = len(s.ops)
        changed = self._apply(s, None, label)
        if self._replay is not None and s is self._replay:
            self._replay_pos = s.position
        self._action("redo", label, s, first, len(s.ops) - first)
        self._publish(changed)

    def _cmd_seek(self, cmd: M.Seek) -> None:
        s = self._need_session()
        if self._replay is not None:
            tl = self._replay_tl
            assert tl is not None
            k = max(0, min(cmd.position, len(tl.ops)))
            if s is not self._replay:
                if k == self._replay_pos + 1:
                    # A "what if" continues with the recording's next op, on top of it.
                    op = tl.ops[self._replay_pos]
                    first = len(s.ops)
                    changed = self._apply(s, [op], op.NAME)
                    self._replay_pos = k
                    self._structure += 1
                    self._action("seek", f"replay #{k - 1} {op.NAME}", s, first, 1)
                    self._publish(changed)
                    return
                # Anything else goes back to the recording itself.
                self.session = s = self._replay
                self._reset_cache()
                self._publish(None, reset=True)
                self._publish_timeline()
            self._seek(s, k)
            self._replay_pos = s.position
            return
        self._seek(s, cmd.position)

    def _seek(self, s: Session, position: int) -> None:
        position = max(0, min(position, s.length))
        before_groups, before_ops = s.position, len(s.ops)
        if position == before_groups:
            self._publish([])
            return
        small = before_groups < position <= before_groups + FORWARD_RECORDS
        changed: list[tuple[int, int]] | None = None
        extent = self._extent(s.vm)
        if small:
            on_op, extent, done = self._op_publisher(s)
            r = s.seek(position, on_op)
            changed = (
                self._splice_undone(s, s.info[before_ops:], extent) if r.rebuilt else done(extent)
            )
        else:
            r = s.seek(position)
            crossed = (
                s.info[before_ops:]
                if len(s.ops) > before_ops
                else s.future_info(before_ops - len(s.ops))
            )
            changed = self._splice_undone(s, crossed, extent)
        # A seek marks what the op now last did (seeking to op #k shows op #k's changes),
        # in either direction; an undo marks what the undone ops had changed.
        last = len(s.ops) - 1
        info = s.info[last] if last >= 0 else None
        changes = (info.changes if info is not None else NONE).with_ops([last] if last >= 0 else [])
        if last < 0:
            label = "Back to the start"
        elif self._replay is not None:
            label = f"Replay op #{last} {s.ops[last].NAME}"
        else:
            where = "Forward" if position > before_groups else "Back"
            label = f"{where} to op #{last} ({s.labels[-1] if s.labels else s.ops[last].NAME})"
        text = action_text(label, 1, None, changes)
        self._emit_action(
            ActionRecord(
                "seek",
                label,
                text,
                min(before_ops, len(s.ops)),
                abs(len(s.ops) - before_ops),
                last if last >= 0 else None,
                not changes.severe,
                changes,
                len(s.ops),
            )
        )
        if r.rebuilt or not small:
            self._publish(changed, reset=True)
        else:
            self._publish(changed)

    def _fork_replay(self) -> Session:
        """The user acts during a replay: a live session continues from here (the recording's
        own session stays as it is, for the next seek)."""
        assert self._replay is not None
        live = self._replay.fork()
        if self._recorder is not None and self._recorder.session is self._replay:
            self._recorder.rebind(live)
        self.session = live
        self._reset_cache()
        self.message.emit(
            f"What if: your own ops after op #{self._replay_pos - 1} of the recording; "
            "Step continues the recording from here, a seek goes back to it."
        )
        return live

    # ------------------------------------------------------------ sessions
    def _cmd_open(self, cmd: M.Open) -> None:
        self._end_replay()
        session = Session.open(cmd.path, progress=self._progress(), annotate=self._annotate)
        self._set_session(session)
        if session.warning:  # a recording cut short, replayed up to its last complete line
            self.message.emit(session.warning)

    def _cmd_load_recording(self, cmd: M.LoadRecording) -> None:
        try:
            tl = cmd.source if isinstance(cmd.source, Timeline) else Timeline.load(cmd.source)
            vm0 = tl.start_vm()
        except ScriptError as e:
            raise SessionError(str(e)) from None
        except OSError as e:
            raise SessionError(f"{cmd.source}: cannot read: {e.strerror or e}") from None
        s = Session.from_ops(
            tl.start,
            vm0,
            tl.ops,
            source=tl.source,
            progress=self._progress(),
            annotate=self._annotate,
        )
        s.seek(cmd.position)
        self._replay, self._replay_tl, self._replay_pos = s, tl, s.position
        self._set_session(s, announce=False)
        self.message.emit(
            f"Replaying {os.path.basename(tl.source)}: {len(tl)} ops, "
            f"{len(tl.note_indexes)} captions"
        )

    def _progress(self, every_s: float = 0.1) -> Callable[[int, int], None]:
        """A progress callback that reports at most every `every_s` (and the last step):
        each report repaints the busy bar, which the GUI must not do hundreds of times."""
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - last[0] >= every_s:
                last[0] = now
                self.progress.emit(done, total)

        return report

    def _cmd_close_replay(self, cmd: M.CloseReplay) -> None:
        if self._replay is None:
            return
        self._end_replay()
        self._structure += 1
        self._publish([])
        self._publish_timeline()

    def _end_replay(self) -> None:
        self._replay = self._replay_tl = None
        self._replay_pos = 0

    def _cmd_scene(self, cmd: M.LoadScene) -> None:
        self._end_replay()
        self._set_session(Session.scene(cmd.name))

    def _cmd_new(self, cmd: M.NewVm) -> None:
        self._end_replay()
        s = Session.new(cmd.config)
        self._set_session(s)
        if cmd.ops:
            first = len(s.ops)
            changed = self._apply(s, list(cmd.ops), "layout")
            self._structure += 1
            self._action("action", "layout", s, first, len(s.ops) - first)
            self._publish(changed)
            self._publish_timeline()

    def _cmd_session(self, cmd: M.SetSession) -> None:
        if cmd.session is not self._replay:
            self._end_replay()
        self._set_session(cmd.session, cmd.announce)

    def _cmd_save_state(self, cmd: M.SaveState) -> None:
        self._need_session().save_state(cmd.path)
        self.message.emit(f"State saved to {cmd.path}")

    def _cmd_save_recording(self, cmd: M.SaveRecording) -> None:
        s = self._need_session()
        s.save_recording(cmd.path)
        self.message.emit(f"Recording of {len(s.ops)} ops saved to {cmd.path}")

    # ------------------------------------------------------------ queries
    def _cmd_resolve_pfn(self, cmd: M.ResolvePfn) -> None:
        from imemviz.app.goto import GotoError, pfn_target

        try:
            self.answered.emit(M.Answer(cmd.key, pfn_target(self._need_session().vm, cmd.pfn)))
        except GotoError as e:
            self.answered.emit(M.Answer(cmd.key, error=str(e)))

    def _cmd_compare(self, cmd: M.CompareWith) -> None:
        from imemviz.app.compare import compare_with
        from imemviz.io.session import SessionError

        try:
            self.answered.emit(M.Answer(cmd.key, compare_with(self._need_session(), cmd.path)))
        except SessionError as e:
            self.answered.emit(M.Answer(cmd.key, error=str(e)))

    def _cmd_op_line(self, cmd: M.OpLine) -> None:
        from imemviz.io.recording import op_line

        s = self._need_session()
        k = cmd.op - (s.vm.op_index - len(s.ops))
        if 0 <= k < len(s.ops):
            line = op_line(s.ops[k])
            text = f"{cmd.prefix}\n{line}" if cmd.prefix else line
            self.answered.emit(M.Answer(cmd.key, (text, f"Copied op #{cmd.op} as a script line")))
        else:
            why = f"Op #{cmd.op} is older than this session (it made the state it started from)"
            self.answered.emit(M.Answer(cmd.key, (cmd.prefix, why)))

    def _cmd_recheck(self, cmd: M.RecheckFeeds) -> None:
        s = self.session
        if s is None:
            return
        for feed in list(self.feeds):
            owner = getattr(feed, "__self__", None)
            if owner is not None and hasattr(owner, "recheck"):
                owner.recheck = True
                feed(s, self._version, self._session_no, None)

    def _cmd_export_perfetto(self, cmd: M.ExportPerfetto) -> None:
        from imemviz.io.trace.perfetto_export import export_session

        export_session(self._need_session(), cmd.path, self.message.emit)

    def _cmd_call(self, cmd: M.Call) -> None:
        """Run fn(session) on the engine thread (tests and benchmarks)."""
        cmd.fn(self._need_session())

    def _cmd_refresh(self, cmd: M.RefreshFeeds) -> None:
        s = self.session
        if s is None:
            return
        if self._step_vm is not None:  # a step view: the pane shows the state at the step
            for step_feed in list(self.step_feeds):
                step_feed(self._step_vm, self._version, self._step_label)
            return
        for feed in list(self.feeds):
            refresh = getattr(getattr(feed, "__self__", None), "refresh", None)
            if refresh is not None:
                refresh(s.vm, self._version, cmd.leaves, cmd.host)

    def _cmd_write_bundle(self, cmd: M.WriteBundle) -> None:
        from imemviz.app.crash import write_bundle

        try:
            problems = write_bundle(cmd.path, self.session, list(cmd.tracebacks))
        except BaseException as e:
            if cmd.reply is not None:
                cmd.reply.set_exception(e)
            return
        if cmd.reply is not None:
            cmd.reply.set_result(problems)

    # ------------------------------------------------------------ recording
    def _cmd_start_recording(self, cmd: M.StartRecording) -> None:
        s = self._need_session()
        if self._recorder is not None:
            self._recorder.close()
        try:
            self._recorder = SessionRecorder(s, cmd.path)
        except RecordingStopped as e:
            self._recorder = None
            self.recordingStatus.emit(M.RecordingStatus(None, 0, str(e)))
            return
        self.recordingStatus.emit(M.RecordingStatus(cmd.path, 0))

    def _cmd_stop_recording(self, cmd: M.StopRecording) -> None:
        rec, self._recorder = self._recorder, None
        if rec is not None:
            rec.close()
            self.recordingStatus.emit(M.RecordingStatus(None, rec.written))

    def _sync_recorder(self) -> None:
        rec = self._recorder
        if rec is None or self.session is None:
            return
        before = rec.written
        try:
            rec.sync(self.session)
        except RecordingStopped as e:
            self._recorder = None
            self.recordingStatus.emit(M.RecordingStatus(None, rec.written, str(e)))
            return
        if rec.written != before:
            self.recordingStatus.emit(M.RecordingStatus(rec.path, rec.written))

    def close_recording(self) -> None:
        """Thread-safe at exit (the thread has stopped): close the file."""
        rec, self._recorder = self._recorder, None
        if rec is not None:
            rec.close()

    # ------------------------------------------------------------ step view
    def _cmd_step_view(self, cmd: M.StepView) -> None:
        if cmd.op is None:
            self._end_step_view()
            return
        s = self._need_session()
        op = cmd.op
        if not 0 <= op < len(s.ops):
            self.message.emit(f"op #{op} is not in this session's history: nothing to draw")
            self._end_step_view()
            return
        key = (self._session_no, self._version, op)
        if self._step_key != key or self._stepper is None:
            before = s.vm_at(op)
            after = s.vm if op == len(s.ops) - 1 else s.vm_at(op + 1)
            events = list(after.last_events)
            self._stepper = StepReplayer(before, after, events, steps(events), deepcopy_vm)
            self._step_key = key
        stepper = self._stepper
        st = stepper.state(cmd.step)
        n = len(stepper.steps)
        step = stepper.steps[st.step] if 0 <= st.step < n else None
        title = f"op #{op} ({protocol_name(stepper.events)}), step {st.step + 1} of {n}" + (
            f": {step.title}" if step is not None else ""
        )
        self._step_label = title
        self._step_vm = st.vm
        self._step_cache = StepCache(st.vm, self._extent(s.vm))
        with self._lock:
            views = list(self._views.values())
            for v in views:
                self._rasters.pop(v.key, None)
        for v in views:
            self._raster(v)
        for feed in list(self.step_feeds):
            feed(st.vm, self._version, title)
        info = s.info[op] if op < len(s.info) else None
        changed = info.changes.gfns if info is not None else ()
        self.stepShown.emit(StepShown(op, st.step, n, title, st.in_progress, st.exact, changed))

    def _end_step_view(self) -> None:
        if self._step_key is None:
            return
        self._step_key = self._stepper = self._step_cache = self._step_vm = None
        self._step_label = ""
        with self._lock:
            views = list(self._views.values())
            for v in views:
                self._rasters.pop(v.key, None)
        for v in views:
            self._raster(v)
        for feed in list(self.step_feeds):
            feed(self.session.vm if self.session is not None else None, self._version, "")
        self.stepShown.emit(StepShown(None))

    # --------------------------------------------------------------- helpers
    def _need_session(self) -> Session:
        if self.session is None:
            raise SessionError("no VM is loaded")
        return self.session

    def _set_session(self, session: Session, announce: bool = True) -> None:
        if session.annotate is None:
            session.annotate = self._annotate
        self.session = session
        self._session_no += 1
        self._structure += 1
        self._reset_cache()
        if not announce:  # a replay seeking: no "Opened ..." line per seek
            self._publish(None, reset=True)
            self._publish_timeline()
            return
        notes = [ev[2] for ev in session.vm.events.log if ev[1] == "note"]
        where = session.source or (
            f"scene {session.start['scene']}" if "scene" in session.start else "a new VM"
        )
        self.message.emit(
            f"Opened {where}: {session.vm.config.type}, "
            f"{len(session.vm.memslots.by_id)} memslots, {len(session.ops)} ops"
        )
        for text in notes[:20]:
            self.message.emit(text)
        self._publish(None, reset=True)
        self._publish_timeline()

    def _extent(self, vm: VM) -> int:
        return drawn_extent(vm)

    def _reset_cache(self) -> None:
        s = self._need_session()
        self._cache = StepCache(s.vm, self._extent(s.vm))

    def _update_cache(self, ranges: list[tuple[int, int]] | None) -> None:
        s = self._need_session()
        if self._cache is None or ranges is None or self._cache.limit != self._extent(s.vm):
            self._reset_cache()
        else:
            self._cache.update(s.vm, ranges)

    def _timeline_position(self, s: Session) -> tuple[int, int, bool]:
        if self._replay is not None and self._replay_tl is not None:
            if s is self._replay:
                self._replay_pos = s.position
            return self._replay_pos, len(self._replay_tl.ops), True
        return s.position, s.length, False

    def _emit_action(self, rec: ActionRecord) -> None:
        self._pending_action = rec

    def _flush_action(self) -> None:
        rec, self._pending_action = self._pending_action, None
        if rec is not None:
            self.actionDone.emit(rec)

    def _publish(self, changed: list[tuple[int, int]] | None, reset: bool = False) -> None:
        s = self._need_session()
        vm = s.vm
        self._flush_action()
        self._version += 1
        ranges = None if changed is None else tuple(merge_ranges(changed))
        # Standing views touched by the change are rasterised now, before the GUI hears of
        # the change: it then gets the snapshot and the rasters back to back.
        with self._lock:
            views = [v for v in self._views.values() if v.touches(ranges)]
            for v in views:
                self._rasters.pop(v.key, None)
            for v in [v for v in views if not v.urgent]:
                self._rasters[v.key] = v  # drawn when the inbox is empty
            views = [v for v in views if v.urgent]
        answers = [self._raster_answer(v) for v in views]
        slots = slot_infos(vm)
        position, length, replay = self._timeline_position(s)
        self.snapshotReady.emit(
            Snapshot(
                self._version,
                vm.config,
                slots,
                tuple(sorted(vm.files)),
                self._extent(vm),
                freeze(stats_dict(vm)),
                len(s.ops),
                s.can_undo,
                s.can_redo,
                s.undo_label,
                s.redo_label,
                s.source,
                ranges,
                self._session_no,
                s.op_base,
                position,
                length,
                replay,
                reset,
                self._runs_memo.get(self._cache),  # updated from the changed ranges
            )
        )
        for a in answers:
            if a is not None:
                self.rasterReady.emit(a)
        opened = self._session_no != self._fenced_session
        self._fenced_session = self._session_no
        # After a reset (an open, a seek, an undo: the event log and the counters rebuilt,
        # every invariant checked) every piece sent is one GUI turn of its own; after an
        # op, whose pieces are small, the feeds' pieces go at once (a wait per piece would
        # only add latency).  frame_fence.py, "Pacing".
        self._pacing = reset or opened
        # The GUI handles the snapshot (and the raster) and paints; the engine waits
        # without the GIL.
        self.fence.hurried = False
        limit = frame_fence.PACE_LIMIT_S if self._pacing else frame_fence.LIMIT_S
        self._pace(frame_fence.OPEN_LIMIT_S if opened else limit)
        if opened:
            # A new session: the GUI has laid the map out for it and asked for its raster
            # while handling the snapshot.  Drawn before the feeds, the map's first full
            # frame comes before the other panes' updates (not after them all, ~100 ms
            # later on a 20,000-op recording, with the map blank meanwhile).
            with self._lock:
                first = [v for v in self._rasters.values() if v.urgent]
                for v in first:
                    del self._rasters[v.key]
            for v in first:
                self._raster(v)
            if first:
                self._pace(frame_fence.OPEN_LIMIT_S)  # the map's first frame, alone
        # Every feed is computed first (the GUI idle meanwhile), then what they send goes
        # out (one piece per GUI turn after a reset).
        self._held = []
        try:
            for feed in list(self.feeds):
                try:
                    feed(s, self._version, self._session_no, ranges, reset)
                except Exception as e:  # a pane's feed must not stop the engine
                    self.failed.emit(f"feed: internal error: {e!r}\n{traceback.format_exc()}")
        finally:
            held, self._held = self._held, None
        for signal, payload in held:
            try:
                signal.emit(payload)
            except RuntimeError:  # its pane was closed meanwhile
                continue
            if self._pacing:
                self._pace(frame_fence.PACE_LIMIT_S)

    def _publish_timeline(self) -> None:
        s = self.session
        if s is None:
            return
        tl = self._replay_tl
        if tl is not None:
            ops = tuple(tl.ops)
            labels = tuple("" for _ in ops)
            sizes = tuple(1 for _ in ops)
        else:
            labels = (*s.labels, *s.future_labels())
            sizes = (*s.groups, *s.future_sizes())
            ops = (*s.ops, *s.future_ops())
        self.timelineChanged.emit(
            TimelineInfo(self._session_no, self._structure, labels, sizes, ops, tl)
        )
        if self._pacing:
            self._pace(frame_fence.PACE_LIMIT_S)  # the Timeline's rows: a turn of their own

    def _raster(self, req: RasterRequest) -> None:
        a = self._raster_answer(req)
        if a is not None:
            self.rasterReady.emit(a)

    def _raster_answer(self, req: RasterRequest) -> RasterAnswer | None:
        cache = self._step_cache if self._step_cache is not None else self._cache
        if cache is None:
            return None
        codes = self._memo.patched(req, cache)  # only the rows the changes touched
        if codes is not None:
            codes.setflags(write=False)
            self._memo.store(req, cache, codes)
            return RasterAnswer(req, self._version, codes, self._step_label)
        codes = request_codes(cache, req)
        codes.setflags(write=False)
        self._memo.store(req, cache, codes)
        return RasterAnswer(req, self._version, codes, self._step_label)


class Engine(PaneSource):
    """The GUI's handle on the engine thread.  Create, `start()`, and `stop()` when done."""

    opApplied = Signal(object)
    actionDone = Signal(object)
    timelineChanged = Signal(object)
    stepShown = Signal(object)
    recordingStatus = Signal(object)
    busyChanged = Signal(bool, str)  # shown > BUSY_DELAY_MS after a command starts
    progress = Signal(int, int)
    failed = Signal(str)
    message = Signal(str)
    answered = Signal(object)  # messages.Answer

    BUSY_DELAY_MS = 100

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine_thread = QThread()
        self.engine_thread.setObjectName("imemviz-engine")
        self.worker: EngineWorker = EngineWorker()
        self.worker.moveToThread(self.engine_thread)
        # The idle timer lives on the engine thread: stopped there as it ends (a timer
        # still running when the worker goes would be stopped from the wrong thread).
        self.engine_thread.finished.connect(
            self.worker._idle_timer.stop, Qt.ConnectionType.DirectConnection
        )
        self.timeline: TimelineInfo | None = None
        self.pending = 0  # commands posted and not finished
        self._busy = False
        w = self.worker
        w.opApplied.connect(self.opApplied)
        w.actionDone.connect(self.actionDone)
        w.snapshotReady.connect(self._on_snapshot)
        w.timelineChanged.connect(self._on_timeline)
        w.rasterReady.connect(self.rasterReady)
        w.inspectReady.connect(self.inspectReady)
        w.stepShown.connect(self.stepShown)
        w.recordingStatus.connect(self.recordingStatus)
        w.progress.connect(self.progress)
        w.failed.connect(self.failed)
        w.message.connect(self.message)
        w.answered.connect(self.answered)
        w.commandStarted.connect(self._on_started)
        w.commandFinished.connect(self._on_finished)
        w.fence.armed = True  # this GUI side acknowledges every piece it draws
        self._busy_timer = QTimer(self)
        self._busy_timer.setSingleShot(True)
        self._busy_timer.setInterval(self.BUSY_DELAY_MS)
        self._busy_timer.timeout.connect(self._show_busy)
        self._label = ""
        # The fence's acknowledgement: two zero-interval timer hops after the piece was
        # handled, not a posted call (frame_fence.AckLater).  Acknowledged at once, the
        # engine's next piece of work ran while the GUI still painted this one (sharing
        # the GIL) and its signals were handled in the same drain of posted events.
        self._ack = AckLater(w.fence, self)
        w.paced.connect(self._ack.later)

    def start(self) -> None:
        self.engine_thread.start()

    def stop(self, timeout_ms: int = 30_000) -> bool:
        """Stop the thread after the command it is running (queued ones are dropped);
        True when it stopped."""
        if not self.engine_thread.isRunning():
            return True
        self.worker.request_stop()
        self.engine_thread.quit()
        return bool(self.engine_thread.wait(timeout_ms))

    @property
    def idle(self) -> bool:
        return self.pending == 0

    # ------------------------------------------------------------- commands
    def post(self, command: M.Command) -> None:
        """Queue a typed command (imemviz.app.messages) for the engine thread."""
        self.pending += 1
        self.worker.post(command)

    def submit(self, plan: Plan | Planner, label: str = "") -> None:
        """Apply a plan (or a function of the VM returning one) as one undo step."""
        self.post(M.ApplyPlan(label or getattr(plan, "label", "") or "action", plan))

    def apply_ops(self, ops: list[Op] | tuple[Op, ...], label: str = "") -> None:
        self.submit(Plan(label or (ops[0].NAME if ops else ""), tuple(ops)))

    def undo(self) -> None:
        self.post(M.Undo())

    def redo(self) -> None:
        self.post(M.Redo())

    def seek(self, position: int) -> None:
        """Move the timeline (the session's groups; a replay: the recording's ops)."""
        self.post(M.Seek(position))

    def open(self, path: str) -> None:
        self.post(M.Open(path))

    def load_recording(self, source: str | Timeline, position: int = 0) -> None:
        self.post(M.LoadRecording(source, position))

    def close_replay(self) -> None:
        self.post(M.CloseReplay())

    def load_scene(self, name: str = "default") -> None:
        self.post(M.LoadScene(name))

    def new_vm(self, config: Mapping[str, Any], ops: tuple[Op, ...] = ()) -> None:
        self.post(M.NewVm(dict(config), tuple(ops)))

    def set_session(self, session: Session, announce: bool = True) -> None:
        self.post(M.SetSession(session, announce))

    def save_state(self, path: str) -> None:
        self.post(M.SaveState(path))

    def save_recording(self, path: str) -> None:
        self.post(M.SaveRecording(path))

    def show_step(self, op: int | None, step: int = -1) -> None:
        """Draw the state at step `step` of session op `op` (None: the present)."""
        self.post(M.StepView(op, step))

    def call(self, fn: Callable[[Session], Any]) -> None:
        """Run fn(session) on the engine thread: tests and benchmarks only."""
        self.post(M.Call(fn))

    # ------------------------------------------------------------- bookkeeping
    def _on_timeline(self, info: TimelineInfo) -> None:
        self.timeline = info
        self.timelineChanged.emit(info)

    def _on_started(self, label: str) -> None:
        self._label = label
        self._busy_timer.start()

    def _on_finished(self, label: str) -> None:
        self.pending = max(0, self.pending - 1)
        if self.pending == 0:
            self._busy_timer.stop()
            if self._busy:
                self._busy = False
                self.busyChanged.emit(False, "")

    def _show_busy(self) -> None:
        if self.pending:
            self._busy = True
            self.busyChanged.emit(True, self._label)
