"""raster_memo.py: a raster patched row by row equals a fresh one.

The engine thread keeps the last raster of each standing view and, after an op,
recomputes only the rows holding a gfn the step cache updated (RasterMemo).  Over
random op sequences, zooms, windows and folded pieces, every patched raster must
equal the raster computed whole from the same cache.
"""

from __future__ import annotations

import attrs
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_raster import GFNS, an_op, configs, setup_vm

from imemviz.app.raster_memo import RasterMemo, dirty_rows
from imemviz.model import raster as R


@attrs.frozen
class Req:  # the fields of records.RasterRequest the memo reads
    key: str
    start: int
    row_gfns: int
    rows: int
    cols: int
    pieces: tuple = ()


def whole(cache: R.StepCache, req: Req) -> np.ndarray:
    """The raster as the worker computes it without the memo."""
    if not req.pieces:
        return cache.raster_rows(req.start, req.row_gfns, req.rows, req.cols)
    out = []
    for g, n, fill in req.pieces:
        if fill >= 0:
            out.append(np.full((n, req.cols), fill, np.uint8))
        else:
            out.append(cache.raster_rows(g, req.row_gfns, n, req.cols))
    return np.concatenate(out)


@st.composite
def requests(draw):
    row = draw(st.sampled_from([1, 7, 32, 512, 4096]))
    cols = draw(st.sampled_from([1, 5, 32, 100]))
    if draw(st.booleans()):
        rows = draw(st.integers(1, 40))
        start = draw(st.integers(0, GFNS // row)) * row
        return Req("map", start, row, rows, cols)
    pieces, g, total = [], draw(st.integers(0, 50)) * row, 0
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.integers(1, 10))
        fill = draw(st.sampled_from([-1, -1, 3]))
        pieces.append((g, n, fill))
        g += (n + draw(st.integers(0, 200))) * row
        total += n
    return Req("map", pieces[0][0], row, total, cols, tuple(pieces))


@settings(max_examples=60)
@given(cfg=configs, ops=st.lists(an_op(), min_size=1, max_size=20), req=requests())
def test_patched_raster_equals_a_fresh_one(cfg, ops, req) -> None:
    vm = setup_vm(*cfg)
    cache = R.StepCache(vm, GFNS)
    memo = RasterMemo()
    assert memo.patched(req, cache) is None  # nothing kept yet
    memo.store(req, cache, whole(cache, req))
    for op in ops:
        vm.apply(op)
        cache.update(vm, R.changed_ranges(vm, vm.last_events))
        got = memo.patched(req, cache)
        want = whole(cache, req)
        if got is not None:
            np.testing.assert_array_equal(got, want)
        memo.store(req, cache, want if got is None else got)


def test_memo_patches_only_after_known_changes() -> None:
    vm = setup_vm("tdx")
    cache = R.StepCache(vm, GFNS)
    memo = RasterMemo()
    req = Req("map", 0, 512, 10, 16)
    memo.store(req, cache, whole(cache, req))
    cache.update(vm, [(100, 101)])
    assert memo.patched(req, cache) is not None  # one dirty row
    assert memo.patched(attrs.evolve(req, cols=8), cache) is None  # another request
    assert memo.patched(req, R.StepCache(vm, GFNS)) is None  # another cache
    cache.update(vm, None)  # rebuilt whole: what changed is unknown
    assert memo.patched(req, cache) is None
    for _ in range(R.StepCache.HISTORY + 1):  # older than the remembered history
        cache.update(vm, [(0, 1)])
    assert memo.patched(req, cache) is None


def test_dirty_rows_skip_fold_bands() -> None:
    pieces = ((0, 2, -1), (1000, 3, 5), (5000, 2, -1))
    rows, starts = dirty_rows(pieces, 10, [(5, 6), (1005, 1006), (5012, 5013)])
    assert rows.tolist() == [0, 6]
    assert starts.tolist() == [0, 5010]
