"""The observed map folds like the simulator's: fold_runs and raster_pieces
(imemviz.io.trace.observed_raster) against per-gfn and unfolded references."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from imemviz.io.trace.observed_raster import (
    _FOLD_GAP,
    FOLDABLE,
    ObservedCode,
    fold_runs,
    raster_pieces,
    raster_rows,
)
from imemviz.model.raster import Code

EXTENT = 1 << 14
I64 = np.int64


@st.composite
def states(draw):
    """A point of a timeline: attribute runs (sorted, disjoint), memslots (disjoint),
    leaves (by gfn, in address space 0 or 1, private/shared/unknown, 4K and 2M)."""
    cuts = sorted(set(draw(st.lists(st.integers(0, EXTENT), max_size=12))))
    pairs = list(zip(cuts[::2], cuts[1::2], strict=False))
    attrs = {
        "start": np.array([a for a, _ in pairs], I64),
        "end": np.array([b for _, b in pairs], I64),
        "private": np.array([draw(st.integers(0, 1)) for _ in pairs], I64),
    }
    scuts = sorted(set(draw(st.lists(st.integers(0, EXTENT), max_size=8))))
    spairs = [(a, b) for a, b in zip(scuts[::2], scuts[1::2], strict=False) if b > a]
    slots = {
        "as_id": np.zeros(len(spairs), I64),
        "slot": np.arange(len(spairs), dtype=I64),
        "base_gfn": np.array([a for a, _ in spairs], I64),
        "npages": np.array([b - a for a, b in spairs], I64),
        "flags": np.zeros(len(spairs), I64),
        "gmem_fd": np.full(len(spairs), -1, I64),
    }
    raw = draw(
        st.lists(
            st.tuples(
                st.integers(0, EXTENT - 1),
                st.sampled_from([1, 1, 1, 2]),
                st.integers(-1, 1),
                st.integers(0, 1),
            ),
            max_size=60,
        )
    )
    leaves = sorted((g - g % (1 << (9 * (lv - 1))), lv, pv, a) for g, lv, pv, a in raw)
    lv = {
        "gfn": np.array([x[0] for x in leaves], I64),
        "level": np.array([x[1] for x in leaves], I64),
        "private": np.array([x[2] for x in leaves], I64),
        "as_id": np.array([x[3] for x in leaves], I64),
        "pfn": np.zeros(len(leaves), I64),
    }
    return {"attrs": attrs, "slots": slots, "leaves": lv}


def per_gfn(state, attr_default, slots_known) -> np.ndarray:
    """The foldable code of every gfn (a leaf code where an address-space-0 leaf maps it)."""
    base = (
        ObservedCode.UNKNOWN
        if attr_default is None
        else (Code.PRIVATE_EMPTY if attr_default else Code.SHARED_EMPTY)
    )
    out = np.full(EXTENT, int(base), np.uint8)
    at = state["attrs"]
    for a, b, p in zip(at["start"], at["end"], at["private"], strict=True):
        out[a:b] = Code.PRIVATE_EMPTY if p else Code.SHARED_EMPTY
    if slots_known:
        cov = np.zeros(EXTENT, bool)
        sl = state["slots"]
        for a, n in zip(sl["base_gfn"], sl["npages"], strict=True):
            cov[a : a + n] = True
        out[~cov] = Code.HOLE
    lv = state["leaves"]
    for g, level, a in zip(lv["gfn"], lv["level"], lv["as_id"], strict=True):
        if a == 0:
            out[g : g + (1 << (9 * (level - 1)))] = Code.PRIVATE_4K
    return out


def runs_of(codes: np.ndarray) -> list[tuple[int, int, int]]:
    cut = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    b = np.concatenate([[0], cut, [len(codes)]])
    return [(int(b[k]), int(b[k + 1]), int(codes[b[k]])) for k in range(len(b) - 1)]


@settings(max_examples=150, deadline=None)
@given(state=states(), attr_default=st.sampled_from([None, 0, 1]), slots_known=st.booleans())
def test_fold_runs_are_exact_where_they_can_fold(state, attr_default, slots_known) -> None:
    bounds, codes = fold_runs(state, EXTENT, attr_default, slots_known)
    assert bounds[0] == 0 and bounds[-1] == EXTENT and np.all(np.diff(bounds) > 0)
    assert np.all(codes[1:] != codes[:-1])  # adjacent runs differ
    truth = per_gfn(state, attr_default, slots_known)
    foldable = {int(c) for c in FOLDABLE}
    got = {(int(a), int(b), int(c)) for a, b, c in zip(bounds[:-1], bounds[1:], codes, strict=True)}
    for a, b, c in got:
        if c in foldable:  # a run the map may fold holds nothing else
            assert np.all(truth[a:b] == c), (a, b, c)
    for a, b, c in runs_of(truth):
        if c in foldable and b - a > _FOLD_GAP:  # every run long enough to fold is there
            assert (a, b, c) in got, (a, b, c)


@settings(max_examples=100, deadline=None)
@given(
    state=states(),
    row_log=st.integers(3, 9),
    cols=st.sampled_from([8, 64, 512]),
    cuts=st.lists(st.integers(0, 64), min_size=1, max_size=6),
    fills=st.lists(st.sampled_from([-1, -1, int(Code.HOLE), int(ObservedCode.UNKNOWN)])),
)
def test_raster_pieces_are_the_unfolded_rows(state, row_log, cols, cuts, fills) -> None:
    """Each piece of rows of the guest draws as the same rows of the whole map (the
    per-piece window of leaves and attributes loses nothing); bands are their code."""
    r = 1 << row_log
    total = EXTENT // r
    starts = sorted({min(c * 8, total - 1) for c in cuts})
    pieces = []
    for k, s in enumerate(starts):
        n = (starts[k + 1] if k + 1 < len(starts) else total) - s
        fill = fills[k] if k < len(fills) else -1
        pieces.append((s * r, n, fill))
    got = raster_pieces(state, tuple(pieces), r, cols, EXTENT, None, True)
    whole = raster_rows(state, 0, r, total, cols, EXTENT, None, True)
    at = 0
    for g, n, fill in pieces:
        want = np.full((n, cols), fill, np.uint8) if fill >= 0 else whole[g // r : g // r + n]
        assert np.array_equal(got[at : at + n], want), (g, n, fill)
        at += n
