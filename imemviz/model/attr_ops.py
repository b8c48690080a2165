"""KVM_SET_MEMORY_ATTRIBUTES: per-gfn attributes as extents, with the kernel's no-op rule,
the zap of the class being left, and the straddling huge pages added to the range."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imemviz.model.result import Result
from imemviz.model.uapi import KVM_MEMORY_ATTRIBUTE_PRIVATE
from imemviz.model.units import LEVEL_1G, LEVEL_2M
from imemviz.model.zap import FILTER_PRIVATE, FILTER_SHARED, invalidate

if TYPE_CHECKING:
    from imemviz.model.memslots import Memslot
    from imemviz.model.ops import SetMemoryAttributes
    from imemviz.model.vm import VM

U64 = 1 << 64


def supported_attributes(vm: VM) -> int:
    return KVM_MEMORY_ATTRIBUTE_PRIVATE if vm.has_private_mem else 0


def set_memory_attributes(vm: VM, op: SetMemoryAttributes) -> Result:
    if vm.dead:
        return Result.fail("EIO")
    if not vm.kernel["guest_memfd"]:
        return Result.fail("ENOTTY")  # no KVM_SET_MEMORY_ATTRIBUTES: kvm_arch_vm_ioctl()
    if op.flags:
        return Result.fail("EINVAL")
    attributes = op.attributes
    if attributes & ~supported_attributes(vm):
        return Result.fail("EINVAL")
    address, size = op.address, op.size
    if size == 0 or address + size >= U64:  # zero size, or a range that wraps
        return Result.fail("EINVAL")
    if address & 0xFFF or size & 0xFFF:
        return Result.fail("EINVAL")
    start, end = address >> 12, (address + size) >> 12
    if vm.attributes.all_equal(start, end, attributes):
        return Result.success()
    vm.emit("kvm_vm_set_mem_attributes", start, end, attributes)
    slots = [s for as_id in (0, 1) for s in vm.memslots.in_range(start, end, as_id)]

    def store() -> None:
        vm.attributes.set_range(start, end, attributes)

    if not slots:
        store()
        return Result.success()
    pieces = [(max(start, s.base_gfn), min(end, s.end_gfn)) for s in slots]
    extra = sorted({r for s, p in zip(slots, pieces, strict=True) for r in _straddling(vm, s, *p)})
    # Moving to PRIVATE drops the shared mappings, moving to shared drops the private ones.
    attr_filter = FILTER_SHARED if attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE else FILTER_PRIVATE
    invalidate(vm, pieces, attr_filter, extra=extra, during=store)
    return Result.success()


def _straddling(vm: VM, slot: Memslot, start: int, end: int) -> list[tuple[int, int]]:
    """Head and tail huge pages that straddle the range, lie inside the slot and are not
    MIXED: added to the invalidation range so a racing fault cannot map them huge."""
    out = []
    for level in (LEVEL_2M, LEVEL_1G):
        n = 1 << (9 * (level - 1))
        for edge in (start, end):
            head = edge & ~(n - 1)
            if head == edge:
                continue
            if head < slot.base_gfn or head + n > slot.end_gfn:
                continue
            if vm.mixed(head, level):
                continue
            out.append((head, head + n))
    return out
