"""The observed map's own codes (unknown attribute, leaf of unknown kind) stay visible
and apart from the states they sit next to, for colour-blind viewers too.

Measured as tests/test_palette.py measures the simulator's palette: CIEDE2000 between
the colours as seen with normal vision and under simulated protanopia, deuteranopia
and tritanopia (Machado et al. 2009)."""

from __future__ import annotations

import pytest

from imemviz.app import observed_palette as OP
from imemviz.app.colour_vision import VISIONS, delta_e
from imemviz.app.palette import LIGHT_BACKGROUND
from imemviz.io.trace.observed_raster import ObservedCode
from imemviz.model.raster import Code

pytest.importorskip("PySide6")

# Between the areas a first look must tell apart: the palette's bar.
MIN_AREA = 20.0
# Between an observed code and a leaf colour drawn next to it: thirteen colours do not
# all fit 20 apart in four visions, and the observed codes carry no pattern (yet).
MIN_NEXT_TO = 12.0

BY_CODE = {int(e.code): e for e in OP.legend()}
OBSERVED = [int(c) for c in ObservedCode]


def _worst(a, b) -> tuple[float, str]:
    return min((delta_e(a, b, k), k) for k in VISIONS)


@pytest.mark.parametrize(
    "other",
    [None, int(Code.SHARED_EMPTY), int(Code.PRIVATE_EMPTY), int(Code.HOLE)],
    ids=["background", "shared-no-leaf", "private-no-leaf", "hole"],
)
def test_unknown_stands_out_from_the_areas_it_borders(other) -> None:
    rgb = LIGHT_BACKGROUND if other is None else BY_CODE[other].rgb
    worst = _worst(BY_CODE[int(ObservedCode.UNKNOWN)].rgb, rgb)
    assert worst[0] >= MIN_AREA, worst


@pytest.mark.parametrize("code", OBSERVED, ids=[c.name for c in ObservedCode])
def test_observed_codes_are_apart_from_every_state_of_the_map(code) -> None:
    e = BY_CODE[code]
    for other in [*BY_CODE.values()]:
        if other.code == e.code or other.pattern != e.pattern:
            continue  # holes are hatched on the map at every zoom
        worst = _worst(e.rgb, other.rgb)
        assert worst[0] >= MIN_NEXT_TO, f"{e.name} vs {other.name}: {worst}"
    assert _worst(e.rgb, LIGHT_BACKGROUND)[0] >= MIN_AREA
    # and the lookup table draws it in that colour
    assert tuple(OP.observed_lut()[code][:3]) == e.rgb
