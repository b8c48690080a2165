"""Framing the GPA map (no Qt): is a change visible, and the view that shows it legibly.

`needs_frame(layout, ranges)` says whether gfn ranges (what an op changed) are off the
screen or drawn smaller than `LEGIBLE_PX` both ways, so that the map has to move to
show them.  `frame_target(layout, ranges)` picks the view that shows them: the zoom
closest to the current one at which the biggest range is legible and all of them fit
in `FIT_FRACTION` of the height, centred.  A `View` is a zoom and the gfn at the top
of the map, which stays meaningful when folds change; `ViewHistory` is the Back /
Forward list of framings, and `interpolate` the in-between views of an animation
(log of the zoom and the centre address, eased).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

from imemviz.app.panes.map_layout import LEGIBLE_PX, MIN_ROW_GFNS, MapLayout

FIT_FRACTION = 0.8  # framed ranges take at most this much of the map's height
HISTORY_MAX = 50

Ranges = Sequence[tuple[int, int]]


@attrs.frozen
class View:
    """A framing: `row_gfns` per row, centred on gfn `center` (fractional)."""

    row_gfns: int
    center: float

    @classmethod
    def of(cls, lay: MapLayout) -> View:
        mid = lay.top + lay.rows_visible() / 2
        fm = lay.foldmap()
        d = math.floor(mid)
        row, i = fm.at_display_row(d)
        frac = (mid - d) if i < 0 else 0.5
        return cls(lay.row_gfns, (row + frac) * lay.row_gfns)

    def apply(self, lay: MapLayout) -> None:
        lay.row_gfns = self.row_gfns
        lay.clamp()
        lay.top = lay.display_y(self.center) - lay.rows_visible() / 2
        lay.clamp()


def clip(ranges: Ranges, extent: int) -> list[tuple[int, int]]:
    return [(max(a, 0), min(b, extent)) for a, b in ranges if min(b, extent) > max(a, 0)]


def visible_part(lay: MapLayout, a: int, b: int) -> tuple[int, int] | None:
    """The part of [a, b) whose rows are on screen and not folded (None: none of it)."""
    va, vb = lay.visible_gfns()
    lo, hi = max(a, va), min(b, vb)
    if hi <= lo:
        return None
    r = lay.row_gfns
    fm = lay.foldmap()
    i = fm.fold_of_row(lo // r)
    if i >= 0:
        lo = fm.fold(i).row1 * r  # starts in a fold band: what shows begins after it
    i = fm.fold_of_row((hi - 1) // r)
    if i >= 0:
        hi = min(hi, fm.fold(i).row0 * r)
    if hi <= lo:
        return None
    top, bottom = lay.top, lay.top + lay.rows_visible()
    d_lo, d_hi = fm.display_row(lo // r), fm.display_row((hi - 1) // r)
    if d_hi + 1 <= top or d_lo >= bottom:
        return None
    return lo, hi


def needs_frame(lay: MapLayout, ranges: Ranges, legible_px: float = LEGIBLE_PX) -> bool:
    """True when none of `ranges` is on screen at a legible size."""
    ranges = clip(ranges, lay.extent)
    if not ranges:
        return False
    for a, b in ranges:
        part = visible_part(lay, a, b)
        if part is not None and lay.is_legible(*part, legible_px):
            return False
    return True


def on_screen(lay: MapLayout, ranges: Ranges) -> bool:
    """True when some part of `ranges` is on screen (whatever its size)."""
    return any(visible_part(lay, a, b) is not None for a, b in clip(ranges, lay.extent))


def _zooms(lay: MapLayout) -> list[int]:
    out, r = [], MIN_ROW_GFNS
    fit = lay.fit_row_gfns()
    while r <= fit:
        out.append(r)
        r *= 2
    return out


def frame_target(lay: MapLayout, ranges: Ranges, legible_px: float = LEGIBLE_PX) -> View | None:
    """The view that shows `ranges` legibly, as close to the current zoom as possible."""
    ranges = clip(ranges, lay.extent)
    if not ranges:
        return None
    lo, hi = min(a for a, _ in ranges), max(b for _, b in ranges)
    biggest = max(ranges, key=lambda ab: ab[1] - ab[0])
    probe = lay.copy()
    probe.set_pins(list(lay.pins) + list(ranges))
    cur = math.log2(lay.row_gfns)
    best: tuple[float, int] | None = None
    fallback: int | None = None
    # Nearest zoom first (ties: the deeper one), so the first that fits and is legible is
    # the answer: each zoom tried costs a fold map with the new pins (a few ms on a big
    # guest, twenty zooms deep), and this runs on the GUI thread after a seek.
    for r in sorted(_zooms(probe), key=lambda r: (abs(math.log2(r) - cur), r)):
        probe.row_gfns = r
        fits = probe.rows_of_range(lo, hi) * probe.row_px() <= FIT_FRACTION * probe.height
        legible = probe.is_legible(*biggest, legible_px)
        if legible and (fallback is None or r > fallback):
            fallback = r  # the widest zoom at which the biggest range is legible
        if fits and legible:
            best = (abs(math.log2(r) - cur), r)
            break
    if best is not None:
        r = best[1]
        center = (lo + hi) / 2
    else:
        r = fallback if fallback is not None else MIN_ROW_GFNS
        center = (biggest[0] + biggest[1]) / 2  # it cannot all fit: the biggest part
    # The probe built the fold maps of the zooms from here to there, which the animation
    # passes through: kept when the map pins the ranges too (Follow, Go to do).
    lay.adopt_folds(probe)
    return View(r, center)


def ease(t: float) -> float:
    """Ease in and out (cubic)."""
    t = min(max(t, 0.0), 1.0)
    return 4 * t * t * t if t < 0.5 else 1 - (-2 * t + 2) ** 3 / 2


def interpolate(a: View, b: View, t: float) -> View:
    """The view a fraction t of the way from a to b: the zoom moves in powers of two
    (the map's rows are powers of two), evenly on a log scale; the centre moves evenly."""
    e = ease(t)
    za, zb = math.log2(a.row_gfns), math.log2(b.row_gfns)
    r = 1 << round(za + (zb - za) * e)
    return View(r, a.center + (b.center - a.center) * e)


@attrs.define
class ViewHistory:
    """Back / Forward through framings (zoom to selection, Go to, following a change)."""

    back: list[View] = attrs.field(factory=list)
    forward: list[View] = attrs.field(factory=list)

    def push(self, current: View) -> None:
        """Record `current` before moving away from it."""
        if self.back and self.back[-1] == current:
            return
        self.back.append(current)
        del self.back[:-HISTORY_MAX]
        self.forward.clear()

    def go_back(self, current: View) -> View | None:
        if not self.back:
            return None
        self.forward.append(current)
        return self.back.pop()

    def go_forward(self, current: View) -> View | None:
        if not self.forward:
            return None
        self.back.append(current)
        return self.forward.pop()

    def clear(self) -> None:
        self.back.clear()
        self.forward.clear()
