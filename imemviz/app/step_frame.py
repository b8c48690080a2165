"""Framing a step-through: the op's pages drawn big enough to carry their state.

A step is about a few leaves changing state (BLOCKED at the BLOCK step,
PENDING at AUG, gone at REMOVE).  The map's usual framing (`map_frame`) moves
only when a change is smaller than LEGIBLE_PX, so four converted pages stay a
40x10 px strip in the whole-guest view: visible as a spot, but not which leaf
is in which state.  While stepping, the map zooms so that every page of what
the op changed is a tile with its state written in it (the map's cell labels,
`CellLabels.FULL_PX`, else `SHORT_PX`), as long as all of it fits; a change
too big for that (a 2M leaf's 512 pages at 1280x720) keeps the usual framing.

No Qt: the sizes come in as arguments, the layout is `MapLayout`.
"""

from __future__ import annotations

from collections.abc import Sequence

from imemviz.app.panes.map_frame import FIT_FRACTION, View, clip, visible_part
from imemviz.app.panes.map_layout import MIN_ROW_GFNS, MapLayout

Ranges = Sequence[tuple[int, int]]


def cells_at_least(lay: MapLayout, cell: tuple[float, float]) -> bool:
    cw, ch = lay.cell_px()
    return cw >= cell[0] - 1e-9 and ch >= cell[1] - 1e-9


def shown_whole(lay: MapLayout, ranges: Ranges) -> bool:
    """Every page of `ranges` on screen (none scrolled off or folded)."""
    ranges = clip(ranges, lay.extent)
    return bool(ranges) and all(visible_part(lay, a, b) == (a, b) for a, b in ranges)


def labelled_target(
    lay: MapLayout, ranges: Ranges, cells: Sequence[tuple[float, float]]
) -> View | None:
    """The view that shows all of `ranges` with cells of at least one of `cells` (tried in
    order: the biggest first), at the widest such zoom, centred.  None when the current
    view already does, or when no zoom does (the ranges are too big for labelled cells:
    the caller frames them as any change)."""
    ranges = clip(ranges, lay.extent)
    if not ranges:
        return None
    if shown_whole(lay, ranges) and any(cells_at_least(lay, c) for c in cells):
        return None
    lo, hi = min(a for a, _ in ranges), max(b for _, b in ranges)
    probe = lay.copy()
    probe.set_pins(list(lay.pins) + list(ranges))  # framed ranges are kept unfolded
    for cell in cells:
        best = None
        r = MIN_ROW_GFNS
        while r <= probe.fit_row_gfns():
            if probe.width / r < cell[0]:
                break  # wider zooms have narrower cells
            probe.row_gfns = r
            fits = probe.rows_of_range(lo, hi) * probe.row_px() <= FIT_FRACTION * probe.height
            if fits and cells_at_least(probe, cell):
                best = r
            r *= 2
        if best is not None:
            return View(best, (lo + hi) / 2)
    return None
