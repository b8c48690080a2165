"""A sparse map of integer keys with fast range removal.

Leaves, folios and page contents are keyed by gfn, file index or pfn.  They
are stored in dicts bucketed by `key >> shift`, so a point lookup is two dict
probes and removing everything in [start, end) costs
O(min(buckets in range, buckets present) + items removed): a 1 TiB zap with
100,000 scattered leaves touches only the buckets that exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from sortedcontainers import SortedList

V = TypeVar("V")


class SparseIndex(Generic[V]):
    __slots__ = ("_buckets", "_ids", "_len", "shift")

    def __init__(self, shift: int = 9) -> None:
        self.shift = shift
        self._buckets: dict[int, dict[int, V]] = {}
        # Bucket ids in order: range queries visit only the buckets that exist.
        self._ids: SortedList = SortedList()
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, key: int) -> bool:
        b = self._buckets.get(key >> self.shift)
        return b is not None and key in b

    def get(self, key: int, default: V | None = None) -> V | None:
        b = self._buckets.get(key >> self.shift)
        if b is None:
            return default
        return b.get(key, default)

    def set(self, key: int, value: V) -> None:
        bid = key >> self.shift
        b = self._buckets.get(bid)
        if b is None:
            self._buckets[bid] = {key: value}
            self._ids.add(bid)
            self._len += 1
        else:
            n = len(b)
            b[key] = value
            self._len += len(b) - n

    def pop(self, key: int, default: V | None = None) -> V | None:
        bid = key >> self.shift
        b = self._buckets.get(bid)
        if b is None or key not in b:
            return default
        v = b.pop(key)
        self._len -= 1
        if not b:
            del self._buckets[bid]
            self._ids.remove(bid)
        return v

    def _bucket_ids(self, start: int, end: int) -> list[int]:
        return list(self._ids.irange(start >> self.shift, (end - 1) >> self.shift))

    def items_in(self, start: int, end: int) -> list[tuple[int, V]]:
        """(key, value) with start <= key < end, sorted by key."""
        if start >= end:
            return []
        out: list[tuple[int, V]] = []
        for bid in self._bucket_ids(start, end):
            b = self._buckets[bid]
            if start <= bid << self.shift and (bid + 1) << self.shift <= end:
                out += b.items()
            else:
                out += [(k, v) for k, v in b.items() if start <= k < end]
        out.sort()
        return out

    def any_in(self, start: int, end: int) -> bool:
        if start >= end:
            return False
        for bid in self._bucket_ids(start, end):
            b = self._buckets[bid]
            if start <= bid << self.shift and (bid + 1) << self.shift <= end:
                return True
            if any(start <= k < end for k in b):
                return True
        return False

    def pop_range(self, start: int, end: int) -> list[tuple[int, V]]:
        """Remove and return (key, value) with start <= key < end, sorted by key."""
        if start >= end:
            return []
        out: list[tuple[int, V]] = []
        buckets = self._buckets
        shift = self.shift
        ids = self._bucket_ids(start, end)
        emptied = []
        for bid in ids:
            if start <= bid << shift and (bid + 1) << shift <= end:
                out += buckets.pop(bid).items()
                emptied.append(bid)
            else:
                b = buckets[bid]
                hit = [k for k in b if start <= k < end]
                out += [(k, b.pop(k)) for k in hit]
                if not b:
                    del buckets[bid]
                    emptied.append(bid)
        if len(emptied) == len(self._ids):
            self._ids.clear()
        elif len(emptied) > 64:
            gone = set(emptied)
            self._ids = SortedList(i for i in self._ids if i not in gone)
        else:
            for bid in emptied:
                self._ids.remove(bid)
        self._len -= len(out)
        out.sort()
        return out

    def items(self) -> Iterator[tuple[int, V]]:
        """All items in key order."""
        for bid in list(self._ids):
            yield from sorted(self._buckets[bid].items())

    def clear(self) -> None:
        self._buckets.clear()
        self._ids.clear()
        self._len = 0
