"""TDX: TD build (PAGE.ADD, MR.EXTEND, finalize), AUG -> PENDING -> accept, the TD killed by
an access to a PENDING page, the zap sequence, S-EPT pages, and the shared-bit alias."""

from __future__ import annotations

from .kit import G, M, do, gmem_slot, inspect, names, ok, stats, td, vm_of

SHARED = 1 << 51


def building_td():
    vm = vm_of("tdx")
    gmem_slot(vm, 0, G)
    return vm


def test_td_build_add_measure_finalize() -> None:
    vm = building_td()
    assert do(vm, "guest_access", gpa=0).errno == "EINVAL"  # KVM_RUN before finalize
    ok(vm, "tdx_init_mem_region", gpa=0xFF000, nr_pages=2, value=0x5A)
    ev = names(vm)
    assert ev.count("TDH.MEM.PAGE.ADD") == 2 and ev.count("TDH.MR.EXTEND") == 2
    # 5-level S-EPT (GPAW 52): PML4, PDPT, PD and PT pages are added on the first walk.
    assert ev.count("TDH.MEM.SEPT.ADD") == 4
    info = inspect(vm, 0xFF000)
    assert info["private_mapping"]["state"] == "MAPPED"
    assert info["content"]["private"] == 0x5A
    assert stats(vm)["td_state"] == "BUILDING"
    ok(vm, "tdx_finalize_vm")
    assert stats(vm)["td_state"] == "RUNNABLE"
    assert do(vm, "tdx_finalize_vm").errno == "EINVAL"
    assert do(vm, "tdx_init_mem_region", gpa=0x200000, nr_pages=1).errno == "EINVAL"
    assert ok(vm, "guest_access", gpa=0xFF000)["value"] == 0x5A


def test_init_mem_region_errors() -> None:
    vm = building_td()
    assert do(vm, "tdx_init_mem_region", gpa=0x1001, nr_pages=1).errno == "EINVAL"
    assert do(vm, "tdx_init_mem_region", gpa=0x1000, nr_pages=0).errno == "EINVAL"
    assert do(vm, "tdx_init_mem_region", gpa=SHARED, nr_pages=1).errno == "EINVAL"
    assert do(vm, "tdx_init_mem_region", gpa=2 * G, nr_pages=1).errno == "EINVAL"  # no slot
    ok(vm, "set_memory_attributes", address=0x10000, size=4096, attributes=0)
    assert do(vm, "tdx_init_mem_region", gpa=0x10000, nr_pages=1).errno == "EINVAL"
    ok(vm, "tdx_init_mem_region", gpa=0x20000, nr_pages=1)
    assert do(vm, "tdx_init_mem_region", gpa=0x20000, nr_pages=1).errno == "EIO"
    sw = vm_of("sw_protected")
    assert do(sw, "tdx_init_mem_region", gpa=0, nr_pages=1).errno == "EINVAL"
    assert do(sw, "tdx_finalize_vm").errno == "ENOTTY"


def test_aug_pending_accept_mapped() -> None:
    vm = td()
    assert ok(vm, "guest_accept", gpa=0x5000) == {"level": "4K"}
    ev = names(vm)
    assert ev.index("TDH.MEM.PAGE.AUG") < ev.index("TDG.MEM.PAGE.ACCEPT")
    assert inspect(vm, 0x5000)["private_mapping"]["state"] == "MAPPED"
    r = do(vm, "guest_accept", gpa=0x5000)
    assert (r.ok, r.errno, r.ret) == (False, "EINVAL", {"tdx_status": "TDX_PAGE_ALREADY_ACCEPTED"})
    assert ok(vm, "guest_access", gpa=0x5000, write=True, value=9) == {
        "value": 9,
        "level": "4K",
        "pfn": inspect(vm, 0x5000)["private_mapping"]["pfn"],
    }


def test_access_before_accept_kills_the_td() -> None:
    vm = td()
    r = do(vm, "guest_access", gpa=0x7000)
    assert (r.ok, r.errno, r.ret) == (False, "EIO", {"vm_dead": True})
    assert "TDH.MEM.PAGE.AUG" in names(vm) and "kvm_vm_dead" in names(vm)
    assert inspect(vm, 0x7000)["private_mapping"]["state"] == "PENDING"
    assert stats(vm)["vm_dead"] is True
    for op, fields in [
        ("guest_access", {"gpa": 0}),
        ("guest_accept", {"gpa": 0}),
        ("set_memory_attributes", {"address": 0, "size": 4096, "attributes": 0}),
        ("create_guest_memfd", {"size": 4096}),
        ("set_user_memory_region2", {"slot": 1, "guest_phys_addr": 2 * G, "memory_size": 4096}),
    ]:
        assert do(vm, op, **fields).errno == "EIO", op
    # guest_memfd's own file ops do not check vm_dead.
    ok(vm, "fallocate", fd=3, mode=["KEEP_SIZE", "PUNCH_HOLE"], offset=0x7000, len=4096)
    assert inspect(vm, 0x7000)["private_mapping"] is None


def test_conversion_zaps_with_block_track_remove() -> None:
    vm = td()
    ok(vm, "guest_accept", gpa=0x9000)
    ok(vm, "guest_access", gpa=0x9000, write=True, value=7)
    sept = stats(vm)["sept_pages"]
    ok(vm, "set_memory_attributes", address=0x9000, size=4096, attributes=0)
    tdh = [n for n in names(vm) if n.startswith("TDH")]
    assert tdh == [
        "TDH.MEM.RANGE.BLOCK",
        "TDH.MEM.TRACK",
        "TDH.MEM.PAGE.REMOVE",
        "TDH.PHYMEM.PAGE.WBINVD",
    ]
    assert stats(vm)["sept_pages"] == sept  # S-EPT pages are never freed while the TD runs
    # Back to private: the folio is still there but was cleared when it left the TD,
    # and the page must be accepted again.
    ok(vm, "set_memory_attributes", address=0x9000, size=4096, attributes=8)
    info = inspect(vm, 0x9000)
    assert info["folio"] is not None and info["content"]["private"] == 0
    assert do(vm, "guest_access", gpa=0x9000).errno == "EIO"


def test_remove_before_finalize_has_no_track() -> None:
    vm = building_td()
    ok(vm, "tdx_init_mem_region", gpa=0, nr_pages=1)
    ok(vm, "fallocate", fd=3, mode=3, offset=0, len=4096)
    assert "TDH.MEM.TRACK" not in names(vm)
    assert "TDH.MEM.PAGE.REMOVE" in names(vm)


def test_shared_alias_uses_the_direct_root() -> None:
    vm = td()
    ok(vm, "set_memory_attributes", address=M, size=M, attributes=0)
    r = ok(vm, "guest_access", gpa=SHARED | (M + 0x10), write=True, value=4)
    assert r["level"] == "4K"
    info = inspect(vm, SHARED | M)
    assert info["gfn"] == M >> 12
    assert info["shared_mapping"] is not None and info["private_mapping"] is None
    assert info["content"]["shared"] == 4
    # A shared access to a private gfn asks for a conversion: memory-fault exit, flags 0.
    r = do(vm, "guest_access", gpa=SHARED | 0x3000)
    assert r.errno == "EFAULT"
    assert r.ret["exit"] == {
        "reason": "KVM_EXIT_MEMORY_FAULT",
        "gpa": 0x3000,
        "size": 4096,
        "flags": 0,
    }
    # Accepting a shared GPA is refused by the module.
    assert do(vm, "guest_accept", gpa=SHARED | 0x3000).ret["tdx_status"] == "TDX_OPERAND_INVALID"


def test_memslot_rules_for_tdx() -> None:
    vm = vm_of("tdx")
    fd = ok(vm, "create_guest_memfd", size=G)["fd"]
    # READONLY is not available for protected-state VMs; SMM's address space neither.
    assert (
        do(
            vm,
            "set_user_memory_region",
            slot=0,
            flags=2,
            guest_phys_addr=0,
            memory_size=G,
            userspace_addr=0x7F0000000000,
        ).errno
        == "EINVAL"
    )
    assert (
        do(
            vm,
            "set_user_memory_region2",
            slot=1 << 16,
            flags=4,
            guest_phys_addr=0,
            memory_size=G,
            userspace_addr=0x7F0000000000,
            guest_memfd=fd,
        ).errno
        == "EINVAL"
    )
    # A memslot may not reach the shared-bit alias.
    assert (
        do(
            vm,
            "set_user_memory_region2",
            slot=0,
            flags=4,
            guest_phys_addr=SHARED,
            memory_size=G,
            userspace_addr=0x7F0000000000,
            guest_memfd=fd,
        ).errno
        == "EINVAL"
    )
    dvm = vm_of("default")
    ok(
        dvm,
        "set_user_memory_region",
        slot=1 << 16,
        guest_phys_addr=0,
        memory_size=G,
        userspace_addr=0x7F0000000000,
    )
