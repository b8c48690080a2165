"""raster.py: step functions, the pixel reduction rule, the cache and changed ranges.

Every code is checked against a per-gfn classifier written from the engine's
public lookups (`inspect_gfn`, the leaf tables), over random op sequences.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imemviz import resources
from imemviz.io.replay import Timeline
from imemviz.model import VM, VMConfig
from imemviz.model import ops as O
from imemviz.model import raster as R
from imemviz.model.host_ops import host_lookup
from imemviz.model.mmu import BLOCKED, MAPPED, PENDING, PENDING_BLOCKED
from imemviz.model.raster import Code

MB = 1 << 20
GFNS = 20 * MB >> 12  # the test guest spans [0, 20M)


def brute_code(vm: VM, gfn: int) -> Code:
    """The code of one gfn, from the engine's point lookups."""
    slot = vm.memslots.lookup(gfn)
    if slot is None:
        return Code.HOLE
    private = vm.attr_private(gfn)
    pl, sl = vm.private.lookup(gfn), vm.shared.lookup(gfn)
    folio = None
    if slot.gmem_file is not None:
        folio = slot.gmem_file.inode.folio_at(slot.gmem_index(gfn))
    hvpn = slot.gfn_to_hva(gfn) >> 12
    host = host_lookup(vm, hvpn)
    if private:
        if folio is not None and folio.hwpoison:
            return Code.HWPOISON
        if pl is not None:
            return _priv_leaf(pl)
        if not vm.is_tdx and sl is not None:
            return _shared_leaf(sl)
        if slot.gmem_file is None:
            return Code.NO_BACKING
        return Code.PRIVATE_ALLOCATED if folio is not None else Code.PRIVATE_EMPTY
    poisoned = (folio is not None and folio.hwpoison) if slot.gmem_only else hvpn in vm.poisoned_hva
    if poisoned:
        return Code.HWPOISON
    if sl is not None:
        return _shared_leaf(sl)
    if not vm.is_tdx and pl is not None:
        return _priv_leaf(pl)
    if folio is not None:
        return Code.SHARED_POPULATED if slot.gmem_only else Code.SHARED_KEPT
    return Code.SHARED_POPULATED if host is not None else Code.SHARED_EMPTY


def _priv_leaf(leaf) -> Code:
    if leaf.state in (PENDING, PENDING_BLOCKED):
        return {1: Code.PENDING_4K, 2: Code.PENDING_2M, 3: Code.PENDING_1G}[leaf.level]
    if leaf.state == BLOCKED:
        return Code.BLOCKED
    assert leaf.state == MAPPED
    return {1: Code.PRIVATE_4K, 2: Code.PRIVATE_2M, 3: Code.PRIVATE_1G}[leaf.level]


def _shared_leaf(leaf) -> Code:
    return {1: Code.SHARED_4K, 2: Code.SHARED_2M, 3: Code.SHARED_1G}[leaf.level]


def expand(bounds: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return np.repeat(codes, np.diff(bounds))


def setup_vm(vm_type: str, order: int = 9, shared: str = "2M", tdx_level: str = "2M") -> VM:
    cfg = {
        "type": vm_type,
        "host_memory": "1G",
        "gmem_max_order": order,
        "shared_page_size": shared,
    }
    if vm_type == "tdx":
        cfg["tdx_private_max_level"] = tdx_level
    vm = VM(VMConfig.from_dict(cfg))
    gmem = 4 if vm_type != "default" else 0
    vm.apply(O.CreateGuestMemfd(size=12 * MB))
    vm.apply(
        O.SetUserMemoryRegion2(
            0,
            flags=gmem,
            guest_phys_addr=0,
            memory_size=4 * MB,
            userspace_addr=0x7F0000000000,
            guest_memfd=3,
        )
    )
    vm.apply(
        O.SetUserMemoryRegion2(
            1,
            flags=gmem,
            guest_phys_addr=8 * MB,
            memory_size=4 * MB,
            userspace_addr=0x7F0000800000,
            guest_memfd=3,
            guest_memfd_offset=4 * MB,
        )
    )
    vm.apply(
        O.SetUserMemoryRegion2(
            2, guest_phys_addr=16 * MB, memory_size=2 * MB, userspace_addr=0x7F0001000000
        )
    )
    if vm_type != "default":
        vm.apply(O.SetMemoryAttributes(0, 12 * MB, 8))
    if vm_type == "tdx":
        vm.apply(O.TdxInitMemRegion(gpa=0x1000, nr_pages=3))
        vm.apply(O.TdxFinalizeVm())
    return vm


page = st.integers(0, GFNS - 1)


@st.composite
def an_op(draw):
    kind = draw(
        st.sampled_from(
            [
                "attr",
                "access",
                "access",
                "accept",
                "punch",
                "alloc",
                "madvise",
                "failure",
                "host",
                "close",
                "delete",
                "move",
            ]
        )
    )
    g = draw(page)
    if kind == "attr":
        n = draw(st.sampled_from([1, 3, 512, 700, 1024]))
        return O.SetMemoryAttributes(g << 12, n << 12, draw(st.sampled_from([0, 8])))
    if kind == "access":
        w = draw(st.booleans())
        return O.GuestAccess(
            g << 12,
            write=w,
            value=7 if w else None,
            private=draw(st.sampled_from([None, None, True, False])),
        )
    if kind == "accept":
        return O.GuestAccept(g << 12, level=draw(st.sampled_from([1, 1, 2])))
    if kind in ("punch", "alloc"):
        off = draw(st.integers(0, 3 * 1024 - 1)) << 12
        n = draw(st.sampled_from([1, 16, 512, 1024])) << 12
        return O.Fallocate(3, 3 if kind == "punch" else 1, off, n)
    if kind == "madvise":
        return O.Madvise(0x7F0000000000 + (g << 12), draw(st.sampled_from([1, 512, 600])) << 12)
    if kind == "failure":
        return O.MemoryFailure(draw(st.integers(0, 1 << 18)))
    if kind == "host":
        return O.HostAccess(0x7F0000000000 + (g << 12), write=True, value=1)
    if kind == "close":
        return O.Close(3)
    if kind == "delete":
        return O.SetUserMemoryRegion2(
            draw(st.sampled_from([0, 1, 2])), guest_phys_addr=0, memory_size=0
        )
    return O.SetUserMemoryRegion2(
        2,
        guest_phys_addr=draw(st.sampled_from([14, 16, 18])) * MB,
        memory_size=2 * MB,
        userspace_addr=0x7F0001000000,
    )


configs = st.sampled_from(
    [
        ("tdx", 9, "2M", "2M"),
        ("tdx", 0, "4K", "4K"),
        ("sw_protected", 9, "2M", "4K"),
        ("sw_protected", 18, "4K", "4K"),
        ("default", 9, "2M", "4K"),
    ]
)


def check_step_function(vm: VM, start: int = 0, end: int = GFNS) -> None:
    b, c = R.step_function(vm, start, end)
    assert b[0] == start and b[-1] == end
    assert np.all(np.diff(b) > 0)
    assert np.all(c[1:] != c[:-1])
    got = expand(b, c)
    want = np.array([brute_code(vm, g) for g in range(start, end)], dtype=np.uint8)
    bad = np.nonzero(got != want)[0]
    assert not len(bad), [
        (hex(start + int(i)), Code(got[i]).name, Code(want[i]).name) for i in bad[:5]
    ]


@settings(max_examples=60)
@given(cfg=configs, ops=st.lists(an_op(), max_size=25), data=st.data())
def test_step_function_and_cache_match_the_engine(cfg, ops, data) -> None:
    vm = setup_vm(*cfg)
    cache = R.StepCache(vm, GFNS)
    for op in ops:
        vm.apply(op)
        cache.update(vm, R.changed_ranges(vm, vm.last_events))
    check_step_function(vm)
    # Arbitrary sub-windows agree too.
    a = data.draw(st.integers(0, GFNS - 1))
    z = data.draw(st.integers(a + 1, GFNS))
    check_step_function(vm, a, z)
    # The cache, kept up to date only from changed ranges, equals a fresh build.
    fresh_b, fresh_c = R.step_function(vm, 0, GFNS)
    np.testing.assert_array_equal(cache.bounds, fresh_b)
    np.testing.assert_array_equal(cache.codes, fresh_c)


def test_step_function_on_the_fixture_shows_every_kind() -> None:
    vm = setup_vm("tdx", 9, "2M", "2M")
    vm.apply(O.GuestAccept(0x10000))  # PRIVATE_4K
    vm.apply(O.GuestAccess(0x20000, private=True))  # AUG -> PENDING -> touch kills?
    codes = set(R.step_function(vm, 0, GFNS)[1].tolist())
    assert {Code.HOLE, Code.PRIVATE_EMPTY, Code.PRIVATE_4K, Code.SHARED_EMPTY} <= codes
    check_step_function(vm)


def test_reduce_to_pixels_keeps_the_most_significant_code() -> None:
    rng = np.random.default_rng(1)
    bounds = np.unique(np.concatenate([[0, 10_000], rng.integers(1, 10_000, 300)]))
    codes = rng.integers(0, R.NCODES, len(bounds) - 1).astype(np.uint8)
    codes = R.compress(bounds, codes)[1] if False else codes
    per_gfn = expand(bounds, codes)
    for start, end, npix in [
        (0, 10_000, 97),
        (123, 9_999, 1000),
        (5, 8_000, 7_995),
        (0, 10_000, 10_000),
        (40, 60, 100),
        (0, 10_000, 1),
    ]:
        got = R.reduce_to_pixels(bounds, codes, start, end, npix)
        p = R.pixel_bounds(start, end, npix)
        if end - start > npix:
            want = [per_gfn[p[i] : p[i + 1]].max() for i in range(npix)]
        else:
            want = [per_gfn[p[i]] for i in range(npix)]
        np.testing.assert_array_equal(got, np.array(want, dtype=np.uint8))


def test_pixel_bounds_are_exact_for_huge_windows() -> None:
    p = R.pixel_bounds(0, 1 << 52, 1 << 20)
    assert p[0] == 0 and p[-1] == 1 << 52
    assert np.all(np.diff(p) == 1 << 32)


def test_cache_raster_marks_pixels_past_the_limit_outside() -> None:
    vm = setup_vm("sw_protected")
    cache = R.StepCache(vm, GFNS)
    img = cache.raster_rows(0, 4096, rows=2, cols=8)  # rows of 16M: the 2nd ends at 32M
    assert img.shape == (2, 8)
    assert img[1, -1] == Code.OUTSIDE
    assert img[0, 0] == Code.PRIVATE_EMPTY


def test_raster_rows_is_the_reshaped_1d_raster() -> None:
    vm = setup_vm("tdx")
    a = R.raster_rows(vm, 0, 1024, rows=5, cols=100)
    b = R.raster(vm, 0, 5 * 1024, 500).reshape(5, 100)
    np.testing.assert_array_equal(a, b)


def test_changed_ranges_unknown_and_move_mean_everything() -> None:
    vm = setup_vm("sw_protected")
    assert R.changed_ranges(vm, [(0, "kvm_mmu_zap_all_fast")]) is None
    assert R.changed_ranges(vm, [(0, "kvm_set_memslot", 2, "MOVE", 0, 512)]) is None
    assert R.changed_ranges(vm, [(0, "something_new", 1)]) is None
    assert R.changed_ranges(vm, [(0, "kvm_page_fault", 0, 0, 0)]) == []
    assert R.changed_ranges(
        vm, [(0, "kvm_vm_set_mem_attributes", 5, 9, 8), (0, "kvm_mmu_invalidate_range_add", 8, 20)]
    ) == [(5, 20)]


def test_guest_extent() -> None:
    vm = setup_vm("tdx")
    assert R.guest_extent(vm, 512) == 18 * MB >> 12
    assert R.guest_extent(VM(VMConfig("tdx")), 512) == 512


@pytest.mark.slow
def test_step_function_cost_follows_extents_not_size(slow_scale: int) -> None:
    """A 4 TiB guest with a few extents is as cheap as a small one."""

    vm = VM(VMConfig.from_dict({"type": "tdx", "host_memory": "64G"}))
    vm.apply(O.CreateGuestMemfd(size=4 << 40))
    vm.apply(
        O.SetUserMemoryRegion2(
            0,
            flags=4,
            guest_phys_addr=0,
            memory_size=4 << 40,
            userspace_addr=0x100000000000,
            guest_memfd=3,
        )
    )
    for k in range(200 * slow_scale):
        vm.apply(O.SetMemoryAttributes(k << 32, 1 << 31, 8))
    # How long this takes is measured in benchmarks/bench_app.py, not asserted here.
    _b, c = R.step_function(vm, 0, 1 << 30)
    assert len(c) == 2 * 200 * slow_scale


@given(
    cuts=st.lists(st.integers(1, 4999), max_size=60, unique=True),
    seed=st.integers(0, 1000),
    window=st.tuples(st.integers(0, 4999), st.integers(1, 5000)),
    npix=st.integers(1, 6000),
)
def test_reduce_to_pixels_matches_brute_force(cuts, seed, window, npix) -> None:
    bounds = np.array([0, *sorted(cuts), 5000], dtype=np.int64)
    codes = np.random.default_rng(seed).integers(0, R.NCODES, len(bounds) - 1).astype(np.uint8)
    start = min(window[0], 4999)
    end = max(start + 1, min(5000, start + window[1]))
    per_gfn = expand(bounds, codes)
    p = R.pixel_bounds(start, end, npix)
    if end - start > npix:
        want = [per_gfn[p[i] : p[i + 1]].max() for i in range(npix)]
    else:
        want = [per_gfn[p[i]] for i in range(npix)]
    got = R.reduce_to_pixels(bounds, codes, start, end, npix)
    np.testing.assert_array_equal(got, np.array(want, dtype=np.uint8))


@given(
    extent=st.integers(64, 1 << 16),
    row_gfns=st.sampled_from([8, 16, 64, 100, 1024]),
    cols=st.integers(1, 70),
    seeds=st.lists(st.integers(0, 1 << 20), min_size=1, max_size=12),
)
def test_raster_rows_at_equals_raster_rows_row_by_row(extent, row_gfns, cols, seeds) -> None:
    """The folded map's one-pass raster gives each row exactly as StepCache.raster_rows."""
    cols = min(cols, row_gfns)
    rng = np.random.default_rng(sum(seeds))
    cuts = np.unique(rng.integers(1, extent, size=rng.integers(0, 40)))
    bounds = np.concatenate([[0], cuts, [extent]]).astype(np.int64)
    codes = rng.integers(1, R.NCODES, size=len(bounds) - 1).astype(np.uint8)
    bounds, codes = R.compress(bounds, codes)
    cache = R.StepCache.__new__(R.StepCache)
    cache.limit, cache.bounds, cache.codes = extent, bounds, codes
    starts = np.asarray([s % (extent + 2 * row_gfns) for s in seeds], np.int64)
    got = R.raster_rows_at(bounds, codes, extent, starts, row_gfns, cols)
    for i, s in enumerate(starts.tolist()):
        want = cache.raster_rows(s, row_gfns, 1, cols)[0]
        np.testing.assert_array_equal(got[i], want, err_msg=f"row at {s}")


@pytest.mark.parametrize("name", resources.scene_names())
def test_changed_ranges_keep_the_cache_true_on_every_scene(name) -> None:
    """Every event a shipped scene emits (upm-v8's, PFNMAP's, MMAP guest_memfd's, TDX's)
    is either known to change no pixel or names the gfns it changes: a cache kept only
    from changed ranges equals a fresh build after every op."""
    tl = Timeline.load(str(resources.scene_path(name)))
    vm = tl.start_vm()
    for op in tl.ops:  # the extent the scene reaches (its memslots come with its ops)
        vm.apply(op)
    extent = R.guest_extent(vm, 512) + (1 << 20)
    vm = tl.start_vm()
    cache = R.StepCache(vm, extent)
    unknown = 0
    for k, op in enumerate(tl.ops):
        vm.apply(op)
        ranges = R.changed_ranges(vm, vm.last_events)
        unknown += ranges is None
        cache.update(vm, ranges)
        if k % 50 == 0 or k == len(tl.ops) - 1:
            fresh_b, fresh_c = R.step_function(vm, 0, extent)
            np.testing.assert_array_equal(cache.bounds, fresh_b, err_msg=f"op #{k}")
            np.testing.assert_array_equal(cache.codes, fresh_c, err_msg=f"op #{k}")
    # Only ops that move or delete whole memslots / close files may redraw everything.
    assert unknown <= sum(
        op.NAME in ("close", "set_user_memory_region2", "set_user_memory_region") for op in tl.ops
    ), unknown
