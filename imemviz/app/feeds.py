"""Data the part-2 panes need, built on the engine thread after every publish.

`PaneFeed` adds one function to `EngineWorker.feeds`; it runs on the engine
thread right after the snapshot and rasters are out and emits immutable numpy
bundles through this object's signals (queued to the GUI thread, because the
object lives there; during a publish the worker holds them until every feed has
run and sends them one per GUI turn: `EngineWorker.deliver`):

- `leavesReady(LeafArrays)`: every leaf of both roots, plus the S-EPT pages;
- `hostReady(HostSpaces)`: the host pfn space and each open guest_memfd's offsets;
- `logReset((events, index_events(events), op_base))`: the VM's bounded event log, when
  the history was rewritten (an open, a new VM, an undo, a seek); events of later ops come
  with each `OpRecord`.  Events carry the VM's op numbers; `op_base` turns them into the
  session's (op k of the session is the VM's op `op_base + k`), the one numbering the
  log, the event log, the step-through and the counters share;
- `statsReset(CountersHistory)`: the counters after every op of the session's history
  (kept per op in `Session.info`), so an undo or a seek truncates the curves instead of
  restarting them.

A step view (`StepView`) sends the leaves of the state at that step instead
(`LeafArrays.step` names it), then those of the present when it ends.
Nothing here holds a reference to engine objects after it returns.
"""

from __future__ import annotations

import weakref
from itertools import chain
from typing import Any

import attrs
import numpy as np
from PySide6.QtCore import QObject, Signal

from imemviz.app.messages import RefreshFeeds
from imemviz.app.worker import Engine
from imemviz.model.host_raster import Space, file_space, pfn_space
from imemviz.model.op_stats import op_stats
from imemviz.model.protocols import index_events


@attrs.frozen(eq=False)
class LeafArrays:
    """One row per leaf, sorted by (gfn, root); `root` 0 = private (S-EPT on a TD), 1 = shared."""

    version: int
    root: np.ndarray  # uint8
    gfn: np.ndarray  # int64
    level: np.ndarray  # uint8 (1 = 4K, 2 = 2M, 3 = 1G)
    pfn: np.ndarray  # int64
    state: np.ndarray  # uint8 (imemviz.model.mmu states)
    slot: np.ndarray  # int32 memslot id, -1 none
    tables: np.ndarray  # (n, 3) int64: S-EPT pages (level of its entries, first gfn, pfn)
    is_tdx: bool
    pfn_order: np.ndarray | None = None  # argsort of pfn, made on the engine thread
    # Stable orders by the other sortable columns (entries model column -> order), also
    # made on the engine thread: after every op the table re-sorts without GUI cost.
    orders: dict[int, np.ndarray] = attrs.field(factory=dict)
    step: str = ""  # the state at a protocol step this shows ("": the present)

    def __len__(self) -> int:
        return len(self.gfn)


@attrs.frozen(eq=False)
class HostSpaces:
    version: int
    pfn: Space
    files: dict[int, Space]


@attrs.frozen(eq=False)
class CountersHistory:
    """The counters after every op of the session (x = session op index; -1 = the start)."""

    ops: np.ndarray  # int64 x values
    stats: np.ndarray  # (n, len(STAT_NAMES)) int64
    exits: np.ndarray  # (n, 3) int64: memory-fault exits, MMIO exits, errno failures so far


def counters_history(session: Any) -> CountersHistory:
    """From `Session.info` (the worker's OpInfo per op) and the results: one row per op,
    after the start's own row; the current state closes the curve when the last ops have
    no info (a session built before the app saw it).  Vectorised: 20,000 ops in a few ms."""
    info = session.info
    n = len(session.ops)
    start = np.asarray([op_stats(session.start_vm)], np.int64)
    if n and all(i is not None for i in info):
        kinds = np.fromiter((i.exit for i in info), np.int8, n)
        failed = np.fromiter((i.failed for i in info), bool, n)
        ex = np.cumsum(np.stack((kinds == 1, kinds == 2, failed), axis=1), axis=0)
        k = len(info[0].stats)
        stats = np.fromiter(chain.from_iterable(i.stats for i in info), np.int64, n * k)
        stats = stats.reshape(n, k)
        return CountersHistory(
            np.arange(-1, n, dtype=np.int64),
            np.vstack((start, stats)),
            np.vstack((np.zeros((1, 3), np.int64), ex.astype(np.int64))),
        )
    xs = [-1]
    rows = [tuple(start[0])]
    exits = [0, 0, 0]
    ex_rows: list[tuple[int, ...]] = [(0, 0, 0)]  # per point: faults, MMIO exits, errors
    results = session.results
    for i, inf in enumerate(info):
        r = results[i]
        reason = ((r.ret or {}).get("exit") or {}).get("reason")
        if reason == "KVM_EXIT_MEMORY_FAULT":
            exits[0] += 1
        elif reason == "KVM_EXIT_MMIO":
            exits[1] += 1
        if not r.ok:
            exits[2] += 1
        if inf is None:
            continue
        xs.append(i)
        rows.append(inf.stats)
        ex_rows.append(tuple(exits))
    if n and xs[-1] != n - 1:
        xs.append(n - 1)
        rows.append(op_stats(session.vm))
        ex_rows.append(tuple(exits))
    return CountersHistory(
        np.asarray(xs, np.int64), np.asarray(rows, np.int64), np.asarray(ex_rows, np.int64)
    )


def leaf_arrays(vm: Any, version: int, slots: Any, step: str = "") -> LeafArrays:
    """Flat numpy arrays of every leaf (`LeafTable.to_arrays()`, no per-row objects)."""
    parts = []
    for root_no, table in ((0, vm.private), (1, vm.shared)):
        c = table.to_arrays()
        parts.append((np.full(len(c), root_no, np.uint8), c.gfn, c.level, c.pfn, c.state))
    root, gfn, level, pfn, state = (np.concatenate(c) for c in zip(*parts, strict=True))
    order = np.lexsort((root, gfn))  # by gfn, then root (stable: then level)
    root, gfn, pfn = root[order], gfn[order], pfn[order]
    level, state = level[order].astype(np.uint8), state[order].astype(np.uint8)
    bases = np.asarray([s.base_gfn for s in slots], np.int64)
    ends = np.asarray([s.end_gfn for s in slots], np.int64)
    ids = np.asarray([s.id for s in slots], np.int32)
    so = np.argsort(bases)
    bases, ends, ids = bases[so], ends[so], ids[so]
    if len(bases):
        i = np.clip(np.searchsorted(bases, gfn, side="right") - 1, 0, None)
        slot = np.where((bases[i] <= gfn) & (gfn < ends[i]), ids[i], -1).astype(np.int32)
    else:
        slot = np.full(len(gfn), -1, np.int32)
    tables = np.asarray(
        [(lv, g << (9 * lv), pfn) for (lv, g), pfn in vm.private.tables.items()], np.int64
    ).reshape(-1, 3)
    # The one costly sort key (int64) is sorted here, off the GUI thread.
    order = np.argsort(pfn, kind="stable")
    orders = {
        0: np.argsort(root, kind="stable"),
        3: np.argsort(level, kind="stable"),
        5: np.argsort(state, kind="stable"),
        6: np.argsort(slot.astype(np.int16), kind="stable"),
    }
    return LeafArrays(
        version, root, gfn, level, pfn, state, slot, tables, bool(vm.is_tdx), order, orders, step
    )


class PaneFeed(QObject):
    leavesReady = Signal(object)
    hostReady = Signal(object)
    logReset = Signal(object)
    statsReset = Signal(object)  # CountersHistory

    def __init__(self, engine: Engine, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        # Only what a visible pane shows is built (a million leaves cost ~0.3 s per
        # command); `always` builds everything (tests, screenshots).
        self.want_leaves = False
        self.want_host = False
        self.always = False
        self._stale = {"leaves": True, "host": True}
        self._vm: weakref.ref | None = None  # the VM whose log the panes have
        self._stepping = False
        self._detach = engine.worker.attach_feeds(self._feed, self._step_feed)
        self.destroyed.connect(self._detach)

    def detach(self) -> None:
        self._detach()

    def _send(self, signal: Any, payload: Any) -> None:
        """Engine thread: through the worker, which paces a publish's pieces (worker.deliver)."""
        self.engine.worker.deliver(signal, payload)

    # Runs on the engine thread.
    def _feed(
        self, session: Any, version: int, session_no: int, changed: Any, reset: bool = False
    ) -> None:
        vm = session.vm
        if reset or self._vm is None or self._vm() is not vm:
            self._vm = weakref.ref(vm)
            events = list(vm.events.log)
            # Indexed here: 200,000 events would take the GUI thread ~50 ms.
            self._send(self.logReset, (events, index_events(events), session.op_base))
            self._send(self.statsReset, counters_history(session))
        self._stale = {"leaves": True, "host": True}
        self._stepping = False
        self._build(vm, version)

    def _step_feed(self, vm: Any, version: int, label: str) -> None:
        """The state a step view shows ("" label: the present again)."""
        self._stepping = bool(label)
        if vm is not None and (self.want_leaves or self.always):
            slots = [m for m in vm.memslots.all() if m.npages and m.as_id == 0]
            self._send(self.leavesReady, leaf_arrays(vm, version, slots, label))
            self._stale["leaves"] = False
        else:
            # The entries are hidden (F8 brings the event log forward): what they hold is
            # not this state, so showing them again must fetch it (RefreshFeeds).
            self._stale["leaves"] = True

    def refresh(self, vm: Any, version: int, leaves: bool, host: bool) -> None:
        """RefreshFeeds: a pane became visible; build what it shows if it is stale."""
        if (leaves and self._stale["leaves"]) or (host and self._stale["host"]):
            self._build(vm, version)

    def _build(self, vm: Any, version: int) -> None:
        if self.want_leaves or self.always:
            slots = [m for m in vm.memslots.all() if m.npages and m.as_id == 0]
            self._send(self.leavesReady, leaf_arrays(vm, version, slots))
            self._stale["leaves"] = False
        if self.want_host or self.always:
            files = {fd: file_space(vm, fd) for fd in sorted(vm.files)}
            self._send(self.hostReady, HostSpaces(version, pfn_space(vm), files))
            self._stale["host"] = False

    def set_wanted(self, leaves: bool | None = None, host: bool | None = None) -> None:
        """A pane became visible or hidden; a visible one with stale data gets it now."""
        if leaves is not None:
            self.want_leaves = leaves
        if host is not None:
            self.want_host = host
        stale = (leaves and self._stale["leaves"]) or (host and self._stale["host"])
        if stale and self.engine.snapshot is not None:
            self.engine.post(RefreshFeeds(bool(leaves), bool(host)))
