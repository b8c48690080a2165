"""Second-level page tables: leaves at 4K/2M/1G per root, and the invalidation counters.

Two logical leaf tables exist for every VM: `private` and `shared`.  For TDX
they are the mirror root (S-EPT) and the direct root (shared EPT); for other
VM types both live in the one direct root, which is why invalidations there
ignore the attribute filter (`zap_tables`).  A leaf is stored as
`pfn << 2 | state` under its first gfn, one sparse index per level.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from imemviz.model.sparse import SparseIndex
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
        self._d4k = self.leaves[LEVEL_4K]._d
        self._d2m = self.leaves[LEVEL_2M]._d
        self._d1g = self.leaves[LEVEL_1G]._d

    def __deepcopy__(self, memo: dict[int, Any]) -> LeafTable:
        """The leaf indexes copied as a whole (SparseIndex.__deepcopy__), the lookup dicts
        pointing at the copies."""
        import copy

        new = LeafTable.__new__(LeafTable)
        memo[id(self)] = new
        new.root = self.root
        new.leaves = {lv: copy.deepcopy(idx, memo) for lv, idx in self.leaves.items()}
        new.tables = dict(self.tables)  # (level, index) -> pfn: immutable keys and values
        new._d4k = new.leaves[LEVEL_4K]._d
        new._d2m = new.leaves[LEVEL_2M]._d
        new._d1g = new.leaves[LEVEL_1G]._d
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
        """Leaves whose span intersects [start, end), sorted by gfn."""
        out = []
        for level in LEVELS:
            n = 1 << (9 * (level - 1))
            for g, v in self.leaves[level].items_in(start & ~(n - 1), end):
                out.append(Leaf(g, level, v >> 2, v & 3))
        out.sort(key=lambda lf: lf.gfn)
        return out

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
        out: list[Leaf] = []
        for level in LEVELS:
            out.extend(Leaf(g, level, v >> 2, v & 3) for g, v in self.leaves[level].items())
        out.sort(key=lambda lf: lf.gfn)
        return out

    def clear(self) -> list[Leaf]:
        out = self.all_leaves()
        for idx in self.leaves.values():
            idx.clear()
        return out


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
