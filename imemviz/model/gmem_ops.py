"""guest_memfd ops: create, fallocate (allocate, PUNCH_HOLE), close, and memory failure.

Follows virt/kvm/guest_memfd.c (kvm_gmem_create, kvm_gmem_fallocate,
kvm_gmem_punch_hole, kvm_gmem_release, kvm_gmem_error_folio) and the generic
checks of vfs_fallocate() that run first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from imemviz.model import snp
from imemviz.model.guest_memfd import FOLIO_ORDERS, GUEST_MEMFD, Folio, GmemFile, GmemInode, Segment
from imemviz.model.memslots import Memslot
from imemviz.model.result import Result
from imemviz.model.uapi import (
    FALLOC_FL_COLLAPSE_RANGE,
    FALLOC_FL_INSERT_RANGE,
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_UNSHARE_RANGE,
    FALLOC_FL_WRITE_ZEROES,
    FALLOC_FL_ZERO_RANGE,
    GUEST_MEMFD_FLAG_INIT_SHARED,
    GUEST_MEMFD_FLAG_MMAP,
)
from imemviz.model.zap import FILTER_PRIVATE, FILTER_SHARED, invalidate

if TYPE_CHECKING:
    from imemviz.model.ops import Close, CreateGuestMemfd, Fallocate, MemoryFailure
    from imemviz.model.vm import VM

_FALLOC_SUPPORTED = 0xFB  # every mode bit vfs_fallocate() knows (FALLOC_FL_SUPPORTED_MASK)
_FALLOC_MODE_MASK = (
    FALLOC_FL_PUNCH_HOLE
    | FALLOC_FL_COLLAPSE_RANGE
    | FALLOC_FL_ZERO_RANGE
    | FALLOC_FL_INSERT_RANGE
    | FALLOC_FL_UNSHARE_RANGE
    | FALLOC_FL_WRITE_ZEROES
)
LLONG_MAX = (1 << 63) - 1
STD_FDS = (0, 1, 2)


def supported_flags(vm: VM) -> int:
    """kvm_gmem_get_supported_flags(): INIT_SHARED only for VMs without private memory;
    no flag at all before 6.18 (kernel rule gmem_flags)."""
    if not vm.kernel["gmem_flags"]:
        return 0
    flags = GUEST_MEMFD_FLAG_MMAP
    if not vm.has_private_mem:
        flags |= GUEST_MEMFD_FLAG_INIT_SHARED
    return flags


def lowest_free_fd(vm: VM) -> int:
    fd = 3
    while fd in vm.files:
        fd += 1
    return fd


def create_guest_memfd(vm: VM, op: CreateGuestMemfd) -> Result:
    if vm.dead:
        return Result.fail("EIO")
    if not vm.kernel["guest_memfd"]:
        return Result.fail("ENOTTY")  # no KVM_CREATE_GUEST_MEMFD: kvm_arch_vm_ioctl()
    if op.flags & ~supported_flags(vm):
        return Result.fail("EINVAL")
    size = op.size
    if size >= 1 << 63 or size == 0 or size & 0xFFF:  # loff_t size <= 0 or unaligned
        return Result.fail("EINVAL")
    fd = lowest_free_fd(vm)
    vm.files[fd] = GmemFile(fd, GmemInode(vm.next_ino, size, op.flags))
    vm.next_ino += 1
    vm.emit("kvm_gmem_create", fd, size, op.flags)
    return Result.success(fd=fd)


# -- folios ---------------------------------------------------------------------------------
def pick_order(vm: VM, inode: GmemInode, index: int) -> int | None:
    """The folio order guest_memfd would allocate for `index` now (contract 3.4 "Folio sizes")."""
    if vm.config.gmem_max_order == 0:
        return 0 if vm.host.alloc.free_pages else None
    for order in reversed(FOLIO_ORDERS):
        if order > vm.config.gmem_max_order:
            continue
        n = 1 << order
        head = index & ~(n - 1)
        if head + n > inode.npages:
            continue
        if order and inode.any_folio_in(head, head + n):
            continue
        if vm.host.alloc.has_block(order):
            return order
    return None


def alloc_folio(vm: VM, file: GmemFile, index: int) -> Folio | None:
    order = pick_order(vm, file.inode, index)
    if order is None:
        return None
    pfn = vm.host.allocate(order)
    assert pfn is not None
    folio = Folio(index & ~((1 << order) - 1), order, pfn)
    file.inode.add(folio)
    vm.events.current.append(
        (vm.op_index, "kvm_gmem_folio_alloc", file.fd, folio.index, order, pfn)
    )
    return folio


def gmem_get_pfn(vm: VM, slot: Memslot, gfn: int) -> tuple[str | None, int, int]:
    """kvm_gmem_get_pfn(): (errno or None, pfn, folio order); allocates on first use."""
    file = slot.gmem_file
    if file is None:
        return "EFAULT", 0, 0
    index = slot.gmem_index(gfn)
    folio = file.inode.folio_at(index)
    if folio is None:
        folio = alloc_folio(vm, file, index)
        if folio is None:
            return "ENOMEM", 0, 0
    if folio.hwpoison:
        return "EHWPOISON", 0, 0
    return None, folio.pfn + (index - folio.index), folio.order


class FolioEvents:
    """The folio events of one op: neighbours (consecutive index and pfn, one order) in a
    row are one event, ``kvm_gmem_folios_alloc``/``_free`` with their count, and a lone
    folio is ``kvm_gmem_folio_alloc``/``_free``.  The grouping depends on the folios
    alone, never on how the page cache stores them, so a loaded state and the live
    engine emit the same events; and 64 TiB of folios is a handful of events."""

    __slots__ = ("fd", "kind", "pending", "vm")

    def __init__(self, vm: VM, fd: int, kind: str) -> None:
        self.vm, self.fd, self.kind = vm, fd, kind
        self.pending: tuple[int, int, int, int] | None = None

    def add(self, index: int, order: int, pfn: int, count: int) -> None:
        p = self.pending
        if p is not None and p[1] == order:
            step = p[3] << order
            if p[0] + step == index and p[2] + step == pfn:
                self.pending = (p[0], order, p[2], p[3] + count)
                return
        self.flush()
        self.pending = (index, order, pfn, count)

    def flush(self) -> None:
        p, self.pending = self.pending, None
        if p is None:
            return
        index, order, pfn, count = p
        if self.kind == "free" and self.vm.snp is not None:
            # free_folio -> sev_gmem_invalidate(), over the same groups as the events, so
            # the RMP updates do not depend on how the page cache stored the folios either
            snp.gmem_invalidate(self.vm, pfn, count << order, order)
        if count == 1:
            self.vm.emit(f"kvm_gmem_folio_{self.kind}", self.fd, index, order, pfn)
        else:
            self.vm.emit(f"kvm_gmem_folios_{self.kind}", self.fd, index, order, pfn, count)


def _free_folios(vm: VM, file: GmemFile, start: int, end: int) -> None:
    """truncate_inode_pages_range(): free folios in [start, end); split partial huge ones.

    Works on runs of folios (a fallocated range is one): the whole folios inside
    the range go back to the allocator as one pfn range each; only a huge folio
    that straddles an end of the range is split page by page.
    """
    inode = file.inode
    events = FolioEvents(vm, file.fd, "free")
    for seg in inode.segments_in(start, end):
        order, n = seg.order, 1 << seg.order
        a = max(0, (start - seg.index) >> order)
        b = min(seg.count, -((seg.index - end) // n))
        _cut(inode, seg, a, b)
        whole_a = a if seg.index + (a << order) >= start else a + 1
        whole_b = b if seg.index + (b << order) <= end else b - 1
        if whole_a > a:
            _split_free(vm, inode, events, seg.folio(a), start, end)
        if whole_a < whole_b:
            f = seg.folio(whole_a)
            vm.host.release_range(f.pfn, (whole_b - whole_a) << order)
            events.add(f.index, order, f.pfn, whole_b - whole_a)
        if whole_b < b and (whole_b > a or whole_a == a):
            _split_free(vm, inode, events, seg.folio(b - 1), start, end)
    events.flush()


def _cut(inode: GmemInode, seg: Segment, a: int, b: int) -> None:
    """Remove folios a..b-1 of a segment from the page cache; the others stay."""
    if seg.count == 1:
        inode.folios[seg.order].pop(seg.index)
        return
    inode.runs[seg.order].pop(seg.index)
    inode.add_segment(seg._replace(count=a))
    rest = seg.folio(b)
    inode.add_segment(Segment(rest.index, seg.order, rest.pfn, seg.hwpoison, seg.count - b))


def _split_free(
    vm: VM, inode: GmemInode, events: FolioEvents, folio: Folio, start: int, end: int
) -> None:
    """A huge folio straddling the range is split; the pages outside it stay (order 0)."""
    lo, hi = max(start, folio.index), min(end, folio.index + folio.npages)
    before, after = lo - folio.index, folio.index + folio.npages - hi
    inode.add_segment(Segment(folio.index, 0, folio.pfn, folio.hwpoison, before))
    pfn = folio.pfn + before
    vm.host.release_range(pfn, hi - lo)
    events.add(lo, 0, pfn, hi - lo)  # the split pages are order-0 folios when freed
    inode.add_segment(Segment(hi, 0, pfn + hi - lo, folio.hwpoison, after))


def gmem_invalidate(
    vm: VM, file: GmemFile, start: int, end: int, during: Callable[[], None] | None = None
) -> None:
    """kvm_gmem_invalidate_begin/end around `during` for the bound slots of [start, end)."""
    inode = file.inode
    attr_filter = FILTER_SHARED if inode.flags & GUEST_MEMFD_FLAG_INIT_SHARED else FILTER_PRIVATE
    pieces = []
    for b in file.bindings_in(start, end):
        slot = vm.memslots.by_id[b.slot]
        pieces.append(
            (
                slot.base_gfn + max(b.pgoff, start) - b.pgoff,
                slot.base_gfn + min(b.pgoff + b.npages, end) - b.pgoff,
            )
        )
    vm.emit("kvm_gmem_invalidate_begin", file.fd, start, min(end, 1 << 52))
    if pieces:
        invalidate(vm, pieces, attr_filter, during=during)
    elif during is not None:
        during()
    vm.emit("kvm_gmem_invalidate_end", file.fd, start, min(end, 1 << 52))


# -- fallocate ------------------------------------------------------------------------------
def fallocate(vm: VM, op: Fallocate) -> Result:
    fd, mode, offset, length = op.fd, op.mode, op.offset, op.len
    file = vm.files.get(fd) if fd >= 0 else None  # below 0: files no descriptor refers to
    if file is None and (fd not in STD_FDS or fd in vm.closed_std_fds):
        return Result.fail("EBADF")
    # vfs_fallocate()
    if offset < 0 or length <= 0:
        return Result.fail("EINVAL")
    if mode & ~_FALLOC_SUPPORTED:
        return Result.fail("EOPNOTSUPP")
    kind = mode & _FALLOC_MODE_MASK
    if kind == FALLOC_FL_PUNCH_HOLE:
        if not mode & FALLOC_FL_KEEP_SIZE:
            return Result.fail("EOPNOTSUPP")
    elif kind in (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_WRITE_ZEROES):
        if mode & FALLOC_FL_KEEP_SIZE:
            return Result.fail("EOPNOTSUPP")
    elif kind not in (0, FALLOC_FL_ZERO_RANGE, FALLOC_FL_UNSHARE_RANGE):
        return Result.fail("EOPNOTSUPP")
    if file is None:
        return Result.fail("ENODEV")  # fds 0-2 are a terminal, not a regular file
    if offset + length > LLONG_MAX:
        return Result.fail("EFBIG")
    if file.kind != GUEST_MEMFD:
        from imemviz.model import upm

        return upm.memfd_fallocate(vm, file, mode, offset, length)
    # kvm_gmem_fallocate()
    if not mode & FALLOC_FL_KEEP_SIZE:
        return Result.fail("EOPNOTSUPP")
    if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE):
        return Result.fail("EOPNOTSUPP")
    if offset & 0xFFF or length & 0xFFF:
        return Result.fail("EINVAL")
    start, end = offset >> 12, (offset + length) >> 12
    vm.emit("kvm_gmem_fallocate", fd, mode, start, end)
    if mode & FALLOC_FL_PUNCH_HOLE:
        gmem_invalidate(vm, file, start, end, during=lambda: _free_folios(vm, file, start, end))
        return Result.success()
    if offset + length > file.inode.size:
        return Result.fail("EINVAL")
    return _allocate(vm, file, start, end)


def _allocate(vm: VM, file: GmemFile, start: int, end: int) -> Result:
    """kvm_gmem_allocate(): a folio for every index of [start, end) that has none.

    The same folios, pfns and errno as one kvm_gmem_get_folio() per index, but in
    runs: where the same folio order is picked for many indexes in a row, the
    allocator hands out all of them at once (BuddyAllocator.alloc_many), so a
    64 TiB fallocate costs the free blocks it takes, not its 16 billion pages.
    On ENOMEM what was allocated stays, as in the kernel.
    """
    inode = file.inode
    larger = [o for o in FOLIO_ORDERS if o <= vm.config.gmem_max_order]
    events = FolioEvents(vm, file.fd, "alloc")
    index = start
    try:
        while index < end:
            folio = inode.folio_at(index)
            if folio is not None:
                index = folio.index + folio.npages
                continue
            order = pick_order(vm, inode, index)
            if order is None:
                return Result.fail("ENOMEM")
            n = 1 << order
            head = index & ~(n - 1)
            # pick_order() gives `order` again for the next index while the blocks stay
            # inside the file, before the next folio, and inside the aligned block of
            # the next larger order (whose own test may come out otherwise there).
            limit = inode.npages
            nxt = inode.next_folio(head)
            if nxt is not None:
                limit = min(limit, nxt)
            bigger = [o for o in larger if o > order]
            if bigger:
                limit = min(limit, (head | ((1 << bigger[0]) - 1)) + 1)
            k = max(1, min((limit - head) >> order, -((head - end) // n)))
            runs = vm.host.alloc.alloc_many(order, k)
            if not runs:
                return Result.fail("ENOMEM")
            for pfn, count in runs:
                inode.add_segment(Segment(head, order, pfn, False, count))
                events.add(head, order, pfn, count)
                head += count << order
            index = head
    finally:
        events.flush()
    return Result.success()


# -- close ----------------------------------------------------------------------------------
def close(vm: VM, op: Close) -> Result:
    fd = op.fd
    file = vm.files.get(fd) if fd >= 0 else None
    if file is None:
        if fd in STD_FDS and fd not in vm.closed_std_fds:
            vm.closed_std_fds.add(fd)
            return Result.success()
        return Result.fail("EBADF")
    if file.kind != GUEST_MEMFD:
        from imemviz.model import upm

        upm.close_memfd(vm, file)
        return Result.success()
    release_file(vm, file)
    return Result.success()


def release_file(vm: VM, file: GmemFile) -> None:
    """kvm_gmem_release() and, as the last reference, the inode's eviction (folios freed)."""
    vm.emit("kvm_gmem_release", file.fd)
    for b in file.bindings:
        vm.memslots.by_id[b.slot].gmem_file = None
    inode = file.inode
    gmem_invalidate(vm, file, 0, 1 << 64)
    for b in file.bindings:
        vm.emit("kvm_gmem_unbind", file.fd, b.slot)
    file.bindings.clear()
    del vm.files[file.fd]
    _free_folios(vm, file, 0, inode.npages)


# -- memory failure -------------------------------------------------------------------------
def find_gmem_folio(vm: VM, pfn: int) -> tuple[GmemFile, Folio] | None:
    for file in vm.files.values():
        for seg in file.inode.iter_segments():
            if seg.pfn <= pfn < seg.pfn + (seg.count << seg.order):
                return file, seg.folio((pfn - seg.pfn) >> seg.order)
    return None


def memory_failure(vm: VM, op: MemoryFailure) -> Result:
    from imemviz.model import host_ops

    pfn = op.pfn
    host = vm.host
    if pfn >= host.npages:
        vm.emit("memory_failure_event", pfn, "outside kernel control", "failed")
        return Result.fail("ENXIO")
    if pfn in host.poisoned:
        vm.emit("memory_failure_event", pfn, "already poisoned", "failed")
        return Result.fail("EHWPOISON")
    host.poisoned.add(pfn)
    hit = find_gmem_folio(vm, pfn)
    if hit is not None and hit[0].kind != GUEST_MEMFD:
        # A shmem page (memfd, v8's inaccessible memfd): shmem keeps the poisoned page and
        # v8 has no path that tells KVM; a later get_pfn fails.
        file, folio = hit
        vm.emit("memory_failure_event", pfn, "shmem page", "delayed")
        file.inode.set_hwpoison(folio)
        return Result.success()
    if hit is not None:
        file, folio = hit
        vm.emit("memory_failure_event", pfn, "guest_memfd page", "delayed")
        vm.emit("kvm_gmem_error_folio", file.fd, folio.index, folio.order, folio.pfn)
        gmem_invalidate(
            vm,
            file,
            folio.index,
            folio.index + folio.npages,
            during=lambda: file.inode.set_hwpoison(folio),
        )
        return Result.success()
    if host_ops.poison_shared_page(vm, pfn):
        vm.emit("memory_failure_event", pfn, "dirty LRU page", "recovered")
        return Result.success()
    if host.alloc.take(pfn):
        vm.emit("memory_failure_event", pfn, "free buddy page", "recovered")
    else:
        vm.emit("memory_failure_event", pfn, "kernel page", "ignored")
    return Result.success()
