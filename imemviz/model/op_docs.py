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
            "flags": "MMAP (1): the VMM may mmap the file (its host view); INIT_SHARED (2): "
            "pages start shared (only on VMs without private memory)",
        },
        '`{"fd": N}`',
        (
            _EIO_DEAD,
            ("EINVAL", "an unknown or unsupported flag (kvm_gmem_get_supported_flags())"),
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
            "flags": "LOG_DIRTY_PAGES (1), READONLY (2, not for TDX nor with GUEST_MEMFD), "
            "GUEST_MEMFD (4)",
            "guest_phys_addr": "page aligned guest physical address of the slot",
            "memory_size": "bytes, page aligned; 0 deletes the slot",
            "userspace_addr": "page aligned address of the VMM's memory behind the slot "
            "(shared pages)",
            "guest_memfd": "the guest_memfd to bind (with GUEST_MEMFD)",
            "guest_memfd_offset": "page aligned offset of the slot in the file",
        },
        "`{}`",
        (
            _EIO_DEAD,
            (
                "EINVAL",
                "slot, flags, size, addresses or offset out of range or unaligned; a "
                "guest_memfd slot changed (they are immutable); deleting a slot that does not "
                "exist; the range past what the VM can map",
            ),
            ("EBADF", "guest_memfd is not an open file (kvm_gmem_bind())"),
            ("EEXIST", "the gfn range overlaps another slot, or the file range another binding"),
        ),
        '{"op": "set_user_memory_region2", "slot": 0, "flags": ["GUEST_MEMFD"], '
        '"guest_phys_addr": 0, "memory_size": "2G", "userspace_addr": "0x7f0000000000", '
        '"guest_memfd": 3}',
    ),
    "set_user_memory_region": OpDoc(
        "KVM_SET_USER_MEMORY_REGION (the v1 ioctl: no guest_memfd)",
        "As set_user_memory_region2 without the guest_memfd fields.",
        {
            "slot": "as_id << 16 | slot id",
            "flags": "LOG_DIRTY_PAGES (1), READONLY (2)",
            "guest_phys_addr": "page aligned guest physical address",
            "memory_size": "bytes, page aligned; 0 deletes the slot",
            "userspace_addr": "page aligned address of the VMM's memory",
        },
        "`{}`",
        (
            _EIO_DEAD,
            ("EINVAL", "a flag v1 does not have (GUEST_MEMFD), or what v2 refuses"),
            ("EEXIST", "the gfn range overlaps another slot"),
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
                "EINVAL",
                "flags not 0, attributes the VM does not support, size 0, an "
                "unaligned or wrapping range",
            ),
        ),
        '{"op": "set_memory_attributes", "address": 0, "size": "2G", "attributes": ["PRIVATE"]}',
    ),
    "fallocate": OpDoc(
        "fallocate(2) on a guest_memfd (vfs_fallocate(), kvm_gmem_fallocate())",
        "KEEP_SIZE allocates a folio for every page of the range that has none "
        "(kvm_gmem_allocate()); KEEP_SIZE|PUNCH_HOLE invalidates the range's mappings and "
        "frees its folios. A range of any size costs its runs of folios, not its pages.",
        {
            "fd": _FD,
            "mode": "KEEP_SIZE (1) to allocate, KEEP_SIZE|PUNCH_HOLE (3) to free; "
            "COLLAPSE_RANGE, ZERO_RANGE, INSERT_RANGE are refused as guest_memfd does",
            "offset": "bytes, page aligned",
            "len": "bytes, page aligned, not 0",
        },
        "`{}`",
        (
            ("EBADF", "fd is not open"),
            (
                "EINVAL",
                "offset negative or len not positive (vfs_fallocate()); offset or "
                "len unaligned, or an allocation past the end of the file",
            ),
            (
                "EOPNOTSUPP",
                "a mode guest_memfd does not implement, or PUNCH_HOLE without KEEP_SIZE",
            ),
            ("ENODEV", "fd is 0, 1 or 2 (a terminal, not a regular file)"),
            ("EFBIG", "offset + len past the largest file offset"),
            (
                "ENOMEM",
                "host memory ran out (the folios allocated before stay, as in kvm_gmem_allocate())",
            ),
        ),
        '{"op": "fallocate", "fd": 3, "mode": ["KEEP_SIZE", "PUNCH_HOLE"], "offset": 0, '
        '"len": "2M"}',
    ),
    "close": OpDoc(
        "close(2)",
        "Closes a descriptor. For a guest_memfd (its last reference) kvm_gmem_release() "
        "unbinds it from its memslots (which stay), zaps what it mapped and frees its "
        "folios. 0-2 can be closed once, like any process's.",
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
        'memslot; `{"in_flight": true}` for a held fault',
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
                "a private access without a memslot or guest_memfd (`ret.exit`)",
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
        "where shared_page_size and the memslot allow).",
        {
            "hva": "an address inside some memslot's userspace_addr range",
            "write": "a store: fills the page with `value`",
            "value": "the byte to store (0-255); only with write",
        },
        '`{"value"}`',
        (
            ("EFAULT", "hva is outside every memslot's range"),
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
            ("EINVAL", "an unaligned start, a wrapping range, or an unaligned hugetlb range"),
            ("ENOMEM", "part of the range is not mapped (the rest is dropped)"),
        ),
        '{"op": "madvise", "hva": "0x7f0000200000", "len": "2M"}',
    ),
    "memory_failure": OpDoc(
        "memory_failure() on a host pfn (a memory error)",
        "Poisons a host page: a guest_memfd folio gets hwpoison and its mappings are "
        "zapped (kvm_gmem_error_folio()); a VMM page is dropped; a free page leaves the "
        "allocator.",
        {"pfn": "the host page frame number"},
        "`{}`",
        (
            ("ENXIO", "pfn is beyond host memory"),
            ("EHWPOISON", "the page is poisoned already"),
        ),
        '{"op": "memory_failure", "pfn": "0x12345"}',
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
    "type": '`"default"`, `"sw_protected"` or `"tdx"` (the KVM VM type)',
    "kernel": "the kernel release whose rules apply",
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
