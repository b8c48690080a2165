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

from imemviz.model.sparse import SparseIndex

MAX_ORDER = 18  # 1G: the largest block the allocator tracks


class BuddyAllocator:
    __slots__ = ("_free", "_heaps", "free_pages", "npages")

    def __init__(self, npages: int) -> None:
        self.npages = npages
        self._free: list[set[int]] = [set() for _ in range(MAX_ORDER + 1)]
        self._heaps: list[list[int]] = [[] for _ in range(MAX_ORDER + 1)]
        self.free_pages = 0
        pfn = 0
        while pfn < npages:
            order = MAX_ORDER
            while order and (pfn & ((1 << order) - 1) or pfn + (1 << order) > npages):
                order -= 1
            self._push(pfn, order)
            self.free_pages += 1 << order
            pfn += 1 << order

    def _push(self, pfn: int, order: int) -> None:
        self._free[order].add(pfn)
        heapq.heappush(self._heaps[order], pfn)

    def _pop_lowest(self, order: int) -> int | None:
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
        return any(self._free[o] for o in range(order, MAX_ORDER + 1))

    def alloc(self, order: int) -> int | None:
        """The lowest free block of the smallest sufficient order, split down to `order`."""
        for o in range(order, MAX_ORDER + 1):
            if self._free[o]:
                pfn = self._pop_lowest(o)
                break
        else:
            return None
        assert pfn is not None
        while o > order:
            o -= 1
            self._push(pfn + (1 << o), o)
        self.free_pages -= 1 << order
        return pfn

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

    def take(self, pfn: int) -> bool:
        """Remove one specific free page (a poisoned page leaves the allocator)."""
        for order in range(MAX_ORDER + 1):
            head = pfn & ~((1 << order) - 1)
            if head in self._free[order]:
                self._free[order].remove(head)
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
        return any(pfn & ~((1 << order) - 1) in self._free[order] for order in range(MAX_ORDER + 1))

    def free_blocks(self) -> list[tuple[int, int]]:
        """(pfn, order) of every free block, sorted: the allocator's whole state."""
        return sorted((pfn, o) for o in range(MAX_ORDER + 1) for pfn in self._free[o])

    @classmethod
    def from_free_blocks(cls, npages: int, blocks: list[tuple[int, int]]) -> BuddyAllocator:
        a = cls.__new__(cls)
        a.npages = npages
        a._free = [set() for _ in range(MAX_ORDER + 1)]
        a._heaps = [[] for _ in range(MAX_ORDER + 1)]
        a.free_pages = 0
        for pfn, order in blocks:
            a._free[order].add(pfn)
            a.free_pages += 1 << order
        for o in range(MAX_ORDER + 1):
            a._heaps[o] = sorted(a._free[o])
        return a


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
        n = 1 << order
        self.content.pop_range(pfn, pfn + n)
        if self.poisoned and any(p in self.poisoned for p in range(pfn, pfn + n)):
            for p in range(pfn, pfn + n):
                if p not in self.poisoned:
                    self.alloc.free(p, 0)
            return
        self.alloc.free(pfn, order)

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
