"""The SEV-SNP Reverse Map Table (RMP): one entry per host pfn, stored as runs.

Hardware keeps one 16-byte entry per 4K page of system memory
(arch/x86/virt/svm/sev.c: `struct rmpentry`, `struct rmpentry_raw`): assigned,
page size (4K, or 2M for an entry authoritative over its aligned 512 pfns),
immutable, ASID, the guest physical address the page is assigned to, and (in
the raw, non-architectural Zen3/4 layout) vmsa and validated.  An unassigned
entry is all zeros: the page belongs to the hypervisor.

The model stores the table as an `ExtentMap` over pfns whose value packs the
flags in the low byte and ``gfn - pfn`` above them, so the default 0 is
"hypervisor-owned" and a run of consecutive pfns assigned to consecutive gfns
with the same flags is one run, however long.  Host memory of a petabyte costs
one run until pages are assigned; a 2M entry is 512 pfns of one run with the
SIZE_2M flag (every pfn inside it reads the authoritative 2M entry, as
`__snp_lookup_rmpentry()` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from imemviz.model.extents import ExtentMap
from imemviz.model.units import LEVEL_2M, LEVEL_4K

ASSIGNED = 1
SIZE_2M = 2
VALIDATED = 4
IMMUTABLE = 8
VMSA = 16
FLAG_BITS = 0xFF
PMD_PAGES = 512  # PTRS_PER_PMD
PFN_LIMIT = 1 << 52


class RmpEntry(NamedTuple):
    """The authoritative entry for one pfn (None is returned for an unassigned one)."""

    pfn: int
    gfn: int  # the guest page the pfn is assigned to
    level: int  # LEVEL_4K or LEVEL_2M
    validated: bool
    immutable: bool
    vmsa: bool

    @property
    def page_size(self) -> str:
        return "2M" if self.level == LEVEL_2M else "4K"


class RmpRun(NamedTuple):
    """`count` consecutive pfns from `pfn`, assigned to gfns from `gfn`, with one flag set."""

    pfn: int
    count: int  # type: ignore[assignment]  # shadows tuple.count (see Folio)
    gfn: int
    flags: int


def pack(gfn: int, pfn: int, flags: int) -> int:
    return ((gfn - pfn) << 8) | flags | ASSIGNED


def flags_of(value: int) -> int:
    return value & FLAG_BITS


def gfn_of(value: int, pfn: int) -> int:
    return pfn + (value >> 8)


class RmpTable:
    """The RMP of the whole host; only assigned pfns take room."""

    __slots__ = ("map",)

    def __init__(self) -> None:
        self.map = ExtentMap(0, PFN_LIMIT)

    def __len__(self) -> int:
        """Runs stored (assigned or not): the table's size, not host memory's."""
        return len(self.map)

    # -- reading -----------------------------------------------------------------------
    def lookup(self, pfn: int) -> RmpEntry | None:
        """snp_lookup_rmpentry(): the authoritative entry, or None when not assigned."""
        v = self.map.get(pfn)
        if not v:
            return None
        f = v & FLAG_BITS
        return RmpEntry(
            pfn,
            gfn_of(v, pfn),
            LEVEL_2M if f & SIZE_2M else LEVEL_4K,
            bool(f & VALIDATED),
            bool(f & IMMUTABLE),
            bool(f & VMSA),
        )

    def all_shared(self, start: int, end: int) -> bool:
        """is_pfn_range_shared(): no pfn of [start, end) is assigned."""
        return self.map.all_equal(start, end, 0)

    def runs(self, start: int = 0, end: int = PFN_LIMIT) -> Iterator[RmpRun]:
        """The assigned runs meeting [start, end), clipped, in pfn order."""
        for a, b, v in self.map.iter_range(start, end):
            if v:
                yield RmpRun(a, b - a, gfn_of(v, a), v & FLAG_BITS)

    def count_assigned(self) -> dict[str, int]:
        """Assigned pfns by entry size and state, for stats and the pane's header."""
        out = {"4K": 0, "2M": 0, "validated": 0, "immutable": 0}
        for r in self.runs():
            out["2M" if r.flags & SIZE_2M else "4K"] += r.count
            if r.flags & VALIDATED:
                out["validated"] += r.count
            if r.flags & IMMUTABLE:
                out["immutable"] += r.count
        return out

    # -- RMPUPDATE / PSMASH / PVALIDATE --------------------------------------------------
    def make_private(self, pfn: int, gfn: int, level: int, immutable: bool) -> None:
        """rmp_make_private(): assigned to the guest at gfn, not validated."""
        n = PMD_PAGES if level == LEVEL_2M else 1
        flags = (SIZE_2M if level == LEVEL_2M else 0) | (IMMUTABLE if immutable else 0)
        self.map.set_range(pfn, pfn + n, pack(gfn, pfn, flags))

    def make_shared(self, pfn: int, npages: int) -> None:
        """rmp_make_shared() over npages pfns: back to the hypervisor (all zeros)."""
        self.map.set_range(pfn, pfn + npages, 0)

    def psmash(self, pfn: int) -> bool:
        """PSMASH: the 2M entry holding pfn becomes 512 4K entries, Validated preserved.
        False (PSMASH_FAIL_INPUT) when there is no 2M entry there."""
        head = pfn & ~(PMD_PAGES - 1)
        v = self.map.get(head)
        if not v or not v & SIZE_2M:
            return False
        self.map.set_range(head, head + PMD_PAGES, v & ~SIZE_2M)
        return True

    def set_flags(self, pfn: int, npages: int, set_bits: int, clear_bits: int) -> None:
        """Change flags of assigned pfns in [pfn, pfn + npages) (their gfns stay)."""
        for r in list(self.runs(pfn, pfn + npages)):
            new = (r.flags | set_bits) & ~clear_bits
            self.map.set_range(r.pfn, r.pfn + r.count, pack(r.gfn, r.pfn, new))

    def load_run(self, run: RmpRun) -> None:
        """A run read from a state file (already checked)."""
        self.map.set_range(run.pfn, run.pfn + run.count, pack(run.gfn, run.pfn, run.flags))
