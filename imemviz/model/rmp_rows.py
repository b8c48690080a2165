"""The RMP pane's rows: the host pfn ranges behind an SNP guest, one row per run.

Rows are the RMP's assigned runs (`RmpTable.runs()`: consecutive pfns assigned to
consecutive gfns with the same flags) plus the guest_memfd folio pfns the RMP
leaves hypervisor-owned (a page the guest converted to shared, a folio not yet
prepared), so a gfn range selected on the map always finds the pfns behind it.
The rest of host memory is hypervisor-owned and not listed (one line says so).

Each row carries the gfn its first pfn is assigned to (the RMP's gpa) or, for a
hypervisor-owned folio range, the gfn its guest_memfd offset is bound at (-1 when
unbound), so the pane can map a gfn range to rows and a row back to gfns.

Qt-free: the app's feed builds it on the engine thread, tests read it headless.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from imemviz.model.rmp import IMMUTABLE, SIZE_2M, VALIDATED, VMSA

# Row states, in the order of AMD's page states (APM vol. 2, "RMP states").
HYPERVISOR, FIRMWARE, GUEST_INVALID, GUEST_VALID = 0, 1, 2, 3
STATE_NAMES = {
    HYPERVISOR: "hypervisor",
    FIRMWARE: "firmware",
    GUEST_INVALID: "guest-invalid",
    GUEST_VALID: "guest-valid",
}
MAX_ROWS = 1_000_000  # a guest with more runs lists the first ones (the count says so)


@attrs.frozen(eq=False)
class RmpRows:
    """One row per pfn run, sorted by pfn."""

    pfn: np.ndarray  # int64 first pfn
    count: np.ndarray  # int64 pfns in the run
    gfn: np.ndarray  # int64 gfn of the first pfn, -1 none
    state: np.ndarray  # uint8 HYPERVISOR .. GUEST_VALID
    size_2m: np.ndarray  # bool: 2M entries (hypervisor rows: False)
    immutable: np.ndarray  # bool
    vmsa: np.ndarray  # bool
    asid: int = 0
    version: int = 0
    step: str = ""  # the protocol step these rows show ("": the present)
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.pfn)

    def rows_of_gfns(self, start: int, end: int) -> np.ndarray:
        """Rows whose gfns meet [start, end)."""
        g = self.gfn
        return np.flatnonzero((g >= 0) & (g < end) & (g + self.count > start))

    def rows_of_pfns(self, start: int, end: int) -> np.ndarray:
        """Rows whose pfns meet [start, end)."""
        return np.flatnonzero((self.pfn < end) & (self.pfn + self.count > start))


def empty(version: int = 0, step: str = "") -> RmpRows:
    z = np.zeros(0, np.int64)
    b = np.zeros(0, bool)
    return RmpRows(z, z, z, np.zeros(0, np.uint8), b, b, b, 0, version, step)


def state_of(flags: int) -> int:
    """The AMD page state of an assigned run's flags (model/snp.py `state_name`)."""
    if flags & (VMSA | IMMUTABLE):
        return FIRMWARE
    return GUEST_VALID if flags & VALIDATED else GUEST_INVALID


def _folio_spans(vm: Any) -> list[tuple[int, int, int]]:
    """(pfn, end, gfn of pfn or -1) of every guest_memfd folio run, split at bindings."""
    out: list[tuple[int, int, int]] = []
    slots = vm.memslots.by_id
    for file in vm.files.values():
        inode = getattr(file, "inode", None)
        if inode is None:
            continue
        for seg in inode.iter_segments():
            n = seg.count << seg.order
            a, b = seg.index, seg.index + n
            cut = a
            for bd in file.bindings_in(a, b):
                slot = slots.get(bd.slot)
                lo, hi = max(a, bd.pgoff), min(b, bd.pgoff + bd.npages)
                if slot is None or lo >= hi:
                    continue
                if lo > cut:
                    out.append((seg.pfn + cut - a, seg.pfn + lo - a, -1))
                out.append((seg.pfn + lo - a, seg.pfn + hi - a, slot.base_gfn + lo - bd.pgoff))
                cut = hi
            if cut < b:
                out.append((seg.pfn + cut - a, seg.pfn + b - a, -1))
            if len(out) > MAX_ROWS:
                return out
    return out


def rmp_rows(vm: Any, version: int = 0, step: str = "") -> RmpRows:
    """The rows of an SNP VM's RMP (empty for any other VM)."""
    snp = getattr(vm, "snp", None)
    if snp is None:
        return empty(version, step)
    from imemviz.model.snp import SNP_ASID

    rows: list[tuple[int, int, int, int, int]] = []  # pfn, count, gfn, state, flags
    for r in snp.rmp.runs():
        rows.append((r.pfn, r.count, r.gfn, state_of(r.flags), r.flags))
        if len(rows) >= MAX_ROWS:
            break
    for a, b, gfn in _folio_spans(vm):
        if len(rows) >= MAX_ROWS:
            break
        for lo, hi, v in snp.rmp.map.iter_range(a, b):
            if not v:  # hypervisor-owned folio pages (assigned ones are rows already)
                rows.append((lo, hi - lo, -1 if gfn < 0 else gfn + lo - a, HYPERVISOR, 0))
    truncated = len(rows) >= MAX_ROWS
    rows = sorted(rows[:MAX_ROWS])
    if not rows:
        return attrs.evolve(empty(version, step), asid=SNP_ASID)
    a = np.asarray(rows, np.int64)
    flags = a[:, 4]
    return RmpRows(
        a[:, 0].copy(),
        a[:, 1].copy(),
        a[:, 2].copy(),
        a[:, 3].astype(np.uint8),
        (flags & SIZE_2M) != 0,
        (flags & IMMUTABLE) != 0,
        (flags & VMSA) != 0,
        SNP_ASID,
        version,
        step,
        truncated,
    )
