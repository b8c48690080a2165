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

from imemviz.model.rmp import FLAG_BITS, IMMUTABLE, PFN_LIMIT, SIZE_2M, VALIDATED, VMSA

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
    """The rows of an SNP VM's RMP (empty for any other VM).  Vectorised over the RMP's
    runs and the folio runs: 100,000 runs cost a few tens of milliseconds."""
    snp = getattr(vm, "snp", None)
    if snp is None:
        return empty(version, step)
    from imemviz.model.snp import SNP_ASID

    starts_l, vals_l = snp.rmp.map.runs_in(0, PFN_LIMIT)
    starts = np.asarray(starts_l, np.int64)
    vals = np.asarray(vals_l, np.int64)
    ends = np.append(starts[1:], np.int64(PFN_LIMIT))
    m = vals != 0
    sa, sb, sv = starts[m], ends[m], vals[m]  # the assigned runs
    flags = sv & FLAG_BITS
    state = np.where(
        (flags & (VMSA | IMMUTABLE)) != 0,
        FIRMWARE,
        np.where((flags & VALIDATED) != 0, GUEST_VALID, GUEST_INVALID),
    ).astype(np.uint8)
    pfn, count, gfn = sa, sb - sa, sa + (sv >> 8)
    hyp = _hypervisor_pieces(_folio_spans(vm), sa, sb)
    if len(hyp[0]):
        hp, hc, hg = hyp
        pfn = np.concatenate((pfn, hp))
        count = np.concatenate((count, hc))
        gfn = np.concatenate((gfn, hg))
        state = np.concatenate((state, np.full(len(hp), HYPERVISOR, np.uint8)))
        flags = np.concatenate((flags, np.zeros(len(hp), np.int64)))
    order = np.argsort(pfn, kind="stable")
    truncated = len(order) > MAX_ROWS
    order = order[:MAX_ROWS]
    flags = flags[order]
    return RmpRows(
        pfn[order],
        count[order],
        gfn[order],
        state[order],
        (flags & SIZE_2M) != 0,
        (flags & IMMUTABLE) != 0,
        (flags & VMSA) != 0,
        SNP_ASID,
        version,
        step,
        truncated,
    )


def _hypervisor_pieces(
    spans: list[tuple[int, int, int]], sa: np.ndarray, sb: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The folio spans minus the assigned runs [sa, sb): (pfn, count, gfn) of each piece.
    Elementary segments between every boundary, kept where a span covers them and no
    assigned run does."""
    z = np.zeros(0, np.int64)
    if not spans:
        return z, z, z
    a = np.asarray(spans, np.int64).reshape(-1, 3)
    a = a[np.argsort(a[:, 0], kind="stable")]
    fa, fb, fg = a[:, 0], a[:, 1], a[:, 2]
    pts = np.unique(np.concatenate((fa, fb, sa[sa < fb[-1]], sb[sb > fa[0]])))
    lo, hi = pts[:-1], pts[1:]
    i = np.searchsorted(fa, lo, side="right") - 1
    ok = i >= 0
    i = np.clip(i, 0, None)
    ok &= lo < fb[i]
    if len(sa):
        j = np.searchsorted(sa, lo, side="right") - 1
        ok &= ~((j >= 0) & (lo < sb[np.clip(j, 0, None)]))
    lo, hi, i = lo[ok], hi[ok], i[ok]
    g = np.where(fg[i] >= 0, fg[i] + (lo - fa[i]), -1)
    return lo, hi - lo, g
