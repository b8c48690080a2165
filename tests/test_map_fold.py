"""Folding, framing and Go to on the GPA map, without Qt: the geometry the app draws."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imemviz.app.goto import GotoError, parse_goto, pfn_target
from imemviz.app.panes.map_fold import (
    FOLD_MIN_ROWS,
    FoldMap,
    LongRuns,
    band_rows,
    find_folds,
)
from imemviz.app.panes.map_frame import (
    View,
    ViewHistory,
    frame_target,
    interpolate,
    needs_frame,
)
from imemviz.app.panes.map_layout import LEGIBLE_PX, MapLayout
from imemviz.app.records import SlotInfo
from imemviz.io.session import Session
from imemviz.model.raster import Code, StepCache, guest_extent

P, H, S, M = Code.PRIVATE_EMPTY, Code.HOLE, Code.SHARED_EMPTY, Code.PRIVATE_4K


def runs(*parts: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Step function from (length, code) parts."""
    bounds = np.concatenate([[0], np.cumsum([n for n, _ in parts])]).astype(np.int64)
    return bounds, np.asarray([c for _, c in parts], np.uint8)


def test_long_empty_runs_fold_and_mapped_runs_do_not() -> None:
    lr = LongRuns(runs((64 * 100, P), (64 * 20, M), (64 * 100, H), (5, M)))
    r0, r1, code, _s, _e = find_folds(lr, 64, band=1)
    assert list(zip(r0.tolist(), r1.tolist(), code.tolist(), strict=True)) == [
        (0, 100, P),
        (120, 220, H),
    ]
    # Too short to fold at this zoom: fewer than FOLD_MIN_ROWS whole rows.
    assert len(find_folds(lr, 4096, band=1)[0]) == 0


def test_pins_keep_their_rows_unfolded() -> None:
    lr = LongRuns(runs((64 * 100, P), (64, M)))
    r0, r1, *_ = find_folds(lr, 64, band=1, pins=[(64 * 50 + 3, 64 * 50 + 4)])
    pieces = list(zip(r0.tolist(), r1.tolist(), strict=True))
    assert pieces == [(0, 50), (51, 100)]
    # A pin near the end leaves a stub too short to fold: no fold there.
    r0, r1, *_ = find_folds(lr, 64, band=1, pins=[(64 * 97, 64 * 97 + 1)])
    assert list(zip(r0.tolist(), r1.tolist(), strict=True)) == [(0, 97)]


@given(
    parts=st.lists(
        st.tuples(st.integers(1, 5000), st.sampled_from([P, H, S, M])), min_size=1, max_size=30
    ),
    r=st.sampled_from([8, 16, 64, 512]),
    band=st.integers(1, 3),
)
def test_foldmap_conversions_agree(parts, r, band) -> None:
    bounds, codes = runs(*parts)
    extent = int(bounds[-1])
    rows = -(-extent // r)
    fm = FoldMap(find_folds(LongRuns((bounds, codes)), r, band), band, rows)
    # Every display row maps to a linear row, in order, and back.
    last = -1
    for d in range(fm.rows_total):
        row, fold = fm.at_display_row(d)
        assert row >= last
        last = row
        if fold < 0:
            assert fm.display_row(row) == d
            assert fm.fold_of_row(row) == -1
        else:
            f = fm.fold(fold)
            assert f.drow <= d < f.drow + band and row == f.row0
    # Folded rows lie inside one run of an empty code.
    for f in fm.folds:
        a, b = f.row0 * r, f.row1 * r
        i = int(np.searchsorted(bounds, a, side="right")) - 1
        assert bounds[i + 1] >= min(b, extent) and codes[i] in (P, H, S) and codes[i] == f.code
    # Pieces cover the display rows exactly.
    pieces = fm.pieces(0, fm.rows_total, r)
    assert sum(n for _g, n, _f in pieces) == fm.rows_total
    # The whole space is one display range from the first to the last display row.
    ((da, db),) = fm.display_ranges([(0, extent)], r) if fm else [(0, extent)]
    assert da == 0 and db > (fm.rows_total - 1) * r


def default_layout(width: float = 1000, height: float = 770) -> tuple[MapLayout, StepCache]:
    vm = Session.scene("default").vm
    cache = StepCache(vm, guest_extent(vm, 512))
    lay = MapLayout(extent=cache.limit, width=width, height=height)
    lay.set_runs((cache.bounds, cache.codes))
    lay.fit()
    return lay, cache


@pytest.mark.parametrize(("width", "height"), [(1000, 770), (1300, 850), (640, 450)])
def test_default_scene_opens_with_every_populated_region_legible(width, height) -> None:
    """The launch view (1600x1000, 1920x1080, 1280x720 windows' map sizes): every run of
    anything but empty memory is on screen and drawn at least LEGIBLE_PX both ways."""
    lay, cache = default_layout(width, height)
    assert lay.rows_total() * lay.row_px() <= lay.height + 1e-6  # all of it at once
    a, b = lay.visible_gfns()
    assert (a, b) == (0, lay.extent)
    bounds, codes = cache.bounds, cache.codes
    populated = [
        (int(bounds[i]), int(bounds[i + 1]))
        for i in range(len(codes))
        if codes[i] not in (P, H, S, Code.OUTSIDE)
    ]
    assert len(populated) >= 5  # TempMem+HOB, kernel, bounce buffer, initrd, firmware+high
    for s, e in populated:
        assert lay.is_legible(s, e), (hex(s), hex(e), lay.range_px(s, e))
    # Linear, the same scene's populated pages are slivers: that is what folding fixes.
    flat = MapLayout(extent=cache.limit, width=width, height=height, fold=False)
    flat.fit()
    assert flat.range_px(0x800, 0x810)[1] < 6 and not flat.is_legible(0x800, 0x810)


def test_needs_frame_and_frame_target() -> None:
    page = (0x805, 0x806)
    # 1600x1000: at the launch zoom a page is about 16 x 16 px: legible, nothing to do.
    lay, _ = default_layout()
    assert lay.is_legible(*page) and not needs_frame(lay, [page])
    # 1280x720: the launch zoom draws a page smaller: it needs framing, the run around
    # it does not.
    small, _ = default_layout(640, 450)
    w, h = small.range_px(*page)
    assert w * h < LEGIBLE_PX**2 and needs_frame(small, [page])
    assert not needs_frame(small, [(0x800, 0x810)])
    # Zoomed in elsewhere: off screen.
    View(16, 0x100000 + 8).apply(lay)
    assert needs_frame(lay, [page])
    for layout in (lay, small):
        view = frame_target(layout, [page])
        assert view is not None
        view.apply(layout)
        assert not needs_frame(layout, [page])
        a, b = layout.visible_gfns()
        assert a <= page[0] < b and layout.is_legible(*page)


def test_frame_target_prefers_the_nearest_zoom() -> None:
    lay, _ = default_layout()
    start = lay.row_gfns
    view = frame_target(lay, [(0x1000, 0x1200)])  # the kernel's 2M: legible already
    assert view.row_gfns == start


def test_history_and_interpolation() -> None:
    h = ViewHistory()
    a, b, c = View(1024, 0.0), View(64, 5000.0), View(16, 100.0)
    h.push(a)
    h.push(b)
    assert h.go_back(c) == b and h.go_back(b) == a and h.go_back(a) is None
    assert h.go_forward(a) == b
    mid = interpolate(View(1 << 16, 0.0), View(16, 1000.0), 0.5)
    assert 16 < mid.row_gfns < 1 << 16 and mid.row_gfns & (mid.row_gfns - 1) == 0
    assert 0 < mid.center < 1000
    assert interpolate(a, b, 1.0) == b and interpolate(a, b, 0.0) == a


def test_band_rows() -> None:
    assert band_rows(40) == 1 and band_rows(14) == 1 and band_rows(4) == 4
    assert FOLD_MIN_ROWS >= 2


# ------------------------------------------------------------------ Go to


def slots_of(vm) -> list[SlotInfo]:
    return [
        SlotInfo(m.id, m.base_gfn, m.npages, m.flags, m.userspace_addr, None, m.gmem_pgoff)
        for m in vm.memslots.all()
        if m.npages
    ]


@pytest.fixture(scope="module")
def scene_vm():
    return Session.scene("default").vm


@pytest.mark.parametrize(
    ("text", "gfns"),
    [
        ("0x810000", (0x810, 0x811)),
        ("8M", (0x800, 0x801)),
        ("gpa 0x800000+64K", (0x800, 0x810)),
        ("GPA: 0x800fff", (0x800, 0x801)),
        ("gfn 0x810", (0x810, 0x811)),
        ("hva 0x7f0000810000", (0x810, 0x811)),
        ("hva 0x7f0080000000", (0x100000, 0x100001)),
        ("slot 2", (0xFFC00, 0x100000)),
        ("memslot 1", (0x100000, 0x180000)),
        # TDX: the shared alias of a gpa is the same gfn.
        (f"{(1 << 51) | 0x810000:#x}", (0x810, 0x811)),
    ],
)
def test_goto_parses(scene_vm, text, gfns) -> None:
    t = parse_goto(text, slots_of(scene_vm), 0x180000, shared_bit=1 << 51)
    assert t.gfns == gfns and t.resolved


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "type a gpa"),
        ("bogus", "is not a number"),
        ("gfn", "which one"),
        ("gpa 0x180000000", "past the end of the guest's address space (last gpa 0x17fffffff)"),
        ("gfn 0x180000", "past the end"),
        ("hva 0x1000", "in no memslot's userspace_addr range"),
        ("slot 9", "no such memslot (memslots: 0, 1, 2)"),
        ("gpa 0x1000+0", "size 0"),
        ("gfn -5", "negative"),
    ],
)
def test_goto_refuses_with_one_clear_line(scene_vm, text, message) -> None:
    with pytest.raises(GotoError) as e:
        parse_goto(text, slots_of(scene_vm), 0x180000)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_goto_pfn_resolves_through_the_folios_and_the_vmm_pages(scene_vm) -> None:
    t = parse_goto("pfn 0x1dd", slots_of(scene_vm), 0x180000)
    assert not t.resolved and t.pfn == 0x1DD
    vm = scene_vm
    folio = vm.files[3].inode.folio_at(0x805)
    got = pfn_target(vm, folio.pfn)
    assert got.gfns == (0x805, 0x806) and "guest_memfd 3" in got.label
    keys, vals = vm.hva_pages[2].arrays()  # the bounce buffer's huge page
    hva = keys[0] << 12
    slot = next(s for s in vm.memslots.all() if s.userspace_addr <= hva < s.hva_end)
    g = slot.base_gfn + ((hva + 3 * 4096 - slot.userspace_addr) >> 12)
    assert pfn_target(vm, vals[0] + 3).gfns == (g, g + 1)
    with pytest.raises(GotoError, match="past the host's memory"):
        pfn_target(vm, vm.host.npages)
    free = next(p for p in range(vm.host.npages - 1, 0, -1) if vm.host.alloc.is_free(p))
    with pytest.raises(GotoError, match="free host memory"):
        pfn_target(vm, free)
