"""SEV-SNP state and the hooks KVM runs on guest_memfd pages (arch/x86/kvm/svm/sev.c).

An `snp` VM carries `SnpState`: the host's RMP (`imemviz.model.rmp`), whether
SNP_LAUNCH_FINISH ran, and the VMSA page it made.  The hooks here are what
sev.c does to the RMP behind the generic code's back:

- `gmem_prepare` (`sev_gmem_prepare()`, from `kvm_gmem_get_pfn()` on every private
  fault): a pfn not yet assigned is RMPUPDATEd to guest-owned, not validated
  (Guest-Invalid), at 2M when the folio is huge and its whole 2M pfn range is
  still hypervisor-owned (`is_large_rmp_possible()`), else at 4K;
- `max_level` (`sev_gmem_max_mapping_level()`): the NPT level is capped by the
  RMP entry's size;
- `gmem_invalidate` (`sev_gmem_invalidate()`, from guest_memfd's `free_folio`):
  when a folio is finally freed (hole punch, close; not at conversion) each
  assigned entry goes back to the hypervisor, a 2M entry the folio does not
  cover whole is PSMASHed first, and the cache lines are flushed;
- `check_access`: what the hardware checks when a guest access reaches a pfn
  through a private NPT leaf: a 2M RMP entry behind a smaller NPT leaf raises
  an RMP #NPF (`sev_handle_rmp_fault()`: PSMASH, `kvm_zap_gfn_range()` over 512
  gfns, `kvm_rmp_fault`), and a page the guest never PVALIDATEd raises #VC in
  the guest, which a Linux guest answers by terminating (KVM_EXIT_SYSTEM_EVENT,
  KVM_SYSTEM_EVENT_SEV_TERM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from imemviz.model.mmu import Leaf, LeafTable
from imemviz.model.result import Result
from imemviz.model.rmp import IMMUTABLE, PMD_PAGES, SIZE_2M, VMSA, RmpEntry, RmpTable
from imemviz.model.uapi import PFERR_PRIVATE_ACCESS
from imemviz.model.units import LEVEL_2M, LEVEL_4K
from imemviz.model.zap import FILTER_PRIVATE, FILTER_SHARED, invalidate

if TYPE_CHECKING:
    from imemviz.model.fault import Access
    from imemviz.model.vm import VM

SNP_ASID = 1  # the model's one guest: sev_get_asid() of the first SNP ASID
INITIAL_VMSA_GPA = 0xFFFFFFFFF000  # svm.h: the gpa the VMSA pages are assigned to
PFERR_GUEST_RMP = 1 << 31
PFERR_GUEST_SIZEM = 1 << 35
PFERR_GUEST_ENC = 1 << 34

# The access is re-executed (an RMP #NPF was handled): a Result no op returns.
RETRY = Result(False, "RMP_NPF_RETRY")  # never returned to the caller
"""check_access(): the RMP #NPF was handled; the guest re-executes the access."""


@attrs.define(slots=True, eq=False)
class SnpState:
    """What KVM and the firmware hold for an SNP guest besides the shared MMU state."""

    rmp: RmpTable = attrs.field(factory=RmpTable)
    launched: bool = False  # SNP_LAUNCH_FINISH done: kvm->arch.pre_fault_allowed
    vmsa_pfn: int | None = None  # vCPU 0's VMSA page, a firmware page after the finish


def rmp_dict(e: RmpEntry | None) -> dict[str, Any] | None:
    """The contract's inspect `rmp` object (3.2)."""
    if e is None:
        return {"assigned": False, "validated": False, "immutable": False, "page_size": "4K"}
    return {
        "assigned": True,
        "validated": e.validated,
        "immutable": e.immutable,
        "page_size": e.page_size,
        "gpa": e.gfn << 12,
        "asid": SNP_ASID,
        "vmsa": e.vmsa,
        "state": state_name(e),
    }


def state_name(e: RmpEntry | None) -> str:
    """The AMD page state the entry puts its page in (APM vol. 2, "RMP states")."""
    if e is None:
        return "hypervisor"
    if e.vmsa or e.immutable:
        return "firmware"  # Pre-Guest launch pages and VMSA pages: only the firmware changes them
    return "guest-valid" if e.validated else "guest-invalid"


# -- RMPUPDATE and PSMASH, with their events --------------------------------------------
def make_private(vm: VM, pfn: int, gfn: int, level: int, immutable: bool) -> None:
    """rmp_make_private() (arch/x86/virt/svm/sev.c): RMPUPDATE to guest-owned."""
    assert vm.snp is not None
    vm.snp.rmp.make_private(pfn, gfn, level, immutable)
    vm.emit("rmp_make_private", pfn, gfn << 12, level, SNP_ASID, int(immutable))


def make_shared(vm: VM, pfn: int, npages: int, level: int) -> None:
    """rmp_make_shared() over npages pfns (one event for a run of 4K updates)."""
    assert vm.snp is not None
    vm.snp.rmp.make_shared(pfn, npages)
    vm.emit("rmp_make_shared", pfn, level, npages)


def psmash(vm: VM, pfn: int) -> bool:
    """snp_rmptable_psmash(): split the 2M entry holding pfn into 512 4K entries."""
    assert vm.snp is not None
    head = pfn & ~(PMD_PAGES - 1)
    ok = vm.snp.rmp.psmash(head)
    vm.emit("psmash", head, 0 if ok else 1)
    return ok


# -- the hooks ------------------------------------------------------------------------
def gmem_prepare(vm: VM, gfn: int, pfn: int, order: int) -> None:
    """sev_gmem_prepare(): assign the faulting page (or its 2M range) to the guest."""
    snp = vm.snp
    assert snp is not None
    if snp.rmp.lookup(pfn) is not None:
        return  # already assigned: the RMP is SNP's own "prepared" tracking (7.0 on)
    head = pfn & ~(PMD_PAGES - 1)
    if order >= 9 and snp.rmp.all_shared(head, head + PMD_PAGES):
        make_private(vm, head, gfn & ~(PMD_PAGES - 1), LEVEL_2M, False)
    else:
        make_private(vm, pfn, gfn, LEVEL_4K, False)


def max_level(vm: VM, pfn: int) -> int:
    """sev_gmem_max_mapping_level(): the RMP entry's size (4K when unassigned)."""
    assert vm.snp is not None
    e = vm.snp.rmp.lookup(pfn)
    return LEVEL_4K if e is None else e.level


def gmem_invalidate(vm: VM, pfn: int, npages: int, order: int) -> None:
    """sev_gmem_invalidate() for the folios of order `order` in [pfn, pfn + npages) being
    freed: assigned entries go back to the hypervisor.  Walks the RMP's assigned runs,
    never the pages, so freeing a huge unassigned range costs nothing here."""
    snp = vm.snp
    assert snp is not None
    end = pfn + npages
    for run in list(snp.rmp.runs(pfn, end)):
        a, b = run.pfn, run.pfn + run.count
        if not run.flags & SIZE_2M:  # 4K entries: one RMPUPDATE each
            make_shared(vm, a, b - a, LEVEL_4K)
            vm.emit("clflush_cache_range", a, b - a)
            continue
        for head in range(a & ~(PMD_PAGES - 1), b, PMD_PAGES):
            lo, hi = max(a, head), min(b, head + PMD_PAGES)
            if order >= 9 and lo == head and hi == head + PMD_PAGES:
                make_shared(vm, head, PMD_PAGES, LEVEL_2M)  # use_2m_update
            else:
                # A 4K sub-page of a 2M entry: PSMASH first, then 4K updates.
                psmash(vm, head)
                make_shared(vm, lo, hi - lo, LEVEL_4K)
            vm.emit("clflush_cache_range", lo, hi - lo)


def handle_rmp_fault(vm: VM, acc: Access, pfn: int, size_mismatch: bool) -> None:
    """sev_handle_rmp_fault(): a 2M RMP entry behind a smaller mapping or a 4K PVALIDATE
    is PSMASHed, the 512 gfns from the faulting one are zapped, kvm_rmp_fault traced."""
    e = vm.snp.rmp.lookup(pfn) if vm.snp is not None else None
    if e is None:
        return  # "Unexpected RMP fault": cannot happen for a page KVM mapped private
    code = PFERR_GUEST_RMP | PFERR_GUEST_ENC | PFERR_PRIVATE_ACCESS
    if size_mismatch:
        code |= PFERR_GUEST_SIZEM
    ret = 0
    if e.level == LEVEL_2M:
        ret = 0 if psmash(vm, pfn) else 1
        invalidate(vm, [(acc.gfn, acc.gfn + PMD_PAGES)], FILTER_PRIVATE | FILTER_SHARED)
    vm.emit("kvm_rmp_fault", acc.vcpu, acc.gfn << 12, pfn, code, e.level, ret)


def check_access(vm: VM, acc: Access, table: LeafTable, leaf: Leaf) -> Result | None:
    """The hardware's RMP checks on an access through a private leaf: None (go on),
    RETRY (an RMP #NPF was handled; the access is re-executed) or the guest's end."""
    if table is not vm.private or vm.snp is None:
        return None
    pfn = leaf.pfn_of(acc.gfn)
    e = vm.snp.rmp.lookup(pfn)
    if e is None:
        return None
    if e.level > leaf.level:
        handle_rmp_fault(vm, acc, pfn, size_mismatch=False)
        return RETRY
    if not e.validated:
        # #VC (page not validated) inside the guest; Linux's #VC handler cannot handle it
        # and terminates the guest through the GHCB MSR protocol (sev_es_terminate()).
        vm.emit("snp_page_not_validated", acc.vcpu, acc.gfn << 12, pfn)
        vm.emit("kvm_userspace_exit", acc.vcpu, "KVM_EXIT_SYSTEM_EVENT", "")
        return Result.success(
            exit={"reason": "KVM_EXIT_SYSTEM_EVENT", "type": "KVM_SYSTEM_EVENT_SEV_TERM"},
            vc="page not validated",
            pfn=pfn,
        )
    return None


def fail_entry(vm: VM) -> Result:
    """KVM_RUN before SNP_LAUNCH_FINISH: VMRUN refuses a VMSA the firmware has not made a
    VMSA page yet; svm_handle_exit() reports SVM_EXIT_ERR as KVM_EXIT_FAIL_ENTRY."""
    vm.emit("kvm_userspace_exit", 0, "KVM_EXIT_FAIL_ENTRY", "")
    return Result.success(
        exit={"reason": "KVM_EXIT_FAIL_ENTRY", "hardware_entry_failure_reason": "SVM_EXIT_ERR"}
    )


def finish_launch(vm: VM) -> None:
    """SNP_LAUNCH_FINISH in the firmware: every Pre-Guest page becomes Guest-Valid."""
    snp = vm.snp
    assert snp is not None
    for run in list(snp.rmp.runs()):
        if run.flags & IMMUTABLE and not run.flags & VMSA:
            snp.rmp.set_flags(run.pfn, run.count, 0, IMMUTABLE)


def rmp_violations(vm: VM) -> list[tuple[int, str]]:
    """RMP entries that no guest page explains: an assigned pfn must be a guest_memfd
    page or the VMSA (a freed page still guest-owned would crash the host when it touches
    it: the reason sev_gmem_invalidate() exists).  Linear in runs and folio runs."""
    snp = vm.snp
    assert snp is not None
    spans = sorted(
        (seg.pfn, seg.pfn + (seg.count << seg.order))
        for f in vm.files.values()
        for seg in f.inode.iter_segments()
    )
    if snp.vmsa_pfn is not None:
        spans.append((snp.vmsa_pfn, snp.vmsa_pfn + 1))
        spans.sort()
    out = []
    i = 0
    for run in snp.rmp.runs():
        pfn, end = run.pfn, run.pfn + run.count
        while pfn < end:
            while i < len(spans) and spans[i][1] <= pfn:
                i += 1
            if i < len(spans) and spans[i][0] <= pfn:
                pfn = min(end, spans[i][1])
                continue
            stop = end if i >= len(spans) else min(end, spans[i][0])
            out.append((pfn, f"{stop - pfn} pfns assigned in the RMP are no guest page"))
            pfn = stop
            if len(out) >= 100:
                return out
    return out
