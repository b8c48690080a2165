"""The columnar API (model/columns.py): every component read with `to_arrays`, filled
back with `from_arrays` into an empty one and read again gives the same columns, on
states built by random op sequences; bad columns are refused with the column and row."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from imemviz.model import VM, VMConfig
from imemviz.model.columns import (
    NO_FD,
    FolioColumns,
    HostColumns,
    LeafColumns,
    MemslotColumns,
    RunColumns,
)
from imemviz.model.extents import ExtentMap
from imemviz.model.guest_memfd import GUEST_MEMFD, GmemInode
from imemviz.model.host_memory import HostMemory
from imemviz.model.host_ops import host_lookup
from imemviz.model.memslots import Memslots
from imemviz.model.mmu import Leaf, LeafTable
from imemviz.model.ops import parse_op
from imemviz.model.sparse import (
    pack_folio,
    pack_folios,
    pack_leaf,
    pack_leaves,
    pack_pfnmap,
    pack_pfnmaps,
    unpack_folio,
    unpack_folios,
    unpack_leaf,
    unpack_leaves,
    unpack_pfnmap,
    unpack_pfnmaps,
)
from imemviz.model.vm import GFN_LIMIT

from .strategies import prologue, scenarios

I64 = np.int64


def build(cfg, ops) -> VM:
    vm = VM(VMConfig.from_dict(cfg))
    for d in ops:
        vm.apply(parse_op(d))
    return vm


def round_trip(vm: VM) -> None:
    """to_arrays -> from_arrays (into an empty component) -> to_arrays, for each one."""
    for table in (vm.private, vm.shared):
        cols = table.to_arrays()
        assert all(c.dtype == I64 for c in cols.as_dict().values())
        new = LeafTable(table.root)
        new.from_arrays(cols)
        assert new.to_arrays() == cols
        assert new.all_leaves() == table.all_leaves()
        # A window gives the leaves meeting it, as touching() lists them.
        a, b = 0x100, 0x5000
        win = table.to_arrays(a, b)
        assert [
            tuple(r) for r in zip(*(c.tolist() for c in win.as_dict().values()), strict=True)
        ] == [tuple(lf) for lf in table.touching(a, b)]
    for f in vm.files.values():
        inode = f.inode
        cols = inode.to_arrays()
        limit = None if f.kind == GUEST_MEMFD else 1 << 52
        new_inode = GmemInode(inode.ino, inode.size, inode.flags)
        new_inode.from_arrays(cols, vm.host.npages, limit)
        assert new_inode.to_arrays() == cols
        assert new_inode.segments() == inode.segments()
        win = inode.to_arrays(0x10, 0x3000)
        segs = sorted(inode.segments_in(0x10, 0x3000), key=lambda g: (g.index, g.order))
        assert win.index.tolist() == [g.index for g in segs]
    host = vm.host.to_arrays()
    new_host = HostMemory(vm.config.host_memory, vm.config.seed)
    new_host.from_arrays(host)
    assert new_host.to_arrays() == host
    assert new_host.alloc.free_runs() == vm.host.alloc.free_runs()
    attrs_ = vm.attributes.to_arrays()
    new_attrs: ExtentMap[int] = ExtentMap(0, GFN_LIMIT)
    new_attrs.from_arrays(attrs_)
    assert new_attrs.to_arrays() == attrs_
    assert list(new_attrs.items()) == list(vm.attributes.items())
    slots = vm.memslots.to_arrays()
    new_slots = Memslots()
    new_slots.from_arrays(slots, vm.files)
    assert new_slots.to_arrays() == slots
    assert [s.gmem_file for s in new_slots.all()] == [s.gmem_file for s in vm.memslots.all()]


@given(scenarios(max_ops=40))
@settings(max_examples=60)
def test_round_trip_on_random_states(case) -> None:
    round_trip(build(*case))


def test_round_trip_of_runs_contents_and_poison() -> None:
    """Runs of folios from a fallocate, huge leaves, contents, a poisoned page."""
    cfg = {"type": "sw_protected", "host_memory": "1G", "gmem_max_order": 9, "seed": 3}
    ops = [
        *prologue("sw_protected"),
        {"op": "fallocate", "fd": 3, "mode": 1, "offset": 0, "len": 8 << 20},
        {"op": "guest_access", "gpa": 0x201000, "write": True, "value": 9},
        {"op": "guest_access", "gpa": 0x1000, "write": True, "value": 5},
        {"op": "memory_failure", "pfn": 7},
    ]
    vm = build(cfg, ops)
    assert len(vm.private.to_arrays()) and len(vm.host.to_arrays().content)
    assert (vm.files[3].inode.to_arrays().count > 1).any()
    round_trip(vm)


def test_leaves_of_every_level_in_one_table() -> None:
    t = LeafTable("mirror")
    t.from_arrays(
        LeafColumns(
            np.array([0, 0x200, 0x201, 0x40000], I64),
            np.array([2, 1, 1, 3], I64),
            np.array([0x400, 0x10, 0x11, 0x80000], I64),
            np.array([0, 1, 3, 2], I64),
        )
    )
    assert t.lookup(0x1FF) == (0, 2, 0x400, 0)
    assert t.lookup(0x201) == (0x201, 1, 0x11, 3)
    assert t.lookup(0x40005) == (0x40000, 3, 0x80000, 2)
    assert t.to_arrays().level.tolist() == [2, 1, 1, 3]
    assert t.to_arrays(0x200, 0x201).gfn.tolist() == [0x200]
    assert t.to_arrays(0x1FF, 0x201).gfn.tolist() == [0, 0x200]


def test_pack_and_unpack_agree() -> None:
    for pfn, state in ((0, 0), (0x12345, 3), ((1 << 40) - 1, 1)):
        v = pack_leaf(pfn, state)
        assert unpack_leaf(v) == (pfn, state)
        p, s = unpack_leaves(np.array([v], I64))
        assert (p[0], s[0]) == (pfn, state)
        assert pack_leaves(np.array([pfn], I64), np.array([state], I64))[0] == v
    for pfn, hw in ((0, False), (0x200, True)):
        v = pack_folio(pfn, hw)
        assert unpack_folio(v) == (pfn, hw)
        p, h = unpack_folios(np.array([v], I64))
        assert (p[0], bool(h[0])) == (pfn, hw)
        assert pack_folios(np.array([pfn], I64), np.array([hw]))[0] == v
    for pfn, ref in ((0, False), (0x1FFFF, True)):
        v = pack_pfnmap(pfn, ref)
        assert unpack_pfnmap(v) == (pfn, ref)
        p, r = unpack_pfnmaps(np.array([v], I64))
        assert (p[0], bool(r[0])) == (pfn, ref)
        assert pack_pfnmaps(np.array([pfn], I64), np.array([ref], I64))[0] == v
    # host_mmap_pfnmap stores what pack_pfnmap packs; the host's GUP reads it back.
    vm = VM(VMConfig("sw_protected"))
    for line in (
        {
            "op": "set_user_memory_region2",
            "slot": 0,
            "guest_phys_addr": 0,
            "memory_size": "2M",
            "userspace_addr": "0x7f0000000000",
        },
        {"op": "host_mmap_pfnmap", "hva": "0x7f0000001000", "size": "4K", "refcounted": True},
    ):
        assert vm.apply(parse_op(line)).ok
    ((hvpn, v),) = vm.pfnmap.items()
    pfn, ref = unpack_pfnmap(v)
    assert (hvpn, ref) == (0x7F0000001, True)
    assert host_lookup(vm, hvpn) == (1, hvpn, pfn)
    # The table stores what pack_leaf packs (the fault path writes it inline).
    t = LeafTable("direct")
    t.install(Leaf(5, 1, 77, 2))
    assert t.leaves[1].get(5) == pack_leaf(77, 2)
    assert t.lookup(5) == Leaf(5, 1, *unpack_leaf(pack_leaf(77, 2)))


def leaves(**over) -> dict[str, np.ndarray]:
    d = {
        "gfn": np.array([0, 0x200, 0x400], I64),
        "level": np.array([1, 2, 1], I64),
        "pfn": np.array([5, 0x600, 7], I64),
        "state": np.array([0, 1, 0], I64),
    }
    d.update(over)
    return d


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"state": np.array([0, 1], I64)}, "leaves: column 'state' has 2 rows, column 'gfn' 3"),
        ({"level": np.array([1.0, 2.0, 1.0])}, "column 'level' has dtype float64"),
        ({"pfn": np.array([1, 2, 3], np.uint64)}, "column 'pfn' has dtype uint64"),
        ({"gfn": [0, 1, 2]}, "column 'gfn' is a list, not a numpy array"),
        ({"gfn": np.zeros((3, 1), I64)}, "column 'gfn' has 2 dimensions"),
        ({"extra": np.zeros(3, I64)}, "leaves: unknown column 'extra'"),
        ({"level": np.array([1, 4, 1], I64)}, "column 'level' row 1 (4): must be one of 1, 2, 3"),
        ({"state": np.array([0, 0, 4], I64)}, "column 'state' row 2 (4): must be in 0..3"),
        (
            {"gfn": np.array([0, 0x200, 0x100], I64)},
            "column 'gfn' row 2 (256, 1): comes before row 1",
        ),
        ({"gfn": np.array([0, 0x200, 0x200], I64), "level": np.array([1, 2, 2], I64)}, "repeats"),
        ({"gfn": np.array([0, 0x201, 0x400], I64)}, "row 1 (513): must be a multiple of"),
        ({"gfn": np.array([0, 0x200, 1 << 52], I64)}, "row 2 (4503599627370496): must be a gfn"),
        ({"pfn": np.array([-1, 0x600, 7], I64)}, "column 'pfn' row 0 (-1): must be >= 0"),
    ],
)
def test_leaves_refused(over, message) -> None:
    t = LeafTable("direct")
    with pytest.raises(ValueError, match=None) as e:
        t.from_arrays(leaves(**over))
    assert message in str(e.value)
    assert not any(len(i) for i in t.leaves.values())  # nothing stored


def test_leaves_refused_beyond_the_pfn_limit_and_into_a_full_table() -> None:
    t = LeafTable("direct")
    with pytest.raises(ValueError, match=r"column 'pfn' row 1 \(1536\): its pages must lie"):
        t.from_arrays(leaves(), pfn_limit=0x700)
    t.from_arrays(leaves(), pfn_limit=0x800)
    with pytest.raises(ValueError, match="leaves: the direct table is not empty"):
        t.from_arrays(leaves())
    with pytest.raises(ValueError, match="column 'state' is missing"):
        LeafTable("direct").from_arrays({k: v for k, v in leaves().items() if k != "state"})


def folios(**over) -> dict[str, np.ndarray]:
    d = {
        "index": np.array([0, 0x200, 0x400], I64),
        "order": np.array([0, 9, 0], I64),
        "pfn": np.array([5, 0x600, 7], I64),
        "hwpoison": np.array([False, False, True]),
        "count": np.array([1, 1, 3], I64),
    }
    d.update(over)
    return d


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"order": np.array([0, 8, 0], I64)}, "column 'order' row 1 (8): must be one of 0, 9, 18"),
        ({"count": np.array([1, 0, 1], I64)}, "column 'count' row 1 (0): must be >= 1"),
        ({"index": np.array([0, 0x201, 0x400], I64)}, "'index' row 1 (513): must be a multiple"),
        ({"pfn": np.array([5, 0x601, 7], I64)}, "'pfn' row 1 (1537): must be a multiple"),
        ({"hwpoison": np.array([0, 0, 1], I64)}, "column 'hwpoison' has dtype int64, not bool"),
        ({"count": np.array([1, 1, 0x1000], I64)}, "'count' row 2 (4096): its folios must end"),
        ({"index": np.array([0, 0x400, 0x400], I64)}, "'index' row 2 (1024, 0): comes before"),
    ],
)
def test_folios_refused(over, message) -> None:
    inode = GmemInode(1, 16 << 20, 0)
    with pytest.raises(ValueError) as e:
        inode.from_arrays(folios(**over), pfn_limit=1 << 20)
    assert message in str(e.value)
    assert inode.to_arrays() == FolioColumns.empty()


def test_folios_filled() -> None:
    inode = GmemInode(1, 16 << 20, 0)
    inode.from_arrays(folios(), pfn_limit=1 << 20)
    assert inode.folio_at(0x401) == (0x401, 0, 8, True)  # inside the run of 3
    assert inode.folio_at(0x3FF) == (0x200, 9, 0x600, False)
    with pytest.raises(ValueError, match="folios: inode 1 is not empty"):
        inode.from_arrays(folios())
    with pytest.raises(ValueError, match=r"'count' row 1 .*below pfn 0x8"):
        GmemInode(2, 16 << 20, 0).from_arrays(folios(), pfn_limit=8)


def test_host_refused() -> None:
    host = HostMemory(1 << 30, 1)  # 0x40000 pages
    good = host.to_arrays()

    def bad(**tables) -> str:
        fresh = HostMemory(1 << 30, 1)
        with pytest.raises(ValueError) as e:
            fresh.from_arrays(
                HostColumns(tables.pop("npages", good.npages), **{**good_tables(), **tables})
            )
        return str(e.value)

    def good_tables():
        return {
            "free": good.free,
            "other": good.other,
            "poisoned": good.poisoned,
            "content": good.content,
        }

    from imemviz.model.columns import BlockColumns, FreeColumns, PageValues, PfnList

    a = lambda *v: np.array(v, I64)  # noqa: E731
    assert "host: 7 pages, this host has 262144" in bad(npages=7)
    assert "host free: column 'order' row 0 (19): must be in 0..18" in bad(
        free=FreeColumns(a(0), a(19), a(1))
    )
    assert "host free: column 'pfn' row 0 (1): must be a multiple of the block's pages" in bad(
        free=FreeColumns(a(1), a(1), a(1))
    )
    assert "host free: column 'count' row 0 (2): runs only at order 18" in bad(
        free=FreeColumns(a(0), a(1), a(2))
    )
    assert "host free: column 'pfn' row 1 (1): overlaps the block before" in bad(
        free=FreeColumns(a(0, 1), a(1, 0), a(1, 1))
    )
    assert "host other: column 'pfn' row 0 (262144): must be a pfn below 0x40000" in bad(
        other=BlockColumns(a(0x40000), a(0))
    )
    assert "host poisoned: column 'pfn' row 1 (3): comes before row 0" in bad(
        poisoned=PfnList(a(4, 3))
    )
    assert "host content: column 'value' row 0 (256): must be a content byte" in bad(
        content=PageValues(a(9), a(256))
    )


def test_runs_and_memslots_refused() -> None:
    a = lambda *v: np.array(v, I64)  # noqa: E731
    m: ExtentMap[int] = ExtentMap(0, 100)
    cases = [
        (RunColumns(a(1), a(100), a(0)), "runs: column 'start' row 0 (1): must be 0"),
        (RunColumns(a(0, 60), a(50, 100), a(0, 8)), "'start' row 1 (60): must equal the end"),
        (RunColumns(a(0, 50), a(50, 90), a(0, 8)), "'end' row 1 (90): must be 0x64"),
        (RunColumns(a(0, 50), a(50, 100), a(8, 8)), "'value' row 1 (8): equals the value before"),
        (RunColumns(a(0, 50), a(50, 100), a(0, 4)), "'value' row 1 (4): must be one of 0, 8"),
    ]
    for cols, message in cases:
        with pytest.raises(ValueError) as e:
            m.from_arrays(cols, values=(0, 8))
        assert message in str(e.value)
    m.from_arrays(RunColumns(a(0, 50), a(50, 100), a(0, 8)), values=(0, 8))
    assert m.get(60) == 8 and m.get(49) == 0
    with pytest.raises(ValueError, match="not empty"):
        m.from_arrays(RunColumns(a(0), a(100), a(0)))

    def slots(**over) -> MemslotColumns:
        d = dict(
            id=a(0, 1),
            flags=a(0, 4),
            base_gfn=a(0, 0x100),
            npages=a(0x100, 0x100),
            userspace_addr=a(0x7F0000000000, 0x7F0000100000),
            gmem_file=a(NO_FD, 3),
            gmem_fd=a(NO_FD, 3),
            gmem_pgoff=a(0, 0),
            gmem_only=np.array([False, False]),
        )
        d.update(over)
        return MemslotColumns(**d)

    for over, message in [
        ({"id": a(1, 0)}, "memslots: column 'id' row 1 (0): comes before"),
        ({"id": a(0, 2 << 16)}, "column 'id' row 1 (131072): bad slot id"),
        ({"npages": a(1, -1)}, "column 'npages' row 1 (-1): must be >= 0"),
        ({"gmem_file": a(NO_FD, 4)}, "column 'gmem_file' row 1 (4): names no file"),
    ]:
        with pytest.raises(ValueError) as e:
            Memslots().from_arrays(slots(**over), {3: object()})  # type: ignore[dict-item]
        assert message in str(e.value)


def test_from_arrays_without_checks_takes_the_table_as_it_is() -> None:
    """check=False (the state file reader, which checked every row with its own JSON-path
    messages) stores a table of the right class as given and refuses anything else."""
    t = LeafTable("direct")
    cols = LeafColumns(**leaves())
    t.from_arrays(cols, check=False)
    assert t.to_arrays() == cols
    with pytest.raises(TypeError, match="takes a LeafColumns"):
        LeafTable("direct").from_arrays(leaves(), check=False)
    with pytest.raises(ValueError, match="not empty"):
        t.from_arrays(cols, check=False)
    inode = GmemInode(1, 16 << 20, 0)
    inode.from_arrays(FolioColumns(**folios()), check=False)
    assert inode.to_arrays() == FolioColumns(**folios())
    with pytest.raises(TypeError, match="takes a FolioColumns"):
        GmemInode(1, 16 << 20, 0).from_arrays(folios(), check=False)
    host = HostMemory(1 << 30, 1)
    before = host.to_arrays()
    fresh = HostMemory(1 << 30, 2)
    fresh.from_arrays(before, check=False)
    assert fresh.to_arrays() == before
