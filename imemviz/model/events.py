"""Trace-like events, named after the kernel tracepoints, functions and SEAMCALLs they stand for.

An event is a plain tuple `(op_index, name, *fields)`; `EVENT_FIELDS` names the
fields.  Tuples keep a million-fault run cheap; `event_dict` and
`format_event` expand them for display and files.  The log is bounded: the
oldest events are dropped first and counted.
"""

from __future__ import annotations

from collections import deque
from typing import Any, TypeAlias

from imemviz.model.units import LEVEL_NAMES

# One event: (op_index, name, *fields), the fields' types as EVENT_FIELDS names them (ints,
# strings, None): heterogeneous by design, so typed as a plain tuple of anything.
Event: TypeAlias = tuple[Any, ...]

EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    # kvm / kvmmmu tracepoints
    "kvm_page_fault": ("vcpu", "gpa", "error_code"),
    "kvm_mmu_spte_requested": ("gfn", "pfn", "level"),
    "kvm_tdp_mmu_spte_changed": ("root", "gfn", "level", "old_pfn", "new_pfn"),
    "kvm_mmu_set_spte": ("root", "gfn", "pfn", "level"),
    "kvm_userspace_exit": ("vcpu", "reason", "errno"),
    "kvm_mmio": ("vcpu", "gpa"),
    "kvm_vm_set_mem_attributes": ("start", "end", "attributes"),
    "kvm_unmap_hva_range": ("start", "end"),
    "kvm_hypercall": ("nr", "a0", "a1", "a2"),
    # kvm_main.c / guest_memfd.c functions (no tracepoint upstream)
    "kvm_mmu_invalidate_begin": ("in_progress",),
    "kvm_mmu_invalidate_range_add": ("start", "end"),
    "kvm_mmu_invalidate_end": ("seq",),
    "kvm_mmu_page_fault_retry": ("vcpu", "gfn", "why"),
    "kvm_faultin_pfn": ("vcpu", "gfn", "pfn", "private"),
    "kvm_set_memslot": ("slot", "change", "base_gfn", "npages"),
    "kvm_mmu_zap_all_fast": (),
    "kvm_gmem_create": ("fd", "size", "flags"),
    "kvm_gmem_bind": ("fd", "slot", "pgoff", "npages"),
    "kvm_gmem_unbind": ("fd", "slot"),
    "kvm_gmem_release": ("fd",),
    "kvm_gmem_invalidate_begin": ("fd", "start", "end"),
    "kvm_gmem_invalidate_end": ("fd", "start", "end"),
    "kvm_gmem_fallocate": ("fd", "mode", "start", "end"),
    "kvm_gmem_folio_alloc": ("fd", "index", "order", "pfn"),
    "kvm_gmem_folio_free": ("fd", "index", "order", "pfn"),
    # `count` folios of one order in a row (consecutive index and pfn), in one event
    "kvm_gmem_folios_alloc": ("fd", "index", "order", "pfn", "count"),
    "kvm_gmem_folios_free": ("fd", "index", "order", "pfn", "count"),
    "kvm_gmem_error_folio": ("fd", "index", "order", "pfn"),
    "kvm_gmem_populate": ("gfn", "pfn"),
    "kvm_vm_dead": ("reason",),
    "kvm_pre_fault_memory": ("vcpu", "gpa", "size"),
    "kvm_gmem_fault_user_mapping": ("fd", "index", "pfn"),
    "tdx_map_gpa": ("gpa", "size", "private"),
    "kvm_hypercall_refused": ("vcpu", "status"),
    # the 2022 design (upm-v8) and plain memfds
    "memfd_create": ("fd", "size", "flags", "kind"),
    "memfd_close": ("fd",),
    "shmem_fallocate": ("fd", "mode", "start", "end"),
    "inaccessible_notifier_invalidate": ("fd", "start", "end"),
    "kvm_private_mem_register": ("fd", "slot", "pgoff", "npages"),
    "kvm_vm_ioctl_set_mem_attr": ("start", "end", "private"),
    "kvm_zap_gfn_range": ("start", "end"),
    # mm
    "mm_page_alloc": ("pfn", "order", "hva"),
    "mm_page_free": ("pfn", "order", "hva"),
    "handle_mm_fault": ("hva", "pfn", "write"),
    "madvise": ("start", "end", "advice"),
    "memory_failure_event": ("pfn", "type", "result"),
    "mmap_pfnmap": ("hva", "size", "pfn", "refcounted"),
    # TDX module calls (host side) and the guest's TDCALL
    "TDH.MEM.SEPT.ADD": ("gfn", "level", "pfn"),
    "TDH.MEM.PAGE.ADD": ("gfn", "pfn"),
    "TDH.MR.EXTEND": ("gfn", "chunks"),
    "TDH.MR.FINALIZE": (),
    "TDH.MEM.PAGE.AUG": ("gfn", "level", "pfn"),
    "TDH.MEM.RANGE.BLOCK": ("gfn", "level"),
    "TDH.MEM.TRACK": ("epoch",),
    "TDH.MEM.PAGE.REMOVE": ("gfn", "level", "pfn"),
    "TDH.PHYMEM.PAGE.WBINVD": ("pfn",),
    "TDH.MEM.PAGE.DEMOTE": ("gfn", "level", "sept_pfn"),
    "TDG.MEM.PAGE.ACCEPT": ("gfn", "level", "status"),
    # SEV-SNP: RMP updates (arch/x86/virt/svm/sev.c), firmware commands, the guest's
    # PVALIDATE and page-state change, the kvm_rmp_fault tracepoint
    "rmp_make_private": ("pfn", "gpa", "level", "asid", "immutable"),
    "rmp_make_shared": ("pfn", "level", "npages"),
    "psmash": ("pfn", "ret"),
    "clflush_cache_range": ("pfn", "npages"),
    "kvm_rmp_fault": ("vcpu", "gpa", "pfn", "error_code", "rmp_level", "psmash_ret"),
    "SNP_LAUNCH_UPDATE": ("gpa", "pfn", "page_type", "status"),
    "SNP_PAGE_RECLAIM": ("pfn",),
    "SNP_LAUNCH_FINISH": ("status",),
    "pvalidate": ("gpa", "level", "validate", "status"),
    "snp_page_not_validated": ("vcpu", "gpa", "pfn"),
    "snp_psc": ("gpa", "size", "private"),
    # the model itself
    "note": ("text",),
}

_ADDR_FIELDS = {
    "gpa",
    "gfn",
    "pfn",
    "start",
    "end",
    "hva",
    "base_gfn",
    "pgoff",
    "index",
    "old_pfn",
    "new_pfn",
    "sept_pfn",
    "size",
    "npages",
    "error_code",
    "a0",
}


class EventLog:
    """The bounded log of every event, plus the events of the op being applied."""

    __slots__ = ("current", "dropped", "log", "maxlen", "total")

    def __init__(self, maxlen: int = 200_000) -> None:
        self.maxlen = maxlen
        self.log: deque[Event] = deque(maxlen=maxlen)
        self.current: list[Event] = []
        self.total = 0
        self.dropped = 0

    def commit(self) -> list[Event]:
        """Move the current op's events into the log and return them.

        `current` becomes a new list: whoever caches its `append` must take it again.
        """
        if not self.current:
            return []
        cur = self.current
        self.current = []
        if cur:
            overflow = len(self.log) + len(cur) - self.maxlen
            if overflow > 0:
                self.dropped += overflow
            self.log.extend(cur)
            self.total += len(cur)
        return cur


def event_dict(ev: Event) -> dict[str, Any]:
    names = EVENT_FIELDS[ev[1]]
    d: dict[str, Any] = {"op": ev[0], "name": ev[1]}
    d.update(zip(names, ev[2:], strict=True))
    return d


def _fmt(name: str, value: Any) -> str:
    if name in ("level", "rmp_level") and isinstance(value, int):
        return LEVEL_NAMES.get(value, str(value))
    if name in ("old_pfn", "new_pfn") and value == -1:
        return "none"
    if name in _ADDR_FIELDS and isinstance(value, int):
        return hex(value)
    return str(value)


def format_event(ev: Event) -> str:
    """One readable line: `TDH.MEM.PAGE.AUG gfn 0x1234 level 4K pfn 0x8a00`."""
    names = EVENT_FIELDS[ev[1]]
    parts = [ev[1]]
    for n, v in zip(names, ev[2:], strict=True):
        parts.append(f"{n} {_fmt(n, v)}")
    return " ".join(parts)
