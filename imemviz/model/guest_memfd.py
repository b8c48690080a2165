"""guest_memfd files: the inode's folios (index, order, pfn, hwpoison) and the file's bindings.

A gmem inode is "the physical memory": its page cache maps a file index to a
folio.  Folios of order 0, 9 (2M) and 18 (1G) are kept in one sparse index per
order, keyed by head index, so a 4 TiB file of 2M folios is 2M entries and a
fully punched one is none.  The file is one VM's view: it carries the
bindings (pgoff range -> memslot) that invalidations consult.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import attrs

from imemviz.model.sparse import SparseIndex

FOLIO_ORDERS = (0, 9, 18)
GUEST_MEMFD_FLAG_MMAP = 1
GUEST_MEMFD_FLAG_INIT_SHARED = 2

# What a file descriptor of the VMM refers to (GmemFile.kind).
GUEST_MEMFD = "guest_memfd"  # KVM_CREATE_GUEST_MEMFD
INACCESSIBLE = "inaccessible"  # upm-v8: memfd_create(MFD_INACCESSIBLE)
MEMFD = "memfd"  # a plain memfd (shmem): fallocate and close, nothing KVM can bind
FILE_KINDS = (GUEST_MEMFD, INACCESSIBLE, MEMFD)


class Folio(NamedTuple):
    index: int  # head index in the file
    order: int
    pfn: int  # head pfn
    hwpoison: bool = False

    @property
    def npages(self) -> int:
        return 1 << self.order


class GmemInode:
    __slots__ = ("flags", "folios", "ino", "npages")

    def __init__(self, ino: int, size: int, flags: int) -> None:
        self.ino = ino
        self.npages = size >> 12
        self.flags = flags
        # order -> head index -> (pfn << 1) | hwpoison
        self.folios: dict[int, SparseIndex[int]] = {o: SparseIndex() for o in FOLIO_ORDERS}

    @property
    def size(self) -> int:
        return self.npages << 12

    def folio_at(self, index: int) -> Folio | None:
        for order in FOLIO_ORDERS:
            idx = self.folios[order]
            if not idx:
                continue
            head = index & ~((1 << order) - 1)
            v = idx.get(head)
            if v is not None:
                return Folio(head, order, v >> 1, bool(v & 1))
        return None

    def any_folio_in(self, start: int, end: int) -> bool:
        for order, idx in self.folios.items():
            if idx.any_in(start & ~((1 << order) - 1), end):
                return True
        return False

    def add(self, folio: Folio) -> None:
        self.folios[folio.order].set(folio.index, (folio.pfn << 1) | folio.hwpoison)

    def remove(self, folio: Folio) -> None:
        self.folios[folio.order].pop(folio.index)

    def set_hwpoison(self, folio: Folio) -> None:
        self.folios[folio.order].set(folio.index, (folio.pfn << 1) | 1)

    def folios_in(self, start: int, end: int) -> list[Folio]:
        """Every folio overlapping [start, end), by index."""
        out = []
        for order, idx in self.folios.items():
            for head, v in idx.items_in(start & ~((1 << order) - 1), end):
                if head + (1 << order) > start:
                    out.append(Folio(head, order, v >> 1, bool(v & 1)))
        out.sort(key=lambda f: f.index)
        return out

    def all_folios(self) -> Iterator[Folio]:
        for order, idx in self.folios.items():
            for head, v in idx.items():
                yield Folio(head, order, v >> 1, bool(v & 1))

    def count(self, order: int) -> int:
        return len(self.folios[order])


@attrs.define(slots=True, eq=False)
class Binding:
    pgoff: int
    npages: int
    slot: int  # memslot id (as_id << 16 | id)


@attrs.define(slots=True, eq=False)
class GmemFile:
    """One guest_memfd file descriptor's file: an inode plus this VM's bindings.

    `kind` says what the file is (guest_memfd, or under upm-v8 an inaccessible memfd,
    whose bindings are the private memslots that registered a notifier on it; or a
    plain memfd).  An inaccessible memfd closed while private memslots still hold it
    lives on under the key ``-ino`` (no descriptor refers to it any more).
    """

    fd: int
    inode: GmemInode
    bindings: list[Binding] = attrs.field(factory=list)
    kind: str = GUEST_MEMFD

    def bindings_in(self, start: int, end: int) -> list[Binding]:
        return [b for b in self.bindings if b.pgoff < end and start < b.pgoff + b.npages]

    def binding_for(self, index: int) -> Binding | None:
        for b in self.bindings:
            if b.pgoff <= index < b.pgoff + b.npages:
                return b
        return None
