"""observed_raster.pixel_span: the closed form agrees with the binary searches it replaced."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from imemviz.io.trace.observed_raster import pixel_span


def _searched(starts, ends, start, span, npix):
    k = np.arange(npix + 1, dtype=np.int64)
    q, r = divmod(span, npix)
    bounds = start + k * q + (k * r) // npix
    lo_edge = bounds[:-1]
    hi_edge = np.maximum(bounds[1:], lo_edge + 1)
    return (
        np.searchsorted(hi_edge, starts, side="right"),
        np.searchsorted(lo_edge, ends, side="left"),
    )


@given(
    start=st.integers(0, 1 << 30),
    span=st.integers(1, 1 << 34),
    npix=st.integers(1, 4096),
    seed=st.integers(0, 1 << 32),
)
def test_pixel_span_is_the_binary_search(start, span, npix, seed) -> None:
    rnd = np.random.default_rng(seed)
    lo_g = start - span // 2 - 2
    hi_g = start + span + span // 2 + 2
    a = rnd.integers(lo_g, hi_g, 200, dtype=np.int64)
    n = rnd.integers(1, max(2, span // 4 + 2), 200, dtype=np.int64)
    # ... and intervals at the edges: one gfn at the first and last, all of it, past it.
    a = np.concatenate([a, [start, start + span - 1, start - 1, start + span, 0]])
    n = np.concatenate([n, [1, 1, 1, 1, start + 2 * span]])
    lo, hi = pixel_span(a, a + n, start, span, npix)
    slo, shi = _searched(a, a + n, start, span, npix)
    assert np.array_equal(lo, slo)
    assert np.array_equal(hi, shi)
