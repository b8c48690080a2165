"""The immutable records the engine thread publishes to the GUI, and their requests.

`OpRecord` per op applied, `Snapshot` after every command (with the memslots as
`SlotInfo`), `RasterRequest` / `RasterAnswer` for the map's standing views and
`InspectAnswer` for a gfn's chain.  Qt-free (no Qt import): the worker
(`worker.py`) builds them on its thread, the panes read them on theirs, and tests
build them without a GUI.  The typed commands and the other published records
(`ActionRecord`, `TimelineInfo`, `StepShown`) are in `messages.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from imemviz.model.changes import NONE, Changes
from imemviz.model.config import VMConfig
from imemviz.model.ops import Op

if TYPE_CHECKING:
    from imemviz.model.vm import VM


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
    changes: Changes = NONE  # what it changed, in every pane's space (imemviz.model.changes)

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
    op_base: int = 0  # the VM's op number of session op 0 (events carry the VM's numbers)
    position: int = 0  # the timeline's position: groups applied (a replay: its ops)
    length: int = 0  # groups in the timeline, applied and undone
    replay: bool = False  # the timeline is a recording being replayed
    history_reset: bool = False  # the history was rewritten (undo, seek): panes rebuild
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
    step: str = ""  # drawn from the state at a protocol step (StepView), not the present


@attrs.frozen
class InspectAnswer:
    key: str
    gfn: int
    version: int
    info: Mapping[str, Any]


def freeze(d: Any) -> Any:
    """A JSON-like value made immutable: dicts as read-only mappings, lists as tuples."""
    if isinstance(d, dict):
        return MappingProxyType({k: freeze(v) for k, v in d.items()})
    if isinstance(d, list):
        return tuple(freeze(v) for v in d)
    return d


def slot_infos(vm: VM) -> tuple[SlotInfo, ...]:
    """The VM's memslots with pages, as the snapshot carries them."""
    return tuple(
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
