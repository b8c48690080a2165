"""What each op means, for people: the uAPI it stands for, its fields, its result and errnos.

The field names, types and defaults come from the op table (`imemviz.model.ops`);
this module adds the words.  `docs/scripts.md` is generated from both
(`scripts/make_docs.py`), and tests hold them together: every op and every
field has an entry here, every example parses, and every errno the engine
returns for an op in random runs is listed for it.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class OpDoc:
    kernel: str  # the ioctl, syscall or guest instruction the op stands for
    summary: str
    fields: dict[str, str]  # field -> meaning
    ret: str  # what `ret` holds when `ok` is true
    errnos: tuple[tuple[str, str], ...]  # (errno, when), in the kernel's check order
    example: str  # one script line


_EIO_DEAD = ("EIO", "the VM is dead (a TD killed by a guest access before accept)")
_FD = "a guest_memfd file descriptor (3 or more: what create_guest_memfd returned)"

OP_DOCS: dict[str, OpDoc] = {
    "create_guest_memfd": OpDoc(
        "KVM_CREATE_GUEST_MEMFD (kvm_gmem_create())",
        "Creates a guest_memfd file of `size` bytes and returns its descriptor: the lowest "
        "free number from 3 up, as a process whose 0-2 are taken gets.",
        {
            "size": "bytes; a positive multiple of 4096 below 2^63",
            "flags": "MMAP (1): the VMM may mmap the file (its host view), and a memslot bound "
            "to it takes shared pages from it too (gmem-only); INIT_SHARED (2): pages start "
            "shared (only on VMs without private memory). Both from kernel 6.18 (mainline, 7.1, "
            "6.18); 6.16 and older support no flag (EINVAL)",
        },
        '`{"fd": N}`',
        (
            _EIO_DEAD,
            (
                "ENOTTY",
                "kernel upm-v8: KVM_CREATE_GUEST_MEMFD does not exist (kvm_arch_vm_ioctl()'s "
                "default); that design uses memfd_create with INACCESSIBLE",
            ),
            (
                "EINVAL",
                "an unknown or unsupported flag (kvm_gmem_get_supported_flags()): any flag "
                "before 6.18, INIT_SHARED on a VM with private memory",
            ),
            ("EINVAL", "size is 0, not page aligned, or 2^63 or more"),
        ),
        '{"op": "create_guest_memfd", "size": "4G"}',
    ),
    "set_user_memory_region2": OpDoc(
        "KVM_SET_USER_MEMORY_REGION2 (kvm_set_memory_region(), kvm_gmem_bind())",
        "Creates, moves, changes the flags of, or (memory_size 0) deletes a memslot; with "
        "GUEST_MEMFD the slot's private pages come from the guest_memfd at the offset.",
        {
            "slot": "as_id << 16 | slot id (address space 1 is SMM: only on VMs without "
            "private memory)",
            "flags": "LOG_DIRTY_PAGES (1, not with GUEST_MEMFD); READONLY (2: guest writes exit "
            "as KVM_EXIT_MMIO; not on TDX, not with GUEST_MEMFD); GUEST_MEMFD (4: on a `default` "
            "VM only from kernel 6.18, before that only on VMs with private memory)",
            "guest_phys_addr": "page aligned guest physical address of the slot",
            "memory_size": "bytes, page aligned; 0 deletes the slot",
            "userspace_addr": "page aligned address of the VMM's memory behind the slot "
            "(shared pages)",
            "guest_memfd": "the guest_memfd to bind (with GUEST_MEMFD); one created with MMAP "
            "makes the slot gmem-only: its userspace range is the VMM's mmap of the file",
            "guest_memfd_offset": "page aligned offset of the slot in the file",
        },
        "`{}`",
        (
            _EIO_DEAD,
            (
                "ENOTTY",
                "kernel upm-v8: KVM_SET_USER_MEMORY_REGION2 does not exist (private slots go "
                "through set_user_memory_region there)",
            ),
            (
                "EINVAL",
                "slot id out of range; a flag check_memory_region_flags() refuses (see flags); "
                "size, guest_phys_addr, userspace_addr or guest_memfd_offset unaligned or out "
                "of range; address space 1 (SMM) on a VM with private memory; deleting a slot "
                "that does not exist; a guest_memfd slot changed (they are immutable), or a "
                "change of size, userspace_addr or READONLY (kvm_set_memory_region())",
            ),
            ("EEXIST", "the gfn range overlaps another slot (checked before any binding)"),
            ("EBADF", "guest_memfd is not an open file (kvm_gmem_bind())"),
            (
                "EINVAL",
                "guest_memfd is not a guest_memfd (a memfd, or fds 0-2), or the slot runs past "
                "the end of the file (kvm_gmem_bind())",
            ),
            (
                "EINVAL",
                "kernels 7.1 and older: the file range overlaps another binding of the same "
                "guest_memfd (kvm_gmem_bind(); kernel rule bind_overlap_errno)",
            ),
            (
                "EEXIST",
                "mainline (7.2 merge window, 7ea987a90585): the file range overlaps another "
                "binding of the same guest_memfd",
            ),
            (
                "EINVAL",
                "the range reaches past the largest gfn the VM can map, or the TDX shared bit "
                "(kvm_arch_prepare_memory_region())",
            ),
        ),
        '{"op": "set_user_memory_region2", "slot": 0, "flags": ["GUEST_MEMFD"], '
        '"guest_phys_addr": 0, "memory_size": "2G", "userspace_addr": "0x7f0000000000", '
        '"guest_memfd": 3}',
    ),
    "set_user_memory_region": OpDoc(
        "KVM_SET_USER_MEMORY_REGION (the v1 ioctl; upm-v8: kvm_private_mem_register())",
        "As set_user_memory_region2 without the guest_memfd fields. Under kernel upm-v8 (the "
        "2022 design, [kernels.md](kernels.md#the-2022-design-upm-v8)) it is also how a private memslot is made: flag PRIVATE "
        "with private_fd, an inaccessible memfd from memfd_create, whose pages back the slot's "
        "private memory while userspace_addr backs its shared memory.",
        {
            "slot": "as_id << 16 | slot id",
            "flags": "LOG_DIRTY_PAGES (1), READONLY (2, not on TDX); PRIVATE (4, "
            "KVM_MEM_PRIVATE) only under kernel upm-v8: merged kernels refuse bit 2 in v1 "
            "(the name GUEST_MEMFD is accepted for it too)",
            "guest_phys_addr": "page aligned guest physical address",
            "memory_size": "bytes, page aligned; 0 deletes the slot",
            "userspace_addr": "page aligned address of the VMM's memory",
            "private_fd": "upm-v8, with PRIVATE: the inaccessible memfd behind the slot's "
            "private pages (kvm_userspace_memory_region_ext); ignored otherwise",
            "private_offset": "upm-v8, with PRIVATE: page aligned offset of the slot in that "
            "memfd; two slots may map the same pages (v8 does not check)",
        },
        "`{}`",
        (
            _EIO_DEAD,
            (
                "EINVAL",
                "a flag v1 does not have (bit 2 on merged kernels), or what v2 refuses (see "
                "set_user_memory_region2); upm-v8: private_offset unaligned or wrapping; PRIVATE "
                "in a request for an existing slot (private memslots are immutable; a request "
                "without it may move or change the slot, which is then no longer private)",
            ),
            ("EEXIST", "the gfn range overlaps another slot"),
            (
                "EINVAL",
                "upm-v8: private_fd is not an open file (fget() fails: EINVAL, not EBADF), or "
                "not an inaccessible memfd (v8 does not check; the model refuses it); any "
                "kernel: the range reaches past the largest gfn the VM can map "
                "(kvm_arch_prepare_memory_region())",
            ),
        ),
        '{"op": "set_user_memory_region", "slot": 1, "guest_phys_addr": "4G", '
        '"memory_size": "1G", "userspace_addr": "0x7f1000000000"}',
    ),
    "set_memory_attributes": OpDoc(
        "KVM_SET_MEMORY_ATTRIBUTES (kvm_vm_set_mem_attributes())",
        "Marks [address, address + size) private (PRIVATE) or shared (0). Leaves of the "
        "other kind are zapped (one invalidation per bound slot); the next access faults "
        "the new kind in. A range already as asked changes nothing.",
        {
            "address": "page aligned guest physical address",
            "size": "bytes, page aligned, not 0",
            "attributes": "PRIVATE (8) or 0 (shared); PRIVATE needs a VM with private memory",
            "flags": "must be 0",
        },
        "`{}`",
        (
            _EIO_DEAD,
            (
                "ENOTTY",
                "kernel upm-v8: KVM_SET_MEMORY_ATTRIBUTES does not exist (memory_encrypt_reg_region "
                "and memory_encrypt_unreg_region set the attribute there)",
            ),
            (
                "EINVAL",
                "flags not 0, attributes the VM does not support, size 0, an "
                "unaligned or wrapping range",
            ),
        ),
        '{"op": "set_memory_attributes", "address": 0, "size": "2G", "attributes": ["PRIVATE"]}',
    ),
    "fallocate": OpDoc(
        "fallocate(2) on a guest_memfd (vfs_fallocate(), kvm_gmem_fallocate()) or on a memfd "
        "(shmem_fallocate(); upm-v8's inaccessible_fallocate())",
        "KEEP_SIZE allocates a folio for every page of the range that has none "
        "(kvm_gmem_allocate()); KEEP_SIZE|PUNCH_HOLE invalidates the range's mappings and "
        "frees its folios. A range of any size costs its runs of folios, not its pages. On a "
        "memfd it is shmem's: allocate or punch; on an inaccessible memfd (upm-v8) the "
        "punch frees the pages first and then calls the notifier, which zaps with the byte "
        "offsets read as page offsets (kernel rule memfile_notifier): a leaf may keep "
        "mapping a freed page.",
        {
            "fd": "a guest_memfd or memfd file descriptor (3 or more: what create_guest_memfd "
            "or memfd_create returned)",
            "mode": "KEEP_SIZE (1) to allocate, KEEP_SIZE|PUNCH_HOLE (3) to free; "
            "COLLAPSE_RANGE, ZERO_RANGE, INSERT_RANGE are refused as guest_memfd does; a memfd "
            "also takes 0 (allocate and grow the file)",
            "offset": "bytes, page aligned (a memfd takes any offset)",
            "len": "bytes, not 0; page aligned (a memfd takes any length)",
        },
        "`{}`",
        (
            ("EBADF", "fd is not open"),
            (
                "EINVAL",
                "offset negative or len not positive (vfs_fallocate()); offset or "
                "len unaligned, or an allocation past the end of the file (a guest_memfd); a "
                "punch with offset or len unaligned (an inaccessible memfd, upm-v8)",
            ),
            (
                "EOPNOTSUPP",
                "a mode guest_memfd (a memfd: shmem) does not implement, or PUNCH_HOLE "
                "without KEEP_SIZE",
            ),
            ("ENODEV", "fd is 0, 1 or 2 (a terminal, not a regular file)"),
            ("EFBIG", "offset + len past the largest file offset"),
            (
                "ENOMEM",
                "host memory ran out (a guest_memfd keeps the folios allocated before, as "
                "kvm_gmem_allocate() does; a memfd frees them again, as shmem_fallocate() does)",
            ),
        ),
        '{"op": "fallocate", "fd": 3, "mode": ["KEEP_SIZE", "PUNCH_HOLE"], "offset": 0, '
        '"len": "2M"}',
    ),
    "close": OpDoc(
        "close(2)",
        "Closes a descriptor. For a guest_memfd (its last reference) kvm_gmem_release() "
        "unbinds it from its memslots (which stay), zaps what it mapped and frees its "
        "folios. A memfd's pages are freed; an inaccessible memfd (upm-v8) lives on while "
        "private memslots hold it (each took its own reference) and goes with the last of "
        "them. 0-2 can be closed once, like any process's.",
        {"fd": "the descriptor"},
        "`{}`",
        (("EBADF", "fd is not open"),),
        '{"op": "close", "fd": 3}',
    ),
    "guest_access": OpDoc(
        "a guest load or store: the TDP fault path (kvm_mmu_page_fault(), "
        "kvm_mmu_faultin_pfn()), and TDX's EPT violation handling",
        "A vCPU reads or writes the page at gpa. If no leaf maps it, KVM faults it in "
        "(taking the pfn from guest_memfd for a private access, from the VMM's memory for "
        "a shared one) and installs a leaf; the access then reads or writes the page.",
        {
            "gpa": "any address in the page; for TDX the shared bit makes it a shared access",
            "vcpu": "the vCPU (0-1023)",
            "write": "a store: fills the page with `value`",
            "value": "the byte to store (0-255); only with write",
            "private": "omitted: the gfn's attribute (a well-behaved guest); true/false "
            "forces the access type, as a guest asking for a conversion does",
            "hold": "stop the fault after it has its pfn, before mmu_lock (see vcpu_resume)",
        },
        '`{"value", "level", "pfn"}` (the byte read or written, the leaf\'s level, the '
        'host pfn); `{"exit": {"reason": "KVM_EXIT_MMIO", "gpa"}}` for an access without a '
        "memslot or a write to a READONLY memslot (memory unchanged); under kernel upm-v8 a "
        'private/shared mismatch in a PRIVATE slot: `{"exit": {"reason": '
        '"KVM_EXIT_MEMORY_FAULT", "gpa", "size", "flags"}}` (flags 1: private; v8 returns 0 '
        'from KVM_RUN); `{"in_flight": true}` for a held fault. SNP: an access through a '
        "private leaf smaller than its 2M RMP entry takes an RMP #NPF first (PSMASH, "
        "zap, kvm_rmp_fault) and is re-executed; a page the guest never validated ends the "
        'guest: `{"exit": '
        '{"reason": "KVM_EXIT_SYSTEM_EVENT", "type": "KVM_SYSTEM_EVENT_SEV_TERM"}, "vc": '
        '"page not validated"}`; before snp_launch_finish `{"exit": {"reason": '
        '"KVM_EXIT_FAIL_ENTRY"}}`',
        (
            (
                "EIO",
                "the VM is dead; or this access found a PENDING S-EPT leaf, which kills "
                "the TD (`ret.vm_dead` true)",
            ),
            ("EINVAL", "a TD not finalized yet (tdx_vcpu_pre_run())"),
            ("EBUSY", "the vCPU has a held fault (resume it first)"),
            (
                "EFAULT",
                "KVM_EXIT_MEMORY_FAULT: the access type differs from the attribute, "
                "a private access without a memslot or guest_memfd (`ret.exit`); kernels "
                "before 6.13 (6.12, 6.8, upm-v8): device memory whose pages are not refcounted "
                "(host_mmap_pfnmap refcounted false; kvm_try_get_pfn(), no exit)",
            ),
            ("EHWPOISON", "the page behind it was hit by memory_failure"),
            ("ENOMEM", "no host memory for the page or an S-EPT table"),
            ("EINTR", "a fault that could not make progress (KVM_EXIT_INTR)"),
        ),
        '{"op": "guest_access", "gpa": "0x1000", "write": true, "value": 170}',
    ),
    "vcpu_resume": OpDoc(
        "the held fault going on: mmu_lock, is_page_fault_stale(), the leaf installed",
        "Finishes the fault `hold` stopped. If mmu_invalidate_seq moved since its snapshot, "
        "or an invalidation in progress covers the gfn, it retries from the start "
        "(`ret.retried`); otherwise it installs the leaf and completes the access.",
        {"vcpu": "the vCPU whose fault is held"},
        "as guest_access",
        (
            _EIO_DEAD,
            ("EINVAL", "the vCPU has no held fault"),
            ("EFAULT", "as guest_access, when the retried fault exits"),
            ("EHWPOISON", "as guest_access"),
            ("ENOMEM", "as guest_access"),
            ("EINTR", "as guest_access"),
        ),
        '{"op": "vcpu_resume", "vcpu": 1}',
    ),
    "guest_accept": OpDoc(
        "TDX TDG.MEM.PAGE.ACCEPT (the guest), with KVM's EPT violation on a gfn without a leaf",
        "A TD accepts a private page: a PENDING leaf (added by TDH.MEM.PAGE.AUG) becomes "
        "MAPPED; a gfn without a leaf is faulted in and accepted at once.",
        {
            "gpa": "an address in the page (the shared bit is refused)",
            "level": '"4K" (upstream maps TD private memory at 4K only), "2M" or "1G"',
        },
        '`{"level"}`',
        (
            _EIO_DEAD,
            (
                "EINVAL",
                "not a TD (`tdx_status` TDX_NOT_A_TD), a shared gpa "
                "(TDX_OPERAND_INVALID), a leaf of another size (TDX_PAGE_SIZE_MISMATCH), an "
                "accepted page (TDX_PAGE_ALREADY_ACCEPTED), or a TD not finalized",
            ),
            ("EBUSY", "vCPU 0 has a held fault"),
            ("EFAULT", "the fault behind it exits (not private, no memslot or guest_memfd)"),
            ("EHWPOISON", "the folio was hit by memory_failure"),
            ("ENOMEM", "no host memory for the page or an S-EPT table"),
        ),
        '{"op": "guest_accept", "gpa": "0x2000"}',
    ),
    "tdx_init_mem_region": OpDoc(
        "KVM_TDX_INIT_MEM_REGION (tdx_vcpu_init_mem_region(), kvm_gmem_populate())",
        "Before the TD is finalized, adds nr_pages initial pages (TDH.MEM.PAGE.ADD, MAPPED "
        "at once) filled with `value`, measured (TDH.MR.EXTEND) when `measure` is true.",
        {
            "gpa": "page aligned, private, in a guest_memfd memslot",
            "nr_pages": "pages to add, at least 1",
            "measure": "extend the TD's measurement with them",
            "value": "the byte the source pages hold",
        },
        "`{}`",
        (
            (
                "EINVAL",
                "not a TD, the TD finalized, an unaligned, empty or wrapping range, "
                "the shared bit, a page without a guest_memfd memslot or not private",
            ),
            ("EIO", "the VM is dead, or a page already has a leaf"),
            ("EFAULT", "the slot's guest_memfd was closed"),
            ("EHWPOISON", "a folio hit by memory_failure"),
            ("ENOMEM", "no host memory"),
        ),
        '{"op": "tdx_init_mem_region", "gpa": "0x7ff00000", "nr_pages": 16}',
    ),
    "tdx_finalize_vm": OpDoc(
        "KVM_TDX_FINALIZE_VM (TDH.MR.FINALIZE)",
        "Ends the TD's build: the measurement is final and the vCPUs may run (td_state RUNNABLE).",
        {},
        "`{}`",
        (
            ("ENOTTY", "not a TD"),
            _EIO_DEAD,
            ("EINVAL", "already finalized"),
        ),
        '{"op": "tdx_finalize_vm"}',
    ),
    "host_access": OpDoc(
        "the VMM touching its own memory behind a memslot (handle_mm_fault())",
        "The VMM reads or writes the page at hva; the first touch allocates it (a huge page "
        "where shared_page_size and the memslot allow). Device memory (host_mmap_pfnmap) is "
        "read and written as it is. On a gmem-only slot (a guest_memfd created with MMAP, "
        "6.18 and later) the range is the VMM's mmap of the guest_memfd: the access is "
        "kvm_gmem_fault_user_mapping() and reaches the guest_memfd's own page.",
        {
            "hva": "an address inside some memslot's userspace_addr range",
            "write": "a store: fills the page with `value`",
            "value": "the byte to store (0-255); only with write",
        },
        '`{"value"}`',
        (
            ("EFAULT", "hva is outside every memslot's range"),
            (
                "SIGBUS",
                "the VMM's mmap of an MMAP guest_memfd (6.18 and later): the file has no "
                "INIT_SHARED (its memory is the guest's), the page is past the file's end or "
                "hwpoisoned, or the guest_memfd was closed (kvm_gmem_fault_user_mapping())",
            ),
            ("EHWPOISON", "the page was hit by memory_failure"),
            ("ENOMEM", "no host memory"),
        ),
        '{"op": "host_access", "hva": "0x7f0000001000", "write": true, "value": 1}',
    ),
    "madvise": OpDoc(
        "madvise(2) MADV_DONTNEED (madvise_dontneed_free())",
        "Drops the VMM's pages in [hva, hva + len): mappings of them are invalidated, the "
        "next touch reads 0.",
        {
            "hva": "page aligned start",
            "len": "bytes (rounded up to pages)",
            "advice": '"DONTNEED"',
        },
        "`{}`",
        (
            (
                "EINVAL",
                "an unaligned start, a wrapping range, or an unaligned hugetlb range; device "
                "memory (host_mmap_pfnmap, VM_PFNMAP) in the range "
                "(madvise_dontneed_free_valid_vma(): the part before it is dropped)",
            ),
            ("ENOMEM", "part of the range is not mapped (the rest is dropped)"),
        ),
        '{"op": "madvise", "hva": "0x7f0000200000", "len": "2M"}',
    ),
    "memory_failure": OpDoc(
        "memory_failure() on a host pfn (a memory error)",
        "Poisons a host page: a guest_memfd folio gets hwpoison and its mappings are "
        "zapped (kvm_gmem_error_folio()); a memfd's page (shmem) is marked hwpoison and "
        "kept, and nothing tells KVM (upm-v8: a later private fault gets EHWPOISON); a VMM "
        "page is dropped; a free page leaves the allocator.",
        {"pfn": "the host page frame number"},
        "`{}`",
        (
            ("ENXIO", "pfn is beyond host memory"),
            ("EHWPOISON", "the page is poisoned already"),
        ),
        '{"op": "memory_failure", "pfn": "0x12345"}',
    ),
    "pre_fault_memory": OpDoc(
        "KVM_PRE_FAULT_MEMORY, a vCPU ioctl from 6.10 (kvm_vcpu_pre_fault_memory(), "
        "kvm_arch_vcpu_pre_fault_memory())",
        "Maps [gpa, gpa + size) as the guest's faults would, before the guest runs: one step "
        "per leaf, the access type from each page's attribute (a TD's private pages are "
        "AUGed PENDING; the guest still accepts them). No exit reaches the VMM. If no step "
        "mapped anything the op fails with the first step's errno; otherwise it succeeds "
        "with the part of the range that is left.",
        {
            "gpa": "page aligned guest physical address (a TD's without the shared bit)",
            "size": "bytes, page aligned, not 0",
            "vcpu": "the vCPU whose MMU maps it (0-1023)",
            "flags": "must be 0",
        },
        '`{"gpa", "size"}`: the range left (size 0 when all of it was mapped); on an '
        "EINVAL for flags or alignment, and on a step's errno, `ret` holds the range as well",
        (
            ("EIO", "the VM is dead (kvm_vcpu_ioctl())"),
            (
                "EINVAL",
                "kernels 6.8 and upm-v8: KVM_PRE_FAULT_MEMORY does not exist (an unknown vCPU "
                "ioctl is EINVAL: kvm_arch_vcpu_ioctl()'s default; kernel rule pre_fault_memory)",
            ),
            ("EBUSY", "the vCPU has a held fault (it is inside KVM_RUN; resume it first)"),
            (
                "EINVAL",
                "flags not 0; gpa or size unaligned, size 0, or a wrapping range "
                "(kvm_vcpu_pre_fault_memory())",
            ),
            (
                "EOPNOTSUPP",
                "a TD not finalized yet, an SNP guest before snp_launch_finish "
                "(!pre_fault_allowed)",
            ),
            ("EINVAL", "a TDX GPA with the shared bit (kvm_is_gfn_alias())"),
            (
                "ENOENT",
                "a shared gpa without a memslot: the fault would be emulated as MMIO "
                "(RET_PF_EMULATE)",
            ),
            (
                "EFAULT",
                "a private gpa without a memslot or a guest_memfd, or with its guest_memfd "
                "closed (the fault's memory-fault exit, not reported); before 6.13 device "
                "memory whose pages are not refcounted",
            ),
            ("EHWPOISON", "the page's guest_memfd folio was hit by memory_failure"),
            (
                "EINTR",
                "a poisoned shared page: KVM sends SIGBUS and the loop sees the signal pending",
            ),
            ("ENOMEM", "no host memory for the page or an S-EPT table"),
        ),
        '{"op": "pre_fault_memory", "gpa": 0, "size": "2M"}',
    ),
    "guest_map_gpa_range": OpDoc(
        "the guest asking for a conversion: `TDG.VP.VMCALL<MapGPA>` (tdx_map_gpa()) or "
        "KVM_HC_MAP_GPA_RANGE (kvm_emulate_hypercall()), then KVM_EXIT_HYPERCALL",
        "A vCPU asks the host to make [gpa, gpa + size) private or shared. KVM checks the "
        "request and exits to the VMM, which answers with set_memory_attributes (under "
        "upm-v8 with memory_encrypt_reg_region / memory_encrypt_unreg_region). The op "
        "changes no state; it shows what KVM hands the VMM. The VMM is taken to have enabled "
        "KVM_CAP_EXIT_HYPERCALL for it (QEMU does).",
        {
            "gpa": "guest physical address of the range (a TD's without the shared bit: "
            "`private` says the direction)",
            "size": "bytes; page aligned",
            "private": "true: make it private (attrs KVM_MAP_GPA_RANGE_ENCRYPTED, 16); false: "
            "shared (0; a TD asks with the shared-bit GPA)",
            "vcpu": "the vCPU that asks (0-1023)",
        },
        '`{"exit": {"reason": "KVM_EXIT_HYPERCALL", "nr": 12, "args": [gpa, npages, '
        "attrs]}}`; a TD exits once per 2 MiB chunk (TDX_MAP_GPA_MAX_LEN): `exit` is the "
        'first and `"chunks": [[gpa, npages], ...]` lists all when there are more. A request '
        'KVM refuses goes back to the guest, not to the VMM: `{"guest_ret": status}` with '
        "`KVM_EINVAL` (unaligned gpa, 0 pages, or gfn + npages wrapping a u64), `TDVMCALL_STATUS_INVALID_OPERAND` (a "
        "wrapping range, a GPA past GPAW, a range across the shared bit, a private request "
        "with the shared bit) or `TDVMCALL_STATUS_ALIGN_ERROR` (unaligned gpa or size). An "
        "SNP guest's page-state change (snp_begin_psc()) uses 2M entries where the range "
        "is 2M aligned and 4K entries elsewhere; KVM exits once per run of one entry size "
        "(args[2] | KVM_MAP_GPA_RANGE_PAGE_SZ_2M (1) for the 2M run), `chunks` as for a TD; "
        "an unaligned range is `VMGEXIT_PSC_ERROR_INVALID_ENTRY` to the guest",
        (
            _EIO_DEAD,
            ("EINVAL", "a TD not finalized yet (tdx_vcpu_pre_run())"),
            ("EBUSY", "the vCPU has a held fault (resume it first)"),
        ),
        '{"op": "guest_map_gpa_range", "gpa": "0x100000", "size": "2M", "private": false}',
    ),
    "memfd_create": OpDoc(
        "memfd_create(2) and ftruncate(2); upm-v8: MFD_INACCESSIBLE (memfd_mkinaccessible())",
        "Creates a memfd of `size` bytes and returns its descriptor (the lowest free number "
        "from 3). Under upm-v8 flag INACCESSIBLE makes the inaccessible memfd a private "
        "memslot binds (set_user_memory_region with PRIVATE): no read, write or mmap, its "
        "pages taken by KVM. On merged kernels bit 8 is MFD_NOEXEC_SEAL (6.3) and the file is "
        "a plain memfd: fallocate and close work on it, KVM cannot bind it.",
        {
            "size": "bytes (ftruncate); page aligned for an inaccessible memfd",
            "flags": "INACCESSIBLE (8) under upm-v8 (MFD_NOEXEC_SEAL on merged kernels); the "
            "other memfd_create bits as integers: MFD_CLOEXEC 1, MFD_ALLOW_SEALING 2, "
            "MFD_HUGETLB 4 (with its page-size bits), MFD_EXEC 16 (merged kernels)",
        },
        '`{"fd": N}`',
        (
            ("EINVAL", "an unknown flag (memfd_create())"),
            ("EINVAL", "merged kernels: MFD_EXEC with MFD_NOEXEC_SEAL (bit 8)"),
            ("EINVAL", "upm-v8: INACCESSIBLE with MFD_ALLOW_SEALING or MFD_HUGETLB"),
            ("EINVAL", "size 2^63 or more (a negative length for ftruncate())"),
            (
                "EINVAL",
                "upm-v8: INACCESSIBLE and size not page aligned (inaccessible_setattr())",
            ),
        ),
        '{"op": "memfd_create", "size": "1G", "flags": ["INACCESSIBLE"]}',
    ),
    "memory_encrypt_reg_region": OpDoc(
        "KVM_MEMORY_ENCRYPT_REG_REGION; under kernel upm-v8 kvm_vm_ioctl_set_mem_attr() (v8 5/8)",
        "upm-v8 only: marks [address, address + size) private and zaps every leaf in the "
        "range with one invalidation (kvm_zap_gfn_range()), whether or not anything changes "
        "and whether or not a memslot is there. On merged kernels the ioctl is SEV's "
        "(it pins the VMM's memory by hva) and a VM without SEV gets ENOTTY.",
        {
            "address": "page aligned guest physical address (kvm_enc_region.addr)",
            "size": "bytes, page aligned, not 0",
        },
        "`{}`",
        (
            _EIO_DEAD,
            (
                "ENOTTY",
                "merged kernels (not upm-v8): no mem_enc_register_region for this VM "
                "(kvm_arch_vm_ioctl(); kernel rule enc_region_attributes)",
            ),
            ("EINVAL", "size 0 or a wrapping range"),
            ("EINVAL", "address or size not page aligned"),
        ),
        '{"op": "memory_encrypt_reg_region", "address": 0, "size": "1G"}',
    ),
    "memory_encrypt_unreg_region": OpDoc(
        "KVM_MEMORY_ENCRYPT_UNREG_REGION; under kernel upm-v8 kvm_vm_ioctl_set_mem_attr() (v8 5/8)",
        "upm-v8 only: marks [address, address + size) shared (KVM_MEM_ATTR_SHARED: memory "
        "starts private under v8) and zaps every leaf in the range with one invalidation "
        "(kvm_zap_gfn_range()). On merged kernels a VM without SEV gets ENOTTY.",
        {
            "address": "page aligned guest physical address (kvm_enc_region.addr)",
            "size": "bytes, page aligned, not 0",
        },
        "`{}`",
        (
            _EIO_DEAD,
            (
                "ENOTTY",
                "merged kernels (not upm-v8): no mem_enc_unregister_region for this VM "
                "(kvm_arch_vm_ioctl(); kernel rule enc_region_attributes)",
            ),
            ("EINVAL", "size 0 or a wrapping range"),
            ("EINVAL", "address or size not page aligned"),
        ),
        '{"op": "memory_encrypt_unreg_region", "address": "0x1000", "size": "4K"}',
    ),
    "host_mmap_pfnmap": OpDoc(
        "mmap(2) MAP_FIXED of device memory, a VM_PFNMAP VMA (do_mmap()); KVM's faults: "
        "hva_to_pfn_remapped()",
        "The VMM maps device memory (e.g. a virtio-gpu blob) at hva, over part of guest RAM: "
        "the mmu notifier invalidates the range (shared "
        "leaves go), the anonymous pages there are freed, and device pages (host memory in "
        "blocks of up to 2M, the driver's) take their place. A guest fault there maps the "
        "device page at 4K; one that is not refcounted is refused before kernel 6.13 "
        "(6.12, 6.8, upm-v8: guest_access fails EFAULT; kernel rule pfnmap_noref).",
        {
            "hva": "page aligned start, inside memslots' userspace ranges",
            "size": "bytes (rounded up to pages), not 0",
            "refcounted": "whether the device's struct pages have a refcount (false: a TTM "
            "buffer made of tail pages, as Venus uses)",
        },
        "`{}`",
        (
            ("EINVAL", "size 0 (do_mmap())"),
            (
                "ENOMEM",
                "the range runs past the top of user space, TASK_SIZE 0x7ffffffff000 "
                "(__get_unmapped_area())",
            ),
            ("EINVAL", "hva not page aligned (__get_unmapped_area(), after the range check)"),
            (
                "EFAULT",
                "part of the range is outside every memslot's userspace range (the model "
                "tracks only the VMM's memory behind memslots; not an mmap errno)",
            ),
            ("ENOMEM", "no host memory for the device pages (nothing is mapped)"),
        ),
        '{"op": "host_mmap_pfnmap", "hva": "0x7f0000200000", "size": "2M"}',
    ),
    "note": OpDoc(
        "nothing in the kernel: a caption",
        "A caption the app shows while a recording replays; changes no state.",
        {"text": "the caption"},
        "`{}`",
        (),
        '{"op": "note", "text": "the TD is up"}',
    ),
    "inspect": OpDoc(
        "nothing in the kernel: a look at one gfn's whole chain",
        "Everything about one page: attribute, memslot, guest_memfd and folio, both "
        "leaves, the bytes the backing pages hold.",
        {"gpa": "an address in the page (TDX: without the shared bit)"},
        '`{"gfn", "attributes", "memslot", "gmem": {"fd", "index"}, "folio": {"index", '
        '"order", "pfn", "hwpoison"}, "private_mapping": {"level", "pfn", "state"}, '
        '"shared_mapping": {"level", "pfn"}, "content": {"private", "shared"}}` (null '
        "where there is none; `state` is the S-EPT state on a TD, MAPPED otherwise)",
        (),
        '{"op": "inspect", "gpa": "0x1000"}',
    ),
    "stats": OpDoc(
        "nothing in the kernel: counters",
        "The VM's counters.",
        {},
        '`{"vm_type", "vm_dead", "td_state", "mmu_invalidate_seq", '
        '"mmu_invalidate_in_progress", "mappings": {"private": {"4K", "2M", "1G"}, '
        '"shared": {...}}, "gmem_folios": {"0", "9", "18"}, "host_free_bytes", ...}`',
        (),
        '{"op": "stats"}',
    ),
}

CONFIG_DOCS: dict[str, str] = {
    "type": '`"default"`, `"sw_protected"`, `"tdx"` or `"snp"` (the KVM VM type)',
    "kernel": 'the kernel whose uAPI and rules the VM follows: `"mainline"` (the tree past '
    'the 7.2 merge window), the releases `"7.1"`, `"6.18"`, `"6.16"`, `"6.12"`, `"6.8"`, or '
    '`"upm-v8"` (the unmerged 2022 design: inaccessible memfd, KVM_MEM_PRIVATE slots, '
    "memory private by default). An op a release lacks fails as that kernel fails it (a VM "
    "ioctl with ENOTTY, a vCPU ioctl with EINVAL); `tdx` needs 6.16 or later, "
    "`sw_protected` 6.8 or later. Every rule per kernel, with its source: "
    "[kernels.md](kernels.md)",
    "host_memory": "bytes of host RAM the folio allocator manages (a multiple of 2M, up to 1P)",
    "gmem_max_order": "largest guest_memfd folio order: 0 (upstream), 9 (2M), 18 (1G)",
    "shared_page_size": 'host page size behind userspace_addr: `"4K"`, `"2M"` (THP), '
    '`"1G"` (hugetlb)',
    "tdx_private_max_level": '`"4K"` (upstream) or `"2M"` (the TDX huge-page series)',
    "gpaw": "TDX guest physical address width, 48 or 52 (shared bit 47 or 51)",
    "seed": "integer seeding every allocation choice (the host starts a little fragmented)",
}

EXAMPLE_SCRIPT = """\
# A TD with 1 GiB of private RAM: create it, fault a page in, convert it, look at it.
{"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "tdx", "host_memory": "4G"}}}
{"op": "create_guest_memfd", "size": "1G"}
{"op": "set_user_memory_region2", "slot": 0, "flags": ["GUEST_MEMFD"], "guest_phys_addr": 0, "memory_size": "1G", "userspace_addr": "0x7f0000000000", "guest_memfd": 3}
{"op": "set_memory_attributes", "address": 0, "size": "1G", "attributes": ["PRIVATE"]}
{"op": "tdx_init_mem_region", "gpa": "0x3ff00000", "nr_pages": 16}
{"op": "tdx_finalize_vm"}
{"op": "guest_accept", "gpa": "0x1000"}
{"op": "guest_access", "gpa": "0x1000", "write": true, "value": 170}
{"op": "inspect", "gpa": "0x1000"}
# Convert the page to shared and drop its private backing, as QEMU does.
{"op": "set_memory_attributes", "address": "0x1000", "size": "4K", "attributes": 0}
{"op": "fallocate", "fd": 3, "mode": ["KEEP_SIZE", "PUNCH_HOLE"], "offset": "0x1000", "len": "4K"}
{"op": "guest_access", "gpa": "0x1000"}
{"op": "stats"}
"""


# The SEV-SNP ops' words live in their own module (kept apart for merges).
from imemviz.model.op_docs_snp import SNP_OP_DOCS  # noqa: E402

OP_DOCS.update(SNP_OP_DOCS)
