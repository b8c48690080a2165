"""The map's palette (no Qt): a colour, a name, a meaning and a second channel per code.

The codes and their order of significance are the model's (`imemviz.model.raster.Code`);
how they look is the app's.  Two channels carry a state:

- **colour**: private is warm (orange, vermillion, brown), shared cool (sky blue, blue,
  navy), darker for a bigger leaf, lighter when nothing maps the page; PENDING is
  green, BLOCKED purple, hwpoison black.
- **pattern** (`Pattern`): the plain states (unmapped private and shared memory, the six
  leaf colours, hwpoison) have none; the others carry one drawn over the colour
  (`imemviz.app.panes.map_patterns`): dots where backing memory exists but no leaf
  maps it, vertical stripes on PENDING leaves, a diagonal cross on BLOCKED, horizontal
  stripes where a shared page's private folio was kept, a grid where a private gfn
  has no guest_memfd, the hatching of holes.

The colours were chosen (with `colour_vision`, CIEDE2000 under the Machado et al.
simulations of protanopia, deuteranopia and tritanopia) so that any two states with
the same pattern differ by at least 20 in every one of the four visions; states the
colour cannot keep apart differ by pattern.  `tests/app/test_palette.py` holds that.
"""

from __future__ import annotations

from enum import Enum

import attrs
import numpy as np

from imemviz.model.raster import NCODES, Code


class Pattern(Enum):
    """The second channel, drawn over a state's colour where its cells are large enough."""

    NONE = "none"
    DOTS = "dots"  # backing memory exists, no leaf maps it
    VERTICAL = "vertical"  # PENDING: added by TDH.MEM.PAGE.AUG, not accepted yet
    DIAGONAL_CROSS = "diagonal cross"  # BLOCKED (inside a zap)
    HORIZONTAL = "horizontal"  # shared, the private folio was kept: memory held twice
    GRID = "grid"  # private gfn whose memslot has no guest_memfd
    HATCH = "hatch"  # hole: no memslot (MMIO)


@attrs.frozen(slots=True)
class LegendEntry:
    code: Code
    name: str
    description: str
    rgb: tuple[int, int, int]
    group: str  # "Address space", "Shared", "Private", "TDX S-EPT"
    pattern: Pattern = Pattern.NONE
    short: str = ""  # the state written in a map tile ("P 4K")

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)


def _hex(s: str) -> tuple[int, int, int]:
    return int(s[1:3], 16), int(s[3:5], 16), int(s[5:7], 16)


LIGHT_BACKGROUND = (255, 255, 255)
DARK_BACKGROUND = (32, 33, 36)

LEGEND: tuple[LegendEntry, ...] = (
    LegendEntry(
        Code.OUTSIDE, "outside", "past the last memslot", LIGHT_BACKGROUND, "Address space"
    ),
    LegendEntry(
        Code.HOLE,
        "hole / MMIO",
        "no memslot: a guest access exits to the VMM (KVM_EXIT_MMIO)",
        _hex("#b4b4b4"),
        "Address space",
        Pattern.HATCH,
        "hole",
    ),
    LegendEntry(
        Code.NO_BACKING,
        "private, no guest_memfd",
        "the gfn is private but its memslot has no guest_memfd: a private access exits with EFAULT",
        _hex("#f0e442"),
        "Address space",
        Pattern.GRID,
        "no gmem",
    ),
    LegendEntry(
        Code.HWPOISON,
        "hwpoison",
        "the backing page had a memory error: an access gets EHWPOISON",
        _hex("#000000"),
        "Address space",
        Pattern.NONE,
        "POISON",
    ),
    LegendEntry(
        Code.SHARED_EMPTY,
        "shared, untouched",
        "shared gfn, no host page behind its hva yet",
        _hex("#deeefe"),
        "Shared",
    ),
    LegendEntry(
        Code.SHARED_POPULATED,
        "shared, host page",
        "host page exists behind the hva, no EPT leaf (dotted: backed, not mapped)",
        _hex("#a9cbe6"),
        "Shared",
        Pattern.DOTS,
        "S page",
    ),
    LegendEntry(
        Code.SHARED_KEPT,
        "shared, private folio kept",
        "shared gfn whose old guest_memfd folio was never discarded (memory held twice)",
        _hex("#d9a3c4"),
        "Shared",
        Pattern.HORIZONTAL,
        "S+folio",
    ),
    LegendEntry(
        Code.SHARED_4K,
        "shared, mapped 4K",
        "mapped by a 4K leaf in the shared EPT",
        _hex("#32b0ff"),
        "Shared",
        Pattern.NONE,
        "S 4K",
    ),
    LegendEntry(
        Code.SHARED_2M,
        "shared, mapped 2M",
        "mapped by a 2M leaf in the shared EPT",
        _hex("#2966d4"),
        "Shared",
        Pattern.NONE,
        "S 2M",
    ),
    LegendEntry(
        Code.SHARED_1G,
        "shared, mapped 1G",
        "mapped by a 1G leaf in the shared EPT",
        _hex("#0b335a"),
        "Shared",
        Pattern.NONE,
        "S 1G",
    ),
    LegendEntry(
        Code.PRIVATE_EMPTY,
        "private, no folio",
        "private gfn, no guest_memfd folio yet",
        _hex("#ffeccd"),
        "Private",
    ),
    LegendEntry(
        Code.PRIVATE_ALLOCATED,
        "private, folio",
        "guest_memfd folio allocated, no private leaf (dotted: backed, not mapped)",
        _hex("#f8c98a"),
        "Private",
        Pattern.DOTS,
        "P folio",
    ),
    LegendEntry(
        Code.PRIVATE_4K,
        "private, mapped 4K",
        "mapped by a 4K private leaf (S-EPT MAPPED on TDX)",
        _hex("#ffac1d"),
        "Private",
        Pattern.NONE,
        "P 4K",
    ),
    LegendEntry(
        Code.PRIVATE_2M,
        "private, mapped 2M",
        "mapped by a 2M private leaf",
        _hex("#c35812"),
        "Private",
        Pattern.NONE,
        "P 2M",
    ),
    LegendEntry(
        Code.PRIVATE_1G,
        "private, mapped 1G",
        "mapped by a 1G private leaf",
        _hex("#731e07"),
        "Private",
        Pattern.NONE,
        "P 1G",
    ),
    LegendEntry(
        Code.PENDING_4K,
        "PENDING 4K",
        "S-EPT leaf added by TDH.MEM.PAGE.AUG, not accepted: touching it kills the TD",
        _hex("#05d46e"),
        "TDX S-EPT",
        Pattern.VERTICAL,
        "PENDING",
    ),
    LegendEntry(
        Code.PENDING_2M,
        "PENDING 2M",
        "2M S-EPT leaf not accepted yet",
        _hex("#2d8252"),
        "TDX S-EPT",
        Pattern.VERTICAL,
        "PEND 2M",
    ),
    LegendEntry(
        Code.PENDING_1G,
        "PENDING 1G",
        "1G S-EPT leaf not accepted yet",
        _hex("#16372d"),
        "TDX S-EPT",
        Pattern.VERTICAL,
        "PEND 1G",
    ),
    LegendEntry(
        Code.BLOCKED,
        "BLOCKED",
        "S-EPT leaf blocked by TDH.MEM.RANGE.BLOCK (only inside a zap)",
        _hex("#7b3294"),
        "TDX S-EPT",
        Pattern.DIAGONAL_CROSS,
        "BLOCKED",
    ),
)
LEGEND_BY_CODE: dict[Code, LegendEntry] = {e.code: e for e in LEGEND}
assert len(LEGEND_BY_CODE) == NCODES

STATES: tuple[LegendEntry, ...] = tuple(e for e in LEGEND if e.code != Code.OUTSIDE)
PATTERN_OF: tuple[Pattern, ...] = tuple(LEGEND_BY_CODE[c].pattern for c in Code)


def lut(dark: bool = False) -> np.ndarray:
    """The 256-entry RGBA lookup table (uint8) of the codes; unused entries are magenta.
    OUTSIDE is the plot's background, so past the guest's end the map simply ends."""
    table = np.zeros((256, 4), dtype=np.uint8)
    table[:] = (255, 0, 255, 255)
    for e in LEGEND:
        table[int(e.code)] = (*e.rgb, 255)
    table[int(Code.OUTSIDE)] = (*(DARK_BACKGROUND if dark else LIGHT_BACKGROUND), 255)
    return table


def code_name(code: int) -> str:
    return LEGEND_BY_CODE[Code(code)].name


def luminance(rgb: tuple[int, int, int]) -> float:
    """Relative luminance (0-1) of an sRGB colour: decides dark or light ink on it."""
    r, g, b = (c / 255 for c in rgb)
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def is_dark(code: int) -> bool:
    """Whether text and patterns on this code's colour are drawn light."""
    return luminance(LEGEND_BY_CODE[Code(code)].rgb) < 0.18
