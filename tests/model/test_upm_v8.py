"""The 2022 design (kernel profile upm-v8), rule by rule as the v8 patches define it:
"[PATCH v8 n/8]" of 20220915142913.2213336-1-chao.p.peng (docs/kernels.md)."""

from __future__ import annotations

import json

from imemviz.io.state import state_document, vm_from_document
from imemviz.model.ops import parse_op

from .kit import HVA, M, inspect, vm_of

INACC = ["INACCESSIBLE"]


def apply(vm, op: str, **fields):
    return vm.apply(parse_op({"op": op, **fields}))


def ok(vm, op: str, **fields):
    r = apply(vm, op, **fields)
    assert r.ok, (op, fields, r)
    return r.ret


def names(vm) -> list[str]:
    return [e[1] for e in vm.last_events]


def upm(**cfg):
    return vm_of("default", kernel="upm-v8", **cfg)


def private_slot(vm, slot: int, gpa: int, size: int, fd: int, offset: int = 0, **kw):
    return apply(vm, "set_user_memory_region", slot=slot, flags=kw.pop("flags", ["PRIVATE"]),
                 guest_phys_addr=gpa, memory_size=size, userspace_addr=HVA + gpa,
                 private_fd=fd, private_offset=offset, **kw)  # fmt: skip


def test_memfd_create_flags_and_size() -> None:
    """v8 1/8 memfd_create(): MFD_INACCESSIBLE with MFD_ALLOW_SEALING or MFD_HUGETLB is EINVAL;
    inaccessible_setattr(): a size that is not page aligned is EINVAL."""
    vm = upm()
    assert apply(vm, "memfd_create", size=4096, flags=8 | 2).errno == "EINVAL"
    assert apply(vm, "memfd_create", size=4096, flags=8 | 4).errno == "EINVAL"
    assert apply(vm, "memfd_create", size=4097, flags=INACC).errno == "EINVAL"
    assert apply(vm, "memfd_create", size=4096, flags=0x10).errno == "EINVAL"  # no MFD_EXEC yet
    assert ok(vm, "memfd_create", size=0, flags=INACC) == {"fd": 3}
    assert ok(vm, "memfd_create", size=4097) == {"fd": 4}  # a plain memfd takes any size
    assert [f.kind for f in vm.files.values()] == ["inaccessible", "memfd"]


def test_private_slot_checks_in_patch_order() -> None:
    """v8 8/8 __kvm_set_memory_region(): private_offset unaligned or wrapping -> EINVAL (after
    userspace_addr); GPA overlap (EEXIST) before fget(private_fd), which fails with EINVAL; a
    private slot cannot be modified with KVM_MEM_PRIVATE."""
    vm = upm()
    fd = ok(vm, "memfd_create", size=8 * M, flags=INACC)["fd"]
    assert private_slot(vm, 0, 0, 4 * M, fd, offset=100).errno == "EINVAL"
    assert private_slot(vm, 0, 0, 4 * M, fd, offset=(1 << 64) - 4096).errno == "EINVAL"
    assert private_slot(vm, 0, 0, 4 * M, 9).errno == "EINVAL"  # fget() fails: not EBADF
    assert private_slot(vm, 0, 0, 4 * M, fd).ok
    assert private_slot(vm, 1, 2 * M, 4 * M, 9).errno == "EEXIST"
    assert private_slot(vm, 0, 0, 4 * M, fd).errno == "EINVAL"  # "immutable"
    plain = ok(vm, "memfd_create", size=4 * M)["fd"]
    assert private_slot(vm, 1, 8 * M, 4 * M, plain).errno == "EINVAL"  # see docs/kernels.md
    assert apply(vm, "set_user_memory_region2", slot=2, guest_phys_addr=G0, memory_size=0).errno \
        == "ENOTTY"  # fmt: skip


G0 = 1 << 32


def test_two_slots_may_share_file_pages() -> None:
    """api.rst (v8 2/8): "Userspace should guarantee not to map the same pfn ... to different
    gfns with multiple memslots": no overlap check, the pages are shared."""
    vm = upm()
    fd = ok(vm, "memfd_create", size=4 * M, flags=INACC)["fd"]
    assert private_slot(vm, 0, 0, 4 * M, fd).ok
    assert private_slot(vm, 1, G0, 4 * M, fd).ok
    a = ok(vm, "guest_access", gpa=0x5000, write=True, value=3)
    b = ok(vm, "guest_access", gpa=G0 + 0x5000)
    assert (b["pfn"], b["value"]) == (a["pfn"], 3)


def test_modifying_a_private_slot_without_the_flag_drops_its_private_memory() -> None:
    """v8 8/8: only a request with KVM_MEM_PRIVATE is refused; the new slot has no private_file,
    kvm_free_memslot() of the old one unregisters the notifier and puts the file."""
    vm = upm()
    fd = ok(vm, "memfd_create", size=4 * M, flags=INACC)["fd"]
    private_slot(vm, 0, 0, 4 * M, fd)
    r = apply(vm, "set_user_memory_region", slot=0, guest_phys_addr=8 * M, memory_size=4 * M,
              userspace_addr=HVA)  # fmt: skip
    assert r.ok  # a MOVE without KVM_MEM_PRIVATE
    assert inspect(vm, 8 * M)["gmem"] is None
    assert vm.files[fd].bindings == []


def test_enc_regions_always_zap_with_one_invalidation() -> None:
    """v8 5/8 kvm_vm_ioctl_set_mem_attr(): size 0 / wrap / unaligned -> EINVAL; no check that
    anything changes; kvm_zap_gfn_range() runs one begin/end pair even without a memslot."""
    vm = upm()
    assert apply(vm, "memory_encrypt_reg_region", address=0, size=0).errno == "EINVAL"
    assert apply(vm, "memory_encrypt_reg_region", address=0x800, size=4096).errno == "EINVAL"
    assert apply(vm, "memory_encrypt_reg_region", address=(1 << 64) - 4096, size=8192).errno \
        == "EINVAL"  # fmt: skip
    ok(vm, "memory_encrypt_reg_region", address=0, size=4096)  # already private
    assert names(vm) == [
        "kvm_vm_ioctl_set_mem_attr",
        "kvm_zap_gfn_range",
        "kvm_mmu_invalidate_begin",
        "kvm_mmu_invalidate_range_add",
        "kvm_mmu_invalidate_end",
    ]
    assert ok(vm, "stats")["mmu_invalidate_seq"] == 1
    ok(vm, "memory_encrypt_unreg_region", address=0, size=4096)
    assert inspect(vm, 0)["attributes"] == 0 and inspect(vm, 4096)["attributes"] == 8


def test_fault_in_and_out_of_private_slots() -> None:
    """v8 7/8 kvm_faultin_pfn(): in a private slot a mismatch exits (RET_PF_USER, exit 38, flags
    bit 0) and a private fault takes inaccessible_get_pfn(); a slot without KVM_MEM_PRIVATE is
    always shared, whatever the attribute (kvm_is_fault_private())."""
    vm = upm()
    fd = ok(vm, "memfd_create", size=4 * M, flags=INACC)["fd"]
    private_slot(vm, 0, 0, 4 * M, fd)
    ok(vm, "set_user_memory_region", slot=1, guest_phys_addr=G0, memory_size=4 * M,
       userspace_addr=HVA + G0)  # fmt: skip
    r = ok(vm, "guest_access", gpa=0x2000, write=True, value=1)
    assert inspect(vm, 0x2000)["folio"]["pfn"] == r["pfn"]
    assert ok(vm, "guest_access", gpa=0x3000, private=False) == {
        "exit": {"reason": "KVM_EXIT_MEMORY_FAULT", "gpa": 0x3000, "size": 4096, "flags": 0}
    }
    ok(vm, "memory_encrypt_unreg_region", address=0x3000, size=4096)
    assert ok(vm, "guest_access", gpa=0x3000, private=True)["exit"]["flags"] == 1
    r = ok(vm, "guest_access", gpa=G0, private=True)  # attribute private, slot not private
    assert r["level"] == "4K" and inspect(vm, G0)["shared_mapping"] is not None


def test_notifier_reads_byte_offsets_as_pages_and_runs_for_allocation_too() -> None:
    """v8 1/8 inaccessible_fallocate() passes (offset, offset + len) in bytes to every notifier,
    for every mode, after shmem; 8/8 kvm_private_notifier_invalidate() clips them as pgoff_t:
    a 4K allocation at offset 0 zaps 4096 pages of the slot."""
    vm = upm()
    fd = ok(vm, "memfd_create", size=32 * M, flags=INACC)["fd"]
    private_slot(vm, 0, 0, 32 * M, fd)
    for gpa in (0x1000, 15 * M, 16 * M + 0x1000):
        ok(vm, "guest_access", gpa=gpa)
    ok(vm, "fallocate", fd=fd, mode=["KEEP_SIZE"], offset=0, len=4096)
    zap = [e for e in vm.last_events if e[1] == "kvm_zap_gfn_range"]
    assert [(e[2], e[3]) for e in zap] == [(0, 4096)]  # gfns, not the 1 page allocated
    assert inspect(vm, 15 * M)["private_mapping"] is None
    assert inspect(vm, 16 * M + 0x1000)["private_mapping"] is not None


def test_closed_inaccessible_memfd_lives_while_private_slots_hold_it() -> None:
    """v8 8/8: each private slot holds a file reference (fget() in __kvm_set_memory_region(),
    fput() in kvm_free_memslot()); the pages are freed with the last one. State files keep
    the file under -ino."""
    vm = upm(host_memory="64M")
    free = ok(vm, "stats")["host_free_bytes"]
    fd = ok(vm, "memfd_create", size=4 * M, flags=INACC)["fd"]
    private_slot(vm, 0, 0, 4 * M, fd)
    ok(vm, "guest_access", gpa=0, write=True, value=9)
    ok(vm, "close", fd=fd)
    assert ok(vm, "guest_access", gpa=0)["value"] == 9
    assert sorted(vm.files) == [-1]
    copy = vm_from_document(json.loads(json.dumps(state_document(vm))))
    assert state_document(copy) == state_document(vm)
    assert ok(vm, "memfd_create", size=4096) == {"fd": 3}  # the descriptor number is free
    ok(vm, "close", fd=3)
    ok(vm, "set_user_memory_region", slot=0, guest_phys_addr=0, memory_size=0)
    assert vm.files == {}
    assert ok(vm, "stats")["host_free_bytes"] == free


def test_readonly_private_slot_is_allowed() -> None:
    """v8 8/8 check_memory_region_flags(): LOG_DIRTY_PAGES, PRIVATE and READONLY are all valid;
    the later READONLY | GUEST_MEMFD exclusion (e563592224e0, 6.8) did not exist."""
    vm = upm()
    fd = ok(vm, "memfd_create", size=4 * M, flags=INACC)["fd"]
    assert private_slot(vm, 0, 0, 4 * M, fd, flags=["PRIVATE", "READONLY"]).ok


def test_huge_private_pages_need_an_aligned_private_offset() -> None:
    """v8 6/8 kvm_alloc_memslot_metadata(): ugfn |= private_offset >> PAGE_SHIFT, so a
    private_offset that is not 2M-aligned with the gfn keeps the private slot at 4K. The
    model gets there through gfn/pfn congruence (kvm_mmu_hugepage_adjust()): the memfd's
    huge folios are naturally aligned in the file, so the two rules agree."""
    for offset, level in ((0, "2M"), (4096 * 16, "4K")):
        vm = upm(gmem_max_order=9)
        fd = ok(vm, "memfd_create", size=8 * M, flags=INACC)["fd"]
        private_slot(vm, 0, 0, 4 * M, fd, offset=offset)
        assert ok(vm, "guest_access", gpa=2 * M)["level"] == level, offset


def test_plain_memfd_on_merged_kernels() -> None:
    """memfd_create() on 6.3+: bit 8 is MFD_NOEXEC_SEAL (with MFD_EXEC: EINVAL); the plain
    memfd takes shmem's fallocate (pages past i_size with KEEP_SIZE, i_size grows without)
    and KVM cannot use it as guest_memfd (EINVAL)."""
    vm = vm_of("default", host_memory="64M")
    assert apply(vm, "memfd_create", size=4096, flags=8 | 0x10).errno == "EINVAL"
    free = ok(vm, "stats")["host_free_bytes"]
    fd = ok(vm, "memfd_create", size=4096, flags=INACC)["fd"]
    assert vm.files[fd].kind == "memfd"
    ok(vm, "fallocate", fd=fd, mode=["KEEP_SIZE"], offset=0, len=8192)
    assert ok(vm, "stats")["host_free_bytes"] == free - 8192
    ok(vm, "fallocate", fd=fd, mode=0, offset=0, len=4 * 4096)
    assert vm.files[fd].inode.size == 4 * 4096
    assert apply(vm, "fallocate", fd=fd, mode=["KEEP_SIZE", "PUNCH_HOLE"], offset=100,
                 len=5000).ok  # fmt: skip
    ok(vm, "close", fd=fd)
    assert ok(vm, "stats")["host_free_bytes"] == free
