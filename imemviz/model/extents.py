"""Ordered maps of half-open integer ranges: the workhorse that keeps a 4 TiB guest cheap.

`ExtentMap` is a step function over [0, limit): a sorted list of start points
and the value that holds from each start to the next.  Range assignment and
range queries cost O(log n + k) plus a list splice (a C memmove), where n is
the number of distinct extents, never the number of pages.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import numpy as np

from imemviz.model.columns import I64, RunColumns

H = TypeVar("H", bound=Hashable)  # the run values (attributes: int)


class ExtentMap(Generic[H]):
    """A total map [0, limit) -> value, stored as coalesced runs."""

    __slots__ = ("_starts", "_vals", "limit")

    def __init__(self, default: H, limit: int) -> None:
        self._starts: list[int] = [0]
        self._vals: list[H] = [default]
        self.limit = limit

    def __len__(self) -> int:
        return len(self._starts)

    def __deepcopy__(self, memo: dict[int, object]) -> ExtentMap[H]:
        """Starts are ints and values hashable (immutable): copy the two lists, not each
        item (copy.deepcopy's generic path costs a Python call per item: most of an
        undo's checkpoint copy on a guest with 100,000 extents)."""
        new: ExtentMap[H] = ExtentMap.__new__(ExtentMap)
        new._starts = list(self._starts)
        new._vals = list(self._vals)
        new.limit = self.limit
        memo[id(self)] = new
        return new

    def get(self, x: int) -> H:
        return self._vals[bisect_right(self._starts, x) - 1]

    def is_uniform(self, start: int, end: int) -> bool:
        """True when [start, end) lies inside one run."""
        i = bisect_right(self._starts, start) - 1
        return i + 1 >= len(self._starts) or self._starts[i + 1] >= end

    def all_equal(self, start: int, end: int, value: H) -> bool:
        i = bisect_right(self._starts, start) - 1
        return self._vals[i] == value and (i + 1 >= len(self._starts) or self._starts[i + 1] >= end)

    def iter_range(self, start: int, end: int) -> Iterator[tuple[int, int, H]]:
        """Runs clipped to [start, end), in order."""
        starts, vals = self._starts, self._vals
        i = bisect_right(starts, start) - 1
        n = len(starts)
        while i < n and starts[i] < end:
            run_end = starts[i + 1] if i + 1 < n else self.limit
            yield max(starts[i], start), min(run_end, end), vals[i]
            i += 1

    def runs_in(self, start: int, end: int) -> tuple[list[int], list[H]]:
        """Starts and values of the runs meeting [start, end), as two lists; the first
        start may lie before `start` (the run that contains it)."""
        i0 = bisect_right(self._starts, start) - 1
        i1 = bisect_left(self._starts, end)
        return self._starts[i0:i1], self._vals[i0:i1]

    def items(self) -> Iterator[tuple[int, int, H]]:
        return self.iter_range(0, self.limit)

    def set_range(self, start: int, end: int, value: H) -> None:
        """Assign `value` to [start, end), coalescing with equal neighbours."""
        if start >= end:
            return
        starts, vals = self._starts, self._vals
        i = bisect_right(starts, start) - 1  # run containing start
        j = bisect_right(starts, end) - 1  # run containing end (end may be its start)
        tail_val = vals[j]
        new_starts: list[int] = []
        new_vals: list[H] = []
        if starts[i] < start:
            if vals[i] != value:
                new_starts.append(start)
                new_vals.append(value)
            lo = i + 1
        else:
            lo = i
            if i == 0 or vals[i - 1] != value:
                new_starts.append(start)
                new_vals.append(value)
        if end < self.limit and tail_val != value:
            new_starts.append(end)
            new_vals.append(tail_val)
        starts[lo : j + 1] = new_starts
        vals[lo : j + 1] = new_vals
        # The run after the replaced block may now equal its predecessor.
        k = lo + len(new_starts)
        if 0 < k < len(starts) and vals[k] == vals[k - 1]:
            del starts[k]
            del vals[k]

    def to_arrays(self) -> RunColumns:
        """Every run as columns (start, end, value), by start: they cover [0, limit).
        The values must be ints (the memory attributes)."""
        n = len(self._starts)
        start = np.fromiter(self._starts, I64, n)
        end = np.append(start[1:], self.limit).astype(I64)
        try:
            value = np.fromiter(self._vals, I64, n)
        except TypeError:
            raise TypeError("ExtentMap.to_arrays: the values are not ints") from None
        return RunColumns(start, end, value)

    def from_arrays(
        self, cols: RunColumns | Mapping[str, Any], values: tuple[int, ...] | None = None
    ) -> None:
        """Replace this map's runs (it must hold one run: as built) with `cols`, after
        checking them: contiguous runs from 0 to `limit`, each non-empty and coalesced
        (a value differs from the one before), values >= 0 and in `values` when given."""
        t = RunColumns.checked(cols)
        n = len(t)
        if not n:
            raise ValueError(f"runs: no rows (the runs must cover [0, {self.limit:#x}))")
        t.bad("start", np.arange(n) == 0 if t.start[0] != 0 else np.zeros(n, bool), "must be 0")
        t.bad("end", t.end <= t.start, "must be above start")
        gap = np.zeros(n, bool)
        gap[1:] = t.start[1:] != t.end[:-1]
        t.bad("start", gap, "must equal the end of the run before")
        t.bad("end", (np.arange(n) == n - 1) & (t.end != self.limit), f"must be {self.limit:#x}")
        same = np.zeros(n, bool)
        same[1:] = t.value[1:] == t.value[:-1]
        t.bad("value", same, "equals the value before (runs are coalesced)")
        t.bad("value", t.value < 0, "must be >= 0")
        if values is not None:
            t.check_in("value", values)
        if len(self._starts) != 1:
            raise ValueError("runs: the map is not empty (it holds more than one run)")
        self._starts = t.start.tolist()
        self._vals = t.value.tolist()
