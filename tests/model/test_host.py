"""Host memory: the buddy allocator, shared pages behind userspace_addr, madvise, contents,
memory failure and guest_memfd close."""

from __future__ import annotations

import itertools
import random

from imemviz.model.host_memory import BuddyAllocator, HostMemory

from .kit import HVA, G, M, do, gmem_slot, inspect, ok, stats, vm_of


def test_buddy_lowest_first_split_and_merge() -> None:
    a = BuddyAllocator(1 << 19)  # 2 GiB: two 1G blocks
    assert a.alloc(0) == 0 and a.alloc(0) == 1 and a.alloc(9) == 512
    a.free(1, 0)
    a.free(0, 0)
    a.free(512, 9)
    assert a.free_blocks() == [(0, 18), (1 << 18, 18)]
    assert a.free_pages == 1 << 19


def test_buddy_falls_back_and_take_removes_one_page() -> None:
    a = BuddyAllocator(512)
    assert a.alloc(9) == 0 and a.alloc(0) is None and not a.has_block(0)
    a.free(0, 9)
    assert a.take(7)
    assert not a.is_free(7) and a.is_free(6) and a.free_pages == 511
    assert not a.has_block(9)


def test_buddy_random_alloc_free_conserves_pages() -> None:
    rng = random.Random(5)
    a = BuddyAllocator(1 << 16)
    held = []
    for _ in range(2000):
        if held and rng.random() < 0.4:
            a.free(*held.pop(rng.randrange(len(held))))
        else:
            order = rng.choice((0, 0, 1, 3, 9))
            pfn = a.alloc(order)
            if pfn is not None:
                assert pfn % (1 << order) == 0
                held.append((pfn, order))
    used = sum(1 << o for _, o in held)
    assert a.free_pages + used == 1 << 16
    spans = sorted([(p, 1 << o) for p, o in held] + [(p, 1 << o) for p, o in a.free_blocks()])
    assert all(p + n <= q for (p, n), (q, _) in itertools.pairwise(spans))


def test_fragmentation_is_seeded() -> None:
    assert HostMemory(1 << 34, 1).other == HostMemory(1 << 34, 1).other
    assert HostMemory(1 << 34, 1).other != HostMemory(1 << 34, 2).other


def test_shared_pages_first_touch_dontneed_reads_zero() -> None:
    vm = vm_of("sw_protected")
    gmem_slot(vm, 0, G, private=False)
    free0 = stats(vm)["host_free_bytes"]
    assert ok(vm, "host_access", hva=HVA + 0x2000, write=True, value=0x42) == {"value": 0x42}
    assert stats(vm)["host_free_bytes"] == free0 - 4096
    assert ok(vm, "guest_access", gpa=0x2000)["value"] == 0x42  # the guest sees the VMM's copy
    ok(vm, "madvise", hva=HVA + 0x2000, len=1, advice="DONTNEED")  # len rounds up
    assert inspect(vm, 0x2000)["shared_mapping"] is None
    assert stats(vm)["host_free_bytes"] == free0
    assert ok(vm, "host_access", hva=HVA + 0x2000) == {"value": 0}
    assert do(vm, "host_access", hva=HVA + 2 * G).errno == "EFAULT"


def test_madvise_errors_and_thp_split() -> None:
    vm = vm_of("default", shared_page_size="2M")
    ok(vm, "set_user_memory_region", slot=0, guest_phys_addr=0, memory_size=G, userspace_addr=HVA)
    assert do(vm, "madvise", hva=HVA + 1, len=4096, advice="DONTNEED").errno == "EINVAL"
    assert do(vm, "madvise", hva=HVA + G - 4096, len=8192, advice="DONTNEED").errno == "ENOMEM"
    ok(vm, "host_access", hva=HVA, write=True, value=1)
    ok(vm, "host_access", hva=HVA + 4096, write=True, value=2)
    ok(vm, "madvise", hva=HVA, len=4096, advice="DONTNEED")
    # The THP is split: the second page survives as a 4K page.
    assert ok(vm, "host_access", hva=HVA + 4096) == {"value": 2}
    assert ok(vm, "host_access", hva=HVA) == {"value": 0}
    assert ok(vm, "guest_access", gpa=4096)["level"] == "4K"


def test_madvise_hugetlb_alignment() -> None:
    vm = vm_of("default", shared_page_size="1G", host_memory="4G")
    ok(
        vm,
        "set_user_memory_region",
        slot=0,
        guest_phys_addr=0,
        memory_size=2 * G,
        userspace_addr=HVA,
    )
    assert do(vm, "madvise", hva=HVA + 2 * M, len=G, advice="DONTNEED").errno == "EINVAL"
    ok(vm, "host_access", hva=HVA, write=True, value=3)
    ok(vm, "madvise", hva=HVA, len=G - 4096, advice="DONTNEED")  # rounds down to nothing
    assert ok(vm, "host_access", hva=HVA) == {"value": 3}
    ok(vm, "madvise", hva=HVA, len=G, advice="DONTNEED")
    assert ok(vm, "host_access", hva=HVA) == {"value": 0}


def test_memory_failure_on_gmem_folio_and_shared_page() -> None:
    vm = vm_of("sw_protected")
    gmem_slot(vm, 0, G)
    pfn = ok(vm, "guest_access", gpa=0x3000)["pfn"]
    ok(vm, "memory_failure", pfn=pfn)
    info = inspect(vm, 0x3000)
    assert info["folio"]["hwpoison"] is True and info["private_mapping"] is None
    r = do(vm, "guest_access", gpa=0x3000)
    assert r.errno == "EHWPOISON" and r.ret["exit"]["flags"] == 8
    assert do(vm, "memory_failure", pfn=pfn).errno == "EHWPOISON"
    assert do(vm, "memory_failure", pfn=1 << 40).errno == "ENXIO"
    ok(vm, "set_memory_attributes", address=0x5000, size=4096, attributes=0)
    spfn = ok(vm, "guest_access", gpa=0x5000)["pfn"]
    ok(vm, "memory_failure", pfn=spfn)
    assert inspect(vm, 0x5000)["shared_mapping"] is None
    assert do(vm, "host_access", hva=HVA + 0x5000).errno == "EHWPOISON"
    assert do(vm, "guest_access", gpa=0x5000).errno == "EHWPOISON"


def test_close_unbinds_zaps_and_frees() -> None:
    vm = vm_of("sw_protected")
    fd = gmem_slot(vm, 0, G)
    ok(vm, "guest_access", gpa=0, write=True, value=1)
    free0 = stats(vm)["host_free_bytes"]
    ok(vm, "close", fd=fd)
    info = inspect(vm, 0)
    assert info["gmem"] is None and info["folio"] is None and info["private_mapping"] is None
    assert stats(vm)["host_free_bytes"] == free0 + 4096
    r = do(vm, "guest_access", gpa=0)
    assert r.errno == "EFAULT" and r.ret["exit"]["flags"] == 8
    assert do(vm, "close", fd=fd).errno == "EBADF"
    # The fd number is reused, lowest first.
    assert ok(vm, "create_guest_memfd", size=4096) == {"fd": fd}
    # The memslot survives and can be deleted.
    ok(vm, "set_user_memory_region2", slot=0, guest_phys_addr=0, memory_size=0)
