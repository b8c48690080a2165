"""guest_memfd files: the inode's folios (index, order, pfn, hwpoison) and the file's bindings.

A gmem inode is "the physical memory": its page cache maps a file index to a
folio.  Folios of order 0, 9 (2M) and 18 (1G) are kept in one sparse index per
order, keyed by head index, so a 4 TiB file of 2M folios is 2M entries and a
fully punched one is none.  The file is one VM's view: it carries the
bindings (pgoff range -> memslot) that invalidations consult.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import attrs
import numpy as np
from sortedcontainers import SortedList

from imemviz.model.columns import BOOL, I64, FolioColumns, Table
from imemviz.model.sparse import SparseIndex, pack_folio, pack_folios, unpack_folio, unpack_folios

FOLIO_ORDERS = (0, 9, 18)

# What a file descriptor of the VMM refers to (GmemFile.kind).
GUEST_MEMFD = "guest_memfd"  # KVM_CREATE_GUEST_MEMFD
INACCESSIBLE = "inaccessible"  # upm-v8: memfd_create(MFD_INACCESSIBLE)
MEMFD = "memfd"  # a plain memfd (shmem): fallocate and close, nothing KVM can bind
FILE_KINDS = (GUEST_MEMFD, INACCESSIBLE, MEMFD)


class Folio(NamedTuple):
    # `index` and `count` (Segment) shadow tuple's methods of those names; nothing calls those.
    index: int  # type: ignore[assignment]  # head index in the file
    order: int
    pfn: int  # head pfn
    hwpoison: bool = False

    @property
    def npages(self) -> int:
        return 1 << self.order


class Segment(NamedTuple):
    """`count` folios of one order at index, index + 2**order, ... with pfns pfn, pfn +
    2**order, ... (a run that one fallocate allocated, or a single folio: count 1)."""

    index: int  # type: ignore[assignment]  # shadows tuple.index (see Folio)
    order: int
    pfn: int
    hwpoison: bool
    count: int  # type: ignore[assignment]  # shadows tuple.count

    @property
    def end(self) -> int:
        return self.index + (self.count << self.order)

    def folio(self, k: int) -> Folio:
        n = k << self.order
        return Folio(self.index + n, self.order, self.pfn + n, self.hwpoison)


class RunIndex:
    """Runs of two or more folios of one order, keyed by the index of their first folio."""

    __slots__ = ("_d", "_keys", "folios")

    def __init__(self) -> None:
        self._d: dict[int, tuple[int, int, bool]] = {}  # start -> (count, pfn, hwpoison)
        self._keys: SortedList[int] = SortedList()
        self.folios = 0  # folios in all runs

    def __len__(self) -> int:
        return len(self._d)

    def add(self, start: int, count: int, pfn: int, hwpoison: bool) -> None:
        self._d[start] = (count, pfn, hwpoison)
        self._keys.add(start)
        self.folios += count

    def pop(self, start: int) -> tuple[int, int, bool]:
        count, pfn, hw = self._d.pop(start)
        self._keys.remove(start)
        self.folios -= count
        return count, pfn, hw

    def floor(self, key: int) -> int | None:
        """The largest start <= key, or None."""
        i = self._keys.bisect_right(key)
        return self._keys[i - 1] if i else None

    def starts_in(self, a: int, b: int) -> list[int]:
        return list(self._keys.irange(a, b - 1)) if a < b else []

    def get(self, start: int) -> tuple[int, int, bool]:
        return self._d[start]

    def items(self) -> Iterator[tuple[int, int, int, bool]]:
        d = self._d
        for k in list(self._keys):
            yield (k, *d[k])


class GmemInode:
    """The page cache of one guest_memfd inode.

    Folios made one at a time (faults) live in `folios`, one sparse index per
    order; runs of folios made together (fallocate over a range, a state file's
    run rows) live in `runs` as one entry each, so 64 TiB of 4K folios is a
    few entries.  Every query treats both alike: what exists is the set of
    folios, however stored.
    """

    __slots__ = ("flags", "folios", "ino", "npages", "runs")

    def __init__(self, ino: int, size: int, flags: int) -> None:
        self.ino = ino
        self.npages = size >> 12
        self.flags = flags
        # order -> head index -> sparse.pack_folio(pfn, hwpoison) (inline in folio_at and add:
        # the fault path)
        self.folios: dict[int, SparseIndex[int]] = {o: SparseIndex() for o in FOLIO_ORDERS}
        self.runs: dict[int, RunIndex] = {o: RunIndex() for o in FOLIO_ORDERS}

    @property
    def size(self) -> int:
        return self.npages << 12

    def _run_at(self, order: int, head: int) -> Segment | None:
        """The run of `order` holding the folio whose head is `head`."""
        runs = self.runs[order]
        if not runs.folios:
            return None
        start = runs.floor(head)
        if start is None:
            return None
        count, pfn, hw = runs.get(start)
        seg = Segment(start, order, pfn, hw, count)
        return seg if head < seg.end else None

    def folio_at(self, index: int) -> Folio | None:
        for order in FOLIO_ORDERS:
            idx = self.folios[order]
            head = index & ~((1 << order) - 1)
            if idx:
                v = idx.get(head)
                if v is not None:
                    return Folio(head, order, v >> 1, bool(v & 1))
            if self.runs[order].folios:
                seg = self._run_at(order, head)
                if seg is not None:
                    return seg.folio((head - seg.index) >> order)
        return None

    def any_folio_in(self, start: int, end: int) -> bool:
        for order, idx in self.folios.items():
            if idx.any_in(start & ~((1 << order) - 1), end):
                return True
        for order, runs in self.runs.items():
            if runs.folios and (
                self._run_at(order, start & ~((1 << order) - 1)) is not None
                or runs.starts_in(start, end)
            ):
                return True
        return False

    def next_folio(self, index: int) -> int | None:
        """The lowest index >= `index` that a folio covers (None: none)."""
        if self.folio_at(index) is not None:
            return index
        best = None
        for order in FOLIO_ORDERS:
            head = index & ~((1 << order) - 1)
            k = self.folios[order].first_at_or_after(head)
            if k is not None:
                best = k if best is None else min(best, k)
            runs = self.runs[order]
            if runs.folios:
                starts = runs._keys
                i = starts.bisect_left(head)
                if i < len(starts):
                    best = starts[i] if best is None else min(best, starts[i])
        return None if best is None else max(best, index)

    def add(self, folio: Folio) -> None:
        self.folios[folio.order].set(folio.index, (folio.pfn << 1) | folio.hwpoison)

    def add_segment(self, seg: Segment) -> None:
        """Store `count` folios (where no folio is): one entry, whatever the count."""
        if seg.count <= 0:
            return
        if seg.count == 1:
            self.add(seg.folio(0))
        else:
            self.runs[seg.order].add(seg.index, seg.count, seg.pfn, seg.hwpoison)

    def _take(self, folio: Folio) -> Segment | None:
        """Take `folio` out of the run that holds it (the rest of the run stays); the run."""
        seg = self._run_at(folio.order, folio.index)
        if seg is None:
            return None
        self.runs[folio.order].pop(seg.index)
        k = (folio.index - seg.index) >> folio.order
        self.add_segment(Segment(seg.index, seg.order, seg.pfn, seg.hwpoison, k))
        after = seg.folio(k + 1)
        self.add_segment(
            Segment(after.index, seg.order, after.pfn, seg.hwpoison, seg.count - k - 1)
        )
        return seg

    def remove(self, folio: Folio) -> None:
        if self.folios[folio.order].pop(folio.index) is None:
            self._take(folio)

    def set_hwpoison(self, folio: Folio) -> None:
        if folio.index not in self.folios[folio.order]:
            self._take(folio)
        self.folios[folio.order].set(folio.index, pack_folio(folio.pfn, True))

    def runs_in(self, start: int, end: int) -> list[Segment]:
        """The runs (not the single folios) with a folio overlapping [start, end)."""
        out = []
        for order, runs in self.runs.items():
            if not runs.folios:
                continue
            first = self._run_at(order, start & ~((1 << order) - 1))
            if first is not None:
                out.append(first)
            for s in runs.starts_in(start, end):
                if first is None or s != first.index:
                    count, pfn, hw = runs.get(s)
                    out.append(Segment(s, order, pfn, hw, count))
        return out

    def segments_in(self, start: int, end: int) -> list[Segment]:
        """Every single folio and run with a folio overlapping [start, end), by index."""
        out = []
        for order, idx in self.folios.items():
            for head, v in idx.items_in(start & ~((1 << order) - 1), end):
                if head + (1 << order) > start:
                    out.append(Segment(head, order, *unpack_folio(v), 1))
        out += self.runs_in(start, end)
        out.sort(key=lambda g: g.index)
        return out

    def iter_segments(self) -> Iterator[Segment]:
        """Every single folio and run, in no particular order."""
        for order, idx in self.folios.items():
            for head, v in idx.items():
                yield Segment(head, order, *unpack_folio(v), 1)
        for order, runs in self.runs.items():
            for start, count, pfn, hw in runs.items():
                yield Segment(start, order, pfn, hw, count)

    def segments(self) -> list[Segment]:
        """Every single folio and run, by index."""
        return self.segments_in(0, 1 << 64)

    def folios_in(self, start: int, end: int) -> list[Folio]:
        """Every folio overlapping [start, end), by index (runs expanded: small ranges)."""
        out: list[Folio] = []
        for seg in self.segments_in(start, end):
            n = 1 << seg.order
            k0 = max(0, (start - seg.index) >> seg.order)
            k1 = min(seg.count, -((seg.index - end) // n))
            out.extend(seg.folio(k) for k in range(k0, k1))
        return out

    def all_folios(self) -> Iterator[Folio]:
        """Every folio, runs expanded: costs the folios (use `segments` for big files)."""
        for seg in self.segments():
            for k in range(seg.count):
                yield seg.folio(k)

    def columns(self, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(head index, head pfn, hwpoison, count) of the order's singles and runs as int64
        arrays sorted by index: every folio of the order, with no run expanded."""
        keys, vals = self.folios[order].int_arrays()
        pfn, hw = unpack_folios(vals)
        runs = self.runs[order]
        if not runs:
            return keys, pfn, hw.astype(np.int64), np.ones(len(keys), np.int64)
        r = np.array([(k, p, int(h), c) for k, c, p, h in runs.items()], np.int64).reshape(-1, 4)
        idx = np.concatenate([keys, r[:, 0]])
        order_ = np.argsort(idx, kind="stable")
        cols = (
            idx,
            np.concatenate([pfn, r[:, 1]]),
            np.concatenate([hw.astype(np.int64), r[:, 2]]),
            np.concatenate([np.ones(len(keys), np.int64), r[:, 3]]),
        )
        return tuple(c[order_] for c in cols)  # type: ignore[return-value]

    def count(self, order: int) -> int:
        return len(self.folios[order]) + self.runs[order].folios

    def to_arrays(self, start: int = 0, end: int | None = None) -> FolioColumns:
        """The single folios and runs as columns, sorted by index, then order (runs not
        expanded): all of them, or with `end` those with a folio overlapping [start, end)."""
        parts: list[tuple[np.ndarray, ...]] = []
        whole = end is None and start == 0
        for order in FOLIO_ORDERS:
            if whole:
                keys, pfn, hw, count = self.columns(order)
            else:
                k, v = self.folios[order].arrays_in(
                    start & ~((1 << order) - 1), (1 << 63) - 1 if end is None else end
                )
                keys = np.array(k, I64).reshape(-1)
                pfn, hw = unpack_folios(np.array(v, I64).reshape(-1))
                count = np.ones(len(keys), I64)
            if len(keys):
                parts.append((keys, np.full(len(keys), order, I64), pfn, hw.astype(I64), count))
        if not whole:
            runs = self.runs_in(start, (1 << 63) - 1 if end is None else end)
            if runs:
                a = np.array([(g.index, g.order, g.pfn, g.hwpoison, g.count) for g in runs], I64)
                parts.append(tuple(a.T))
        if not parts:
            return FolioColumns.empty()
        cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
        if len(parts) > 1:
            o = np.lexsort((cols[1], cols[0]))  # by index, then order
            cols = [c[o] for c in cols]
        return FolioColumns(cols[0], cols[1], cols[2], cols[3].astype(BOOL), cols[4])

    def from_arrays(
        self,
        cols: FolioColumns | Mapping[str, Any],
        pfn_limit: int | None = None,
        index_limit: int | None = None,
        *,
        check: bool = True,
    ) -> None:
        """Fill this empty inode from columns (`to_arrays`' form), after checking them:
        orders 0, 9 or 18, counts >= 1, index and pfn multiples of the folio size, pfns
        >= 0, the pages below `pfn_limit` and the indexes below `index_limit` (default:
        the file's size).  A ValueError names the first bad column and row.
        `check=False`: `cols` is a FolioColumns its maker has already checked (the state
        file reader), stored as it is."""
        if check:
            limit = self.npages if index_limit is None else index_limit
            t = check_folios(cols, pfn_limit, limit)
        else:
            t = FolioColumns.unchecked(cols)
        if any(len(i) for i in self.folios.values()) or any(r.folios for r in self.runs.values()):
            raise ValueError(f"folios: inode {self.ino} is not empty")
        single = t.count == 1
        packed = pack_folios(t.pfn, t.hwpoison)
        for order in FOLIO_ORDERS:
            m = single & (t.order == order)
            if m.any():
                self.folios[order].load_sorted(t.index[m].tolist(), packed[m].tolist())
        for i in np.flatnonzero(~single).tolist():
            self.runs[int(t.order[i])].add(
                int(t.index[i]), int(t.count[i]), int(t.pfn[i]), bool(t.hwpoison[i])
            )


def check_folios(
    cols: Table | Mapping[str, Any], pfn_limit: int | None, index_limit: int
) -> FolioColumns:
    """`cols` as FolioColumns, checked (see `GmemInode.from_arrays`)."""
    t = FolioColumns.checked(cols)
    t.check_in("order", FOLIO_ORDERS)
    t.bad("count", t.count < 1, "must be >= 1")
    size = np.left_shift(1, t.order)
    t.bad("index", t.index < 0, "must be >= 0")
    t.bad("index", (t.index & (size - 1)) != 0, "must be a multiple of the folio's pages")
    t.bad("pfn", t.pfn < 0, "must be >= 0")
    t.bad("pfn", (t.pfn & (size - 1)) != 0, "must be a multiple of the folio's pages")
    t.bad(
        "count",
        t.count > ((index_limit - t.index) >> t.order),
        f"its folios must end by index {index_limit:#x}",
    )
    if pfn_limit is not None:
        t.bad(
            "count",
            t.count > ((pfn_limit - t.pfn) >> t.order),
            f"its folios' pages must lie below pfn {pfn_limit:#x}",
        )
    return t


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
