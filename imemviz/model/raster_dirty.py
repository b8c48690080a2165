"""What an op changed on the raster: the gfn ranges its events dirtied, merged (what
raster.StepCache recomputes, step 3 of raster.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from imemviz.model.events import Event
from imemviz.model.protocols import SNP_EVENTS

if TYPE_CHECKING:
    from imemviz.model.vm import VM


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, merged (touching ranges joined) half-open ranges."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(r for r in ranges if r[0] < r[1]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


# ------------------------------------------------------- what an op changed

# Events that change nothing the raster shows.
_NO_RASTER_CHANGE = frozenset(
    {
        "kvm_page_fault",
        "kvm_mmu_spte_requested",
        "kvm_userspace_exit",
        "kvm_mmio",
        "kvm_mmu_invalidate_begin",
        "kvm_mmu_invalidate_end",
        "kvm_mmu_page_fault_retry",
        "kvm_faultin_pfn",
        "kvm_gmem_create",
        "kvm_gmem_release",
        "kvm_gmem_fallocate",
        "kvm_gmem_invalidate_begin",
        "kvm_gmem_invalidate_end",
        "kvm_vm_dead",
        "handle_mm_fault",
        "memory_failure_event",
        "TDH.MR.EXTEND",
        "TDH.MR.FINALIZE",
        "TDH.MEM.TRACK",
        "TDH.PHYMEM.PAGE.WBINVD",
        "TDH.MEM.SEPT.ADD",
        "note",
        # The guest's requests and the VMM's calls whose effects come as their own events
        # (leaves, folios, attributes, zaps): they change no pixel themselves.
        "kvm_hypercall",
        "kvm_hypercall_refused",
        "tdx_map_gpa",
        "kvm_pre_fault_memory",
        "memfd_create",
        "shmem_fallocate",
        "inaccessible_notifier_invalidate",
    }
    # SEV-SNP: the RMP and the firmware are not drawn on the map (the RMP pane shows
    # them); an RMP fault's zap comes as its own invalidation and leaf events.
    | SNP_EVENTS
)
# Events carrying (gfn, level) in their first two fields (after the name).
_GFN_LEVEL = {
    "TDH.MEM.PAGE.AUG": 0,
    "TDH.MEM.RANGE.BLOCK": 0,
    "TDH.MEM.PAGE.REMOVE": 0,
    "TDH.MEM.PAGE.DEMOTE": 0,
    "TDG.MEM.PAGE.ACCEPT": 0,
}


def changed_ranges(vm: VM, events: Iterable[Event]) -> list[tuple[int, int]] | None:
    """The gfn ranges whose raster codes an op's events may have changed (merged).

    `vm` is the state right after the op (bindings and memslots are read to
    turn file indexes and hvas into gfns).  None means "anything may have
    changed": a memslot move, a zap of everything, or an event this function
    does not know.
    """
    out: list[tuple[int, int]] = []
    add = out.append
    events = list(events)
    # New S-EPT table pages (TDH.MEM.SEPT.ADD) are announced as spte changes at their
    # level too; they map nothing, so they change no pixel.
    tables = {ev[4] for ev in events if ev[1] == "TDH.MEM.SEPT.ADD"}
    for ev in events:
        name = ev[1]
        f = ev[2:]
        if name in _NO_RASTER_CHANGE:
            continue
        if name in ("kvm_vm_set_mem_attributes", "kvm_mmu_invalidate_range_add"):
            add((f[0], f[1]))
        elif name == "kvm_tdp_mmu_spte_changed":
            if f[3] == -1 and f[4] in tables:
                continue
            add((f[1], f[1] + (1 << (9 * (f[2] - 1)))))
        elif name == "kvm_mmu_set_spte":
            add((f[1], f[1] + (1 << (9 * (f[3] - 1)))))
        elif name in _GFN_LEVEL:
            add((f[0], f[0] + (1 << (9 * (f[1] - 1)))))
        elif name in ("TDH.MEM.PAGE.ADD", "kvm_gmem_populate"):
            add((f[0], f[0] + 1))
        elif name in ("kvm_gmem_folio_alloc", "kvm_gmem_folio_free", "kvm_gmem_error_folio"):
            rs = _file_ranges(vm, f[0], f[1], f[1] + (1 << f[2]))
            if rs is None:
                return None
            out.extend(rs)
        elif name in ("kvm_gmem_folios_alloc", "kvm_gmem_folios_free"):
            rs = _file_ranges(vm, f[0], f[1], f[1] + (f[4] << f[2]))
            if rs is None:
                return None
            out.extend(rs)
        elif name == "kvm_set_memslot":
            if f[1] == "MOVE":
                return None
            add((f[2], f[2] + f[3]))
        elif name in ("kvm_vm_ioctl_set_mem_attr", "kvm_zap_gfn_range"):
            add((f[0], f[1]))  # upm-v8: gfn ranges
        elif name == "kvm_gmem_fault_user_mapping":
            rs = _file_ranges(vm, f[0], f[1], f[1] + 1)
            if rs is None:
                return None
            out.extend(rs)
        elif name == "mmap_pfnmap":
            out.extend(_hva_ranges(vm, f[0], f[0] + f[1]))
        elif name in ("kvm_gmem_bind", "kvm_gmem_unbind", "kvm_private_mem_register"):
            slot = vm.memslots.by_id.get(f[1])
            if slot is None:
                return None
            add((slot.base_gfn, slot.end_gfn))
        elif name in ("mm_page_alloc", "mm_page_free"):
            hva = f[2]
            out.extend(_hva_ranges(vm, hva, hva + (4096 << f[1])))
        elif name in ("madvise", "kvm_unmap_hva_range"):
            out.extend(_hva_ranges(vm, f[0], f[1]))
        else:
            return None  # kvm_mmu_zap_all_fast, or an event added after this was written
    return merge_ranges(out)


def _file_ranges(vm: VM, fd: int, i0: int, i1: int) -> list[tuple[int, int]] | None:
    file = vm.files.get(fd)
    if file is None:
        return None
    out = []
    for b in file.bindings_in(i0, i1):
        slot = vm.memslots.by_id.get(b.slot)
        if slot is None:
            return None
        a, z = max(i0, b.pgoff), min(i1, b.pgoff + b.npages)
        out.append((slot.base_gfn + a - b.pgoff, slot.base_gfn + z - b.pgoff))
    return out


def _hva_ranges(vm: VM, lo: int, hi: int) -> list[tuple[int, int]]:
    out = []
    for s in vm.memslots.by_id.values():
        if s.as_id or not s.npages:
            continue
        a, b = max(lo, s.userspace_addr), min(hi, s.hva_end)
        if a < b:
            out.append(
                (
                    s.base_gfn + ((a - s.userspace_addr) >> 12),
                    s.base_gfn + ((b - s.userspace_addr + 0xFFF) >> 12),
                )
            )
    return out
