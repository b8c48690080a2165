"""Kernel profiles: which release's uAPI and rules a VM follows, as ONE table of rules.

A VM is created for a kernel (VMCONFIG ``kernel``, contract 3.5): ``mainline``
(the baseline of the contract), the releases ``7.1``, ``6.18``, ``6.16``,
``6.12`` and ``6.8``, or ``upm-v8``, the unmerged 2022 design the project was
born from ("mm/memfd: Introduce userspace inaccessible memfd", v8).

Every behaviour that differs between kernels is a `Rule` here: a name, what
it says, the value it takes from each release on, and the kernel source
behind it (commit or release, and function).  The ops read a profile's value
of a rule (``vm.kernel["bind_overlap_errno"]``) and never compare versions
themselves.  `markdown()` renders the table that docs/kernels.md holds
(tests/model/test_kernels.py checks the file is current).
"""

from __future__ import annotations

from typing import Any

import attrs

# Releases in order.  upm-v8 sits before 6.8: it never merged, and every rule
# that came with guest_memfd (6.8) or later is absent from it.  "mainline" is
# the tree past the 7.2 merge window the contract calls current mainline.
RELEASES = (
    "upm-v8",
    "6.8",
    "6.10",
    "6.11",
    "6.12",
    "6.13",
    "6.16",
    "6.17",
    "6.18",
    "7.1",
    "7.2",
)
PROFILE_RELEASE = {
    "mainline": "7.2",
    "7.1": "7.1",
    "6.18": "6.18",
    "6.16": "6.16",
    "6.12": "6.12",
    "6.8": "6.8",
    "upm-v8": "upm-v8",
}
PROFILES = tuple(PROFILE_RELEASE)
"""Profile names, newest first (the contract's order)."""
DEFAULT = "mainline"


@attrs.frozen
class Rule:
    """One behaviour that depends on the kernel.

    `steps` are (release, value) pairs in release order: a profile takes the
    value of the last step at or before its release.  `source` names the
    kernel commit or release and the function the rule comes from.
    """

    name: str
    summary: str
    steps: tuple[tuple[str, Any], ...]
    source: str
    ops: tuple[str, ...] = ()

    def value(self, release: str) -> Any:
        rank = RELEASES.index(release)
        out = self.steps[0][1]
        for rel, v in self.steps:
            if RELEASES.index(rel) <= rank:
                out = v
        return out


ENOTTY_VM = "ENOTTY"  # kvm_vm_ioctl() -> kvm_arch_vm_ioctl(): default -ENOTTY
EINVAL_VCPU = "EINVAL"  # kvm_vcpu_ioctl() -> kvm_arch_vcpu_ioctl(): default -EINVAL

RULES: tuple[Rule, ...] = (
    # -- VM types --------------------------------------------------------------------
    Rule(
        "vm_type_sw_protected",
        "KVM_X86_SW_PROTECTED_VM can be created.",
        (("upm-v8", False), ("6.8", True)),
        '6.8: 89ea60c2c7b5 (KVM: x86: Add support for "protected VMs" that can utilize '
        "private memory), kvm_arch_init_vm() / kvm_is_vm_type_supported()",
    ),
    Rule(
        "vm_type_snp",
        "KVM_X86_SNP_VM can be created (SEV-SNP host support).",
        (("upm-v8", False), ("6.11", True)),
        "6.11: the SNP host series (sev.c: snp_launch_start(), sev_gmem_prepare())",
    ),
    Rule(
        "vm_type_tdx",
        "KVM_X86_TDX_VM can be created (TDX host support: mirror root, S-EPT, MapGPA).",
        (("upm-v8", False), ("6.16", True)),
        '6.16: "First batch of KVM changes for Linux 6.16 merge window" '
        "(20250528172432.8396-1-pbonzini), vmx/tdx.c tdx_vm_init()",
    ),
    # -- guest_memfd uAPI ------------------------------------------------------------------
    Rule(
        "guest_memfd",
        "KVM_CREATE_GUEST_MEMFD, KVM_SET_USER_MEMORY_REGION2 and KVM_SET_MEMORY_ATTRIBUTES "
        "exist; without them these VM ioctls fail with ENOTTY.",
        (("upm-v8", False), ("6.8", True)),
        "6.8: a7800aa80ea4 (KVM: Add KVM_CREATE_GUEST_MEMFD ioctl() for guest-specific "
        "backing memory), kvm_gmem_create(), kvm_vm_ioctl_set_mem_attributes(); an unknown "
        "VM ioctl ends in kvm_arch_vm_ioctl()'s default -ENOTTY",
        ("create_guest_memfd", "set_user_memory_region2", "set_memory_attributes"),
    ),
    Rule(
        "gmem_flags",
        "guest_memfd flags: MMAP always, INIT_SHARED on VMs without private memory "
        "(kvm_arch_supports_gmem_init_shared()); before 6.18 no flag is supported (EINVAL), "
        "and MMAP's gmem-only memslots and host mmap do not exist.",
        (("upm-v8", False), ("6.18", True)),
        "6.18: d2042d8f96dd, fe2bf6234e94, 44c6cb9fe988 (GUEST_MEMFD_FLAG_MMAP, "
        "GUEST_MEMFD_FLAG_INIT_SHARED, KVM_CAP_GUEST_MEMFD_FLAGS), "
        "kvm_gmem_get_supported_flags(), kvm_gmem_fault_user_mapping()",
        ("create_guest_memfd",),
    ),
    Rule(
        "gmem_default_vm",
        "A VM without private memory (DEFAULT) may bind a guest_memfd (KVM_MEM_GUEST_MEMFD "
        "is a valid memslot flag for every VM); before 6.18 only VMs with private memory "
        "could (check_memory_region_flags(): EINVAL).",
        (("upm-v8", False), ("6.18", True)),
        '6.18: "KVM: x86: Enable KVM_GUEST_MEMFD for all 64-bit builds" (Fuad Tabba, v16 09/22, '
        "20250723104714.1674617-10-tabba), check_memory_region_flags(): "
        "kvm_arch_has_private_mem(kvm) -> IS_ENABLED(CONFIG_KVM_GUEST_MEMFD)",
        ("set_user_memory_region2",),
    ),
    Rule(
        "bind_overlap_errno",
        "The errno of a guest_memfd binding that overlaps another binding of the same file.",
        (("upm-v8", None), ("6.8", "EINVAL"), ("7.2", "EEXIST")),
        "7.2 merge window: 7ea987a90585, kvm_gmem_bind() (r = -EEXIST after xa_find() on "
        "the bindings; the 7.1 tree 5192419cb62d still has goto err with r = -EINVAL)",
        ("set_user_memory_region2",),
    ),
    # -- vCPU ioctls and the fault path ---------------------------------------------------
    Rule(
        "pre_fault_memory",
        "KVM_PRE_FAULT_MEMORY exists; without it the vCPU ioctl fails with EINVAL (the default "
        "of kvm_arch_vcpu_ioctl(), not ENOTTY).",
        (("upm-v8", False), ("6.10", True)),
        "6.10: KVM_PRE_FAULT_MEMORY (KVM_CAP_PRE_FAULT_MEMORY 236), "
        "kvm_vcpu_pre_fault_memory(), kvm_arch_vcpu_pre_fault_memory(); x86.c "
        "kvm_arch_vcpu_ioctl() default: r = -EINVAL",
        ("pre_fault_memory",),
    ),
    Rule(
        "private_mem_address_spaces",
        "Memslot address spaces of a VM with private memory: one (no SMM) since 6.8; v8 "
        "predates the rule (KVM_ADDRESS_SPACE_NUM, 2 on x86).",
        (("upm-v8", 2), ("6.8", 1)),
        "6.8: eed52e434bc3 (KVM: Allow arch code to track number of memslot address spaces "
        "per VM), kvm_arch_nr_memslot_as_ids()",
        ("set_user_memory_region", "set_user_memory_region2"),
    ),
    Rule(
        "slot_zap",
        "Which VM types zap every root when a memslot is deleted or moved "
        "(kvm_mmu_zap_all_fast); the others zap only the slot's leaves.",
        (("upm-v8", "every"), ("6.12", "default")),
        "6.12: KVM_X86_QUIRK_SLOT_ZAP_ALL (Yan Zhao; fixed in fcd1ec9cb59c), "
        "kvm_arch_flush_shadow_memslot(): kvm_mmu_zap_all_fast() only for KVM_X86_DEFAULT_VM "
        "with the quirk, else kvm_mmu_zap_memslot_leafs(); before 6.12 always "
        "kvm_mmu_zap_all_fast()",
        ("set_user_memory_region", "set_user_memory_region2"),
    ),
    Rule(
        "pfnmap_noref",
        "A guest fault on VM_PFNMAP memory whose struct pages are not refcounted (a "
        "virtio-gpu blob) is mapped; before 6.13 KVM refuses it and KVM_RUN fails with EFAULT.",
        (("upm-v8", False), ("6.13", True)),
        '6.13: "KVM: Stop grabbing references to PFNMAP\'d pages" '
        "(20241010182427.1434605-1-seanjc, 8dd861cc07e2), hva_to_pfn_remapped() / "
        "kvm_follow_pfn; before: kvm_try_get_pfn() refuses a page with refcount 0 "
        "(f8be156be163, CVE-2021-22543) -> KVM_PFN_ERR_FAULT -> kvm_handle_error_pfn() -EFAULT",
        ("guest_access", "pre_fault_memory", "host_mmap_pfnmap"),
    ),
    # -- the 2022 design (upm-v8) --------------------------------------------------------------
    Rule(
        "memfd_inaccessible",
        "memfd_create() flag 8 is MFD_INACCESSIBLE: a memfd with no read, write or mmap whose "
        "pages KVM takes through inaccessible_get_pfn(); on merged kernels bit 8 is "
        "MFD_NOEXEC_SEAL (6.3) and makes a plain memfd.",
        (("upm-v8", True), ("6.8", False)),
        "v8 1/8 mm/memfd: Introduce userspace inaccessible memfd "
        "(20220915142913.2213336-2-chao.p.peng), memfd_create(), memfd_mkinaccessible()",
        ("memfd_create",),
    ),
    Rule(
        "private_memslot",
        "KVM_MEM_PRIVATE (bit 2) with private_fd/private_offset through "
        "KVM_SET_USER_MEMORY_REGION (v1): the slot's private memory comes from the "
        "inaccessible memfd, its shared memory from userspace_addr; no overlap check between "
        "slots of one file; merged kernels refuse bit 2 in v1 (EINVAL).",
        (("upm-v8", True), ("6.8", False)),
        "v8 2/8 KVM: Extend the memslot to support fd-based private memory and 8/8 KVM: "
        "Enable and expose KVM_MEM_PRIVATE (-3-, -9-chao.p.peng), __kvm_set_memory_region(), "
        "kvm_private_mem_register()",
        ("set_user_memory_region",),
    ),
    Rule(
        "enc_region_attributes",
        "KVM_MEMORY_ENCRYPT_REG_REGION / UNREG_REGION take a GPA range and mark it private / "
        "shared, zapping the range (kvm_zap_gfn_range(): one invalidation, always); without "
        "the design they are SEV's hva-based ioctls, ENOTTY on a VM without SEV.",
        (("upm-v8", True), ("6.8", False)),
        "v8 5/8 KVM: Register/unregister the guest private memory regions "
        "(-6-chao.p.peng), kvm_vm_ioctl_set_mem_attr(); merged: kvm_arch_vm_ioctl() "
        "-ENOTTY without mem_enc_register_region",
        ("memory_encrypt_reg_region", "memory_encrypt_unreg_region"),
    ),
    Rule(
        "default_private",
        "Guest memory is private until marked shared: mem_attr_array stores only "
        "KVM_MEM_ATTR_SHARED (v8); merged kernels start every gfn shared.",
        (("upm-v8", True), ("6.8", False)),
        'v8 5/8 (kvm_vm_ioctl_set_mem_attr(): "Guest memory defaults to private") and 7/8 '
        "kvm_mem_is_private(): !xa_load(&kvm->mem_attr_array, gfn)",
    ),
    Rule(
        "memfile_notifier",
        "Hole punches reach KVM through the inaccessible memfd's notifier: one invalidate "
        "callback after the pages are freed (no begin/end pair), given byte offsets that the "
        "callback reads as page offsets; merged guest_memfd invalidates begin/end around the "
        "truncation with page offsets.",
        (("upm-v8", True), ("6.8", False)),
        "v8 1/8 inaccessible_fallocate() -> inaccessible_notifier_invalidate(data, offset, "
        "offset + len) and 8/8 kvm_private_notifier_invalidate(notifier, pgoff_t start, "
        "pgoff_t end) -> kvm_zap_gfn_range()",
        ("fallocate",),
    ),
    Rule(
        "memory_fault_exit",
        "The memory-fault exit: v8 returns 0 from KVM_RUN with exit reason 38 and flags "
        "bit 0 for a private access (RET_PF_USER); merged kernels return -EFAULT with exit "
        "reason 39 and flags bit 3 (KVM_MEMORY_EXIT_FLAG_PRIVATE).",
        (("upm-v8", "v8"), ("6.8", "merged")),
        "v8 3/8 KVM: Add KVM_EXIT_MEMORY_FAULT exit and 7/8 kvm_faultin_pfn() (RET_PF_USER); "
        "6.8: kvm_prepare_memory_fault_exit()",
        ("guest_access", "vcpu_resume"),
    ),
    Rule(
        "private_fault_scope",
        "Which faults can be private: v8 only in KVM_MEM_PRIVATE slots (the private/shared "
        "check follows the slot lookup, a gfn without a slot is MMIO); merged kernels check "
        "the attribute first and exit on a private access with no slot.",
        (("upm-v8", "private slots"), ("6.8", "any gfn")),
        "v8 7/8 kvm_faultin_pfn(): kvm_slot_can_be_private(slot) && fault->is_private != "
        "kvm_mem_is_private(); mainline kvm_mmu_faultin_pfn() / kvm_handle_noslot_fault()",
        ("guest_access",),
    ),
)

RULE_BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}


class Profile:
    """One kernel's values of every rule: ``profile["rule"]``."""

    __slots__ = ("name", "release", "v8_fault_scope", "values")

    def __init__(self, name: str) -> None:
        self.name = name
        self.release = PROFILE_RELEASE[name]
        self.values: dict[str, Any] = {r.name: r.value(self.release) for r in RULES}
        # The one rule every guest access reads, as an attribute (the access path is hot).
        self.v8_fault_scope = self.values["private_fault_scope"] == "private slots"

    def __getitem__(self, rule: str) -> Any:
        return self.values[rule]

    def __repr__(self) -> str:
        return f"Profile({self.name!r})"

    @property
    def upm(self) -> bool:
        """The 2022 design: v8's uAPI instead of guest_memfd."""
        return self.release == "upm-v8"

    def vm_type_refusal(self, vm_type: str) -> str | None:
        """Why this kernel cannot create a VM of `vm_type` (None: it can)."""
        need = {"sw_protected": "vm_type_sw_protected", "snp": "vm_type_snp", "tdx": "vm_type_tdx"}
        rule = need.get(vm_type)
        if rule is None or self.values[rule]:
            return None
        since = next(rel for rel, v in RULE_BY_NAME[rule].steps if v)
        return (
            f'kernel "{self.name}" cannot create a {vm_type} VM ({vm_type} needs {since} or later)'
        )


_PROFILES = {name: Profile(name) for name in PROFILES}


def profile(name: str) -> Profile:
    """The shared Profile of a kernel name (KeyError for an unknown one)."""
    return _PROFILES[name]


def changes(a: str, b: str) -> list[tuple[Rule, Any, Any]]:
    """The rules whose value differs between kernels `a` and `b`: (rule, in a, in b)."""
    pa, pb = profile(a), profile(b)
    return [(r, pa[r.name], pb[r.name]) for r in RULES if pa[r.name] != pb[r.name]]


def _cell(v: Any) -> str:
    if v is True:
        return "yes"
    if v is False:
        return "no"
    if v is None:
        return "-"
    return f"`{v}`"


def markdown() -> str:
    """docs/kernels.md: every rule per profile with its source (generated, see module doc)."""
    out = [
        "# Kernel profiles",
        "",
        "<!-- Generated by scripts/make_kernels_doc.py from imemviz/model/kernels.py; "
        "tests/model/test_kernels.py fails when this file is not current. -->",
        "",
        "A VMCONFIG's `kernel` field picks the release whose uAPI and rules the VM follows "
        '(default `"mainline"`): ' + ", ".join(f"`{p}`" for p in PROFILES) + ". "
        "Every behaviour that differs between them is one rule of the table in "
        "`imemviz/model/kernels.py`; the ops read it and nothing else. A VMCONFIG a kernel "
        "cannot create (`tdx` before 6.16, `snp` before 6.11, `sw_protected` before 6.8) is "
        "unusable input: exit 2 naming the kernel. An ioctl that does not exist in a release "
        "fails as that kernel fails it: a VM ioctl with ENOTTY (kvm_arch_vm_ioctl()'s "
        "default), a vCPU ioctl with EINVAL (kvm_arch_vcpu_ioctl()'s default).",
        "",
        "`mainline` is the tree past the 7.2 merge window; `upm-v8` is the unmerged 2022 "
        "design, see [the 2022 design](#the-2022-design-upm-v8) below.",
        "",
        "## Rules per profile",
        "",
        "| rule | " + " | ".join(PROFILES) + " |",
        "| --- | " + " | ".join("---" for _ in PROFILES) + " |",
    ]
    for r in RULES:
        cells = [_cell(profile(p)[r.name]) for p in PROFILES]
        out.append(f"| `{r.name}` | " + " | ".join(cells) + " |")
    out += ["", "## What each rule says and where it comes from", ""]
    for r in RULES:
        steps = ", ".join(f"{rel}: {_cell(v)}" for rel, v in r.steps)
        out.append(f"### `{r.name}`")
        out.append("")
        out.append(r.summary)
        out.append("")
        out.append(f"- values from each release on: {steps}")
        out.append(f"- source: {r.source}")
        if r.ops:
            out.append(f"- ops: {', '.join(f'`{o}`' for o in r.ops)}")
        out.append("")
    out += _UPM_TEXT
    return "\n".join(out).rstrip() + "\n"


_UPM_TEXT = [
    "## The 2022 design (upm-v8)",
    "",
    'Chao Peng, "[PATCH v8 0/8] KVM: mm: fd-based approach for supporting KVM", '
    "2022-09-15 (20220915142913.2213336-1-chao.p.peng@linux.intel.com). The model follows "
    "the patches as posted; each rule above names the patch it comes from. What a "
    "`upm-v8` VM is:",
    "",
    "- Only `default` VMs exist (no SW_PROTECTED, SNP or TDX type yet). Private memory is "
    "enabled on them as the series was tested without TDX hardware "
    "(HAVE_KVM_PRIVATE_MEM_TESTING in Vishal Annapurve's RFC v3 selftests, "
    "20220819174659.2427983-2-vannapurve): `kvm_arch_has_private_mem()` is true and a "
    "fault is private only in a KVM_MEM_PRIVATE slot. The access type is the contract's "
    "`private` field (omitted: the page's attribute).",
    "- `memfd_create` with `INACCESSIBLE` (v8 1/8): MFD_INACCESSIBLE with ALLOW_SEALING or "
    "HUGETLB is EINVAL; the size (the ftruncate that follows) must be page aligned. The "
    "file has no read, write or mmap; `fallocate` forwards to shmem (KEEP_SIZE and "
    "PUNCH_HOLE only; PUNCH_HOLE needs page-aligned offset and len) and then calls the "
    "notifiers.",
    "- `set_user_memory_region` with flag `PRIVATE` (4), `private_fd`, `private_offset` "
    "(v8 2/8, 8/8): a private_offset that is unaligned or wraps is EINVAL (after the "
    "userspace_addr check); a private slot cannot be modified (EINVAL); the GPA overlap "
    "check (EEXIST) comes before `fget(private_fd)`, which fails with EINVAL (not EBADF). "
    "v8 does not check that the file is an inaccessible memfd: it would use any file's "
    "mapping as the notifier list; the model refuses such a file with EINVAL instead. "
    'Two slots may map the same file pages ("undefined behavior", api.rst).',
    "- `memory_encrypt_reg_region` / `memory_encrypt_unreg_region` (v8 5/8): size 0, wrap "
    "or unaligned -> EINVAL; no check that anything changes: the attributes are stored and "
    "`kvm_zap_gfn_range()` zaps every leaf in the range with one invalidation, whether or "
    "not a memslot is there. `set_memory_attributes` does not exist (ENOTTY).",
    "- The fault (v8 7/8): a mismatch in a private slot exits with "
    '`{"reason": "KVM_EXIT_MEMORY_FAULT", "gpa", "size", "flags"}`, flags 1 for a '
    "private access, and KVM_RUN returns 0: the result is `ok` true. A private fault takes "
    "its page from the inaccessible memfd (`inaccessible_get_pfn()`, shmem, allocated on "
    "first use even past the file's size); if that fails v8 retries the fault forever "
    "(RET_PF_RETRY), the model ends the access with ENOMEM.",
    "- Hole punch (v8 1/8, 8/8): shmem frees the pages first, then the notifier calls "
    "`kvm_zap_gfn_range()` for each private slot of the file with the byte offsets read "
    "as page offsets. A punch at offset 0 zaps 4096 times too many gfns; a punch anywhere "
    "else usually zaps nothing, and a leaf keeps mapping a freed page: the model keeps "
    "that stale leaf (inspect and `imemviz check` show it, invariant I2). v9 fixed the "
    "units; restrictedmem added the begin/end pair guest_memfd has.",
    "- Closing the inaccessible memfd does not unbind it: each private slot holds its "
    "own file reference (fget in `__kvm_set_memory_region()`), so the pages live on until "
    "the slots are deleted (then the file is released and its pages freed).",
]
