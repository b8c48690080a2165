"""Host-side spaces as pixel codes: a guest_memfd file's offsets and the host pfn space.

Both spaces are described by sorted, disjoint intervals `[start, end)` with one
`HostCode` each (plus single poisoned pages drawn on top).  `file_space` and
`pfn_space` build them from the engine's sparse indexes once per state (cost:
the folios and host blocks that exist); `reduce_rows` then turns the part of
them inside a window into `rows x cols` uint8 codes at the cost of the pixels
plus the intervals in the window (two `searchsorted` and one difference array
per code), so scrolling a 4 TiB TD's pfn space does not walk its folios.

The reduction rule is the GPA map's: a pixel covering several pages shows the
highest code among them (a poisoned page beats a folio, a folio beats free
memory), so a single 4K folio stays visible in a 64 GiB pfn space.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import TYPE_CHECKING

import attrs
import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from imemviz.model.guest_memfd import GmemInode
    from imemviz.model.vm import VM

# One source of runs for _space: seven equally long int64 columns (see _part).
Part = tuple[np.ndarray, ...]


class HostCode(IntEnum):
    """Pixel codes of the host panes, in increasing significance."""

    OUTSIDE = 0  # past the end of the file / of host memory
    FREE = 1  # pfn space: free in the buddy allocator; file space: no folio (a hole)
    OTHER = 2  # pfn space: held by the rest of the host (other processes, page cache)
    SHARED = 3  # the VMM's anonymous memory behind memslots' userspace_addr
    SEPT = 4  # a TDX S-EPT page (TDH.MEM.SEPT.ADD), never freed while the TD runs
    FOLIO_4K = 5  # a guest_memfd folio of order 0
    FOLIO_2M = 6  # order 9
    FOLIO_1G = 7  # order 18
    HWPOISON = 8  # a page hit by memory_failure


HOST_NCODES = len(HostCode)
ORDER_CODE = {0: HostCode.FOLIO_4K, 9: HostCode.FOLIO_2M, 18: HostCode.FOLIO_1G}

# name, colour, meaning (the map's palette: folios warm like private memory, shared blue)
HOST_LEGEND: dict[HostCode, tuple[str, str, str]] = {
    HostCode.OUTSIDE: ("outside", "#ffffff", "Past the end of the file or of host memory"),
    HostCode.FREE: ("free / hole", "#ececec", "pfn space: free host memory; file: no folio"),
    HostCode.OTHER: ("other host", "#9e9e9e", "Pages the rest of the host holds"),
    HostCode.SHARED: ("VMM shared", "#0072b2", "The VMM's anonymous memory (shared pages)"),
    HostCode.SEPT: ("S-EPT page", "#009e73", "A TDX Secure EPT page (TDH.MEM.SEPT.ADD)"),
    HostCode.FOLIO_4K: ("folio 4K", "#e69f00", "A guest_memfd folio of order 0"),
    HostCode.FOLIO_2M: ("folio 2M", "#d55e00", "A guest_memfd folio of order 9"),
    HostCode.FOLIO_1G: ("folio 1G", "#8c3b00", "A guest_memfd folio of order 18"),
    HostCode.HWPOISON: ("hwpoison", "#000000", "A page hit by a memory error"),
}


def host_lut() -> np.ndarray:
    """(256, 3) uint8 colours for the codes (unused entries white)."""
    out = np.full((256, 3), 255, np.uint8)
    for code, (_, colour, _) in HOST_LEGEND.items():
        out[code] = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return out


@attrs.frozen(eq=False)
class Space:
    """One host space as intervals.  `fd`/`index` say which folio an interval is (-1: none)."""

    limit: int  # pages [0, limit) exist
    base: int  # code of pages inside the limit that no interval covers
    starts: np.ndarray  # int64, sorted, disjoint
    ends: np.ndarray
    codes: np.ndarray  # uint8
    fd: np.ndarray  # int64: guest_memfd fd of a folio interval, else -1
    index: np.ndarray  # int64: head file index of a folio interval, else -1
    pfn: np.ndarray  # int64: head pfn of a folio interval (file space), else -1
    poison: np.ndarray  # int64 sorted: poisoned pages
    # int64: pages per folio of a folio interval (a run of folios is one interval), else -1
    unit: np.ndarray | None = None

    def folio_at(self, i: int, x: int) -> tuple[int, int, int, int]:
        """(fd, head index, head pfn, pages) of the folio holding page x of interval i."""
        start, n = int(self.starts[i]), int(self.ends[i] - self.starts[i])
        u = int(self.unit[i]) if self.unit is not None and self.unit[i] > 0 else n
        k = (x - start) // u * u
        return int(self.fd[i]), int(self.index[i]) + k, int(self.pfn[i]) + k, u

    def __len__(self) -> int:
        return len(self.starts)

    def at(self, x: int) -> int:
        """Position of the interval holding page x, or -1."""
        i = int(np.searchsorted(self.ends, x, side="right"))
        if i < len(self.starts) and self.starts[i] <= x:
            return i
        return -1

    def code_at(self, x: int) -> int:
        if not 0 <= x < self.limit:
            return HostCode.OUTSIDE
        p = int(np.searchsorted(self.poison, x))
        if p < len(self.poison) and self.poison[p] == x:
            return HostCode.HWPOISON
        i = self.at(x)
        return int(self.codes[i]) if i >= 0 else self.base


def _space(limit: int, base: int, parts: list[Part], poison: Iterable[int]) -> Space:
    cols = [np.concatenate([np.asarray(p[k], np.int64) for p in parts]) for k in range(7)]
    s, e, c, fd, idx, pfn, unit = cols
    order = np.argsort(s, kind="stable")
    return Space(
        limit,
        int(base),
        s[order],
        e[order],
        c[order].astype(np.uint8),
        fd[order],
        idx[order],
        pfn[order],
        np.unique(np.asarray(sorted(poison), np.int64)),
        unit[order],
    )


def _part(
    starts: ArrayLike,
    sizes: ArrayLike,
    code: ArrayLike,
    fd: int | None = None,
    index: ArrayLike | None = None,
    pfn: ArrayLike | None = None,
    unit: ArrayLike | None = None,
) -> Part:
    """One source of runs as columns (start, end, code, fd, index, pfn, unit); -1: none."""
    s = np.asarray(starts, np.int64)
    e = s + np.asarray(sizes, np.int64)
    c = np.broadcast_to(np.asarray(code, np.int64), s.shape)
    none = np.full(s.shape, -1, np.int64)
    return (
        s,
        e,
        c,
        none if fd is None else np.broadcast_to(np.int64(fd), s.shape),
        none if index is None else np.asarray(index, np.int64),
        none if pfn is None else np.asarray(pfn, np.int64),
        none if unit is None else np.broadcast_to(np.asarray(unit, np.int64), s.shape),
    )


def _folio_arrays(inode: GmemInode, order: int) -> tuple[np.ndarray, ...]:
    """(head indexes, head pfns, hwpoison flags, sizes in pages) of one order's folios; a
    run of folios is one entry."""
    keys, pfn, hw, count = inode.columns(order)
    return keys, pfn, hw.astype(bool), count << order


def file_space(vm: VM, fd: int) -> Space:
    """The offset space of the guest_memfd open as `fd`: folios by order, hwpoison."""
    f = vm.files[fd]
    parts = [_part([], [], 0)]
    for order in (0, 9, 18):
        idx, pfn, hw, size = _folio_arrays(f.inode, order)
        # The kernel flags the whole folio (folio_set_hwpoison): so does this space.
        code = np.where(hw, HostCode.HWPOISON, ORDER_CODE[order])
        parts.append(_part(idx, size, code, fd, idx, pfn, 1 << order))
    return _space(f.inode.npages, HostCode.FREE, parts, ())


def pfn_space(vm: VM) -> Space:
    """The host pfn space: free blocks, other host pages, VMM shared pages, S-EPT pages,
    guest_memfd folios (with their fd and index) and poisoned pages."""
    host = vm.host
    parts = [_part([], [], 0)]
    blocks = host.alloc.free_runs()  # (pfn, order, count): top-order runs stay runs
    if blocks:
        b = np.asarray(blocks, np.int64)
        parts.append(_part(b[:, 0], b[:, 2] << b[:, 1], HostCode.FREE))
    if host.other:
        o = np.asarray(list(host.other.items()), np.int64)
        parts.append(_part(o[:, 0], np.left_shift(1, o[:, 1]), HostCode.OTHER))
    for level, idx in vm.hva_pages.items():
        _, pfns = idx.arrays()
        parts.append(_part(pfns, 1 << (9 * (level - 1)), HostCode.SHARED))
    tables = list(vm.private.tables.values())
    parts.append(_part(tables, 1, HostCode.SEPT))
    for fd, f in vm.files.items():
        for order in (0, 9, 18):
            heads, pfn, _, size = _folio_arrays(f.inode, order)
            parts.append(_part(pfn, size, ORDER_CODE[order], fd, heads, pfn, 1 << order))
    return _space(host.npages, HostCode.OTHER, parts, host.poisoned)


def pixel_bounds(lo: int, hi: int, npix: int) -> np.ndarray:
    """npix + 1 page boundaries: pixel p covers pages [b[p], b[p + 1])."""
    return lo + (np.arange(npix + 1, dtype=np.int64) * (hi - lo)) // npix


def reduce_rows(space: Space, start: int, row_pages: int, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) uint8 codes of pages [start, start + rows * row_pages); cols <= row_pages."""
    npix = rows * cols
    lo, hi = start, start + rows * row_pages
    bounds = pixel_bounds(lo, hi, npix)
    out = np.full(npix, HostCode.OUTSIDE, np.uint8)
    inside = bounds[:-1] < space.limit  # a pixel with a page inside the space
    out[inside] = space.base
    # Intervals intersecting the window: ends are sorted because intervals are disjoint.
    i0 = int(np.searchsorted(space.ends, lo, side="right"))
    i1 = int(np.searchsorted(space.starts, hi, side="left"))
    s = np.clip(space.starts[i0:i1], lo, hi)
    e = np.clip(space.ends[i0:i1], lo, hi)
    c = space.codes[i0:i1]
    # The base code only shows where some page of the pixel is in no interval: pixels
    # entirely covered by intervals take the intervals' codes alone.
    gaps_s = np.concatenate(([lo], e))
    gaps_e = np.concatenate((s, [min(hi, max(space.limit, lo))]))
    keep = gaps_e > gaps_s
    covered = _coverage(bounds, gaps_s[keep], gaps_e[keep], npix)
    out[inside & ~covered] = HostCode.OUTSIDE  # repainted below by what covers them
    for code in np.unique(c):
        m = c == code
        cov = _coverage(bounds, s[m], e[m], npix)
        out[cov] = np.maximum(out[cov], code)  # the most significant code wins
    if len(space.poison):
        p0 = int(np.searchsorted(space.poison, lo))
        p1 = int(np.searchsorted(space.poison, hi))
        px = np.searchsorted(bounds, space.poison[p0:p1], side="right") - 1
        out[px] = HostCode.HWPOISON
    return out.reshape(rows, cols)


def _coverage(bounds: np.ndarray, s: np.ndarray, e: np.ndarray, npix: int) -> np.ndarray:
    """Which pixels intersect any of the intervals [s, e) (non-empty, inside the window)."""
    ok = e > s
    s, e = s[ok], e[ok]
    p0 = np.searchsorted(bounds, s, side="right") - 1
    p1 = np.searchsorted(bounds, e - 1, side="right") - 1
    diff = np.bincount(p0, minlength=npix + 1)[: npix + 1].astype(np.int64)
    diff -= np.bincount(p1 + 1, minlength=npix + 1)[: npix + 1]
    return np.cumsum(diff[:npix]) > 0


def brute_force_rows(space: Space, start: int, row_pages: int, rows: int, cols: int) -> np.ndarray:
    """The same as `reduce_rows`, page by page (tests only: cost is the pages)."""
    bounds = pixel_bounds(start, start + rows * row_pages, rows * cols)
    out = np.zeros(rows * cols, np.uint8)
    for p in range(rows * cols):
        out[p] = max(space.code_at(x) for x in range(int(bounds[p]), int(bounds[p + 1])))
    return out.reshape(rows, cols)


def folio_pfns(space: Space, start: int, end: int, cap: int = 256) -> list[tuple[int, int]]:
    """Host pfn ranges behind file pages [start, end) of a file space (its folio intervals)."""
    i0 = int(np.searchsorted(space.ends, start, side="right"))
    i1 = int(np.searchsorted(space.starts, end, side="left"))
    out = []
    for i in range(i0, min(i1, i0 + cap)):
        s, e = max(start, int(space.starts[i])), min(end, int(space.ends[i]))
        p = int(space.pfn[i]) + s - int(space.starts[i])
        out.append((p, p + e - s))
    return out
