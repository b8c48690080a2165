"""Memslots: lookup by gfn and by hva, and the lpage (huge page) disallow rules."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from imemviz.model.columns import BOOL, I64, NO_FD, MemslotColumns
from imemviz.model.guest_memfd import GmemFile
from imemviz.model.uapi import (
    KVM_MEM_GUEST_MEMFD,
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEM_READONLY,
)
from imemviz.model.units import LEVEL_4K


@attrs.define(slots=True, eq=False)
class Memslot:
    id: int  # as passed by userspace: as_id << 16 | slot id
    flags: int
    base_gfn: int
    npages: int
    userspace_addr: int
    gmem_file: GmemFile | None = None
    gmem_fd: int | None = None  # the fd the binding was made with, for display
    gmem_pgoff: int = 0
    gmem_only: bool = False  # KVM_MEMSLOT_GMEM_ONLY: every fault takes its pfn from gmem

    @property
    def as_id(self) -> int:
        return self.id >> 16

    @property
    def end_gfn(self) -> int:
        return self.base_gfn + self.npages

    @property
    def has_gmem(self) -> bool:
        return bool(self.flags & KVM_MEM_GUEST_MEMFD)

    @property
    def hva_end(self) -> int:
        return self.userspace_addr + (self.npages << 12)

    def gfn_to_hva(self, gfn: int) -> int:
        return self.userspace_addr + ((gfn - self.base_gfn) << 12)

    def gmem_index(self, gfn: int) -> int:
        return gfn - self.base_gfn + self.gmem_pgoff

    def huge_allowed(self, gfn: int, level: int) -> bool:
        """lpage_info has no disallow count for `level` at `gfn` (edges, hva alignment, dirty log).

        The MIXED attribute flag is computed by the caller from the attribute extents.
        """
        if level == LEVEL_4K:
            return True
        if self.flags & KVM_MEM_LOG_DIRTY_PAGES:
            return False
        n = 1 << (9 * (level - 1))
        head = gfn & ~(n - 1)
        if head < self.base_gfn or head + n > self.end_gfn:
            return False
        return (self.base_gfn ^ (self.userspace_addr >> 12)) & (n - 1) == 0


class Memslots:
    """The memslots of every address space; as 0 is what the guest's accesses use."""

    __slots__ = ("_bases", "_sorted", "by_id", "readonly")

    def __init__(self) -> None:
        self.by_id: dict[int, Memslot] = {}
        self._bases: list[int] = []
        self._sorted: list[Memslot] = []
        self.readonly = False  # some slot is READONLY (the write path checks only then)

    def _reindex(self) -> None:
        self.readonly = any(s.flags & KVM_MEM_READONLY for s in self.by_id.values())
        self._sorted = sorted(
            (s for s in self.by_id.values() if s.as_id == 0), key=lambda s: s.base_gfn
        )
        self._bases = [s.base_gfn for s in self._sorted]

    def add(self, slot: Memslot) -> None:
        self.by_id[slot.id] = slot
        self._reindex()

    def remove(self, slot: Memslot) -> None:
        del self.by_id[slot.id]
        self._reindex()

    def moved(self) -> None:
        self._reindex()

    def lookup(self, gfn: int) -> Memslot | None:
        i = bisect_right(self._bases, gfn) - 1
        if i >= 0:
            s = self._sorted[i]
            if gfn < s.base_gfn + s.npages:
                return s
        return None

    def in_range(self, start: int, end: int, as_id: int = 0) -> list[Memslot]:
        """Slots of an address space overlapping the gfn range [start, end), by base."""
        if as_id != 0:
            return sorted(
                (
                    s
                    for s in self.by_id.values()
                    if s.as_id == as_id and s.base_gfn < end and start < s.end_gfn
                ),
                key=lambda s: s.base_gfn,
            )
        i = max(bisect_right(self._bases, start) - 1, 0)
        out = []
        for s in self._sorted[i:]:
            if s.base_gfn >= end:
                break
            if start < s.end_gfn:
                out.append(s)
        return out

    def overlapping(self, as_id: int, start: int, end: int, exclude: int) -> Memslot | None:
        for s in self.by_id.values():
            if s.id != exclude and s.as_id == as_id and s.base_gfn < end and start < s.end_gfn:
                return s
        return None

    def hva_in_any(self, hva: int) -> bool:
        return any(s.userspace_addr <= hva < s.hva_end for s in self.by_id.values() if s.npages)

    def all(self) -> list[Memslot]:
        return sorted(self.by_id.values(), key=lambda s: s.id)

    def to_arrays(self) -> MemslotColumns:
        """Every memslot as columns, by id (`NO_FD` where there is no file or fd)."""
        slots = self.all()
        rows = [
            (
                s.id,
                s.flags,
                s.base_gfn,
                s.npages,
                s.userspace_addr,
                NO_FD if s.gmem_file is None else s.gmem_file.fd,
                NO_FD if s.gmem_fd is None else s.gmem_fd,
                s.gmem_pgoff,
            )
            for s in slots
        ]
        a = np.array(rows, I64).reshape(-1, 8)
        only = np.array([s.gmem_only for s in slots], BOOL)
        names = MemslotColumns.names()
        return MemslotColumns(**{n: a[:, i] for i, n in enumerate(names[:8])}, gmem_only=only)

    def from_arrays(
        self, cols: MemslotColumns | Mapping[str, Any], files: Mapping[int, GmemFile]
    ) -> None:
        """Fill these empty memslots from columns (`to_arrays`' form), after checking them:
        ids of address space 0 or 1 (as_id << 16 | id, id < 32768), flags, addresses and
        sizes >= 0, each gmem_file a key of `files` (the VM's files by fd) or NO_FD."""
        t = MemslotColumns.checked(cols)
        t.bad("id", (t.id < 0) | (t.id >> 16 > 1) | ((t.id & 0xFFFF) > 0x7FFF), "bad slot id")
        for name in ("flags", "base_gfn", "npages", "userspace_addr", "gmem_pgoff"):
            t.bad(name, getattr(t, name) < 0, "must be >= 0")
        t.bad("gmem_fd", (t.gmem_fd < 0) & (t.gmem_fd != NO_FD), "must be >= 0 or NO_FD")
        known = np.array([k for k in files if isinstance(k, int)] + [NO_FD], I64)
        t.bad("gmem_file", ~np.isin(t.gmem_file, known), "names no file of `files`")
        if self.by_id:
            raise ValueError("memslots: not empty")
        for row in zip(*(c.tolist() for c in t.as_dict().values()), strict=True):
            sid, flags, base, npages, hva, fkey, fd, pgoff, only = row
            self.by_id[sid] = Memslot(
                sid,
                flags,
                base,
                npages,
                hva,
                None if fkey == NO_FD else files[fkey],
                None if fd == NO_FD else fd,
                pgoff,
                only,
            )
        self._reindex()
