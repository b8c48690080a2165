"""Second-level page tables: leaves at 4K/2M/1G per root, and the invalidation counters.

Two logical leaf tables exist for every VM: `private` and `shared`.  For TDX
they are the mirror root (S-EPT) and the direct root (shared EPT); for other
VM types both live in the one direct root, which is why invalidations there
ignore the attribute filter (`zap_tables`).  A leaf is stored as
`sparse.pack_leaf(pfn, state)` (`pfn << 2 | state`, written inline on the fault path)
under its first gfn, one sparse index per level.  `to_arrays` / `from_arrays` read and
fill a whole table as columns (`columns.LeafColumns`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from imemviz.model.columns import I64, LeafColumns, Table
from imemviz.model.sparse import SparseIndex, pack_leaves, unpack_leaves
from imemviz.model.units import LEVEL_1G, LEVEL_2M, LEVEL_4K, LEVELS

# S-EPT leaf states (TDX module names); non-TDX leaves are always MAPPED.
MAPPED, PENDING, BLOCKED, PENDING_BLOCKED = 0, 1, 2, 3
STATE_NAMES = {
    MAPPED: "MAPPED",
    PENDING: "PENDING",
    BLOCKED: "BLOCKED",
    PENDING_BLOCKED: "PENDING_BLOCKED",
}

INVALID_GFN = -1


class Leaf(NamedTuple):
    """One leaf SPTE (a tuple: millions are built and dropped on big zaps)."""

    gfn: int  # first gfn the leaf maps
    level: int
    pfn: int  # pfn of that first gfn
    state: int = MAPPED

    @property
    def npages(self) -> int:
        return 1 << (9 * (self.level - 1))

    def pfn_of(self, gfn: int) -> int:
        return self.pfn + (gfn - self.gfn)


class LeafTable:
    __slots__ = ("_d1g", "_d2m", "_d4k", "leaves", "root", "tables")

    def __init__(self, root: str) -> None:
        self.root = root
        self.leaves: dict[int, SparseIndex[int]] = {
            LEVEL_4K: SparseIndex(),
            LEVEL_2M: SparseIndex(),
            LEVEL_1G: SparseIndex(),
        }
        # Non-leaf page-table pages that exist: (level of the entries it holds, gfn >> shift)
        # -> host pfn.  Only tracked for the TDX mirror root, whose pages are S-EPT pages
        # taken from host memory (TDH.MEM.SEPT.ADD) and never freed while the TD runs.
        self.tables: dict[tuple[int, int], int] = {}
        # The dicts behind the indexes, for the lookup on every guest access.
        self._d4k = self.leaves[LEVEL_4K].dict_view()
        self._d2m = self.leaves[LEVEL_2M].dict_view()
        self._d1g = self.leaves[LEVEL_1G].dict_view()

    def __deepcopy__(self, memo: dict[int, Any]) -> LeafTable:
        """The leaf indexes copied as a whole (SparseIndex.__deepcopy__), the lookup dicts
        pointing at the copies."""
        import copy

        new = LeafTable.__new__(LeafTable)
        memo[id(self)] = new
        new.root = self.root
        new.leaves = {lv: copy.deepcopy(idx, memo) for lv, idx in self.leaves.items()}
        new.tables = dict(self.tables)  # (level, index) -> pfn: immutable keys and values
        new._d4k = new.leaves[LEVEL_4K].dict_view()
        new._d2m = new.leaves[LEVEL_2M].dict_view()
        new._d1g = new.leaves[LEVEL_1G].dict_view()
        return new

    def lookup(self, gfn: int) -> Leaf | None:
        v = self._d4k.get(gfn)
        if v is not None:
            return Leaf(gfn, LEVEL_4K, v >> 2, v & 3)
        if self._d2m:
            head = gfn & ~0x1FF
            v = self._d2m.get(head)
            if v is not None:
                return Leaf(head, LEVEL_2M, v >> 2, v & 3)
        if self._d1g:
            head = gfn & ~0x3FFFF
            v = self._d1g.get(head)
            if v is not None:
                return Leaf(head, LEVEL_1G, v >> 2, v & 3)
        return None

    def install(self, leaf: Leaf) -> None:
        self.leaves[leaf.level].set(leaf.gfn, (leaf.pfn << 2) | leaf.state)

    def set_state(self, leaf: Leaf, state: int) -> None:
        self.leaves[leaf.level].set(leaf.gfn, (leaf.pfn << 2) | state)

    def remove(self, leaf: Leaf) -> None:
        self.leaves[leaf.level].pop(leaf.gfn)

    def touching(self, start: int, end: int) -> list[Leaf]:
        """Leaves whose span intersects [start, end), sorted by gfn (`to_arrays` of the
        window as Leaf tuples)."""
        c = self.to_arrays(start, end)
        return list(map(Leaf, c.gfn.tolist(), c.level.tolist(), c.pfn.tolist(), c.state.tolist()))

    def pop_touching(self, start: int, end: int) -> list[Leaf]:
        """Remove and return the leaves whose span intersects [start, end), by gfn."""
        out: list[Leaf] = []
        for level in LEVELS:
            n = 1 << (9 * (level - 1))
            out += [
                Leaf(g, level, v >> 2, v & 3)
                for g, v in self.leaves[level].pop_range(start & ~(n - 1), end)
            ]
        out.sort()
        return out

    def any_below(self, head: int, level: int) -> bool:
        """A smaller leaf exists inside the span of a `level` leaf starting at `head`."""
        end = head + (1 << (9 * (level - 1)))
        return any(self.leaves[lv].any_in(head, end) for lv in LEVELS if lv < level)

    def count(self, level: int) -> int:
        return len(self.leaves[level])

    def all_leaves(self) -> list[Leaf]:
        """Every leaf, by gfn (ties in level order): `to_arrays` as Leaf tuples."""
        c = self.to_arrays()
        cols = (c.gfn.tolist(), c.level.tolist(), c.pfn.tolist(), c.state.tolist())
        return list(map(Leaf, *cols))

    def to_arrays(self, start: int = 0, end: int | None = None) -> LeafColumns:
        """The leaves as columns, sorted by gfn, then level: every leaf, or with `end`
        the leaves whose span meets [start, end)."""
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for level in LEVELS:
            idx = self.leaves[level]
            if not len(idx):
                continue
            if end is None and start == 0:
                keys, vals = idx.int_arrays()
            else:
                head = start & ~((1 << (9 * (level - 1))) - 1)
                k, v = idx.arrays_in(head, (1 << 63) - 1 if end is None else end)
                keys, vals = np.array(k, I64).reshape(-1), np.array(v, I64).reshape(-1)
            if len(keys):
                parts.append((keys, np.full(len(keys), level, I64), vals))
        if not parts:
            return LeafColumns.empty()
        if len(parts) == 1:
            gfn, lv, packed = parts[0]
        else:
            gfn, lv, packed = (np.concatenate(c) for c in zip(*parts, strict=True))
            order = np.argsort(gfn, kind="stable")  # sorted runs: a merge, ties by level
            gfn, lv, packed = gfn[order], lv[order], packed[order]
        pfn, state = unpack_leaves(packed)
        return LeafColumns(gfn, lv, pfn, state)

    def from_arrays(
        self,
        cols: LeafColumns | Mapping[str, Any],
        pfn_limit: int | None = None,
        *,
        check: bool = True,
    ) -> None:
        """Fill this empty table from columns (`to_arrays`' form), after checking them:
        levels 1..3, states 0..3, each gfn a multiple of its level's pages and below
        2**52, each pfn >= 0 and its pages below `pfn_limit` (when given).  A ValueError
        names the first bad column and row; nothing is stored then.  `check=False`: `cols`
        is a LeafColumns its maker has already checked (the state file reader, whose
        messages name the JSON path), stored as it is."""
        t = check_leaves(cols, pfn_limit) if check else LeafColumns.unchecked(cols)
        if any(len(idx) for idx in self.leaves.values()):
            raise ValueError(f"leaves: the {self.root} table is not empty")
        packed = pack_leaves(t.pfn, t.state)
        for level in LEVELS:
            m = t.level == level
            if m.any():
                self.leaves[level].load_sorted(t.gfn[m].tolist(), packed[m].tolist())

    def clear(self) -> list[Leaf]:
        out = self.all_leaves()
        for idx in self.leaves.values():
            idx.clear()
        return out


def check_leaves(cols: Table | Mapping[str, Any], pfn_limit: int | None = None) -> LeafColumns:
    """`cols` as LeafColumns, checked (see `LeafTable.from_arrays`)."""
    t = LeafColumns.checked(cols)
    t.check_in("level", LEVELS)
    t.check_range("state", MAPPED, PENDING_BLOCKED)
    t.check_range("gfn", 0, (1 << 52) - 1, "must be a gfn below 2**52")
    npages = t.npages
    t.bad("gfn", (t.gfn & (npages - 1)) != 0, "must be a multiple of the level's pages")
    t.bad("pfn", t.pfn < 0, "must be >= 0")
    if pfn_limit is not None:
        t.bad("pfn", t.pfn > pfn_limit - npages, f"its pages must lie below pfn {pfn_limit:#x}")
    return t


class InvalidateState:
    """mmu_invalidate_seq, the in-progress count and the union range (kvm_main.c)."""

    __slots__ = ("in_progress", "range_end", "range_start", "seq")

    def __init__(self) -> None:
        self.seq = 0
        self.in_progress = 0
        self.range_start = INVALID_GFN
        self.range_end = INVALID_GFN

    def begin(self) -> None:
        self.in_progress += 1
        if self.in_progress == 1:
            self.range_start = self.range_end = INVALID_GFN

    def range_add(self, start: int, end: int) -> None:
        if self.range_start == INVALID_GFN:
            self.range_start, self.range_end = start, end
        else:
            self.range_start = min(self.range_start, start)
            self.range_end = max(self.range_end, end)

    def end(self) -> None:
        self.seq += 1
        self.in_progress -= 1

    def retry_gfn(self, mmu_seq: int, gfn: int) -> bool:
        """mmu_invalidate_retry_gfn(): a fault with snapshot `mmu_seq` must not install."""
        if self.in_progress and self.range_start <= gfn < self.range_end:
            return True
        return self.seq != mmu_seq
