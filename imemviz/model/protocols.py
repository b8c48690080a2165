"""Kernel protocols step by step: what each event means, which kernel function is behind it,
which gfns / pfns / file pages it touches, and an op's events grouped into steps.

Qt-free: the app's event log and step panel read it, and so could a text UI.
An op's events are grouped so that a zap of 10,000 leaves is a handful of
phases, not 50,000 steps: runs of one event name become one step with a
count, and a repeating pattern of names (BLOCK, REMOVE, WBINVD, changed, per
leaf) becomes one step per name of the pattern, each with the count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from imemviz.model.events import EVENT_FIELDS, Event

# name -> (explanation, kernel function)
EXPLAIN: dict[str, tuple[str, str]] = {
    "kvm_page_fault": (
        "A vCPU's EPT violation reaches KVM's TDP page fault handler",
        "kvm_mmu_page_fault()",
    ),
    "kvm_mmu_spte_requested": ("The fault picked the leaf's level and pfn", "kvm_tdp_mmu_map()"),
    "kvm_tdp_mmu_spte_changed": (
        "An SPTE changed (old pfn -> new pfn; none = not present)",
        "handle_changed_spte()",
    ),
    "kvm_mmu_set_spte": (
        "The leaf is written into the direct root",
        "tdp_mmu_map_handle_target_level()",
    ),
    "kvm_userspace_exit": (
        "KVM_RUN returns to the VMM with this exit",
        "kvm_arch_vcpu_ioctl_run()",
    ),
    "kvm_mmio": (
        "No memslot: the access is emulated MMIO for the VMM",
        "kvm_handle_noslot_fault()",
    ),
    "kvm_vm_set_mem_attributes": (
        "KVM_SET_MEMORY_ATTRIBUTES starts changing the range",
        "kvm_vm_set_mem_attributes()",
    ),
    "kvm_unmap_hva_range": (
        "The mm notifier tells KVM an hva range goes away",
        "kvm_mmu_notifier_invalidate_range_start()",
    ),
    "kvm_mmu_invalidate_begin": (
        "mmu_invalidate_in_progress++: faults in the range retry until the end",
        "kvm_mmu_invalidate_begin()",
    ),
    "kvm_mmu_invalidate_range_add": (
        "The in-progress range grows to cover these gfns",
        "kvm_mmu_invalidate_range_add()",
    ),
    "kvm_mmu_invalidate_end": (
        "mmu_invalidate_seq++: faults that took the old seq retry",
        "kvm_mmu_invalidate_end()",
    ),
    "kvm_mmu_page_fault_retry": (
        "The fault is stale and retries from the start (RET_PF_RETRY)",
        "is_page_fault_stale()",
    ),
    "kvm_faultin_pfn": (
        "The fault takes its pfn: guest_memfd for private, GUP for shared",
        "kvm_mmu_faultin_pfn()",
    ),
    "kvm_set_memslot": ("A memslot is created, moved, changed or deleted", "kvm_set_memslot()"),
    "kvm_mmu_zap_all_fast": ("Every leaf goes (the slot-zap-all quirk)", "kvm_mmu_zap_all_fast()"),
    "kvm_gmem_create": ("A new guest_memfd file and inode", "kvm_gmem_create()"),
    "kvm_gmem_bind": (
        "The memslot's private memory now comes from this file range",
        "kvm_gmem_bind()",
    ),
    "kvm_gmem_unbind": ("The memslot no longer points at the file", "kvm_gmem_unbind()"),
    "kvm_gmem_release": ("The last reference to the file goes", "kvm_gmem_release()"),
    "kvm_gmem_invalidate_begin": (
        "guest_memfd invalidates the gfns bound to these pages before freeing them",
        "kvm_gmem_invalidate_begin()",
    ),
    "kvm_gmem_invalidate_end": (
        "The invalidation of the bound gfns ends",
        "kvm_gmem_invalidate_end()",
    ),
    "kvm_gmem_fallocate": (
        "fallocate() on the guest_memfd: allocate or punch a hole",
        "kvm_gmem_fallocate()",
    ),
    "kvm_gmem_folio_alloc": ("A folio enters the file's page cache", "kvm_gmem_get_folio()"),
    "kvm_gmem_folio_free": (
        "The folio leaves the page cache; the host gets the memory back",
        "truncate_inode_pages_range()",
    ),
    "kvm_gmem_folios_alloc": (
        "Folios in a row (consecutive pages and pfns) enter the page cache",
        "kvm_gmem_allocate()",
    ),
    "kvm_gmem_folios_free": (
        "Folios in a row leave the page cache; the host gets the memory back",
        "truncate_inode_pages_range()",
    ),
    "kvm_gmem_error_folio": (
        "A memory error hit the folio: it is marked hwpoison, not freed",
        "kvm_gmem_error_folio()",
    ),
    "kvm_gmem_populate": ("An initial TD page is filled from the source", "kvm_gmem_populate()"),
    "kvm_vm_dead": ("The VM is dead: KVM refuses further ioctls with EIO", "kvm_vm_dead()"),
    "mm_page_alloc": ("The host allocates a page for the VMM's memory", "alloc_pages()"),
    "mm_page_free": ("The host frees a page of the VMM's memory", "free_pages()"),
    "handle_mm_fault": ("The VMM touches its own memory", "handle_mm_fault()"),
    "madvise": ("madvise(MADV_DONTNEED) drops the VMM's pages", "madvise_dontneed_free()"),
    "memory_failure_event": ("The host handles a memory error on a pfn", "memory_failure()"),
    "TDH.MEM.SEPT.ADD": (
        "A missing S-EPT page is added: a host page goes to the TDX module",
        "tdx_sept_link_private_spt()",
    ),
    "TDH.MEM.PAGE.ADD": (
        "An initial page is added and MAPPED at once (measured)",
        "tdx_mem_page_add()",
    ),
    "TDH.MR.EXTEND": ("The page is measured into MRTD", "tdh_mr_extend()"),
    "TDH.MR.FINALIZE": ("The measurement is final: the TD can run", "tdx_td_finalize()"),
    "TDH.MEM.PAGE.AUG": (
        "tdx_sept_set_private_spte() adds the page PENDING; the guest must TDG.MEM.PAGE.ACCEPT it",
        "tdx_mem_page_aug()",
    ),
    "TDH.MEM.RANGE.BLOCK": (
        "The leaf is BLOCKED: no new TLB entries can use it",
        "tdx_sept_zap_private_spte()",
    ),
    "TDH.MEM.TRACK": (
        "The TD epoch moves on; vCPUs are kicked so stale TLB entries go",
        "tdx_track()",
    ),
    "TDH.MEM.PAGE.REMOVE": (
        "The blocked page leaves the S-EPT and the TDX module",
        "tdx_sept_remove_private_spte()",
    ),
    "TDH.PHYMEM.PAGE.WBINVD": (
        "The page's cache lines (TD key) are flushed before the host reuses it",
        "tdh_phymem_page_wbinvd_hkid()",
    ),
    "TDH.MEM.PAGE.DEMOTE": (
        "A 2M leaf is split into 512 4K leaves in a new S-EPT page",
        "tdx_sept_split_private_spte()",
    ),
    "TDG.MEM.PAGE.ACCEPT": (
        "The guest accepts the page: PENDING -> MAPPED",
        "tdx_accept_memory() (guest)",
    ),
    "kvm_hypercall": (
        "The guest's VMCALL: KVM_HC_MAP_GPA_RANGE (a0 gpa, a1 pages, a2 attributes) exits to "
        "the VMM",
        "kvm_emulate_hypercall()",
    ),
    "kvm_hypercall_refused": (
        "KVM refuses the guest's request and answers the guest itself: no exit",
        "kvm_emulate_hypercall() / tdx_map_gpa()",
    ),
    "tdx_map_gpa": (
        "The TD's TDG.VP.VMCALL<MapGPA>: KVM exits once per 2 MiB chunk",
        "tdx_map_gpa()",
    ),
    "kvm_pre_fault_memory": (
        "KVM_PRE_FAULT_MEMORY maps the range as guest faults would",
        "kvm_vcpu_pre_fault_memory()",
    ),
    "kvm_gmem_fault_user_mapping": (
        "The VMM touches its mmap of the guest_memfd: the guest_memfd's own page",
        "kvm_gmem_fault_user_mapping()",
    ),
    "mmap_pfnmap": (
        "The VMM maps device memory (VM_PFNMAP) over its RAM mapping",
        "remap_pfn_range()",
    ),
    "memfd_create": ("memfd_create(): a new shmem file", "memfd_create()"),
    "memfd_close": ("The memfd's descriptor is closed", "fput()"),
    "shmem_fallocate": (
        "fallocate() on the memfd's shmem file: allocate or punch",
        "shmem_fallocate()",
    ),
    "inaccessible_notifier_invalidate": (
        "v8: after shmem has freed the pages, each private memslot's notifier is called "
        "with byte offsets it reads as page offsets",
        "inaccessible_notifier_invalidate()",
    ),
    "kvm_private_mem_register": (
        "v8: the private memslot registers its notifier on the inaccessible memfd",
        "kvm_private_mem_register()",
    ),
    "kvm_vm_ioctl_set_mem_attr": (
        "v8: KVM_MEMORY_ENCRYPT_(UN)REG_REGION stores private/shared for the range",
        "kvm_vm_ioctl_set_mem_attr()",
    ),
    "kvm_zap_gfn_range": (
        "Every leaf in the gfn range is zapped under one invalidation",
        "kvm_zap_gfn_range()",
    ),
    "rmp_make_private": (
        "RMPUPDATE: the host page becomes guest-owned (assigned to the gpa, at 4K or 2M; "
        "immutable for launch pages)",
        "rmp_make_private() (arch/x86/virt/svm/sev.c)",
    ),
    "rmp_make_shared": (
        "RMPUPDATE: the host pages go back to the hypervisor (RMP entry all zeros)",
        "rmp_make_shared() (arch/x86/virt/svm/sev.c)",
    ),
    "psmash": (
        "PSMASH: a 2M RMP entry is split into 512 4K entries, Validated kept",
        "snp_rmptable_psmash() / psmash()",
    ),
    "clflush_cache_range": (
        "The freed guest pages' cache lines are flushed before the host reuses them",
        "sev_gmem_invalidate()",
    ),
    "kvm_rmp_fault": (
        "An RMP #NPF: a 2M RMP entry behind a smaller mapping or a 4K PVALIDATE; KVM "
        "PSMASHes and zaps 512 gfns",
        "sev_handle_rmp_fault()",
    ),
    "SNP_LAUNCH_UPDATE": (
        "The firmware measures the page into the launch digest and leaves it Pre-Guest "
        "(validated, immutable)",
        "sev_gmem_post_populate() / snp_launch_update_vmsa()",
    ),
    "SNP_PAGE_RECLAIM": (
        "The firmware gives a page back after a failed command; then it is made shared",
        "snp_page_reclaim()",
    ),
    "SNP_LAUNCH_FINISH": (
        "The launch ends: Pre-Guest pages become Guest-Valid, the vCPUs may run",
        "snp_launch_finish()",
    ),
    "pvalidate": (
        "The guest's PVALIDATE validates or rescinds its page in the RMP",
        "pvalidate() (guest, arch/x86/coco/sev/)",
    ),
    "snp_page_not_validated": (
        "The guest touched a page it never validated: #VC, and a Linux guest terminates",
        "vc_handle_exitcode() (guest) -> sev_es_terminate()",
    ),
    "snp_psc": (
        "The SNP guest's page-state change (GHCB PSC): KVM exits once per run of 4K or 2M entries",
        "snp_begin_psc()",
    ),
    "note": ("A caption of the recording", ""),
}

GROUPS = ("kvm tracepoints", "TDX SEAMCALLs", "SEV-SNP RMP", "guest_memfd", "mm", "captions")
SNP_EVENTS = frozenset(
    {
        "rmp_make_private",
        "rmp_make_shared",
        "psmash",
        "clflush_cache_range",
        "kvm_rmp_fault",
        "SNP_LAUNCH_UPDATE",
        "SNP_PAGE_RECLAIM",
        "SNP_LAUNCH_FINISH",
        "pvalidate",
        "snp_page_not_validated",
        "snp_psc",
    }
)


def group_of(name: str) -> str:
    """The event log's filter group of an event name."""
    if name.startswith(("TDH.", "TDG.")):
        return "TDX SEAMCALLs"
    if name in SNP_EVENTS:
        return "SEV-SNP RMP"
    if name.startswith("kvm_gmem_") or name in (
        "memfd_create",
        "memfd_close",
        "shmem_fallocate",
        "inaccessible_notifier_invalidate",
    ):
        return "guest_memfd"
    if name.startswith(("mm_", "handle_mm_fault", "madvise", "memory_failure", "mmap_")):
        return "mm"
    if name == "note":
        return "captions"
    return "kvm tracepoints"


# Names in a fixed order: the event log stores one small integer per event.
EVENT_NAMES: tuple[str, ...] = tuple(EVENT_FIELDS)
NAME_ID: dict[str, int] = {n: i for i, n in enumerate(EVENT_NAMES)}


def index_events(events: Sequence[Event], base: int = 0) -> tuple[bytes, dict[int, int]]:
    """One byte per event (its name's id in EVENT_NAMES, 255 unknown) and each op's first
    position (+ base): what the event log needs to filter and to find an op's events."""
    get = NAME_ID.get
    ids = bytes([get(ev[1], 255) for ev in events])
    first: dict[int, int] = {}
    prev = None
    for k, ev in enumerate(events):
        if ev[0] != prev:  # an op's events are consecutive
            prev = ev[0]
            first.setdefault(prev, base + k)
    return ids, first


@attrs.frozen
class Span:
    """What an event (or a step) touches: gfn ranges, host pfn ranges, guest_memfd ranges."""

    gfns: tuple[tuple[int, int], ...] = ()
    pfns: tuple[tuple[int, int], ...] = ()
    files: tuple[tuple[int, int, int], ...] = ()  # (fd, start index, end index)

    def __bool__(self) -> bool:
        return bool(self.gfns or self.pfns or self.files)


def _pages(level: Any) -> int:
    return 1 << (9 * (level - 1)) if isinstance(level, int) and level >= 1 else 1


def event_span(ev: Event) -> Span:
    """The gfns, pfns and file pages one event names (addresses from its fields)."""
    name = ev[1]
    d = dict(zip(EVENT_FIELDS[name], ev[2:], strict=False))
    gfns: list[tuple[int, int]] = []
    pfns: list[tuple[int, int]] = []
    files: list[tuple[int, int, int]] = []
    n_level = _pages(d.get("level"))
    if name == "TDH.MEM.SEPT.ADD":
        # `level` is that of the new table: it covers the whole span below it.
        gfns.append((d["gfn"], d["gfn"] + (1 << (9 * (d["level"] - 1)))))
        pfns.append((d["pfn"], d["pfn"] + 1))
        return Span(tuple(gfns), tuple(pfns))
    if "gfn" in d and isinstance(d["gfn"], int):
        gfns.append((d["gfn"], d["gfn"] + n_level))
    if "gpa" in d and isinstance(d["gpa"], int):
        gfns.append((d["gpa"] >> 12, (d["gpa"] >> 12) + 1))
    if name in ("kvm_vm_set_mem_attributes", "kvm_mmu_invalidate_range_add"):
        gfns.append((d["start"], d["end"]))
    if name == "kvm_set_memslot":
        gfns.append((d["base_gfn"], d["base_gfn"] + d["npages"]))
    order = d.get("order")
    n_pfn = (1 << order) if isinstance(order, int) else n_level
    if isinstance(order, int) and isinstance(d.get("count"), int):
        n_pfn = d["count"] << order  # kvm_gmem_folios_*: count folios in a row
    for key in ("pfn", "old_pfn", "new_pfn"):
        v = d.get(key)
        if isinstance(v, int) and v >= 0:
            n = 1 if name in ("TDH.PHYMEM.PAGE.WBINVD", "kvm_faultin_pfn") else n_pfn
            pfns.append((v, v + n))
    if isinstance(d.get("sept_pfn"), int):
        pfns.append((d["sept_pfn"], d["sept_pfn"] + 1))
    if name.startswith("kvm_gmem_") and "fd" in d:
        if "index" in d:
            files.append((d["fd"], d["index"], d["index"] + (d.get("count", 1) << d["order"])))
        elif "start" in d:
            files.append((d["fd"], d["start"], d["end"]))
        elif "pgoff" in d:
            files.append((d["fd"], d["pgoff"], d["pgoff"] + d["npages"]))
    return Span(tuple(gfns), tuple(pfns), tuple(files))


def merge(ranges: Iterable[tuple[int, int]], cap: int = 256) -> tuple[tuple[int, int], ...]:
    """Sorted, coalesced ranges; past `cap` ranges the rest is folded into the last one."""
    out: list[list[int]] = []
    for s, e in sorted(ranges):
        if (out and s <= out[-1][1]) or len(out) >= cap:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return tuple((s, e) for s, e in out)


def merge_spans(spans: Iterable[Span]) -> Span:
    g: list[tuple[int, int]] = []
    p: list[tuple[int, int]] = []
    f: dict[int, list[tuple[int, int]]] = {}
    for sp in spans:
        g.extend(sp.gfns)
        p.extend(sp.pfns)
        for fd, s, e in sp.files:
            f.setdefault(fd, []).append((s, e))
    files = tuple((fd, s, e) for fd in sorted(f) for s, e in merge(f[fd]))
    return Span(merge(g), merge(p), files)


def file_to_gfns(slots: Iterable[Any], fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """Gfn ranges bound to file pages [start, end) of `fd` (slots: gmem_fd, gmem_pgoff,
    base_gfn, npages, as the app's SlotInfo)."""
    out = []
    for s in slots:
        if s.gmem_fd != fd:
            continue
        a, b = max(start, s.gmem_pgoff), min(end, s.gmem_pgoff + s.npages)
        if a < b:
            out.append((s.base_gfn + a - s.gmem_pgoff, s.base_gfn + b - s.gmem_pgoff))
    return out


def gfns_to_files(slots: Iterable[Any], start: int, end: int) -> list[tuple[int, int, int]]:
    """(fd, start index, end index) of the file pages bound to gfns [start, end)."""
    out = []
    for s in slots:
        if s.gmem_fd is None:
            continue
        a, b = max(start, s.base_gfn), min(end, s.base_gfn + s.npages)
        if a < b:
            off = s.gmem_pgoff - s.base_gfn
            out.append((s.gmem_fd, a + off, b + off))
    return out


@attrs.frozen
class Step:
    """One step of a protocol: `count` events named `name` (positions in the op's events)."""

    name: str
    count: int
    positions: tuple[int, ...]
    span: Span
    explanation: str
    function: str

    @property
    def title(self) -> str:
        return self.name if self.count == 1 else f"{self.name} ×{self.count}"


def _period(names: Sequence[str], i: int, max_period: int) -> tuple[int, int]:
    """(period k, repetitions r) of the pattern starting at i that covers the most events."""
    best = (1, 1)
    n = len(names)
    for k in range(1, max_period + 1):
        if i + 2 * k > n:
            break
        pat = names[i : i + k]
        r = 1
        while i + (r + 1) * k <= n and names[i + r * k : i + (r + 1) * k] == pat:
            r += 1
        if r > 1 and k * r > best[0] * best[1]:
            best = (k, r)
    return best


def steps(events: Sequence[Event], max_period: int = 6) -> list[Step]:
    """An op's events as protocol steps: runs and repeated patterns grouped (see module doc)."""
    names = [ev[1] for ev in events]
    out: list[Step] = []
    i = 0
    while i < len(names):
        k, r = _period(names, i, max_period)
        for j in range(k):
            pos = tuple(range(i + j, i + k * r, k))
            name = names[i + j]
            span = merge_spans(event_span(events[p]) for p in pos)
            expl, fn = EXPLAIN.get(name, ("", ""))
            out.append(Step(name, len(pos), pos, span, expl, fn))
        i += k * r
    return out


def protocol_name(events: Sequence[Event]) -> str:
    """Which kernel protocol an op's events are: for the step panel's title."""
    names = {ev[1] for ev in events}
    if "kvm_vm_set_mem_attributes" in names:
        return "attribute conversion"
    if "kvm_gmem_invalidate_begin" in names:
        return "guest_memfd hole punch / release"
    if "TDH.MEM.PAGE.AUG" in names or "TDH.MEM.SEPT.ADD" in names:
        return "TDX fault"
    if "TDH.MEM.RANGE.BLOCK" in names:
        return "S-EPT zap"
    if "kvm_page_fault" in names:
        return "page fault"
    return "op"
