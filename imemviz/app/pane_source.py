"""What the panes draw from: an engine handle's requests and its last snapshot.

The GPA map and the inspector talk to the simulator's `Engine` (worker.py) and
to the observed timeline's `ObservedEngine` (observed_engine.py) alike: they
post raster and inspect requests to the handle's worker thread, listen for the
answers, and read the last snapshot it published. `PaneSource` is that face,
written once; each handle adds its own thread, commands and bookkeeping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import QObject, Signal

if TYPE_CHECKING:
    from imemviz.app.records import RasterRequest, Snapshot


class RequestWorker(Protocol):
    """The thread-safe posts of a handle's worker (answered on its own thread)."""

    def post_raster(self, req: RasterRequest) -> None: ...

    def post_inspect(self, key: str, gfn: int) -> None: ...


class PaneSource(QObject):
    """A GUI-thread handle the panes can draw from; the subclass sets `worker`."""

    snapshotReady = Signal(object)  # Snapshot
    rasterReady = Signal(object)  # RasterAnswer
    inspectReady = Signal(object)  # InspectAnswer

    worker: RequestWorker

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.snapshot: Snapshot | None = None

    def request_raster(self, req: RasterRequest) -> None:
        self.worker.post_raster(req)

    def request_inspect(self, gfn: int, key: str = "inspect") -> None:
        self.worker.post_inspect(key, gfn)

    def _on_snapshot(self, snap: Snapshot) -> None:
        """The worker published `snap`: keep it, then tell the panes."""
        self.snapshot = snap
        self.snapshotReady.emit(snap)
