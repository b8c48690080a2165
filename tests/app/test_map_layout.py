"""The map's geometry (no Qt): fit, zoom around an anchor, scrolling, outlines."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imemviz.app.panes.map_layout import (
    MAX_ROW_PX,
    MIN_FIT_ROW_PX,
    MIN_ROW_GFNS,
    MapLayout,
    staircase,
)


def test_fit_shows_the_whole_guest_with_readable_rows() -> None:
    lay = MapLayout(extent=(6 << 30) >> 12, width=1100, height=800)
    lay.fit()
    assert lay.rows_total() * lay.row_px() <= lay.height + 1e-6
    assert lay.row_px() >= MIN_FIT_ROW_PX
    assert lay.row_gfns & (lay.row_gfns - 1) == 0  # rows start on power-of-two boundaries
    big = MapLayout(extent=1 << 30, width=1100, height=800)
    big.fit()
    assert big.rows_total() * big.row_px() <= 800 + 1e-6


@given(
    extent=st.integers(1, 1 << 32),
    steps=st.integers(-40, 40),
    anchor=st.floats(0, 1),
    frac=st.floats(0, 1),
)
def test_zoom_keeps_the_anchor_and_stays_in_bounds(extent, steps, anchor, frac) -> None:
    lay = MapLayout(extent=extent, width=1000, height=700)
    lay.fit()
    g = int(anchor * (extent - 1))
    lay.zoom(steps, g, frac)
    assert MIN_ROW_GFNS <= lay.row_gfns <= lay.fit_row_gfns()
    assert 0 <= lay.top <= lay.max_top()
    assert lay.row_px() <= max(MAX_ROW_PX, lay.height / lay.rows_total()) + 1e-9
    if lay.max_top() > 0 and 0 < lay.top < lay.max_top():
        # Not clamped: the anchor sits where it was asked to.
        assert abs((g / lay.row_gfns - lay.top) / lay.rows_visible() - frac) < 1e-6
    _row0, rows, cols = lay.raster_window()
    assert rows >= 1 and cols == min(lay.row_gfns, int(lay.width) or 1)
    assert lay.gfn_at(0, lay.top) >= 0 and lay.gfn_at(1e9, 1e12) == extent - 1


def test_show_range_and_ensure_visible() -> None:
    lay = MapLayout(extent=1 << 20, width=1000, height=700)
    lay.fit()
    lay.show_range(0x1000, 0x1040)
    a, b = lay.visible_gfns()
    assert a <= 0x1000 and b >= 0x1040
    assert lay.row_gfns < lay.fit_row_gfns()
    lay.ensure_visible(0xF0000)
    a, b = lay.visible_gfns()
    assert a <= 0xF0000 < b


def test_staircase_outlines() -> None:
    assert staircase(2, 5, 8) == [(2, 0), (5, 0), (5, 1), (2, 1)]
    poly = staircase(6, 19, 8)  # rows 0..2: a partial first and last row
    assert poly[0] == (6, 0) and (8, 0) in poly and (3, 3) in poly and (0, 1) in poly
