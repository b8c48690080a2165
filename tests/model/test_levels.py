"""The max-mapping-level rule: folio order, host page size, slot edges, hva alignment,
MIXED attributes, gfn/pfn congruence, the TDX cap, and huge leaves zapped whole."""

from __future__ import annotations

from .kit import HVA, G, M, do, gmem_slot, inspect, names, ok, stats, td, vm_of


def test_upstream_gmem_is_4k_even_on_aligned_slots() -> None:
    vm = vm_of("sw_protected")
    gmem_slot(vm, G, G)
    assert ok(vm, "guest_access", gpa=G)["level"] == "4K"
    assert inspect(vm, G)["folio"]["order"] == 0


def test_gmem_order_9_maps_2m_private_leaves() -> None:
    vm = vm_of("sw_protected", gmem_max_order=9)
    gmem_slot(vm, G, G)
    r = ok(vm, "guest_access", gpa=G + 5 * 4096, write=True, value=3)
    assert r["level"] == "2M"
    info = inspect(vm, G + 5 * 4096)
    assert info["folio"]["order"] == 9 and info["folio"]["index"] == 0
    assert info["private_mapping"]["pfn"] == info["folio"]["pfn"] + 5
    # The whole 2M is mapped by the one leaf: a neighbour needs no fault.
    ok(vm, "guest_access", gpa=G + 7 * 4096)
    assert "kvm_page_fault" not in [e[1] for e in vm.last_events]
    assert stats(vm)["mappings"]["private"] == {"4K": 0, "2M": 1, "1G": 0}


def test_gmem_order_18_maps_1g() -> None:
    vm = vm_of("sw_protected", gmem_max_order=18, host_memory="8G")
    gmem_slot(vm, G, G)
    assert ok(vm, "guest_access", gpa=G + 123 * 4096)["level"] == "1G"


def test_misaligned_hva_disallows_huge_pages() -> None:
    vm = vm_of("sw_protected", gmem_max_order=9)
    gmem_slot(vm, G, G, uaddr=HVA + 4096)
    assert ok(vm, "guest_access", gpa=G)["level"] == "4K"
    assert inspect(vm, G)["huge_allowed"]["2M"] is False


def test_slot_edge_huge_page_not_fully_inside_is_4k() -> None:
    vm = vm_of("sw_protected", gmem_max_order=9)
    # The slot starts 1M into a 2M page: its first 2M page is not fully inside.  The
    # file offset keeps index and gfn congruent so only the edge rule decides.
    gmem_slot(vm, G + M, 8 * M, uaddr=HVA + M, offset=M)
    assert ok(vm, "guest_access", gpa=G + M)["level"] == "4K"
    assert ok(vm, "guest_access", gpa=G + 2 * M)["level"] == "2M"


def test_gfn_pfn_incongruent_offset_stays_4k() -> None:
    vm = vm_of("sw_protected", gmem_max_order=9)
    # guest_memfd_offset 4K: index and gfn differ by one page modulo 2M.
    gmem_slot(vm, G, 4 * M, offset=4096, gmem_size=8 * M)
    r = ok(vm, "guest_access", gpa=G + 2 * M)
    assert r["level"] == "4K"


def test_mixed_attributes_split_and_zap_whole_huge_leaf() -> None:
    vm = vm_of("sw_protected", gmem_max_order=9)
    gmem_slot(vm, G, G)
    ok(vm, "guest_access", gpa=G)
    assert stats(vm)["mappings"]["private"]["2M"] == 1
    ok(vm, "set_memory_attributes", address=G + 4096, size=4096, attributes=0)
    # The 2M leaf touched by the 4K conversion is gone entirely.
    assert stats(vm)["mappings"]["private"] == {"4K": 0, "2M": 0, "1G": 0}
    info = inspect(vm, G)
    assert info["mixed"]["2M"] is True and info["private_mapping"] is None
    assert ok(vm, "guest_access", gpa=G)["level"] == "4K"
    assert ok(vm, "guest_access", gpa=G + 4096)["level"] == "4K"
    assert inspect(vm, G + 4096)["shared_mapping"]["level"] == "4K"
    # Converting back makes the 2M page uniform again; the next fault maps it 2M.
    ok(vm, "set_memory_attributes", address=G + 4096, size=4096, attributes=8)
    assert inspect(vm, G)["mixed"]["2M"] is False
    ok(vm, "guest_access", gpa=G + 8 * 4096)
    # In the direct root the 2M leaf replaces the 4K leaf under it.
    assert stats(vm)["mappings"]["private"] == {"4K": 0, "2M": 1, "1G": 0}


def test_shared_thp_and_hugetlb_backing() -> None:
    vm = vm_of("default", shared_page_size="2M")
    ok(vm, "set_user_memory_region", slot=0, guest_phys_addr=G, memory_size=G, userspace_addr=HVA)
    assert ok(vm, "guest_access", gpa=G + 4096)["level"] == "2M"
    vm = vm_of("default", shared_page_size="1G", host_memory="8G")
    ok(vm, "set_user_memory_region", slot=0, guest_phys_addr=G, memory_size=G, userspace_addr=HVA)
    assert ok(vm, "guest_access", gpa=G + 4096)["level"] == "1G"


def test_dirty_logging_forces_4k() -> None:
    vm = vm_of("default", shared_page_size="2M")
    ok(
        vm,
        "set_user_memory_region",
        slot=0,
        flags=1,
        guest_phys_addr=G,
        memory_size=G,
        userspace_addr=HVA,
    )
    assert ok(vm, "guest_access", gpa=G)["level"] == "4K"


def test_tdx_private_is_4k_upstream_even_with_huge_folios() -> None:
    vm = td(gmem_max_order=9)
    r = ok(vm, "guest_accept", gpa=0)
    assert r == {"level": "4K"}
    assert inspect(vm, 0)["folio"]["order"] == 9
    # Contract 3.4 (TDX guest_accept): the 2M accept takes the EPT violation, KVM AUGs
    # the 4K page it can map (tdx_sept_set_private_spte(): 4K only), and the re-executed
    # accept finds the size mismatch; the 4K leaf stays PENDING for the 4K fallback.
    r = do(vm, "guest_accept", gpa=2 * M, level="2M")
    assert not r.ok and r.errno == "EINVAL"
    assert r.ret["tdx_status"] == "TDX_PAGE_SIZE_MISMATCH"
    assert [n for n in names(vm) if n.startswith(("TDH.MEM.PAGE", "TDG"))] == [
        "TDH.MEM.PAGE.AUG",
        "TDG.MEM.PAGE.ACCEPT",
    ]
    assert inspect(vm, 2 * M)["private_mapping"]["state"] == "PENDING"
    assert inspect(vm, 2 * M + 4096)["private_mapping"] is None
    assert ok(vm, "guest_accept", gpa=2 * M) == {"level": "4K"}
    assert ok(vm, "guest_accept", gpa=2 * M + 4096) == {"level": "4K"}


def test_tdx_2m_series_accept_demote_and_partial_conversion() -> None:
    vm = td(gmem_max_order=9, tdx_private_max_level="2M")
    assert ok(vm, "guest_accept", gpa=2 * M, level="2M") == {"level": "2M"}
    assert inspect(vm, 2 * M + 4096)["private_mapping"] == {
        "level": "2M",
        "pfn": inspect(vm, 2 * M)["folio"]["pfn"] + 1,
        "state": "MAPPED",
    }
    # A 4K conversion inside the 2M S-EPT leaf demotes it; the rest stays accepted.
    ok(vm, "set_memory_attributes", address=2 * M + 4096, size=4096, attributes=0)
    seq = [n for n in (e[1] for e in vm.last_events) if n.startswith("TDH")]
    assert seq[:3] == ["TDH.MEM.RANGE.BLOCK", "TDH.MEM.TRACK", "TDH.MEM.PAGE.DEMOTE"]
    assert seq[3:] == [
        "TDH.MEM.RANGE.BLOCK",
        "TDH.MEM.TRACK",
        "TDH.MEM.PAGE.REMOVE",
        "TDH.PHYMEM.PAGE.WBINVD",
    ]
    pm = stats(vm)["mappings"]["private"]
    assert pm == {"4K": 511, "2M": 0, "1G": 0}
    assert inspect(vm, 2 * M)["private_mapping"]["state"] == "MAPPED"
    assert ok(vm, "guest_access", gpa=2 * M + 8192, write=True, value=1)["level"] == "4K"


def test_tdx_2m_accept_4k_inside_pending_2m_splits() -> None:
    vm = td(gmem_max_order=9, tdx_private_max_level="2M")
    # A plain access AUGs at 2M (PENDING) and kills the TD; use a held accept path instead:
    # accept at 4K first faults with the accept level as the cap, so the leaf is 4K.
    assert ok(vm, "guest_accept", gpa=4 * M) == {"level": "4K"}
    assert inspect(vm, 4 * M)["private_mapping"]["level"] == "4K"
    # No promotion in the mirror root: the S-EPT page below keeps the region at 4K.
    r = do(vm, "guest_accept", gpa=4 * M, level="2M")
    assert r.ret["tdx_status"] == "TDX_PAGE_SIZE_MISMATCH"
