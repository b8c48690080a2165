"""Protocol steps: explanations for every event, what events touch, grouping into phases."""

from __future__ import annotations

from imemviz.io import plans
from imemviz.io.session import Session
from imemviz.model import ops as O
from imemviz.model.events import EVENT_FIELDS
from imemviz.model.protocols import (
    EXPLAIN,
    event_span,
    file_to_gfns,
    group_of,
    protocol_name,
    steps,
)

MB = 1 << 20


def _td(**cfg) -> Session:
    s = Session.new({"type": "tdx", "host_memory": "1G", **cfg})
    s.apply_group(plans.qemu_layout("tdx", 64 * MB), "layout")
    return s


def test_every_event_is_explained():
    assert set(EXPLAIN) == set(EVENT_FIELDS)
    for name, (text, _fn) in EXPLAIN.items():
        assert text, name
    assert EXPLAIN["TDH.MEM.PAGE.AUG"][0].startswith("tdx_sept_set_private_spte() adds the page")
    assert group_of("TDH.MEM.TRACK") == "TDX SEAMCALLs"
    assert group_of("kvm_gmem_bind") == "guest_memfd"
    assert group_of("mm_page_alloc") == "mm"
    assert group_of("kvm_page_fault") == "kvm tracepoints"


def test_event_span_fields():
    assert event_span((0, "TDH.MEM.PAGE.AUG", 0x200, 2, 0x4000)).gfns == ((0x200, 0x400),)
    assert event_span((0, "TDH.MEM.PAGE.AUG", 0x200, 2, 0x4000)).pfns == ((0x4000, 0x4200),)
    sp = event_span((0, "kvm_gmem_folio_free", 3, 0x10, 9, 0x8000))
    assert sp.files == ((3, 0x10, 0x210),) and sp.pfns == ((0x8000, 0x8200),)
    assert event_span((0, "kvm_page_fault", 0, 0x810000, 2)).gfns == ((0x810, 0x811),)
    assert event_span((0, "kvm_mmu_invalidate_range_add", 5, 9)).gfns == ((5, 9),)
    assert event_span((0, "TDH.MEM.SEPT.ADD", 0, 2, 0x77)).gfns == ((0, 512),)
    assert not event_span((0, "note", "hello"))


def test_tdx_fault_steps():
    s = _td()
    r = s.vm.apply(O.GuestAccept(gpa=0x820000))  # no leaf: fault, AUG, then ACCEPT
    assert r.ok
    st = steps(s.vm.last_events)
    names = [x.name for x in st]
    assert "TDH.MEM.PAGE.AUG" in names and names[0] == "kvm_page_fault"
    assert protocol_name(s.vm.last_events) == "TDX fault"
    aug = st[names.index("TDH.MEM.PAGE.AUG")]
    assert aug.span.gfns == ((0x820, 0x821),)
    assert "TDG.MEM.PAGE.ACCEPT" in aug.explanation


def test_big_zap_is_a_few_phases():
    s = _td()
    vm = s.vm
    for g in range(0x800, 0x800 + 300):
        vm.apply(O.GuestAccept(gpa=g << 12))
    vm.apply(O.SetMemoryAttributes(address=0x800000, size=300 * 4096, attributes=0))
    events = vm.last_events
    assert protocol_name(events) == "attribute conversion"
    st = steps(events)
    assert len(st) < 20, [x.title for x in st]
    removes = [x for x in st if x.name == "TDH.MEM.PAGE.REMOVE"]
    assert sum(x.count for x in removes) == 300
    assert any(x.count >= 299 for x in removes)
    big = max(removes, key=lambda x: x.count)
    assert big.span.gfns[0][0] >= 0x800 and big.span.gfns[-1][1] <= 0x800 + 300
    # every event is in exactly one step, in order of its first event
    pos = sorted(p for x in st for p in x.positions)
    assert pos == list(range(len(events)))
    names = [x.name for x in st]
    order = [
        "kvm_vm_set_mem_attributes",
        "kvm_mmu_invalidate_begin",
        "TDH.MEM.RANGE.BLOCK",
        "kvm_mmu_invalidate_end",
    ]
    idx = [names.index(n) for n in order]
    assert idx == sorted(idx)


def test_hole_punch_steps():
    s = _td()
    vm = s.vm
    vm.apply(O.GuestAccept(gpa=0x900000))
    vm.apply(O.Fallocate(fd=3, mode=3, offset=0x900000, len=4096))
    st = steps(vm.last_events)
    names = [x.name for x in st]
    assert protocol_name(vm.last_events) == "guest_memfd hole punch / release"
    for n in ("kvm_gmem_invalidate_begin", "TDH.MEM.PAGE.REMOVE", "kvm_gmem_folio_free"):
        assert n in names
    assert names.index("kvm_gmem_invalidate_begin") < names.index("kvm_gmem_folio_free")


class _Slot:
    def __init__(self, base, npages, fd, pgoff):
        self.base_gfn, self.npages, self.gmem_fd, self.gmem_pgoff = base, npages, fd, pgoff


def test_file_to_gfns():
    slots = [_Slot(0, 100, 3, 0), _Slot(1000, 100, 3, 100), _Slot(5000, 10, None, 0)]
    assert file_to_gfns(slots, 3, 90, 110) == [(90, 100), (1000, 1010)]
    assert file_to_gfns(slots, 4, 0, 10) == []
