"""The words for the SEV-SNP ops (merged into `imemviz.model.op_docs.OP_DOCS`)."""

from __future__ import annotations

from imemviz.model.op_docs import OpDoc

_FAIL_ENTRY = (
    "before `snp_launch_finish` the vCPU cannot run: `ok` true with "
    '`{"exit": {"reason": "KVM_EXIT_FAIL_ENTRY", "hardware_entry_failure_reason": '
    '"SVM_EXIT_ERR"}}` (VMRUN refuses a VMSA the firmware has not taken yet)'
)

SNP_OP_DOCS: dict[str, OpDoc] = {
    "snp_launch_update": OpDoc(
        "KVM_SEV_SNP_LAUNCH_UPDATE (snp_launch_update(), kvm_gmem_populate(), "
        "sev_gmem_post_populate())",
        "Before `snp_launch_finish`, puts initial pages into an SNP guest as QEMU does "
        "for OVMF: for each page the guest_memfd folio is allocated, the source bytes "
        "copied (`value`; ZERO and SECRETS pages hold what the firmware writes, 0 here), "
        "the RMP entry made guest-owned and immutable at 4K (rmp_make_private()), and "
        "the firmware's SNP_LAUNCH_UPDATE measures it (UNMEASURED pages are not in the "
        "digest) and leaves it Pre-Guest: validated, so the guest need not PVALIDATE "
        "it. The page is not mapped: the guest's first access faults it in. The range "
        "is clamped to the memslot; pages done before a failing page stay done.",
        {
            "gpa": "page aligned, the start of the range (gfn_start); private, in a "
            "guest_memfd memslot",
            "size": "bytes (params.len); a positive multiple of 4096",
            "type": "the KVM_SEV_SNP_PAGE_TYPE_*: NORMAL (1), ZERO (3), UNMEASURED (4), "
            "SECRETS (5), CPUID (6)",
            "value": "the byte the source pages hold",
        },
        '`{"gpa", "size"}`: what is left (params.gfn_start and len as the kernel '
        "updates them; size 0 when every page was added, more when the memslot ended "
        "or a later page failed)",
        (
            (
                "EINVAL",
                "not an SNP guest (a TD: an unknown KVM_TDX command), size 0 or not page "
                "aligned, an unaligned gpa, or a gpa without a guest_memfd memslot",
            ),
            (
                "EIO",
                "the first page failed (kvm_gmem_populate() < 0; `ret.populate_errno` "
                "says why: EINVAL not private, EEXIST its RMP entry already assigned, "
                "EFAULT the guest_memfd closed, EHWPOISON, ENOMEM), or the launch was "
                "already finished (`ret.fw_error` SEV_RET_INVALID_GUEST_STATE, the page "
                "reclaimed); or the VM is dead",
            ),
        ),
        '{"op": "snp_launch_update", "gpa": "0x800000", "size": "4K", "type": "CPUID", "value": 1}',
    ),
    "snp_launch_finish": OpDoc(
        "KVM_SEV_SNP_LAUNCH_FINISH (snp_launch_finish(), snp_launch_update_vmsa())",
        "Ends the SNP launch: vCPU 0's VMSA page is taken from host memory, made "
        "guest-owned and immutable in the RMP and measured (a firmware page from now on), "
        "every Pre-Guest page becomes Guest-Valid, and the vCPUs may run "
        "(kvm->arch.pre_fault_allowed).",
        {},
        "`{}`",
        (
            ("ENOTTY", "not an SNP guest (!sev_snp_guest())"),
            ("EINVAL", "a TD (an unknown KVM_TDX command)"),
            (
                "EIO",
                "already finished (`ret.fw_error` SEV_RET_INVALID_GUEST_STATE), or the VM is dead",
            ),
            ("ENOMEM", "no host page for the VMSA"),
        ),
        '{"op": "snp_launch_finish"}',
    ),
    "guest_pvalidate": OpDoc(
        "the SNP guest's PVALIDATE instruction (APM vol. 3), with KVM's #NPF handling "
        "(kvm_mmu_page_fault(), sev_handle_rmp_fault())",
        "The guest validates (or rescinds) a private page in its RMP entry. PVALIDATE is a "
        "private access: a gfn without a leaf is faulted in first (sev_gmem_prepare() "
        "assigns the page, Guest-Invalid). A 4K PVALIDATE inside a 2M RMP entry (or an "
        "NPT leaf smaller than the entry) takes an RMP #NPF: KVM PSMASHes the entry into "
        "512 4K entries, zaps 512 gfns and traces kvm_rmp_fault; the re-executed "
        "instruction then succeeds. " + _FAIL_ENTRY + ".",
        {
            "gpa": "the page; for 2M the 2M-aligned start",
            "level": '"4K" or "2M" (rCX; "1G" is refused as PVALIDATE_FAIL_INPUT)',
            "validate": "true: validate (Guest-Valid); false: rescind (Guest-Invalid)",
        },
        "`{}`",
        (
            (
                "EINVAL",
                "what the instruction returns to the guest, in `ret.pvalidate_status`: "
                "PVALIDATE_FAIL_INPUT (level 1G, a 2M gpa not 2M aligned), "
                "PVALIDATE_FAIL_SIZEMISMATCH (2M on a 4K RMP entry: the guest falls back "
                "to 4K), PVALIDATE_FAIL_NOUPDATE (rFLAGS.CF: already in that state); "
                "`#UD` on a guest that is not SNP",
            ),
            ("EIO", "the VM is dead"),
            ("EBUSY", "vCPU 0 has a held fault"),
            (
                "EFAULT",
                "the fault behind it exits (the gfn is shared: KVM_EXIT_MEMORY_FAULT; no "
                "memslot or guest_memfd)",
            ),
            ("EHWPOISON", "the folio was hit by memory_failure"),
            ("ENOMEM", "no host memory for the page"),
            ("EINTR", "the fault could not make progress"),
        ),
        '{"op": "guest_pvalidate", "gpa": "0x1000"}',
    ),
}
