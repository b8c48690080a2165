"""The map's palette: every pair of legend states stays apart for colour-blind viewers.

Each pair of states either differs by CIEDE2000 >= 20 as seen with normal vision and
with protanopia, deuteranopia and tritanopia (Machado et al. 2009), or carries a
different second channel (pattern).  The simulation and the colour difference are
checked against published values first, so the palette test cannot pass on broken
arithmetic."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from imemviz.app import palette as P
from imemviz.app.colour_vision import VISIONS, ciede2000, delta_e, simulate, to_lab
from imemviz.model.raster import NCODES, Code

MIN_DELTA_E = 20.0

# Sharma, Wu and Dalal (2005), table 1: pairs 1, 7, 17, 25, 32 and 34.
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082),
    ((22.7233, 20.0904, -46.694), (23.0331, 14.973, -42.5619), 2.0373),
]


@pytest.mark.parametrize(("lab1", "lab2", "want"), SHARMA)
def test_ciede2000_matches_sharmas_test_data(lab1, lab2, want) -> None:
    assert ciede2000(lab1, lab2) == pytest.approx(want, abs=1e-4)
    assert ciede2000(lab2, lab1) == pytest.approx(want, abs=1e-4)


def test_lab_of_srgb_primaries() -> None:
    assert to_lab((255, 255, 255)) == pytest.approx((100.0, 0.0, 0.0), abs=0.01)
    assert to_lab((255, 0, 0)) == pytest.approx((53.24, 80.09, 67.20), abs=0.05)
    assert to_lab((0, 0, 255)) == pytest.approx((32.30, 79.19, -107.86), abs=0.05)


def test_simulations_behave_like_dichromacy() -> None:
    # Greys stay grey; red and green collapse for protan/deutan and not for tritan;
    # blue and yellow-green collapse... not for protan/deutan.
    for kind in VISIONS:
        assert simulate((128, 128, 128), kind) == pytest.approx((128, 128, 128), abs=1.0)
    red, green = (200, 60, 40), (90, 140, 30)
    assert delta_e(red, green) > 40
    assert delta_e(red, green, "deuteranopia") < delta_e(red, green) / 2
    assert delta_e(red, green, "protanopia") < delta_e(red, green) / 2
    blue, yellow = (0, 90, 220), (230, 200, 40)
    assert delta_e(blue, yellow, "deuteranopia") > 40


def test_every_code_has_an_entry_and_its_own_colour() -> None:
    assert set(P.LEGEND_BY_CODE) == set(Code)
    lut = P.lut()
    assert lut.shape == (256, 4) and lut.dtype == np.uint8
    assert len({tuple(lut[c]) for c in Code}) == NCODES
    assert P.code_name(Code.PENDING_4K) == "PENDING 4K"
    # Outside the guest is the plot's background, in either theme.
    assert tuple(P.lut(dark=True)[Code.OUTSIDE][:3]) == P.DARK_BACKGROUND


def pairs():
    for a, b in itertools.combinations(P.STATES, 2):
        yield pytest.param(a, b, id=f"{a.code.name}-{b.code.name}")


@pytest.mark.parametrize(("a", "b"), list(pairs()))
def test_every_pair_of_states_is_distinguishable(a, b) -> None:
    """Colour alone (>= 20 in all four visions) or a different pattern."""
    worst = min((delta_e(a.rgb, b.rgb, k), k) for k in VISIONS)
    if a.pattern != b.pattern:
        return  # the second channel tells them apart
    assert worst[0] >= MIN_DELTA_E, (
        f"{a.name} {a.hex} vs {b.name} {b.hex}: CIEDE2000 {worst[0]:.1f} under {worst[1]}, "
        f"and both are drawn {a.pattern.value}"
    )


def test_the_pairs_named_in_issue_10_are_fixed() -> None:
    e = P.LEGEND_BY_CODE
    kept, host, blocked = e[Code.SHARED_KEPT], e[Code.SHARED_POPULATED], e[Code.BLOCKED]
    assert kept.pattern != host.pattern
    assert P.Pattern.NONE not in (kept.pattern, host.pattern)
    for shared in (Code.SHARED_4K, Code.SHARED_2M, Code.SHARED_1G, Code.SHARED_POPULATED):
        assert blocked.pattern != e[shared].pattern
    # The launch screen's main question, private or shared, by colour alone.
    for kind in VISIONS:
        assert delta_e(e[Code.PRIVATE_EMPTY].rgb, e[Code.SHARED_EMPTY].rgb, kind) >= MIN_DELTA_E


def test_rmp_states_are_distinguishable_in_every_vision() -> None:
    """The RMP pane's four states (imemviz/app/rmp_palette.py): colour apart in every
    vision, and a glyph of their own as the second channel."""
    from imemviz.app import rmp_palette as R

    def rgb(h: str) -> tuple[int, int, int]:
        return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)

    assert len(set(R.GLYPHS.values())) == len(R.GLYPHS) == len(R.COLOURS) == 4
    for a, b in itertools.combinations(R.COLOURS, 2):
        for kind in VISIONS:
            d = delta_e(rgb(R.COLOURS[a][0]), rgb(R.COLOURS[b][0]), kind)
            assert d >= MIN_DELTA_E, (a, b, kind, d)
