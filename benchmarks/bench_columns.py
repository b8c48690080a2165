"""Issue 14 item 1: should leaves live in columns (struct of arrays) instead of a dict of
packed ints plus a sorted key list (`SparseIndex`)?  A prototype measured on the hot paths:

- the fault path: 1,000,000 inserts of random 4K gfns, each after a point lookup
  (a fault looks the gfn up first), then 1,000,000 point lookups (guest accesses);
- the conversion: removing every leaf in 1/4 of a 4 TiB guest holding 100,000
  scattered leaves (25,000 removed), returning their keys and values;
- export: every leaf as sorted int64 columns (state files, check, diff, feeds).

`Columns` is the prototype: sorted int64 key/value arrays plus an unsorted append
buffer (dict) merged on the next ordered query: a point lookup is a dict probe on the
buffer, else a binary search of the arrays; a range removal is two searchsorted calls
and one array splice.  Run: `python benchmarks/bench_columns.py` (process CPU times,
medians of 3: less moved by other load than wall times).

Then the public columnar API on the live store (`LeafTable.to_arrays`, model/columns.py)
against the raw `SparseIndex.int_arrays` it replaces: 1,000,000 4K leaves at random
gfns (faults) plus 1,000 2M leaves, and the same table filled by `from_arrays` (a
loaded state: its dicts already in key order).
"""

from __future__ import annotations

import random
import statistics
import sys
import time

import numpy as np

from imemviz.model.mmu import LeafTable
from imemviz.model.sparse import SparseIndex, pack_leaf

N_FAULTS = 1_000_000
GUEST = (4 << 40) >> 12  # gfns of a 4 TiB guest


class Columns:
    """Sorted key/value columns with an append buffer (the prototype)."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.int64)
        self.vals = np.zeros(0, np.int64)
        self.buf: dict[int, int] = {}

    def _merge(self) -> None:
        if not self.buf:
            return
        k = np.fromiter(self.buf.keys(), np.int64, len(self.buf))
        v = np.fromiter(self.buf.values(), np.int64, len(self.buf))
        keys = np.concatenate([self.keys, k])
        order = np.argsort(keys, kind="stable")
        self.keys, self.vals = keys[order], np.concatenate([self.vals, v])[order]
        self.buf.clear()

    def get(self, key: int) -> int | None:
        v = self.buf.get(key)
        if v is not None:
            return v
        keys = self.keys
        i = int(keys.searchsorted(key))
        if i < len(keys) and keys[i] == key:
            return int(self.vals[i])
        return None

    def set(self, key: int, value: int) -> None:
        self.buf[key] = value  # (a key already in the arrays would need an in-place write)

    def pop_range(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        self._merge()
        i, j = self.keys.searchsorted([start, end])
        out = self.keys[i:j].copy(), self.vals[i:j].copy()
        self.keys = np.concatenate([self.keys[:i], self.keys[j:]])
        self.vals = np.concatenate([self.vals[:i], self.vals[j:]])
        return out

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        self._merge()
        return self.keys, self.vals


def _cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def bench(kind: str) -> dict[str, float]:
    rng = random.Random(1)
    gfns = rng.sample(range(GUEST), N_FAULTS)
    idx = SparseIndex() if kind == "dict" else Columns()
    get, put = idx.get, idx.set

    def faults() -> None:
        for g in gfns:
            if get(g) is None:
                put(g, g << 2)

    def lookups() -> None:
        for g in gfns:
            get(g)

    out = {"insert 1M faults": _cpu(faults)}
    # Sorting what the faults added: the key list's merge (dict) or the buffer's (cols).
    out["sort after the faults"] = _cpu(
        idx._sorted if kind == "dict" else idx._merge  # type: ignore[union-attr]
    )
    out["1M point lookups"] = _cpu(lookups)
    out["export sorted columns"] = _cpu(
        idx.int_arrays if kind == "dict" else idx.arrays  # type: ignore[union-attr]
    )
    # The conversion: 100,000 scattered leaves, remove the 1/4 of the guest.
    small = SparseIndex() if kind == "dict" else Columns()
    for g in rng.sample(range(GUEST), 100_000):
        small.set(g, g << 2)
    small.pop_range(0, 1) if kind == "dict" else small._merge()  # merge outside the timing
    removed = []
    out["range removal, 25k of 100k"] = _cpu(
        lambda: removed.append(
            small.pop_range_arrays(GUEST // 4, GUEST // 2)  # type: ignore[union-attr]
            if kind == "dict"
            else small.pop_range(GUEST // 4, GUEST // 2)
        )
    )
    return out


def bench_api() -> dict[str, float]:
    rng = random.Random(2)
    table = LeafTable("direct")
    d4k = table.leaves[1]
    for g in rng.sample(range(GUEST), N_FAULTS):
        if table.lookup(g) is None:
            d4k.set(g, pack_leaf(g, 0))
    for k in range(1000):
        table.leaves[2].set((GUEST + k) << 9, pack_leaf(k << 9, 0))
    table.leaves[1].keys()  # the key list merged outside the timings, as in a session

    def old_int_arrays() -> None:  # SparseIndex.int_arrays before the columnar API
        d = d4k.dict_view()
        keys = np.fromiter(d.keys(), np.int64, len(d))
        vals = np.fromiter(d.values(), np.int64, len(d))
        order = np.argsort(keys, kind="stable")
        keys[order], vals[order]

    out: dict[str, float] = {}
    for _ in range(3):  # interleaved, so that other load falls on all three alike
        for name, fn in (
            ("int_arrays before (argsort), 1M", old_int_arrays),
            ("int_arrays now, 1M", d4k.int_arrays),
            ("LeafTable.to_arrays (1M + 1k 2M)", table.to_arrays),
        ):
            out[name] = min(out.get(name, 1e9), _cpu(fn))
    cols = table.to_arrays()
    loaded = LeafTable("direct")
    out["LeafTable.from_arrays (checked)"] = _cpu(lambda: loaded.from_arrays(cols))
    out["to_arrays of the loaded table"] = _cpu(loaded.to_arrays)
    assert loaded.to_arrays() == cols
    return out


def main() -> int:
    rows: dict[str, dict[str, list[float]]] = {}
    for _ in range(3):
        for kind in ("dict", "cols"):
            for k, v in bench(kind).items():
                rows.setdefault(k, {}).setdefault(kind, []).append(v)
    print(f"{'measure':32s} {'dict+SortedList':>16s} {'columns':>12s}  (CPU ms, median of 3)")
    for k, d in rows.items():
        a, b = (statistics.median(d[x]) * 1e3 for x in ("dict", "cols"))
        print(f"{k:32s} {a:16.1f} {b:12.1f}")
    api: dict[str, list[float]] = {}
    for _ in range(3):
        for k, v in bench_api().items():
            api.setdefault(k, []).append(v)
    print(f"\n{'columnar API':36s} {'CPU ms, median of 3':>20s}  (the first three: best of 3 each)")
    for k, v in api.items():
        print(f"{k:36s} {statistics.median(v) * 1e3:20.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
