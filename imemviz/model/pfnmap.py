"""host_mmap_pfnmap: the VMM maps device memory (VM_PFNMAP) over part of a memslot's
userspace range, as QEMU does for a virtio-gpu blob resource (Venus: TTM buffers whose
struct pages are the tail pages of a non-compound higher-order allocation, refcount 0).

The mmap(MAP_FIXED) replaces what was mapped there: the mmu notifier invalidates the
range (shared leaves go) and the anonymous pages are freed.  The device pages come from
host memory (the driver's allocation) in blocks of up to 2M.  A guest fault there takes
the pfn from the host page tables (hva_to_pfn_remapped()); whether KVM maps a page that
is not refcounted is the kernel rule ``pfnmap_noref`` (refused before 6.13, host_ops.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imemviz.model.host_ops import _free_host_pages, hva_invalidate
from imemviz.model.memslot_ops import TASK_SIZE_MAX
from imemviz.model.result import Result
from imemviz.model.sparse import pack_pfnmap, unpack_pfnmap

if TYPE_CHECKING:
    from imemviz.model.ops import HostMmapPfnmap
    from imemviz.model.vm import VM

MAX_BLOCK_ORDER = 9  # a TTM-style allocation: non-compound blocks of up to 2M
U64 = 1 << 64


def host_mmap_pfnmap(vm: VM, op: HostMmapPfnmap) -> Result:
    hva, size = op.hva, op.size
    # do_mmap(): len 0 -> EINVAL; PAGE_ALIGN(len) wrapping -> ENOMEM; then
    # __get_unmapped_area(): len > TASK_SIZE or addr > TASK_SIZE - len -> ENOMEM, and only
    # then offset_in_page(addr) -> EINVAL (MAP_FIXED's address is taken as given).
    if size == 0:
        return Result.fail("EINVAL")
    size = (size + 0xFFF) & ~0xFFF
    if size >= U64 or size > TASK_SIZE_MAX or hva > TASK_SIZE_MAX - size:
        return Result.fail("ENOMEM")
    if hva & 0xFFF:
        return Result.fail("EINVAL")
    lo, hi = hva >> 12, (hva + size) >> 12
    if not _inside_slots(vm, lo, hi):
        # The model tracks the VMM's memory behind memslots only (as host_access does).
        return Result.fail("EFAULT")
    blocks = _allocate(vm, hi - lo)
    if blocks is None:
        return Result.fail("ENOMEM")
    ref = bool(op.refcounted)

    def replace() -> None:
        _free_host_pages(vm, lo, hi)
        release(vm, lo, hi)
        k = lo
        for pfn, order in blocks:
            for j in range(1 << order):
                vm.pfnmap.set(k, pack_pfnmap(pfn + j, ref))
                k += 1

    hva_invalidate(vm, hva, hva + size, replace)
    vm.emit("mmap_pfnmap", hva, size, blocks[0][0], int(ref))
    return Result.success()


def release(vm: VM, lo: int, hi: int) -> None:
    """The device pages behind hva pages [lo, hi) go back to the host (munmap)."""
    for _hvpn, v in vm.pfnmap.pop_range(lo, hi):
        vm.host.release(unpack_pfnmap(v)[0], 0)


def _inside_slots(vm: VM, lo: int, hi: int) -> bool:
    ranges = sorted(
        (s.userspace_addr >> 12, s.hva_end >> 12) for s in vm.memslots.by_id.values() if s.npages
    )
    pos = lo
    for a, b in ranges:
        if a <= pos < b:
            pos = b
        if pos >= hi:
            return True
    return pos >= hi


def _allocate(vm: VM, npages: int) -> list[tuple[int, int]] | None:
    """Blocks (pfn, order) for `npages` device pages, largest first; None (and nothing
    kept) when host memory runs out."""
    out: list[tuple[int, int]] = []
    left = npages
    while left:
        order = min(MAX_BLOCK_ORDER, left.bit_length() - 1)
        pfn = None
        while order >= 0:
            pfn = vm.host.allocate(order)
            if pfn is not None:
                break
            order -= 1
        if pfn is None:
            for p, o in out:
                vm.host.release(p, o)
            return None
        out.append((pfn, order))
        left -= 1 << order
    return out
