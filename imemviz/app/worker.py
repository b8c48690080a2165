"""The engine thread: a worker QObject owns the Session; the GUI talks to it through `Engine`.

Commands (op plans, undo, redo, open, new, save) go into one FIFO and run in
order: none is ever dropped.  Raster and inspect requests are coalesced by
key (the latest wins) and answered when the FIFO is empty.  Everything the
worker publishes is immutable: `OpRecord` per op, a `Snapshot` after every
command, `RasterAnswer` and `InspectAnswer`.  Panes never touch engine
objects.
"""

from __future__ import annotations

import gc
import threading
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from imemviz.app.panes.map_fold import LongRuns
from imemviz.io.plans import Plan
from imemviz.io.session import Session, SessionError
from imemviz.model.config import VMConfig
from imemviz.model.explain import explain
from imemviz.model.op_stats import op_stats
from imemviz.model.ops import Op
from imemviz.model.query import inspect_gfn, stats_dict
from imemviz.model.raster import (
    StepCache,
    changed_ranges,
    guest_extent,
    merge_ranges,
    raster_rows_at,
)
from imemviz.model.vm import VM

EMPTY_EXTENT = 1 << 20  # gfns drawn for a VM without memslots: 4 GiB of hole
EXTENT_ALIGN = 512  # the drawn space ends on a 2M boundary

Planner = Callable[[VM], Plan]
BIG_COMMANDS = frozenset({"open", "scene", "new", "session", "undo"})


@attrs.frozen
class SlotInfo:
    id: int
    base_gfn: int
    npages: int
    flags: int
    userspace_addr: int
    gmem_fd: int | None  # the bound file's fd, None when unbound or closed
    gmem_pgoff: int

    @property
    def end_gfn(self) -> int:
        return self.base_gfn + self.npages


@attrs.frozen
class OpRecord:
    """One applied op: its index in the session, the contract result line and its events."""

    index: int
    op: Op
    line: Mapping[str, Any]
    events: tuple[tuple, ...]
    changed: tuple[tuple[int, int], ...] | None  # gfn ranges; None: anything
    explanation: str
    seconds: float
    stats: tuple[int, ...] = ()  # imemviz.model.op_stats after the op (Counters pane)

    @property
    def ok(self) -> bool:
        return bool(self.line["ok"])


@attrs.frozen
class Snapshot:
    """What the panes know about the state after a command."""

    version: int
    config: VMConfig
    slots: tuple[SlotInfo, ...]
    fds: tuple[int, ...]
    extent: int  # gfns [0, extent) are drawn
    stats: Mapping[str, Any]
    op_count: int
    can_undo: bool
    can_redo: bool
    undo_label: str
    redo_label: str
    source: str | None
    changed: tuple[tuple[int, int], ...] | None  # since the previous snapshot; None: all
    session: int = 0  # bumped when a new session (open, new VM, scene) replaces the old one
    runs: Any = None  # the map's foldable runs (imemviz.app.panes.map_fold.LongRuns)

    def slot_at(self, gfn: int) -> SlotInfo | None:
        for s in self.slots:
            if s.base_gfn <= gfn < s.end_gfn:
                return s
        return None


@attrs.frozen
class RasterRequest:
    key: str
    start: int  # first gfn of row 0
    row_gfns: int
    rows: int
    cols: int
    # Rows stacked from several places (a folded map): (first gfn, rows, fill code); fill
    # -1 means rows of the guest, a code a band of rows drawn in that one code.
    pieces: tuple[tuple[int, int, int], ...] = ()
    # Not urgent (the overview): redrawn after the snapshot and the urgent rasters are out.
    urgent: bool = True

    @property
    def window(self) -> tuple[int, int]:
        """The gfns [start, end) this raster covers (folded: from the first to the last)."""
        if self.pieces:
            real = [(g, g + n * self.row_gfns) for g, n, fill in self.pieces if fill < 0]
            if real:
                return real[0][0], real[-1][1]
            return self.start, self.start
        return self.start, self.start + self.rows * self.row_gfns

    def touches(self, changed: tuple[tuple[int, int], ...] | None) -> bool:
        """Whether ranges changed by an op (None: anything) intersect this raster."""
        if changed is None:
            return True
        if self.pieces:
            spans = [(g, g + n * self.row_gfns) for g, n, fill in self.pieces if fill < 0]
            return any(s < b and a < e for a, b in spans for s, e in changed)
        a, b = self.window
        return any(s < b and a < e for s, e in changed)


@attrs.frozen
class RasterAnswer:
    request: RasterRequest
    version: int
    codes: np.ndarray  # (rows, cols) uint8, read-only


@attrs.frozen
class InspectAnswer:
    key: str
    gfn: int
    version: int
    info: Mapping[str, Any]


def _freeze(d: Any) -> Any:
    if isinstance(d, dict):
        return MappingProxyType({k: _freeze(v) for k, v in d.items()})
    if isinstance(d, list):
        return tuple(_freeze(v) for v in d)
    return d


class EngineWorker(QObject):
    """Lives on the engine thread; never call its methods from the GUI but `post_*`."""

    opApplied = Signal(object)  # OpRecord
    snapshotReady = Signal(object)  # Snapshot
    rasterReady = Signal(object)  # RasterAnswer
    inspectReady = Signal(object)  # InspectAnswer
    commandStarted = Signal(str)
    commandFinished = Signal(str)
    progress = Signal(int, int)
    failed = Signal(str)  # a command that could not run (file errors, engine bugs)
    message = Signal(str)  # a note for the user (a plan with nothing to do)
    _wake = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._inbox: deque[tuple] = deque()
        self._rasters: dict[str, RasterRequest] = {}
        self._views: dict[str, RasterRequest] = {}  # standing: redrawn after every change
        self._inspects: dict[str, int] = {}
        self.session: Session | None = None
        self._cache: StepCache | None = None
        self._version = 0
        self._session_no = 0
        self._stopping = False
        # Extra feeds run on this thread after every publish: f(session, version, session_no,
        # changed ranges).  Panes add them (imemviz.app.feeds); each emits its own signal.
        self.feeds: list[Callable[[Session, int, int, Any], None]] = []
        self._wake.connect(self._drain)

    # ---------------------------------------------------------- thread-safe posts
    def post(self, *command: Any) -> None:
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
                self._run(cmd)
                continue
            with self._lock:
                rasters, self._rasters = self._rasters, {}
                inspects, self._inspects = self._inspects, {}
            if not rasters and not inspects:
                return
            if self.session is None:
                continue
            try:
                for req in rasters.values():
                    self._raster(req)
                for key, gfn in inspects.items():
                    info = _freeze(inspect_gfn(self.session.vm, gfn))
                    self.inspectReady.emit(InspectAnswer(key, gfn, self._version, info))
            except Exception as e:  # an engine bug must not stop the thread
                self.failed.emit(f"drawing: internal error: {e!r}\n{traceback.format_exc()}")

    def _run(self, cmd: tuple) -> None:
        kind, *args = cmd
        label = args[0] if kind == "plan" else kind
        self.commandStarted.emit(str(label))
        try:
            getattr(self, f"_cmd_{kind}")(*args)
        except SessionError as e:
            self.failed.emit(str(e))
        except Exception as e:  # an engine bug must not kill the thread
            self.failed.emit(f"{label}: internal error: {e!r}\n{traceback.format_exc()}")
        finally:
            if kind in BIG_COMMANDS:
                # Move what now exists out of the cyclic GC's reach: a full collection
                # over millions of engine objects would hold the GIL (and freeze the GUI)
                # for tens of ms at a time.  Engine state is freed by reference counting
                # (it makes no reference cycles), so nothing it drops stays frozen.
                gc.freeze()
            self.commandFinished.emit(str(label))

    def _cmd_plan(self, label: str, plan: Plan | Planner) -> None:
        s = self._need_session()
        if callable(plan):
            plan = plan(s.vm)
        if not plan.ops:
            if plan.note:
                self.message.emit(f"{plan.label}: {plan.note}")
            return
        if plan.note:
            self.message.emit(plan.note)
        changed = self._apply(s, list(plan.ops), plan.label or label)
        self._publish(changed)

    def _apply(self, s: Session, ops: list[Op] | None, label: str) -> list[tuple[int, int]] | None:
        """Apply ops (None: redo) publishing an OpRecord per op; returns the changed ranges."""
        vm = s.vm
        extent = self._extent(vm)
        ranges: list[tuple[int, int]] | None = []

        def on_op(index: int, op: Op, r, events: list[tuple], dt: float) -> None:
            nonlocal ranges
            ch = changed_ranges(vm, events)
            if ch is None:
                ranges = None
            elif ranges is not None:
                ranges.extend(ch)
            self.opApplied.emit(
                OpRecord(
                    index,
                    op,
                    _freeze(r.line(index, op.NAME)),
                    tuple(events),
                    None if ch is None else tuple(ch),
                    explain(op.NAME, r.ok, r.errno, r.ret, events),
                    dt,
                    op_stats(vm),
                )
            )

        if ops is None:
            s.redo(on_op)
        else:
            s.apply_group(ops, label, on_op)
        if self._extent(vm) != extent:
            ranges = None
        self._update_cache(ranges)
        return ranges

    def _cmd_undo(self) -> None:
        s = self._need_session()
        if s.undo():
            self._reset_cache()
            self._publish(None)

    def _cmd_redo(self) -> None:
        s = self._need_session()
        if s.can_redo:
            self._publish(self._apply(s, None, s.redo_label))

    def _cmd_open(self, path: str) -> None:
        self._set_session(Session.open(path, progress=self.progress.emit))

    def _cmd_scene(self, name: str) -> None:
        self._set_session(Session.scene(name))

    def _cmd_new(self, config: Mapping[str, Any], ops: tuple[Op, ...]) -> None:
        s = Session.new(config)
        self._set_session(s)
        if ops:
            changed = self._apply(s, list(ops), "layout")
            self._publish(changed)

    def _cmd_session(self, session: Session, announce: bool = True) -> None:
        self._set_session(session, announce)

    def _cmd_save_state(self, path: str) -> None:
        self._need_session().save_state(path)
        self.message.emit(f"State saved to {path}")

    def _cmd_save_recording(self, path: str) -> None:
        s = self._need_session()
        s.save_recording(path)
        self.message.emit(f"Recording of {len(s.ops)} ops saved to {path}")

    def _cmd_call(self, fn: Callable[[Session], Any]) -> None:
        """Run fn(session) on the engine thread (tests and benchmarks)."""
        fn(self._need_session())

    # --------------------------------------------------------------- helpers
    def _need_session(self) -> Session:
        if self.session is None:
            raise SessionError("no VM is loaded")
        return self.session

    def _set_session(self, session: Session, announce: bool = True) -> None:
        self.session = session
        self._session_no += 1
        self._reset_cache()
        if not announce:  # a replay seeking: no "Opened ..." line per seek
            self._publish(None)
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
        self._publish(None)

    def _extent(self, vm: VM) -> int:
        if not any(s.npages and s.as_id == 0 for s in vm.memslots.by_id.values()):
            return EMPTY_EXTENT
        return guest_extent(vm, EXTENT_ALIGN)

    def _reset_cache(self) -> None:
        s = self._need_session()
        self._cache = StepCache(s.vm, self._extent(s.vm))

    def _update_cache(self, ranges: list[tuple[int, int]] | None) -> None:
        s = self._need_session()
        if self._cache is None or ranges is None or self._cache.limit != self._extent(s.vm):
            self._reset_cache()
        else:
            self._cache.update(s.vm, ranges)

    def _publish(self, changed: list[tuple[int, int]] | None) -> None:
        s = self._need_session()
        vm = s.vm
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
        slots = tuple(
            SlotInfo(
                m.id,
                m.base_gfn,
                m.npages,
                m.flags,
                m.userspace_addr,
                m.gmem_file.fd if m.gmem_file is not None else None,
                m.gmem_pgoff,
            )
            for m in vm.memslots.all()
            if m.npages
        )
        self.snapshotReady.emit(
            Snapshot(
                self._version,
                vm.config,
                slots,
                tuple(sorted(vm.files)),
                self._extent(vm),
                _freeze(stats_dict(vm)),
                len(s.ops),
                s.can_undo,
                s.can_redo,
                s.undo_label,
                s.redo_label,
                s.source,
                ranges,
                self._session_no,
                LongRuns((self._cache.bounds, self._cache.codes)) if self._cache else None,
            )
        )
        for a in answers:
            if a is not None:
                self.rasterReady.emit(a)
        for feed in list(self.feeds):
            try:
                feed(s, self._version, self._session_no, ranges)
            except Exception as e:  # a pane's feed must not stop the engine
                self.failed.emit(f"feed: internal error: {e!r}\n{traceback.format_exc()}")

    def _raster(self, req: RasterRequest) -> None:
        a = self._raster_answer(req)
        if a is not None:
            self.rasterReady.emit(a)

    def _raster_answer(self, req: RasterRequest) -> RasterAnswer | None:
        if self._cache is None:
            return None
        if req.pieces:
            # Rows of the guest from every stretch in one pass; fold bands in their code.
            # Big stretches one by one (cost: their pixels plus runs), the many small
            # ones in one pass (cost: their pixels times log runs, no per-call overhead).
            r, cols, c = req.row_gfns, req.cols, self._cache
            small = [
                g + k * r for g, n, f in req.pieces if f < 0 and n * cols < 8192 for k in range(n)
            ]
            rows = raster_rows_at(c.bounds, c.codes, c.limit, np.asarray(small), r, cols)
            codes = np.empty((req.rows, cols), np.uint8)
            at = i = 0
            for g, n, fill in req.pieces:
                if fill >= 0:
                    codes[at : at + n] = fill
                elif n * cols < 8192:
                    codes[at : at + n] = rows[i : i + n]
                    i += n
                else:
                    codes[at : at + n] = c.raster_rows(g, r, n, cols)
                at += n
        else:
            codes = self._cache.raster_rows(req.start, req.row_gfns, req.rows, req.cols)
        codes.setflags(write=False)
        return RasterAnswer(req, self._version, codes)


class Engine(QObject):
    """The GUI's handle on the engine thread.  Create, `start()`, and `stop()` when done."""

    opApplied = Signal(object)
    snapshotReady = Signal(object)
    rasterReady = Signal(object)
    inspectReady = Signal(object)
    busyChanged = Signal(bool, str)  # shown > BUSY_DELAY_MS after a command starts
    progress = Signal(int, int)
    failed = Signal(str)
    message = Signal(str)

    BUSY_DELAY_MS = 100

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("imemviz-engine")
        self.worker = EngineWorker()
        self.worker.moveToThread(self.thread)
        self.snapshot: Snapshot | None = None
        self.pending = 0  # commands posted and not finished
        self._busy = False
        w = self.worker
        w.opApplied.connect(self.opApplied)
        w.snapshotReady.connect(self._on_snapshot)
        w.rasterReady.connect(self.rasterReady)
        w.inspectReady.connect(self.inspectReady)
        w.progress.connect(self.progress)
        w.failed.connect(self.failed)
        w.message.connect(self.message)
        w.commandStarted.connect(self._on_started)
        w.commandFinished.connect(self._on_finished)
        from PySide6.QtCore import QTimer

        self._busy_timer = QTimer(self)
        self._busy_timer.setSingleShot(True)
        self._busy_timer.setInterval(self.BUSY_DELAY_MS)
        self._busy_timer.timeout.connect(self._show_busy)
        self._label = ""

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_ms: int = 30_000) -> bool:
        """Stop the thread after the command it is running (queued ones are dropped);
        True when it stopped."""
        if not self.thread.isRunning():
            return True
        self.worker.request_stop()
        self.thread.quit()
        return bool(self.thread.wait(timeout_ms))

    @property
    def idle(self) -> bool:
        return self.pending == 0

    # ------------------------------------------------------------- commands
    def _post(self, *cmd: Any) -> None:
        self.pending += 1
        self.worker.post(*cmd)

    def submit(self, plan: Plan | Planner, label: str = "") -> None:
        """Apply a plan (or a function of the VM returning one) as one undo step."""
        self._post("plan", label or getattr(plan, "label", "") or "action", plan)

    def apply_ops(self, ops: list[Op] | tuple[Op, ...], label: str = "") -> None:
        self.submit(Plan(label or (ops[0].NAME if ops else ""), tuple(ops)))

    def undo(self) -> None:
        self._post("undo")

    def redo(self) -> None:
        self._post("redo")

    def open(self, path: str) -> None:
        self._post("open", path)

    def load_scene(self, name: str = "default") -> None:
        self._post("scene", name)

    def new_vm(self, config: Mapping[str, Any], ops: tuple[Op, ...] = ()) -> None:
        self._post("new", dict(config), tuple(ops))

    def set_session(self, session: Session, announce: bool = True) -> None:
        self._post("session", session, announce)

    def save_state(self, path: str) -> None:
        self._post("save_state", path)

    def save_recording(self, path: str) -> None:
        self._post("save_recording", path)

    def call(self, fn: Callable[[Session], Any]) -> None:
        self._post("call", fn)

    # ------------------------------------------------------------- requests
    def request_raster(self, req: RasterRequest) -> None:
        self.worker.post_raster(req)

    def request_inspect(self, gfn: int, key: str = "inspect") -> None:
        self.worker.post_inspect(key, gfn)

    # ------------------------------------------------------------- bookkeeping
    def _on_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.snapshotReady.emit(snap)

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
