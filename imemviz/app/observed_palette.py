"""The observed map's colours: the app's palette (imemviz/app/palette.py) plus the codes
only an observed timeline has (io/trace/observed_raster.py's OBSERVED_LEGEND), their
names for the hover text, and the observed view's legend in significance order."""

from __future__ import annotations

import attrs
import numpy as np

from imemviz.app.palette import LEGEND_BY_CODE, LegendEntry, lut
from imemviz.io.trace.observed_raster import DESCRIPTIONS, NAMES, OBSERVED_LEGEND, RANKED
from imemviz.model.raster import Code


def observed_lut(dark: bool = False) -> np.ndarray:
    """The lookup table of the observed map: the app's, plus the observed codes."""
    table = lut(dark)
    for code, _name, _desc, rgb in OBSERVED_LEGEND:
        table[int(code)] = (*rgb, 255)
    return table


def code_name(code: int) -> str:
    """The legend name of a code of the observed map."""
    if code in NAMES:
        return NAMES[code]
    for c, name, _d, _rgb in OBSERVED_LEGEND:
        if int(c) == code:
            return name
    try:
        return LEGEND_BY_CODE[Code(code)].name
    except ValueError:
        return "?"


def legend() -> list[LegendEntry]:
    """The entries the observed map uses, in significance order (lowest first): the
    simulator's states with their patterns, and the observed-only codes."""
    out = []
    for c in RANKED[1:]:
        ci = int(c)
        for oc, name, desc, rgb in OBSERVED_LEGEND:
            if int(oc) == ci:
                out.append(LegendEntry(oc, name, desc, rgb, "Observed"))  # type: ignore[arg-type]
                break
        else:
            e = LEGEND_BY_CODE[Code(ci)]
            out.append(
                attrs.evolve(
                    e, name=NAMES.get(ci, e.name), description=DESCRIPTIONS.get(ci, e.description)
                )
            )
    return out
