"""Host physical memory: a seeded buddy allocator, page contents and the VMM's shared pages.

The allocator hands out naturally aligned blocks of 2**order pages, always
the lowest-addressed free block of the smallest order that fits, so every
choice is a pure function of the seed and the op history.  The seed
pre-fragments memory a little, as a host that has been running for a while
is, so 4K allocations come back scattered while 2M and 1G blocks still exist.
"""

from __future__ import annotations

import heapq
import random
from bisect import bisect_right

import numpy as np

from imemviz.model.columns import (
    I64,
    BlockColumns,
    FreeColumns,
    HostColumns,
    PageValues,
    PfnList,
    int64,
)
from imemviz.model.sparse import SparseIndex

MAX_ORDER = 18  # 1G: the largest block the allocator tracks


TOP = 1 << MAX_ORDER  # pages in a top-order block


class TopBlocks:
    """The free blocks of the top order, as sorted, disjoint, coalesced pfn intervals.

    A host of 1 PiB is a million 1G blocks; kept one by one they cost a
    second and a hundred megabytes to set up, as intervals a few bytes.
    Starts and ends are multiples of `TOP`.
    """

    __slots__ = ("_a", "_b", "blocks")

    def __init__(self) -> None:
        self._a: list[int] = []
        self._b: list[int] = []
        self.blocks = 0

    def __bool__(self) -> bool:
        return self.blocks > 0

    def add_range(self, a: int, b: int) -> None:
        """Mark [a, b) free (it must not overlap a free interval)."""
        if a >= b:
            return
        starts, ends = self._a, self._b
        i = bisect_right(starts, a)
        if i and ends[i - 1] == a:  # continues the interval before
            i -= 1
            ends[i] = b
        else:
            starts.insert(i, a)
            ends.insert(i, b)
        if i + 1 < len(starts) and starts[i + 1] == ends[i]:  # meets the interval after
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        self.blocks += (b - a) >> MAX_ORDER

    def contains(self, pfn: int) -> bool:
        i = bisect_right(self._a, pfn) - 1
        return i >= 0 and pfn < self._b[i]

    def remove(self, pfn: int) -> None:
        """Take the free block at `pfn` out (it must be free)."""
        i = bisect_right(self._a, pfn) - 1
        a, b = self._a[i], self._b[i]
        if a == pfn:
            self._a[i] = pfn + TOP
        elif pfn + TOP == b:
            self._b[i] = pfn
        else:
            self._b[i] = pfn
            self._a.insert(i + 1, pfn + TOP)
            self._b.insert(i + 1, b)
        if self._a[i] == self._b[i]:
            del self._a[i], self._b[i]
        self.blocks -= 1

    def take_lowest(self, n: int) -> tuple[int, int]:
        """Up to `n` consecutive blocks from the lowest interval: (pfn, count)."""
        a, b = self._a[0], self._b[0]
        k = min(n, (b - a) >> MAX_ORDER)
        self._a[0] = a + (k << MAX_ORDER)
        if self._a[0] == b:
            del self._a[0], self._b[0]
        self.blocks -= k
        return a, k

    def runs(self) -> list[tuple[int, int]]:
        """(pfn, blocks) of every interval, by pfn."""
        return [(a, (b - a) >> MAX_ORDER) for a, b in zip(self._a, self._b, strict=True)]


class BuddyAllocator:
    """Free blocks by order: sets (with a heap for the lowest) below the top order,
    intervals (`TopBlocks`) at the top order."""

    __slots__ = ("_free", "_heaps", "_top", "free_pages", "npages")

    def __init__(self, npages: int) -> None:
        self.npages = npages
        self._free: list[set[int]] = [set() for _ in range(MAX_ORDER)]
        self._heaps: list[list[int]] = [[] for _ in range(MAX_ORDER)]
        self._top = TopBlocks()
        self.free_pages = 0
        # Whole top-order blocks first (one interval), then the tail's largest blocks.
        whole = npages & ~(TOP - 1)
        self._top.add_range(0, whole)
        self.free_pages = whole
        pfn = whole
        while pfn < npages:
            order = MAX_ORDER - 1
            while order and (pfn & ((1 << order) - 1) or pfn + (1 << order) > npages):
                order -= 1
            self._push(pfn, order)
            self.free_pages += 1 << order
            pfn += 1 << order

    def _push(self, pfn: int, order: int) -> None:
        if order == MAX_ORDER:
            self._top.add_range(pfn, pfn + TOP)
            return
        self._free[order].add(pfn)
        heapq.heappush(self._heaps[order], pfn)

    def _has(self, order: int) -> bool:
        return bool(self._top) if order == MAX_ORDER else bool(self._free[order])

    def _contains(self, pfn: int, order: int) -> bool:
        return self._top.contains(pfn) if order == MAX_ORDER else pfn in self._free[order]

    def _discard(self, pfn: int, order: int) -> None:
        if order == MAX_ORDER:
            self._top.remove(pfn)
        else:
            self._free[order].remove(pfn)  # its heap entry goes stale

    def _pop_lowest(self, order: int) -> int | None:
        if order == MAX_ORDER:
            return self._top.take_lowest(1)[0] if self._top else None
        heap, free = self._heaps[order], self._free[order]
        while heap:
            pfn = heapq.heappop(heap)
            if pfn in free:
                free.remove(pfn)
                return pfn
        return None

    def has_block(self, order: int) -> bool:
        """True when a block of `order` can be handed out (directly or by splitting)."""
        if order == 0:
            return self.free_pages > 0
        return any(self._has(o) for o in range(order, MAX_ORDER + 1))

    def alloc(self, order: int) -> int | None:
        """The lowest free block of the smallest sufficient order, split down to `order`."""
        # _has, _pop_lowest and _push written out: every fault allocates (one call, not 2-20).
        free = self._free
        heaps = self._heaps
        if order == 0 and free[0]:  # every other 4K fault: a free page, nothing to split
            blocks, heap = free[0], heaps[0]
            while True:  # every free block has an entry in its heap (stale ones too)
                page = heapq.heappop(heap)
                if page in blocks:
                    blocks.remove(page)
                    self.free_pages -= 1
                    return page
        pfn: int | None = None
        for o in range(order, MAX_ORDER):
            blocks = free[o]
            if blocks:
                heap = heaps[o]
                while heap:
                    pfn = heapq.heappop(heap)
                    if pfn in blocks:
                        blocks.remove(pfn)
                        break
                else:
                    pfn = None
                break
        else:
            if not self._top:
                return None
            o = MAX_ORDER
            pfn = self._top.take_lowest(1)[0]
        assert pfn is not None
        while o > order:
            o -= 1
            half = pfn + (1 << o)
            free[o].add(half)
            heapq.heappush(heaps[o], half)
        self.free_pages -= 1 << order
        return pfn

    def alloc_many(self, order: int, count: int) -> list[tuple[int, int]]:
        """What `count` calls of alloc(order) hand out, as runs (pfn, n): n blocks of
        `order` at pfn, pfn + 2**order, ...  Stops early when memory runs out.

        Exact, and costs the free blocks it touches plus the top-order intervals,
        never the blocks handed out: the lowest block of the smallest order that
        fits is split, and `count` allocs from a block of order o consume it in
        address order, leaving the aligned blocks of what remains of it.
        """
        runs: list[tuple[int, int]] = []
        left = count
        size = 1 << order

        def emit(pfn: int, n: int) -> None:
            if runs and runs[-1][0] + (runs[-1][1] << order) == pfn:
                runs[-1] = (runs[-1][0], runs[-1][1] + n)
            else:
                runs.append((pfn, n))
            self.free_pages -= n << order

        pfn: int | None
        while left:
            if order == MAX_ORDER:
                if not self._top:
                    break
                pfn, n = self._top.take_lowest(left)
                emit(pfn, n)
                left -= n
                continue
            if self._free[order]:
                pfn = self._pop_lowest(order)
                assert pfn is not None
                emit(pfn, 1)
                left -= 1
                continue
            o = next((o for o in range(order + 1, MAX_ORDER + 1) if self._has(o)), None)
            if o is None:
                break
            per = 1 << (o - order)  # order-sized blocks in one block of order o
            if o == MAX_ORDER and left >= per:
                pfn, n = self._top.take_lowest(left // per)
                emit(pfn, n * per)
                left -= n * per
                continue
            pfn = self._pop_lowest(o)
            assert pfn is not None
            n = min(left, per)
            emit(pfn, n)
            left -= n
            # What is left of the block: its aligned pieces, as the splits leave them.
            lo, hi = pfn + n * size, pfn + (1 << o)
            while lo < hi:
                k = (lo & -lo).bit_length() - 1 if lo else o
                while lo + (1 << k) > hi:
                    k -= 1
                self._push(lo, k)
                lo += 1 << k
        return runs

    def free(self, pfn: int, order: int) -> None:
        self.free_pages += 1 << order
        while order < MAX_ORDER:
            buddy = pfn ^ (1 << order)
            if buddy not in self._free[order]:
                break
            self._free[order].remove(buddy)  # its heap entry goes stale
            pfn = min(pfn, buddy)
            order += 1
        self._push(pfn, order)

    def free_range(self, pfn: int, npages: int) -> None:
        """Free [pfn, pfn + npages): the same as freeing its pages one by one, in a number
        of steps that grows with log(npages), not npages."""
        end = pfn + npages
        while pfn < end:
            if not pfn & (TOP - 1) and end - pfn >= TOP:
                whole = (end - pfn) & ~(TOP - 1)
                self._top.add_range(pfn, pfn + whole)
                self.free_pages += whole
                pfn += whole
                continue
            k = (pfn & -pfn).bit_length() - 1 if pfn else MAX_ORDER
            k = min(k, MAX_ORDER)
            while pfn + (1 << k) > end:
                k -= 1
            self.free(pfn, k)
            pfn += 1 << k

    def take(self, pfn: int) -> bool:
        """Remove one specific free page (a poisoned page leaves the allocator)."""
        for order in range(MAX_ORDER + 1):
            head = pfn & ~((1 << order) - 1)
            if self._contains(head, order):
                self._discard(head, order)
                # Give back every part of the block but `pfn`.
                o = order
                while o > 0:
                    o -= 1
                    half = head + (1 << o)
                    if pfn >= half:
                        self._push(head, o)
                        head = half
                    else:
                        self._push(half, o)
                self.free_pages -= 1
                return True
        return False

    def is_free(self, pfn: int) -> bool:
        return any(
            self._contains(pfn & ~((1 << order) - 1), order) for order in range(MAX_ORDER + 1)
        )

    def free_runs(self) -> list[tuple[int, int, int]]:
        """(pfn, order, count) of every free block, sorted by pfn: the allocator's whole
        state.  Top-order blocks come as runs of consecutive blocks; the others one by one."""
        out = [(pfn, o, 1) for o in range(MAX_ORDER) for pfn in self._free[o]]
        out += [(pfn, MAX_ORDER, n) for pfn, n in self._top.runs()]
        out.sort()
        return out

    def free_blocks(self) -> list[tuple[int, int]]:
        """(pfn, order) of every free block, sorted (top-order runs expanded: small hosts)."""
        return [(p + (k << o), o) for p, o, n in self.free_runs() for k in range(n)]

    @classmethod
    def from_free_runs(cls, npages: int, runs: list[tuple[int, int, int]]) -> BuddyAllocator:
        """An allocator whose free blocks are `runs` (pfn, order, count), as `free_runs` gives."""
        a = cls.__new__(cls)
        a.npages = npages
        a._free = [set() for _ in range(MAX_ORDER)]
        a._heaps = [[] for _ in range(MAX_ORDER)]
        a._top = TopBlocks()
        a.free_pages = 0
        for pfn, order, n in runs:
            if order == MAX_ORDER:
                a._top.add_range(pfn, pfn + (n << MAX_ORDER))
            else:
                for k in range(n):
                    a._free[order].add(pfn + (k << order))
            a.free_pages += n << order
        for o in range(MAX_ORDER):
            a._heaps[o] = sorted(a._free[o])
        return a

    @classmethod
    def from_free_blocks(cls, npages: int, blocks: list[tuple[int, int]]) -> BuddyAllocator:
        return cls.from_free_runs(npages, [(pfn, order, 1) for pfn, order in blocks])


class HostMemory:
    """The host's pfn space: allocator, one content byte per page, poisoned pages."""

    __slots__ = ("alloc", "content", "npages", "other", "poisoned")

    def __init__(self, nbytes: int, seed: int) -> None:
        self.npages = nbytes >> 12
        self.alloc = BuddyAllocator(self.npages)
        # Zero is the default content: only pages written with a non-zero byte are stored.
        self.content: SparseIndex[int] = SparseIndex()
        self.poisoned: set[int] = set()
        # Blocks held by "the rest of the host" (other processes, page cache): pfn -> order.
        self.other: dict[int, int] = {}
        self._fragment(seed)

    def _fragment(self, seed: int) -> None:
        rng = random.Random(seed)
        n = max(8, min(2048, self.npages >> 12))
        held = []
        for _ in range(n):
            order = rng.choice((0, 0, 0, 0, 0, 1, 2, 3, 4, 9))
            pfn = self.alloc.alloc(order)
            if pfn is None:
                break
            held.append((pfn, order))
        rng.shuffle(held)
        for pfn, order in held[: len(held) // 2]:
            self.alloc.free(pfn, order)
        self.other = dict(sorted(held[len(held) // 2 :]))

    @property
    def free_bytes(self) -> int:
        return self.alloc.free_pages << 12

    def allocate(self, order: int) -> int | None:
        return self.alloc.alloc(order)

    def release(self, pfn: int, order: int) -> None:
        """Free a block; its contents are gone, a poisoned page never comes back."""
        self.release_range(pfn, 1 << order)

    def release_range(self, pfn: int, npages: int) -> None:
        """Free [pfn, pfn + npages) (blocks handed out by the allocator), as freeing each
        block would; poisoned pages stay out.  Costs log(npages) plus the poisoned pages."""
        end = pfn + npages
        self.content.pop_range(pfn, end)
        bad = sorted(p for p in self.poisoned if pfn <= p < end) if self.poisoned else []
        for p in bad:
            self.alloc.free_range(pfn, p - pfn)
            pfn = p + 1
        self.alloc.free_range(pfn, end - pfn)

    def read(self, pfn: int) -> int:
        return self.content.get(pfn, 0)

    def write(self, pfn: int, value: int) -> None:
        if value:
            self.content.set(pfn, value)
        else:
            self.content.pop(pfn)

    def clear(self, pfn: int, npages: int = 1) -> None:
        if npages == 1:
            self.content.pop(pfn)
        else:
            self.content.pop_range(pfn, pfn + npages)

    def to_arrays(self) -> HostColumns:
        """The whole host as columns: free blocks, other blocks, poisoned pages, contents."""
        free = np.array(self.alloc.free_runs(), I64).reshape(-1, 3)
        other = np.array(sorted(self.other.items()), I64).reshape(-1, 2)
        pfn, value = self.content.int_arrays()
        return HostColumns(
            self.npages,
            FreeColumns(free[:, 0], free[:, 1], free[:, 2]),
            BlockColumns(other[:, 0], other[:, 1]),
            PfnList(int64(sorted(self.poisoned))),
            PageValues(pfn, value),
        )

    def from_arrays(self, cols: HostColumns, *, check: bool = True) -> None:
        """Give this host (just built: no contents) the state of `cols`, after checking
        them: `npages` equal to this host's, orders 0..18, blocks aligned and inside the
        host, free and other blocks each disjoint, runs of free blocks only at the top
        order, contents 1..255.  A ValueError names the first bad table, column and row.
        `check=False`: the tables are stored as they are, their maker has checked them
        (the state file reader: its own rules and messages, which name the JSON path)."""
        if cols.npages != self.npages:
            raise ValueError(f"host: {cols.npages} pages, this host has {self.npages}")
        if check:
            cols = self._check_columns(cols)
        if len(self.content):
            raise ValueError("host content: the host is not empty")
        free, other, poisoned, content = cols.free, cols.other, cols.poisoned, cols.content
        n = self.npages
        new = BuddyAllocator.from_free_runs(
            n, list(zip(free.pfn.tolist(), free.order.tolist(), free.count.tolist(), strict=True))
        )
        for name in BuddyAllocator.__slots__:  # the same allocator object: kept by reference
            setattr(self.alloc, name, getattr(new, name))
        self.other.clear()
        self.other.update(zip(other.pfn.tolist(), other.order.tolist(), strict=True))
        self.poisoned.clear()
        self.poisoned.update(poisoned.pfn.tolist())
        if len(content):
            self.content.load_sorted(content.pfn.tolist(), content.value.tolist())

    def _check_columns(self, cols: HostColumns) -> HostColumns:
        """`cols` after `from_arrays`' checks of the four tables (ValueError at the first
        bad row), its columns as int64 arrays."""
        free = FreeColumns.checked(cols.free)
        other = BlockColumns.checked(cols.other)
        poisoned = PfnList.checked(cols.poisoned)
        content = PageValues.checked(cols.content)
        n = self.npages
        for t in (free, other):
            t.check_range("order", 0, MAX_ORDER)
            t.check_range("pfn", 0, n - 1, f"must be a pfn below {n:#x}")
            size = np.left_shift(1, t.order)
            t.bad("pfn", (t.pfn & (size - 1)) != 0, "must be a multiple of the block's pages")
            count = free.count if t is free else np.ones(len(t), I64)
            if t is free:
                t.bad("count", count < 1, "must be >= 1")
                t.bad("count", (count != 1) & (t.order < MAX_ORDER), "runs only at order 18")
            t.bad("pfn", count > ((n - t.pfn) >> t.order), "its pages must lie inside the host")
            end = t.pfn + (count << t.order)
            over = np.zeros(len(t), bool)
            over[1:] = t.pfn[1:] < end[:-1]
            t.bad("pfn", over, "overlaps the block before")
        poisoned.check_range("pfn", 0, n - 1, f"must be a pfn below {n:#x}")
        content.check_range("pfn", 0, n - 1, f"must be a pfn below {n:#x}")
        content.check_range("value", 1, 255, "must be a content byte 1..255 (0 is not stored)")
        return HostColumns(n, free, other, poisoned, content)
