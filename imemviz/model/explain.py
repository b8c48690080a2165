"""Why an op was refused: errno + op -> the kernel rule behind it, in one or two sentences.

Used by the app's status bar and message area (and usable by any front end).
`explain(op, ok, errno, ret)` returns "" for a plain success; notable
successes (an MMIO exit, a retried or held fault) get a note too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from imemviz.model.events import Event
from imemviz.model.uapi import KVM_MEMORY_EXIT_FLAG_PRIVATE

# Results that carry a TDX module status (ret.tdx_status).
TDX_STATUS = {
    "TDX_PAGE_ALREADY_ACCEPTED": "TDG.MEM.PAGE.ACCEPT found the page already accepted "
    "(S-EPT entry MAPPED); the TDX module refuses a second accept and nothing changes.",
    "TDX_PAGE_SIZE_MISMATCH": "the accept level is larger than the S-EPT leaf KVM can map "
    "there (upstream KVM maps TD private memory at 4K only, tdx_gmem_private_max_mapping_level); "
    "a guest retries the accept at 4K.",
    "TDX_NOT_A_TD": "TDG.MEM.PAGE.ACCEPT is a TDCALL: only a TDX guest can accept memory.",
    "TDX_OPERAND_INVALID": "the GPA has the shared bit set: only private GPAs are accepted.",
}

VM_DEAD = (
    "The VM is dead (kvm_vm_dead): KVM refuses every later vCPU and VM ioctl with EIO. "
    "Undo (Ctrl+Z) brings the state before back."
)
TD_KILLED = (
    "The TD was killed: the guest touched a private page whose S-EPT entry is PENDING "
    "(added by TDH.MEM.PAGE.AUG, never accepted with TDG.MEM.PAGE.ACCEPT). With "
    "SEPT_VE_DISABLE, tdx_handle_ept_violation() calls kvm_vm_dead(). A well-behaved "
    "guest accepts first. Undo (Ctrl+Z) brings the TD back."
)

NO_PFN = (
    "KVM_RUN failed with EFAULT without a memory-fault exit: KVM could not get the pfn "
    "behind the hva (kvm_handle_error_pfn()). Before 6.13 KVM refuses VM_PFNMAP pages whose "
    "struct page is not refcounted (a virtio-gpu blob: kvm_try_get_pfn()); 6.13 maps them."
)

# (op, errno) -> rule; (None, errno) is the fallback for any op.
RULES: dict[tuple[str | None, str], str] = {
    ("guest_access", "EFAULT"): "KVM_EXIT_MEMORY_FAULT: the access type (private or shared) "
    "does not match the gfn's memory attribute, or a private access found no guest_memfd "
    "behind the gfn (no memslot, no GUEST_MEMFD flag, or the file was closed). The VMM "
    "converts the range with KVM_SET_MEMORY_ATTRIBUTES and re-enters the guest.",
    ("guest_access", "EHWPOISON"): "The page backing the gfn is poisoned (memory_failure): "
    "kvm_gmem_get_pfn() or GUP returns -EHWPOISON and the VMM has to inject a machine check.",
    ("guest_access", "EINVAL"): "KVM_RUN on a TD vCPU before KVM_TDX_FINALIZE_VM fails "
    "(tdx_vcpu_pre_run): finalize the TD first.",
    ("guest_access", "EBUSY"): "This vCPU has a held fault in flight: resume it "
    "(vcpu_resume) before it runs again.",
    ("guest_access", "ENOMEM"): "The host has no free page left for the fault.",
    ("vcpu_resume", "EINVAL"): "No fault is held on this vCPU (hold one with a guest access "
    "with hold: true).",
    ("guest_accept", "EINVAL"): "The TDX module refused the accept.",
    ("set_memory_attributes", "EINVAL"): "KVM_SET_MEMORY_ATTRIBUTES needs flags 0, a "
    "non-zero page-aligned range that does not wrap, and attributes the VM supports "
    "(PRIVATE only on VMs with private memory: sw_protected, SNP, TDX).",
    ("set_memory_attributes", "ENOMEM"): "xa_reserve() failed while reserving the range.",
    ("fallocate", "EOPNOTSUPP"): "guest_memfd supports only allocation with KEEP_SIZE and "
    "PUNCH_HOLE|KEEP_SIZE (kvm_gmem_fallocate); every other mode is refused.",
    ("fallocate", "EINVAL"): "offset and len must be page aligned and len > 0; allocating past "
    "the end of the file is refused (a guest_memfd's size is fixed at creation).",
    ("fallocate", "EBADF"): "No open file has this descriptor.",
    ("fallocate", "ENODEV"): "fds 0-2 are the terminal, not a regular file.",
    ("fallocate", "EFBIG"): "offset + len is beyond the largest file offset.",
    ("fallocate", "ENOMEM"): "The host has no free block for the folio.",
    ("create_guest_memfd", "EINVAL"): "KVM_CREATE_GUEST_MEMFD needs a non-zero, page-aligned "
    "size and supported flags: MMAP always, INIT_SHARED only on VMs without private memory.",
    ("set_user_memory_region2", "EEXIST"): "The GPA range overlaps another memslot of the same "
    "address space, or the guest_memfd range is already bound to another memslot "
    "(kvm_gmem_bind; EINVAL in 6.18-era kernels).",
    ("set_user_memory_region2", "EINVAL"): "KVM_SET_USER_MEMORY_REGION2 checks: slot id, "
    "flags (GUEST_MEMFD excludes LOG_DIRTY_PAGES and READONLY), page alignment of GPA, size, "
    "userspace_addr and guest_memfd_offset, the range inside the guest_memfd, no wrap; a "
    "guest_memfd memslot cannot be moved or changed, only deleted; deleting needs an "
    "existing slot; TDX memslots must stay below the shared bit.",
    ("set_user_memory_region2", "EBADF"): "guest_memfd is not an open file descriptor "
    "(kvm_gmem_bind).",
    ("set_user_memory_region", "EINVAL"): "KVM_SET_USER_MEMORY_REGION (v1) takes only "
    "LOG_DIRTY_PAGES and READONLY; the other checks are those of v2.",
    ("set_user_memory_region", "EEXIST"): "The GPA range overlaps another memslot.",
    ("close", "EBADF"): "No open file has this descriptor.",
    ("tdx_init_mem_region", "EINVAL"): "KVM_TDX_INIT_MEM_REGION works only before "
    "KVM_TDX_FINALIZE_VM, on private gfns of a guest_memfd memslot, with a page-aligned GPA "
    "without the shared bit.",
    ("tdx_init_mem_region", "EIO"): "The gfn already has an S-EPT leaf.",
    ("tdx_init_mem_region", "EFAULT"): "The memslot's guest_memfd was closed.",
    ("tdx_finalize_vm", "EINVAL"): "The TD is already finalized (RUNNABLE).",
    ("tdx_finalize_vm", "ENOTTY"): "KVM_TDX_FINALIZE_VM exists only for TDs.",
    ("host_access", "EFAULT"): "The hva lies outside every memslot's userspace range.",
    ("host_access", "EHWPOISON"): "The host page behind this hva is poisoned (SIGBUS).",
    ("madvise", "EINVAL"): "madvise needs a page-aligned start (hugetlb: 1G aligned) and a "
    "range that does not wrap; device memory (VM_PFNMAP) refuses MADV_DONTNEED.",
    ("madvise", "ENOMEM"): "Part of the range is not mapped by the VMM (outside every "
    "memslot's userspace range); the mapped parts were still dropped.",
    ("memory_failure", "ENXIO"): "The pfn lies beyond the host's memory.",
    ("memory_failure", "EHWPOISON"): "The page is already poisoned.",
    ("guest_access", "SIGBUS"): "The page the access reached is gone (SIGBUS).",
    ("host_access", "SIGBUS"): "The hva is the VMM's mmap of a guest_memfd "
    "(kvm_gmem_fault_user_mapping): without INIT_SHARED its memory is private and the host "
    "may not touch it; past the file's end, or on a poisoned page, the fault is SIGBUS too.",
    ("pre_fault_memory", "EINVAL"): "KVM_PRE_FAULT_MEMORY needs flags 0 and a non-empty, "
    "page-aligned range that does not wrap, and no TDX shared-bit GPA; kernels before 6.10 "
    "do not have the ioctl (kvm_arch_vcpu_ioctl() answers EINVAL).",
    ("pre_fault_memory", "EOPNOTSUPP"): "A TD can be pre-faulted only once it is finalized "
    "(kvm->arch.pre_fault_allowed is set by tdx_td_finalize()).",
    ("pre_fault_memory", "ENOENT"): "No memslot covers the first page: the access would be "
    "emulated MMIO (RET_PF_EMULATE), which KVM_PRE_FAULT_MEMORY cannot map.",
    ("pre_fault_memory", "EFAULT"): "The first page is private but has no guest_memfd behind "
    "it (no memslot, no GUEST_MEMFD flag, or the file was closed), or KVM refused its pfn.",
    ("pre_fault_memory", "EBUSY"): "This vCPU has a held fault in flight: resume it first.",
    ("pre_fault_memory", "EINTR"): "The host page is poisoned: KVM sends SIGBUS and the "
    "pending signal ends KVM_PRE_FAULT_MEMORY.",
    ("memfd_create", "EINVAL"): "memfd_create() refuses unknown flags; under upm-v8 "
    "MFD_INACCESSIBLE excludes ALLOW_SEALING and HUGETLB and the size must be page aligned.",
    ("memory_encrypt_reg_region", "ENOTTY"): "Only the 2022 design (kernel upm-v8) marks GPA "
    "ranges private with KVM_MEMORY_ENCRYPT_REG_REGION; merged kernels use "
    "KVM_SET_MEMORY_ATTRIBUTES (the ioctl is SEV's, ENOTTY on other VMs).",
    ("memory_encrypt_unreg_region", "ENOTTY"): "Only the 2022 design (kernel upm-v8) marks "
    "GPA ranges shared with KVM_MEMORY_ENCRYPT_UNREG_REGION; merged kernels use "
    "KVM_SET_MEMORY_ATTRIBUTES.",
    ("memory_encrypt_reg_region", "EINVAL"): "The range must be non-empty, page aligned and "
    "must not wrap (kvm_vm_ioctl_set_mem_attr()).",
    ("memory_encrypt_unreg_region", "EINVAL"): "The range must be non-empty, page aligned "
    "and must not wrap (kvm_vm_ioctl_set_mem_attr()).",
    ("host_mmap_pfnmap", "EINVAL"): "mmap(MAP_FIXED) needs a page-aligned address and a "
    "non-zero length.",
    ("host_mmap_pfnmap", "EFAULT"): "The range must lie inside memslots' userspace ranges "
    "(the VMM memory the model tracks).",
    (None, "ENOTTY"): "This kernel does not have the ioctl: it came later (see the VM's "
    "kernel in docs/kernels.md), or it exists only in the 2022 design (upm-v8).",
    (None, "EIO"): VM_DEAD,
    (None, "EINVAL"): "The kernel refused the arguments (EINVAL).",
    (None, "EBADF"): "No open file has this descriptor.",
    (None, "ENOMEM"): "The host ran out of memory for this op.",
}


def explain(
    op: str,
    ok: bool,
    errno: str | None,
    ret: Mapping[str, Any] | None = None,
    events: Iterable[Event] = (),
) -> str:
    """The rule behind a result, or a note on a notable success, or "".

    `events` are the op's events (`vm.last_events`): a `kvm_vm_dead` among them
    says this op killed the VM.
    """
    ret = ret or {}
    if ok:
        return _note(ret)
    status = ret.get("tdx_status")
    if status in TDX_STATUS:
        return TDX_STATUS[status]
    if errno == "EIO" and ret.get("vm_dead"):
        killed = any(ev[1] == "kvm_vm_dead" for ev in events)
        return TD_KILLED if killed else VM_DEAD
    exit_ = ret.get("exit")
    if isinstance(exit_, Mapping) and exit_.get("reason") == "KVM_EXIT_MEMORY_FAULT":
        kind = "private" if exit_.get("flags", 0) & KVM_MEMORY_EXIT_FLAG_PRIVATE else "shared"
        base = RULES.get((op, errno or ""), RULES[("guest_access", "EFAULT")])
        if errno == "EFAULT":
            base = (
                f"KVM_EXIT_MEMORY_FAULT for a {kind} access to gpa "
                f"{exit_.get('gpa', 0):#x}: " + base.split(": ", 1)[1]
            )
        return base
    if op in ("guest_access", "vcpu_resume") and errno == "EFAULT":
        return NO_PFN
    rule = RULES.get((op, errno or "")) or RULES.get((None, errno or ""))
    return rule or f"{op} failed with {errno}."


def _note(ret: Mapping[str, Any]) -> str:
    notes = []
    exit_ = ret.get("exit")
    if isinstance(exit_, Mapping) and exit_.get("reason") == "KVM_EXIT_MMIO":
        notes.append(
            "The access is emulated and exits to the VMM as MMIO (KVM_EXIT_MMIO): no memslot "
            "covers this gpa, or it is a write to a READONLY memslot (memory is unchanged)."
        )
    if isinstance(exit_, Mapping) and exit_.get("reason") == "KVM_EXIT_MEMORY_FAULT":
        kind = "private" if exit_.get("flags", 0) & 1 else "shared"
        notes.append(
            f"upm-v8's KVM_EXIT_MEMORY_FAULT (exit 38, KVM_RUN returns 0) for a {kind} access: "
            "the VMM converts with KVM_MEMORY_ENCRYPT_(UN)REG_REGION and re-enters."
        )
    if isinstance(exit_, Mapping) and exit_.get("reason") == "KVM_EXIT_HYPERCALL":
        notes.append(
            "The guest asked for a conversion (KVM_HC_MAP_GPA_RANGE): the VMM answers with "
            "set_memory_attributes for args [gpa, pages, attributes (16: private)]."
        )
    if ret.get("guest_ret"):
        notes.append(f"KVM refused the guest's request itself ({ret['guest_ret']}); no exit.")
    if ret.get("in_flight"):
        notes.append(
            "The fault is held after kvm_faultin_pfn() took its pfn and its "
            "mmu_invalidate_seq snapshot, before it takes mmu_lock."
        )
    if ret.get("retried"):
        notes.append(
            "The fault was retried: an invalidation ran while it held its pfn "
            "(mmu_invalidate_retry_gfn() saw mmu_invalidate_seq change or the "
            "in-progress range cover the gfn), so KVM dropped the pfn and faulted "
            "again from the start."
        )
    return " ".join(notes)
