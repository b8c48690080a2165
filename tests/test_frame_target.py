"""map_frame.frame_target tries the nearest zooms first and stops at the first that
shows the ranges legibly: the same view the exhaustive search over every zoom gives."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from imemviz.app.panes.map_frame import FIT_FRACTION, View, _zooms, clip, frame_target
from imemviz.app.panes.map_layout import LEGIBLE_PX, MapLayout
from imemviz.model.raster import Code

EXTENT = 1 << 22


def exhaustive(lay: MapLayout, ranges) -> View | None:
    """The search over every zoom (the code before the early stop)."""
    ranges = clip(ranges, lay.extent)
    if not ranges:
        return None
    lo, hi = min(a for a, _ in ranges), max(b for _, b in ranges)
    biggest = max(ranges, key=lambda ab: ab[1] - ab[0])
    probe = lay.copy()
    probe.set_pins(list(lay.pins) + list(ranges))
    cur = math.log2(lay.row_gfns)
    best, fallback = None, None
    for r in _zooms(probe):
        probe.row_gfns = r
        fits = probe.rows_of_range(lo, hi) * probe.row_px() <= FIT_FRACTION * probe.height
        legible = probe.is_legible(*biggest, LEGIBLE_PX)
        if legible and (fallback is None or r > fallback):
            fallback = r
        if fits and legible:
            score = abs(math.log2(r) - cur)
            if best is None or score < best[0]:
                best = (score, r)
    if best is not None:
        return View(best[1], (lo + hi) / 2)
    r = fallback if fallback is not None else 8
    return View(r, (biggest[0] + biggest[1]) / 2)


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(1, EXTENT - 1), max_size=30),
    ranges=st.lists(
        st.tuples(st.integers(0, EXTENT - 2), st.integers(1, 1 << 16)), min_size=1, max_size=3
    ),
    zoom=st.integers(0, 12),
    fold=st.booleans(),
)
def test_frame_target_equals_the_exhaustive_search(cuts, ranges, zoom, fold) -> None:
    cuts = sorted(set(cuts))
    bounds = np.array([0, *cuts, EXTENT], np.int64)
    codes = np.array(
        [Code.PRIVATE_EMPTY if i % 2 == 0 else Code.PRIVATE_4K for i in range(len(cuts) + 1)],
        np.uint8,
    )
    lay = MapLayout(extent=EXTENT, width=800, height=600, row_gfns=8, fold=fold)
    lay.set_runs((bounds, codes))
    lay.fit()
    lay.zoom(zoom)
    rs = [(a, min(a + n, EXTENT)) for a, n in ranges]
    assert frame_target(lay, rs) == exhaustive(lay, rs)
