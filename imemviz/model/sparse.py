"""A sparse map of integer keys kept in key order, with fast range removal.

Leaves, folios and page contents are keyed by gfn, file index or pfn.  They
live in one dict (a point lookup is one probe) plus the keys in a
`sortedcontainers.SortedList` (O(log n) insert and remove, range slices), so
a range query costs O(log n + k) and a range removal touches only what it
removes: a 1 TiB zap with 25,000 leaves in it touches those 25,000.  New keys
wait in a side list until the next ordered query, so a million faults in a
row pay a list append each; a big merge is pre-sorted with numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Generic, TypeVar, overload

import numpy as np
from sortedcontainers import SortedList

K = TypeVar("K")
V = TypeVar("V")

_BULK = 4096  # pending keys beyond which a merge pre-sorts them with numpy
_COPY_CHUNK = 1 << 16  # items copied per C call by a deep copy (a few ms of the GIL each)


LEAF_STATE_BITS = 2  # a leaf is stored as pfn << 2 | state (state: 0..3, mmu.MAPPED...)
LEAF_STATE_MASK = (1 << LEAF_STATE_BITS) - 1


def pack_leaf(pfn: int, state: int) -> int:
    """A leaf's stored value: its pfn and S-EPT state in one int."""
    return (pfn << LEAF_STATE_BITS) | state


def unpack_leaf(value: int) -> tuple[int, int]:
    """(pfn, state) of a stored leaf value."""
    return value >> LEAF_STATE_BITS, value & LEAF_STATE_MASK


def pack_leaves(pfn: np.ndarray, state: np.ndarray) -> np.ndarray:
    """`pack_leaf` over int64 columns."""
    out: np.ndarray = np.left_shift(pfn, LEAF_STATE_BITS) | state
    return out


def unpack_leaves(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`unpack_leaf` over an int64 column: (pfn, state)."""
    return values >> LEAF_STATE_BITS, values & LEAF_STATE_MASK


def pack_folio(pfn: int, hwpoison: bool) -> int:
    """A single folio's stored value: head pfn << 1 | hwpoison."""
    return (pfn << 1) | hwpoison


def unpack_folio(value: int) -> tuple[int, bool]:
    """(head pfn, hwpoison) of a stored folio value."""
    return value >> 1, bool(value & 1)


def pack_folios(pfn: np.ndarray, hwpoison: np.ndarray) -> np.ndarray:
    """`pack_folio` over columns (hwpoison bool or 0/1)."""
    out: np.ndarray = np.left_shift(pfn, 1) | hwpoison.astype(np.int64)
    return out


def unpack_folios(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`unpack_folio` over an int64 column: (pfn int64, hwpoison bool)."""
    return values >> 1, (values & 1).astype(bool)


def pack_pfnmap(pfn: int, refcounted: bool) -> int:
    """A device page's stored value (`vm.pfnmap`, by hva page): pfn << 1 | refcounted."""
    return (pfn << 1) | refcounted


def unpack_pfnmap(value: int) -> tuple[int, bool]:
    """(pfn, refcounted) of a stored device-page value."""
    return value >> 1, bool(value & 1)


def pack_pfnmaps(pfn: np.ndarray, refcounted: np.ndarray) -> np.ndarray:
    """`pack_pfnmap` over int64 columns (refcounted 0/1)."""
    out: np.ndarray = np.left_shift(pfn, 1) | refcounted
    return out


def unpack_pfnmaps(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`unpack_pfnmap` over an int64 column: (pfn, refcounted 0/1), both int64."""
    return values >> 1, values & 1


def copy_dict(d: dict[K, V]) -> dict[K, V]:
    """A shallow copy of a dict of immutable values, a chunk at a time: the C copy of a
    million items would hold the GIL (and freeze the app's GUI) for tens of ms."""
    if len(d) <= _COPY_CHUNK:
        return d.copy()
    out: dict[K, V] = {}
    items = iter(d.items())
    while chunk := list(islice(items, _COPY_CHUNK)):
        out.update(chunk)
    return out


class SparseIndex(Generic[V]):
    __slots__ = ("_d", "_keys", "_pending")

    def __init__(self) -> None:
        self._d: dict[int, V] = {}
        self._keys: SortedList[int] = SortedList()
        self._pending: list[int] = []

    def __len__(self) -> int:
        return len(self._d)

    def __deepcopy__(self, memo: dict[int, Any]) -> SparseIndex[V]:
        """Values are ints (immutable): copy the dict and the key order, not each item
        (copy.deepcopy's generic path costs a Python call per item)."""
        new = SparseIndex.__new__(SparseIndex)
        d = memo.get(id(self._d))
        if d is None:
            d = copy_dict(self._d)
            memo[id(self._d)] = d
        new._d = d
        new._keys = _copy_sorted(self._keys)
        new._pending = list(self._pending)
        memo[id(self)] = new
        return new

    def dict_view(self) -> dict[int, V]:
        """The live dict behind the index, for a hot path's point lookups (the fault path's
        `LeafTable.lookup`): read it, never write it (writes go through `set`/`pop`, which
        keep the key order)."""
        return self._d

    def __contains__(self, key: int) -> bool:
        return key in self._d

    def _sorted(self) -> SortedList[int]:
        pending = self._pending
        if pending:
            if len(pending) > _BULK:
                # Keys are gfns, pfns or pages: they fit int64, and numpy sorts a
                # million of them several times faster than list.sort.
                arr = np.fromiter(pending, np.int64, len(pending))
                arr.sort()
                self._keys.update(arr.tolist())
            else:
                self._keys.update(pending)
            pending.clear()
        return self._keys

    @overload
    def get(self, key: int) -> V | None: ...
    @overload
    def get(self, key: int, default: V) -> V: ...
    def get(self, key: int, default: V | None = None) -> V | None:
        return self._d.get(key, default)

    def set(self, key: int, value: V) -> None:
        d = self._d
        if key not in d:
            self._pending.append(key)
        d[key] = value

    @overload
    def pop(self, key: int) -> V | None: ...
    @overload
    def pop(self, key: int, default: V) -> V: ...
    def pop(self, key: int, default: V | None = None) -> V | None:
        d = self._d
        if key not in d:
            return default
        self._sorted().remove(key)
        return d.pop(key)

    def items_in(self, start: int, end: int) -> list[tuple[int, V]]:
        """(key, value) with start <= key < end, sorted by key."""
        if start >= end or not self._d:
            return []
        d = self._d
        return [(k, d[k]) for k in self._sorted().irange(start, end - 1)]

    def any_in(self, start: int, end: int) -> bool:
        if start >= end or not self._d:
            return False
        keys = self._sorted()
        i = keys.bisect_left(start)
        return i < len(keys) and keys[i] < end

    def first_at_or_after(self, key: int) -> int | None:
        """The smallest key >= `key`, or None."""
        if not self._d:
            return None
        keys = self._sorted()
        i = keys.bisect_left(key)
        return keys[i] if i < len(keys) else None

    def pop_range(self, start: int, end: int) -> list[tuple[int, V]]:
        """Remove and return (key, value) with start <= key < end, sorted by key."""
        keys, vals = self.pop_range_arrays(start, end)
        return list(zip(keys, vals, strict=True))

    def pop_range_arrays(self, start: int, end: int) -> tuple[list[int], list[V]]:
        """Remove [start, end); return its keys and values as two lists sorted by key."""
        if start >= end or not self._d:
            return [], []
        keys = self._sorted()
        i, j = keys.bisect_left(start), keys.bisect_left(end)
        if i == j:
            return [], []
        hit = list(keys.islice(i, j))
        del keys[i:j]
        return hit, list(map(self._d.pop, hit))

    def arrays_in(self, start: int, end: int) -> tuple[list[int], list[V]]:
        """(keys, values) with start <= key < end, as two lists sorted by key."""
        if start >= end or not self._d:
            return [], []
        keys = list(self._sorted().irange(start, end - 1))
        return keys, list(map(self._d.__getitem__, keys))

    def int_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, values) of an index of int values as int64 arrays sorted by key.

        Reads the dict in its own order (sequential memory) and sorts with numpy:
        several times faster than walking a million keys in sorted order.  A dict
        filled in key order (a loaded state) needs no sort.
        """
        d = self._d
        n = len(d)
        keys = np.fromiter(d.keys(), np.int64, n)
        vals = np.fromiter(d.values(), np.int64, n)
        if n > 1 and not (keys[1:] > keys[:-1]).all():
            bits = (n - 1).bit_length()
            if int(keys.min()) >= 0 and int(keys.max()) < 1 << (63 - bits):
                # Each key with its position in its low bits, sorted as plain ints: a
                # value sort costs about half an argsort (keys are distinct: no ties).
                tagged = (keys << bits) | np.arange(n, dtype=np.int64)
                tagged.sort()
                keys, vals = tagged >> bits, vals[tagged & ((1 << bits) - 1)]
            else:
                order = np.argsort(keys, kind="stable")
                keys, vals = keys[order], vals[order]
        return keys, vals

    def arrays(self) -> tuple[list[int], list[V]]:
        """(keys, values) of every item, as two lists sorted by key."""
        keys = list(self._sorted())
        return keys, list(map(self._d.__getitem__, keys))

    def load_sorted(self, keys: list[int], values: list[V]) -> None:
        """Bulk-fill an empty index from sorted, distinct keys (loading a state).

        The dict is filled in place: leaf tables keep a reference to it.
        """
        if self._d:
            raise ValueError("load_sorted needs an empty index")
        self._d.update(zip(keys, values, strict=True))
        self._keys.update(keys)

    def update(self, items: Iterable[tuple[int, V]]) -> None:
        """Insert many items."""
        for k, v in items:
            self.set(k, v)

    def items(self) -> Iterator[tuple[int, V]]:
        """All items in key order."""
        d = self._d
        for k in list(self._sorted()):
            yield k, d[k]

    def keys(self) -> list[int]:
        """All keys in order."""
        return list(self._sorted())

    def clear(self) -> None:
        self._d.clear()
        self._keys.clear()
        self._pending.clear()


def _copy_sorted(keys: SortedList[int]) -> SortedList[int]:
    """A copy of a SortedList of ints: its sublists copied as they are (already sorted),
    one short C call each, instead of sorting every key again."""
    new: SortedList[int] = SortedList()
    try:
        # sortedcontainers' internals (not in its stubs), guarded by the except below
        new._lists = [sub[:] for sub in keys._lists]  # type: ignore[attr-defined]
        new._maxes = list(keys._maxes)  # type: ignore[attr-defined]
        new._len = keys._len  # type: ignore[attr-defined]
        new._load = keys._load  # type: ignore[attr-defined]
        new._index = []  # type: ignore[attr-defined]  # rebuilt on the next positional access
        new._offset = 0  # type: ignore[attr-defined]
    except AttributeError:  # another sortedcontainers layout: the public way
        new = SortedList(keys)
    return new
