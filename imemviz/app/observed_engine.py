"""The observed timeline's engine: loads the file and draws any point of it off the GUI thread.

`ObservedEngine` has the face the GPA map pane expects of the simulator's
engine (`PaneSource`, pane_source.py: `snapshot`, `request_raster`,
`request_inspect` and the `snapshotReady` / `rasterReady` / `inspectReady`
signals), so the same map draws what a trace observed.  Its worker thread loads the timeline
(`ObservedTimeline.load`, with progress and cancel), and for the point the
scrubber asks for builds the step function of that point's state once
(instance masks: no replay) and answers raster and inspect requests from it.
Requests are coalesced: the latest point and the latest raster per key win.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from imemviz.app.pane_source import PaneSource
from imemviz.app.panes.map_fold import LongRuns
from imemviz.app.records import InspectAnswer, RasterAnswer, RasterRequest, SlotInfo, Snapshot
from imemviz.io.trace import observed_raster as OR
from imemviz.io.trace import observed_stats as OS
from imemviz.io.trace.timeline import ObservedTimeline, TimelineError
from imemviz.model.config import VMConfig


class _Worker(QObject):
    loaded = Signal(object)  # ObservedTimeline
    progress = Signal(int, int)
    failed = Signal(str)
    snapshotReady = Signal(object)
    rasterReady = Signal(object)
    inspectReady = Signal(object)
    pointReady = Signal(int, object)  # index, counters
    _wake = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._load: str | None = None
        self._point: int | None = None
        self._rasters: dict[str, RasterRequest] = {}
        self._views: dict[str, RasterRequest] = {}  # standing: redrawn at every new point
        self._inspects: dict[str, int] = {}
        self.cancel = False
        self.tl: ObservedTimeline | None = None
        self._state: dict | None = None
        self._state_ready = False
        self._index = -2
        self._version = 0
        self._wake.connect(self._drain)

    # thread-safe posts
    def post_load(self, path: str) -> None:
        with self._lock:
            self._load = path
        self._wake.emit()

    def post_point(self, i: int) -> None:
        with self._lock:
            self._point = i
        self._wake.emit()

    def post_raster(self, req: RasterRequest) -> None:
        with self._lock:
            self._rasters[req.key] = req
            self._views[req.key] = req
        self._wake.emit()

    def post_inspect(self, key: str, gfn: int) -> None:
        with self._lock:
            self._inspects[key] = gfn
        self._wake.emit()

    @Slot()
    def _drain(self) -> None:
        try:
            while True:
                with self._lock:
                    load, self._load = self._load, None
                    point, self._point = self._point, None
                    rasters, self._rasters = self._rasters, {}
                    inspects, self._inspects = self._inspects, {}
                if load is None and point is None and not rasters and not inspects:
                    return
                if load is not None:
                    self._do_load(load)
                if point is not None and self.tl is not None:
                    self._go(point)
                if self._state_ready:
                    for req in rasters.values():
                        self._raster(req)
                    for key, gfn in inspects.items():
                        self._inspect(key, gfn)
        except Exception as e:  # a bug must not stop the thread
            self.failed.emit(f"observed timeline: internal error: {e!r}\n{traceback.format_exc()}")

    def _do_load(self, path: str) -> None:
        self.cancel = False
        try:
            tl = ObservedTimeline.load(path, self.progress.emit, lambda: self.cancel)
        except TimelineError as e:
            self.failed.emit(str(e))
            return
        if self.tl is not None:
            self.tl.close()
        self.tl = tl
        self._index = -2
        OS.overview(tl)  # here, not on the GUI thread that shows it
        self.loaded.emit(tl)
        self._go(len(tl) - 1)

    def _go(self, i: int) -> None:
        tl = self.tl
        assert tl is not None
        i = max(-1, min(i, len(tl) - 1))
        if i == self._index and self._state_ready:
            return
        self._index = i
        st = tl.state_at(i)
        attr_default = tl.settings.get("attr_default")
        slots_known = bool(len(tl.slots.get("base_gfn", ())))
        extent = tl.extent
        self._state, self._attr_default, self._slots_known = st, attr_default, slots_known
        self._extent = extent
        self._state_ready = True
        self._version += 1
        sl = st["slots"]
        slots = tuple(
            SlotInfo(
                int(sl["slot"][k]) | (int(sl["as_id"][k]) << 16),
                int(sl["base_gfn"][k]),
                int(sl["npages"][k]),
                int(sl["flags"][k]),
                0,
                None if sl["gmem_fd"][k] < 0 else int(sl["gmem_fd"][k]),
                0,
            )
            for k in range(len(sl["base_gfn"]))
        )
        vm_type = tl.settings.get("vm_type", "default")
        snap = Snapshot(
            self._version,
            VMConfig(vm_type),
            slots,
            (),
            extent,
            {},
            i + 1,
            False,
            False,
            "",
            "",
            tl.path,
            None,
            1,
            runs=LongRuns(OR.fold_runs(st, extent, attr_default, slots_known), OR.FOLDABLE),
        )
        self.snapshotReady.emit(snap)
        with self._lock:
            views = list(self._views.values())
            for v in views:
                self._rasters.pop(v.key, None)
        for v in views:
            self._raster(v)
        self.pointReady.emit(i, _counters(tl, st, i))

    def _raster(self, req: RasterRequest) -> None:
        assert self._state is not None
        if req.pieces:  # a folded map: rows from several places, fold bands in their code
            codes = OR.raster_pieces(
                self._state,
                req.pieces,
                req.row_gfns,
                req.cols,
                self._extent,
                self._attr_default,
                self._slots_known,
            )
        else:
            codes = OR.raster_rows(
                self._state,
                req.start,
                req.row_gfns,
                req.rows,
                req.cols,
                self._extent,
                self._attr_default,
                self._slots_known,
            )
        codes.setflags(write=False)
        self.rasterReady.emit(RasterAnswer(req, self._version, codes))

    def _inspect(self, key: str, gfn: int) -> None:
        assert self._state is not None
        info = OR.gfn_info(self._state, gfn, self._attr_default, self._slots_known)
        self.inspectReady.emit(InspectAnswer(key, gfn, self._version, info))


def _counters(tl: ObservedTimeline, st: dict, i: int) -> dict[str, Any]:
    lv = st["leaves"]
    out: dict[str, Any] = {"event": i + 1, "events": len(tl)}
    for level, name in ((1, "4K"), (2, "2M"), (3, "1G")):
        m = lv["level"] == level
        out[f"private {name}"] = int(((lv["private"] == 1) & m).sum())
        out[f"shared {name}"] = int(((lv["private"] == 0) & m).sum())
        out[f"unknown {name}"] = int(((lv["private"] < 0) & m).sum())
    at = st["attrs"]
    priv = at["private"] == 1
    out["private gfns"] = int((at["end"][priv] - at["start"][priv]).sum())
    out["memslots"] = len(st["slots"]["base_gfn"])
    from imemviz.io.trace.events import KIND_CODE

    upto = tl.kind[: i + 1]
    out["faults so far"] = int((upto == KIND_CODE["fault"]).sum())
    out["conversions so far"] = int(
        np.isin(upto, [KIND_CODE["attributes"], KIND_CODE["convert"]]).sum()
    )
    out["disagreements so far"] = sum(1 for m in tl.marks if m["i"] <= i)
    return out


class ObservedEngine(PaneSource):
    """The GUI's handle; create, `start()`, `load(path)`, `go(index)`, and `stop()`."""

    loaded = Signal(object)
    progress = Signal(int, int)
    failed = Signal(str)
    pointReady = Signal(int, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine_thread = QThread()
        self.engine_thread.setObjectName("imemviz-observed")
        self.worker: _Worker = _Worker()
        self.worker.moveToThread(self.engine_thread)
        self.timeline: ObservedTimeline | None = None
        w = self.worker
        w.snapshotReady.connect(self._on_snapshot)
        w.rasterReady.connect(self.rasterReady)
        w.inspectReady.connect(self.inspectReady)
        w.loaded.connect(self._on_loaded)
        w.progress.connect(self.progress)
        w.failed.connect(self.failed)
        w.pointReady.connect(self.pointReady)

    def start(self) -> None:
        self.engine_thread.start()

    def stop(self, timeout_ms: int = 30_000) -> bool:
        self.worker.cancel = True
        if not self.engine_thread.isRunning():
            return True
        self.engine_thread.quit()
        ok = bool(self.engine_thread.wait(timeout_ms))
        if self.worker.tl is not None:
            self.worker.tl.close()
        return ok

    def load(self, path: str) -> None:
        self.worker.post_load(path)

    def cancel_load(self) -> None:
        self.worker.cancel = True

    def go(self, index: int) -> None:
        self.worker.post_point(index)

    def _on_loaded(self, tl: ObservedTimeline) -> None:
        self.timeline = tl
        self.loaded.emit(tl)
