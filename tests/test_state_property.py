"""Property: a state document holds everything needed to continue exactly.

For random op sequences on every VM type (biased towards addresses that
matter: a few memslots, two guest_memfd files, conversions, faults, held
faults and resumes, punches, madvise, memory failures, TDX accepts):
``vm_from_document(state_document(vm))`` answers inspect and stats like the
original, gives the same results for the same next ops, and saves to the
same bytes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imemviz.io.state import encode, state_document, vm_from_document
from imemviz.model import ops as O
from imemviz.model.config import VMConfig
from imemviz.model.query import inspect_gfn, stats_dict
from imemviz.model.vm import VM

K, M, G = 1 << 10, 1 << 20, 1 << 30
HVA = 0x7F0000000000
SLOT1_GPA = G
PRIVATE = 8
TDX_SHARED = 1 << 51

CONFIGS = {
    "default": [
        {"type": "default", "host_memory": "64M", "seed": 0},
        {"type": "default", "host_memory": "64M", "shared_page_size": "2M", "seed": 5},
    ],
    "sw_protected": [
        {"type": "sw_protected", "host_memory": "64M", "seed": 0},
        {"type": "sw_protected", "host_memory": "64M", "seed": 4, "kernel": "6.12"},
        {"type": "sw_protected", "host_memory": "64M", "seed": 6, "kernel": "6.8"},
        {
            "type": "sw_protected",
            "host_memory": "64M",
            "gmem_max_order": 9,
            "shared_page_size": "2M",
            "seed": 2,
        },
    ],
    # The 2022 design: an inaccessible memfd behind KVM_MEM_PRIVATE slots.
    "upm-v8": [
        {"type": "default", "host_memory": "64M", "seed": 0, "kernel": "upm-v8"},
        {
            "type": "default",
            "host_memory": "64M",
            "seed": 3,
            "kernel": "upm-v8",
            "shared_page_size": "2M",
        },
    ],
    # Even seeds: the launch is finished by the setup; odd: the ops may do it.
    "snp": [
        {"type": "snp", "host_memory": "64M", "seed": 0},
        {"type": "snp", "host_memory": "64M", "gmem_max_order": 9, "seed": 2},
        {"type": "snp", "host_memory": "64M", "gmem_max_order": 9, "seed": 3},
    ],
    # Even seeds: the TD is finalized by the setup; odd: the ops may do it.
    "tdx": [
        {"type": "tdx", "host_memory": "64M", "seed": 0},
        {
            "type": "tdx",
            "host_memory": "64M",
            "gmem_max_order": 9,
            "tdx_private_max_level": "2M",
            "seed": 8,
        },
        {
            "type": "tdx",
            "host_memory": "64M",
            "gmem_max_order": 9,
            "tdx_private_max_level": "2M",
            "seed": 9,
        },
    ],
}


def setup_ops(vm_type: str, finalize: bool) -> list[O.Op]:
    """Two files, a 4M slot bound to fd 3 at gpa 0 and a 2M slot bound to fd 4 at 1G; the
    first 2M of each slot private (sw_protected, TDX); a TD maybe finalized.  upm-v8: two
    inaccessible memfds behind KVM_MEM_PRIVATE slots (memory starts private)."""
    if vm_type == "upm-v8":
        return [
            O.MemfdCreate(4 * M, 8),
            O.MemfdCreate(2 * M, 8),
            O.SetUserMemoryRegion(
                0, flags=4, guest_phys_addr=0, memory_size=4 * M, userspace_addr=HVA, private_fd=3
            ),
            O.SetUserMemoryRegion(
                1,
                flags=4,
                guest_phys_addr=SLOT1_GPA,
                memory_size=2 * M,
                userspace_addr=HVA + G,
                private_fd=4,
            ),
            O.MemoryEncryptUnregRegion(2 * M, 2 * M),
        ]
    flags = 3 if vm_type == "default" else 0  # MMAP|INIT_SHARED only on VMs without private mem
    out = [
        O.CreateGuestMemfd(4 * M, flags),
        O.CreateGuestMemfd(2 * M, flags),
        O.SetUserMemoryRegion2(
            0, flags=4, guest_phys_addr=0, memory_size=4 * M, userspace_addr=HVA, guest_memfd=3
        ),
        O.SetUserMemoryRegion2(
            1,
            flags=4,
            guest_phys_addr=SLOT1_GPA,
            memory_size=2 * M,
            userspace_addr=HVA + G,
            guest_memfd=4,
        ),
    ]
    if vm_type != "default":
        out += [
            O.SetMemoryAttributes(0, 2 * M, PRIVATE),
            O.SetMemoryAttributes(SLOT1_GPA, M, PRIVATE),
        ]
    if vm_type == "tdx" and finalize:
        out += [O.TdxInitMemRegion(0, 2, value=0x5A), O.TdxFinalizeVm()]
    if vm_type == "snp" and finalize:
        out += [O.SnpLaunchUpdate(0, 8 * K, value=0x5A), O.SnpLaunchUpdate(8 * K, 4 * K, "CPUID")]
        out += [O.SnpLaunchFinish()]
    return out


# Pages where things happen: the edges of 2M pages in both slots, and an MMIO hole.
PAGES = [0, 1, 2, 511, 512, 513, 1023, 1024, 1535, 4 * 256 - 1]
SLOT1_PAGES = [0, 1, 255, 256, 511]


def gpas() -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from(PAGES).map(lambda p: p << 12),
        st.sampled_from(PAGES).map(lambda p: p << 12),
        st.sampled_from(SLOT1_PAGES).map(lambda p: SLOT1_GPA + (p << 12)),
        st.integers(0, 1023).map(lambda p: p << 12),
        st.just(8 * M),  # no memslot
    )


def sizes() -> st.SearchStrategy[int]:
    return st.sampled_from([4 * K, 8 * K, 2 * M, 4 * M, 12 * K])


def ops(vm_type: str) -> st.SearchStrategy[O.Op]:
    tdx = vm_type == "tdx"
    upm = vm_type == "upm-v8"
    gpa = gpas()
    if tdx:
        gpa = st.one_of(gpa, gpas().map(lambda g: g | TDX_SHARED))
    byte = st.integers(0, 255)
    vcpu = st.integers(0, 2)
    access = st.builds(
        lambda g, v, w, val, priv, hold: O.GuestAccess(g, v, w, val if w else None, priv, hold),
        gpa,
        vcpu,
        st.booleans(),
        byte,
        st.sampled_from([None, None, None, None, True, False]),
        st.sampled_from([False] * 7 + [True]),
    )
    attrs = st.builds(
        lambda g, s, a: O.SetMemoryAttributes(g & ~0xFFF, s, a),
        gpas(),
        sizes(),
        st.sampled_from([0, PRIVATE]),
    )
    falloc = st.builds(
        lambda fd, punch, off, n: O.Fallocate(fd, 3 if punch else 1, off, n),
        st.sampled_from([3, 4, 5]),
        st.booleans(),
        st.integers(0, 1023).map(lambda p: p << 12),
        sizes(),
    )
    hva = st.one_of(
        st.integers(0, 1023).map(lambda p: HVA + (p << 12)),
        st.integers(0, 511).map(lambda p: HVA + G + (p << 12)),
    )
    choices = [
        (access, 6),
        (st.builds(O.VcpuResume, vcpu), 2),
        (attrs, 3),
        (falloc, 2),
        (st.builds(lambda h, n: O.Madvise(h, n), hva, sizes()), 1),
        (
            st.builds(
                lambda h, w, v: O.HostAccess(h, w, v if w else None), hva, st.booleans(), byte
            ),
            1,
        ),
        (st.builds(O.MemoryFailure, st.integers(0, (64 * M >> 12) - 1)), 1),
        (st.builds(O.Close, st.sampled_from([1, 3, 4, 5])), 1),
        (st.builds(O.CreateGuestMemfd, st.sampled_from([2 * M, 4 * M])), 1),
        (
            st.builds(
                lambda fd: O.SetUserMemoryRegion2(
                    1,
                    flags=4,
                    guest_phys_addr=SLOT1_GPA,
                    memory_size=2 * M,
                    userspace_addr=HVA + G,
                    guest_memfd=fd,
                ),
                st.sampled_from([4, 5]),
            ),
            1,
        ),
        (st.just(O.SetUserMemoryRegion2(1, guest_phys_addr=SLOT1_GPA, memory_size=0)), 1),
        (st.just(O.Stats()), 1),
        (
            st.builds(lambda g, n, v: O.PreFaultMemory(g & ~0xFFF, n, v), gpas(), sizes(), vcpu),
            2,
        ),
        (st.builds(O.GuestMapGpaRange, gpas(), sizes(), st.booleans(), vcpu), 1),
        (st.builds(lambda h, n, r: O.HostMmapPfnmap(h, n, r), hva, sizes(), st.booleans()), 1),
        (st.builds(O.MemfdCreate, st.sampled_from([2 * M, 4096]), st.sampled_from([0, 8])), 1),
    ]
    if upm:
        choices += [
            (st.builds(O.MemoryEncryptRegRegion, gpas(), sizes()), 2),
            (st.builds(O.MemoryEncryptUnregRegion, gpas(), sizes()), 2),
            (
                st.builds(
                    lambda fd: O.SetUserMemoryRegion(
                        1,
                        flags=4,
                        guest_phys_addr=SLOT1_GPA,
                        memory_size=2 * M,
                        userspace_addr=HVA + G,
                        private_fd=fd,
                    ),
                    st.sampled_from([4, 5]),
                ),
                1,
            ),
            (st.just(O.SetUserMemoryRegion(1, guest_phys_addr=SLOT1_GPA, memory_size=0)), 1),
        ]
    if vm_type == "snp":
        choices += [
            (st.builds(O.GuestPvalidate, gpa, st.sampled_from([1, 1, 2]), st.booleans()), 5),
            (
                st.builds(
                    lambda g, n, t: O.SnpLaunchUpdate(g & ~0xFFF, n, t),
                    gpas(),
                    sizes(),
                    st.sampled_from(["NORMAL", "ZERO", "CPUID", "SECRETS", "UNMEASURED"]),
                ),
                2,
            ),
            (st.just(O.SnpLaunchFinish()), 2),
        ]
    if tdx:
        choices += [
            (st.builds(O.GuestAccept, gpa, st.sampled_from([1, 1, 2])), 5),
            (
                st.builds(
                    lambda g, n: O.TdxInitMemRegion(g & ~(TDX_SHARED | 0xFFF), n),
                    gpas(),
                    st.integers(1, 3),
                ),
                2,
            ),
            (st.just(O.TdxFinalizeVm()), 2),
        ]
    weighted = [s for s, w in choices for _ in range(w)]
    return st.one_of(*weighted)


def new_vm(cfg: dict[str, Any]) -> VM:
    vm = VM(VMConfig.from_dict(cfg))
    kind = "upm-v8" if cfg.get("kernel") == "upm-v8" else cfg["type"]
    for op in setup_ops(kind, cfg["seed"] % 2 == 0):
        assert vm.apply(op).ok, op
    return vm


def sample_gfns(vm: VM) -> list[int]:
    gfns = {p for p in PAGES} | {(SLOT1_GPA >> 12) + p for p in SLOT1_PAGES} | {2048}
    for table in (vm.private, vm.shared):
        for lf in table.all_leaves()[:50]:
            gfns.update((lf.gfn, lf.gfn + lf.npages - 1))
    return sorted(gfns)


def assert_same(a: VM, b: VM) -> None:
    assert stats_dict(a) == stats_dict(b)
    for g in sample_gfns(a):
        assert inspect_gfn(a, g) == inspect_gfn(b, g), hex(g)


def _events(vm: VM) -> None:
    """What the example reached (see --hypothesis-show-statistics)."""
    from hypothesis import event

    event("private leaves" if len(vm.private.all_leaves()) else "no private leaves")
    event("shared leaves" if len(vm.shared.all_leaves()) else "no shared leaves")
    for what, hit in (
        ("held fault", vm.in_flight),
        ("dead", vm.dead),
        ("S-EPT pages", vm.private.tables),
        ("poisoned", vm.host.poisoned),
        ("closed gmem", len(vm.files) < 2),
        ("TD runnable", vm.td_state == "RUNNABLE"),
        ("SNP launched", vm.snp is not None and vm.snp.launched),
        ("RMP 2M entries", vm.snp is not None and vm.snp.rmp.count_assigned()["2M"]),
        ("host pages", any(len(i) for i in vm.hva_pages.values())),
    ):
        if hit:
            event(what)


def round_trip(vm: VM) -> VM:
    doc = state_document(vm)
    # Through JSON text, as a file would be.
    copy = vm_from_document(json.loads(encode(doc)))
    assert state_document(copy) == doc
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("vm_type", sorted(CONFIGS))
def test_state_continues_exactly(vm_type: str, slow_scale: int) -> None:
    @settings(max_examples=100 * slow_scale)
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        cfg = data.draw(st.sampled_from(CONFIGS[vm_type]), label="config")
        vm = new_vm(cfg)
        for op in data.draw(st.lists(ops(vm_type), min_size=5, max_size=40), label="ops"):
            vm.apply(op)
        _events(vm)
        copy = round_trip(vm)
        assert_same(vm, copy)
        assert encode(state_document(copy), "zstd") == encode(state_document(vm), "zstd")
        nxt = data.draw(st.lists(ops(vm_type), min_size=10, max_size=10), label="next ops")
        for op in nxt:
            assert vm.apply(op) == copy.apply(op), op
        assert state_document(copy) == state_document(vm)
        assert_same(vm, copy)

    prop()


# ------------------------------------------------------------------ fuzzing

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 70), 1 << 70),
    st.text(max_size=8),
    st.sampled_from(["0x0", "0x1000", "4K", "2M", "MAPPED", "-0x1", "0xffffffffff"]),
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:6]):
            out += _paths(v, (*prefix, i))
    return out


def _base_docs() -> dict[str, Any]:
    from statecases import CASES, case_vm

    return {name: json.loads(encode(state_document(case_vm(name)))) for name in CASES}


BASE_DOCS = _base_docs()


@pytest.mark.slow
def test_mutated_documents_fail_cleanly(slow_scale: int) -> None:
    """Any edit of a valid document either loads or raises StateError, never anything else."""
    import copy

    from imemviz.io.state import StateError
    from imemviz.model.invariants import check_invariants

    @settings(max_examples=300 * slow_scale)
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        doc = copy.deepcopy(BASE_DOCS[data.draw(st.sampled_from(sorted(BASE_DOCS)))])
        for _ in range(data.draw(st.integers(1, 3))):
            path = data.draw(st.sampled_from(_paths(doc)[1:]))
            parent = doc
            for key in path[:-1]:
                parent = parent[key]
            action = data.draw(st.sampled_from(["nudge", "nudge", "replace", "delete", "insert"]))
            old = parent[path[-1]]
            if action == "nudge" and type(old) in (int, str) and not isinstance(old, bool):
                # A plausible value: the document stays well-formed more often than not.
                n = data.draw(st.integers(0, 1 << 14))
                parent[path[-1]] = hex(n) if isinstance(old, str) and old[:2] == "0x" else n
            elif action in ("replace", "nudge"):
                parent[path[-1]] = data.draw(JSON_VALUE)
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, list):
                parent.insert(path[-1], data.draw(JSON_VALUE))
            else:
                parent[data.draw(st.text(max_size=6))] = data.draw(JSON_VALUE)
        try:
            vm = vm_from_document(doc)
        except StateError as e:
            assert "\n" not in str(e) and e.path.startswith("$")
            return
        assert state_document(vm) is not None
        check_invariants(vm)

    prop()


def test_snp_close_frees_folios_alike_after_a_round_trip() -> None:
    """512 order-0 folios allocated one by one (a pre-fault) are saved as one run and load
    back as one: closing the file must update the RMP with the same events either way
    (sev_gmem_invalidate over the same groups as the folio events).  Found by
    test_state_continues_exactly[snp]."""
    vm = new_vm({"type": "snp", "host_memory": "64M", "seed": 0})
    for op in (O.GuestAccess(0), O.PreFaultMemory(0, 2 * M, 0)):
        assert vm.apply(op).ok
    copy = round_trip(vm)
    for op in (O.GuestAccess(0), O.Close(3)):
        assert vm.apply(op) == copy.apply(op)
        assert list(vm.last_events) == list(copy.last_events)
    assert stats_dict(vm) == stats_dict(copy)
    assert state_document(vm) == state_document(copy)
