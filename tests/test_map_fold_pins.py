"""map_fold.pins_touch_folds / MapLayout.set_pins: pins that touch no foldable run keep
the fold map (no refold per op), and the kept map equals a fresh one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from imemviz.app.panes.map_fold import LongRuns, find_folds, pins_touch_folds
from imemviz.app.panes.map_layout import MapLayout
from imemviz.model.raster import Code

EXTENT = 1 << 20


@st.composite
def runs(draw):
    """A step function over [0, EXTENT) of empty (foldable) and populated runs."""
    cuts = sorted(set(draw(st.lists(st.integers(1, EXTENT - 1), min_size=1, max_size=30))))
    bounds = np.array([0, *cuts, EXTENT], np.int64)
    codes = [Code.PRIVATE_EMPTY if i % 2 == 0 else Code.PRIVATE_4K for i in range(len(cuts) + 1)]
    return bounds, np.array(codes, np.uint8)


pin_lists = st.lists(
    st.tuples(st.integers(0, EXTENT - 2), st.integers(1, 4096)).map(
        lambda t: (t[0], min(t[0] + t[1], EXTENT))
    ),
    max_size=4,
)


@settings(max_examples=80)
@given(r=runs(), old=pin_lists, new=pin_lists, shift=st.integers(3, 10))
def test_untouched_pins_leave_the_folds(r, old, new, shift) -> None:
    lr = LongRuns(r)
    row = 1 << shift
    changed = set(old) ^ set(new)
    if not pins_touch_folds(lr, row, 1, changed):
        a = find_folds(lr, row, 1, sorted(old))
        b = find_folds(lr, row, 1, sorted(new))
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


@settings(max_examples=60)
@given(r=runs(), old=pin_lists, new=pin_lists)
def test_set_pins_keeps_a_correct_fold_map(r, old, new) -> None:
    lay = MapLayout(extent=EXTENT, width=800, height=600, row_gfns=1 << 9)
    lay.set_runs(r)
    lay.set_pins(old)
    lay.foldmap()  # cached
    lay.set_pins(new)
    fresh = MapLayout(extent=EXTENT, width=800, height=600, row_gfns=1 << 9)
    fresh.set_runs(r)
    fresh.set_pins(new)
    assert lay.foldmap().key() == fresh.foldmap().key()


def test_a_pin_in_populated_memory_keeps_the_fold_map_object() -> None:
    bounds = np.array([0, 1000, 1010, EXTENT], np.int64)
    codes = np.array([Code.PRIVATE_EMPTY, Code.PRIVATE_4K, Code.PRIVATE_EMPTY], np.uint8)
    lay = MapLayout(extent=EXTENT, width=800, height=100, row_gfns=8)  # its rows fill it
    lay.set_runs((bounds, codes))
    fm = lay.foldmap()
    assert len(fm) >= 1
    lay.set_pins([(1004, 1005)])  # the populated run: nothing there folds
    assert lay.foldmap() is fm
    lay.set_pins([(500_000, 500_001)])  # inside a folded run: it splits
    assert lay.foldmap() is not fm


def test_pins_that_keep_the_folds_keep_the_view() -> None:
    """A pin in populated memory leaves the view where it is, even scrolled part-way
    into a fold band (re-placed by its top row, it jumped to the band's first row: the
    view moved without a redraw)."""
    bounds = np.array([0, 1000, 1010, EXTENT], np.int64)
    codes = np.array([Code.PRIVATE_EMPTY, Code.PRIVATE_4K, Code.PRIVATE_EMPTY], np.uint8)
    lay = MapLayout(extent=EXTENT, width=800, height=100, row_gfns=8)  # its rows fill it
    lay.set_runs((bounds, codes))
    fm = lay.foldmap()
    lay.top = fm.folds[0].drow + 0.4  # part-way into the first band
    lay.set_pins([(1004, 1005)])
    assert lay.foldmap() is fm and lay.top == fm.folds[0].drow + 0.4


def test_a_held_page_stays_on_screen_across_a_refold() -> None:
    """MapLayout.hold: when the runs change around a page on the screen (an op filled
    the empty rows beside it), the page keeps its height on the screen; without a hold
    the top row is kept and the page moves down by the rows that opened above it."""
    g = 100_000
    before = (
        np.array([0, 1000, 1010, g, g + 1, EXTENT], np.int64),
        np.array(
            [
                Code.PRIVATE_EMPTY,
                Code.PRIVATE_4K,
                Code.PRIVATE_EMPTY,
                Code.PRIVATE_4K,
                Code.PRIVATE_EMPTY,
            ],
            np.uint8,
        ),
    )
    after = (  # a 2M folio around g
        np.array([0, 1000, 1010, g - 200, g + 312, EXTENT], np.int64),
        np.array(
            [
                Code.PRIVATE_EMPTY,
                Code.PRIVATE_4K,
                Code.PRIVATE_EMPTY,
                Code.PRIVATE_ALLOCATED,
                Code.PRIVATE_EMPTY,
            ],
            np.uint8,
        ),
    )
    for held in (False, True):
        lay = MapLayout(extent=EXTENT, width=800, height=600, row_gfns=8)
        lay.set_runs(before)
        lay.top = lay.foldmap().display_row(g // 8) - 5.0
        y0 = (lay.display_y(g) - lay.top) * lay.row_px()  # pixels from the top
        if held:
            lay.hold(g)
        lay.set_runs(after, [(g - 200, g + 312)])
        y1 = (lay.display_y(g) - lay.top) * lay.row_px()
        assert (abs(y1 - y0) < 1e-6) == held, (held, y0, y1)


@st.composite
def step_functions(draw, limit: int = 4096):
    cuts = sorted(set(draw(st.lists(st.integers(1, limit - 1), max_size=40))))
    bounds = np.array([0, *cuts, limit], np.int64)
    pool = [Code.PRIVATE_EMPTY, Code.SHARED_EMPTY, Code.HOLE, Code.PRIVATE_4K]
    codes = np.array([draw(st.sampled_from(pool)) for _ in range(len(cuts) + 1)], np.uint8)
    return bounds, codes


def _compress(per_gfn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cut = np.flatnonzero(per_gfn[1:] != per_gfn[:-1]) + 1
    bounds = np.concatenate([[0], cut, [len(per_gfn)]]).astype(np.int64)
    return bounds, per_gfn[bounds[:-1]]


@settings(max_examples=150)
@given(
    sf=step_functions(),
    edits=st.lists(
        st.tuples(
            st.integers(0, 4095),
            st.integers(1, 300),
            st.sampled_from([Code.PRIVATE_EMPTY, Code.SHARED_EMPTY, Code.PRIVATE_4K]),
        ),
        max_size=4,
    ),
)
def test_long_runs_updated_from_changed_ranges_equal_fresh_ones(sf, edits) -> None:
    per_gfn = np.repeat(sf[1], np.diff(sf[0]))
    bounds, codes = _compress(per_gfn)  # a step function's runs differ from their neighbours
    old = LongRuns((bounds, codes))
    ranges = []
    for a, n, code in edits:
        b = min(a + n, 4096)
        per_gfn[a:b] = code
        ranges.append((a, b))
    merged = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    nb, nc = _compress(per_gfn)
    got = old.updated(nb, nc, merged)
    want = LongRuns((nb, nc))
    np.testing.assert_array_equal(got.start, want.start)
    np.testing.assert_array_equal(got.end, want.end)
    np.testing.assert_array_equal(got.code, want.code)


@settings(max_examples=150)
@given(
    sf=step_functions(),
    edits=st.lists(
        st.tuples(
            st.integers(0, 4095),
            st.integers(1, 40),
            st.sampled_from([Code.PRIVATE_EMPTY, Code.SHARED_EMPTY, Code.PRIVATE_4K]),
        ),
        min_size=1,
        max_size=3,
    ),
    pin_on_edit=st.booleans(),
    row=st.sampled_from([8, 16, 64]),
)
def test_set_runs_with_the_changed_ranges_keeps_only_correct_fold_maps(
    sf, edits, pin_on_edit, row
) -> None:
    """An op's changed ranges let the layout keep its fold maps (no refold per op) where
    the folds stay the same; the kept map equals a fresh one, the folds' runs included."""
    per_gfn = np.repeat(sf[1], np.diff(sf[0]))
    old = _compress(per_gfn)
    ranges = []
    for a, n, code in edits:
        b = min(a + n, 4096)
        per_gfn[a:b] = code
        ranges.append((a, b))
    new = _compress(per_gfn)
    pins = [(a, a + 1) for a, _b in ranges] if pin_on_edit else []
    lay = MapLayout(extent=4096, width=800, height=600, row_gfns=row)
    lay.set_runs(old)
    lay.set_pins(pins)
    lay.foldmap()  # cached
    lay.set_runs(new, ranges)
    fresh = MapLayout(extent=4096, width=800, height=600, row_gfns=row)
    fresh.set_runs(new)
    fresh.set_pins(pins)
    assert lay.foldmap().key() == fresh.foldmap().key()
    assert lay.foldmap().folds == fresh.foldmap().folds


def test_an_op_on_a_pinned_page_in_an_empty_run_keeps_the_fold_map() -> None:
    per_gfn = np.full(1 << 16, Code.PRIVATE_EMPTY, np.uint8)
    lay = MapLayout(extent=1 << 16, width=800, height=100, row_gfns=16)  # its rows fill it
    lay.set_runs(_compress(per_gfn))
    lay.set_pins([(30_000, 30_001)])
    fm = lay.foldmap()
    per_gfn[30_000] = Code.PRIVATE_4K  # the selected page is accepted: its run splits
    lay.set_runs(_compress(per_gfn), [(30_000, 30_001)])
    assert lay.foldmap()._r0 is fm._r0  # the same rows folded: kept, not refolded
    assert {f.run for f in lay.foldmap().folds} == {(0, 30_000), (30_001, 1 << 16)}
