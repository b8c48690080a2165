"""Framing a step-through: the op's pages drawn big enough to carry their state.

A step is about a few leaves changing state (BLOCKED at the BLOCK step,
PENDING at AUG, gone at REMOVE).  The map's usual framing (`map_frame`) moves
only when a change is smaller than LEGIBLE_PX, so four converted pages stay a
40x10 px strip in the whole-guest view: visible as a spot, but not which leaf
is in which state.  While stepping (`step_target`):

1. what the op changed, when all of it fits as tiles with their state written
   in them (the map's cell labels, `CellLabels.FULL_PX`, else `SHORT_PX`): one
   framing for every step of the op;
2. else (a 4K conversion inside a 2M leaf changes 512 pages) the step's own
   gfns as such tiles when they fit (the 4K page blocked and removed), and
3. else, or for a step of bigger gfns (the 2M leaf blocked, demoted), the op's
   change whole, at the deepest zoom where it fits.
A step that names no gfn (TRACK, WBINVD, invalidate end: where the new
attributes land) or more gfns than the op changed (an invalidation of the whole
memslot) keeps the view while some of the op's change is on screen.

No Qt: the sizes come in as arguments, the layout is `MapLayout`.
"""

from __future__ import annotations

from collections.abc import Sequence

from imemviz.app.panes.map_frame import FIT_FRACTION, View, clip, visible_part
from imemviz.app.panes.map_layout import MIN_ROW_GFNS, MapLayout

Ranges = Sequence[tuple[int, int]]
Cells = Sequence[tuple[float, float]]


def cells_at_least(lay: MapLayout, cell: tuple[float, float]) -> bool:
    cw, ch = lay.cell_px()
    return cw >= cell[0] - 1e-9 and ch >= cell[1] - 1e-9


def shown_whole(lay: MapLayout, ranges: Ranges) -> bool:
    """Every page of `ranges` on screen (none scrolled off or folded)."""
    ranges = clip(ranges, lay.extent)
    return bool(ranges) and all(visible_part(lay, a, b) == (a, b) for a, b in ranges)


def _fits(lay: MapLayout, lo: int, hi: int) -> bool:
    return lay.rows_of_range(lo, hi) * lay.row_px() <= FIT_FRACTION * lay.height


def _probe(lay: MapLayout, ranges: Ranges) -> MapLayout:
    probe = lay.copy()
    probe.set_pins(list(lay.pins) + list(ranges))  # framed ranges are kept unfolded
    return probe


def labelled_zoom(lay: MapLayout, ranges: Ranges, cells: Cells) -> int | None:
    """The widest zoom (gfns per row) at which all of `ranges` fits with cells of at least
    one of `cells` (tried in order: the biggest first); None when no zoom does."""
    ranges = clip(ranges, lay.extent)
    if not ranges:
        return None
    lo, hi = min(a for a, _ in ranges), max(b for _, b in ranges)
    probe = _probe(lay, ranges)
    for cell in cells:
        best = None
        r = MIN_ROW_GFNS
        while r <= probe.fit_row_gfns():
            if probe.width / r < cell[0]:
                break  # wider zooms have narrower cells
            probe.row_gfns = r
            if _fits(probe, lo, hi) and cells_at_least(probe, cell):
                best = r
            r *= 2
        if best is not None:
            return best
    return None


def _centre(ranges: Ranges) -> float:
    return (min(a for a, _ in ranges) + max(b for _, b in ranges)) / 2


def labelled_now(lay: MapLayout, ranges: Ranges, cells: Cells) -> bool:
    """All of `ranges` on screen as labelled tiles already (cheap: no zoom is tried)."""
    return shown_whole(lay, ranges) and any(cells_at_least(lay, c) for c in cells)


def labelled_target(lay: MapLayout, ranges: Ranges, cells: Cells) -> View | None:
    """The view that shows all of `ranges` as labelled tiles (`labelled_zoom`), centred;
    None when the current view already does, or when no zoom does."""
    ranges = clip(ranges, lay.extent)
    if not ranges or labelled_now(lay, ranges, cells):
        return None
    r = labelled_zoom(lay, ranges, cells)
    return None if r is None else View(r, _centre(ranges))


def whole_target(lay: MapLayout, ranges: Ranges) -> View | None:
    """The deepest zoom at which all of `ranges` fits, centred; None when it is shown whole
    already (or is empty)."""
    ranges = clip(ranges, lay.extent)
    if not ranges or shown_whole(lay, ranges):
        return None
    lo, hi = min(a for a, _ in ranges), max(b for _, b in ranges)
    probe = _probe(lay, ranges)
    r = MIN_ROW_GFNS
    while r < probe.fit_row_gfns():
        probe.row_gfns = r
        if _fits(probe, lo, hi):
            break
        r *= 2
    return View(r, _centre(ranges))


def _unless_here(lay: MapLayout, ranges: Ranges, r: int) -> View | None:
    """View(r) on `ranges`, or None when the map shows them whole at that zoom already."""
    if r == lay.row_gfns and shown_whole(lay, ranges):
        return None
    return View(r, _centre(ranges))


def step_target(lay: MapLayout, changed: Ranges, step: Ranges, cells: Cells) -> View | None:
    """Where the map goes for a step (see the module's doc): `changed` is what the op
    changed, `step` the gfns this step names.  None: stay."""
    changed = clip(changed, lay.extent)
    step = clip(step, lay.extent)
    if not changed:
        return labelled_target(lay, step, cells) if step else None
    # The cheap checks first: after the first step the view is usually right already.
    # Only the biggest tiles count here: the smaller ones carry a short state only, and a
    # long one (BLOCKED, PENDING) does not fit them.
    if labelled_now(lay, changed, cells[:1]):
        return None
    r = labelled_zoom(lay, changed, cells)
    if r is not None:
        return _unless_here(lay, changed, r)
    size = sum(b - a for a, b in step)
    if step and size <= sum(b - a for a, b in changed):
        if labelled_now(lay, step, cells[:1]):
            return None
        r = labelled_zoom(lay, step, cells)
        if r is not None:
            return _unless_here(lay, step, r)
        return whole_target(lay, changed)
    # No gfn, or more than the op changed (an invalidation over the whole memslot): what
    # the step draws differently is in the op's change, shown already, or to be shown.
    if any(visible_part(lay, a, b) is not None for a, b in changed):
        return None
    return whole_target(lay, changed)
