"""Geometry of the GPA map (no Qt): rows of address space, zoom levels, scrolling.

The map draws gfns [0, extent) as rows of `row_gfns` gfns (a power of two, so
rows start on 2M/1G boundaries and huge pages look aligned).  View
coordinates: x is the gfn offset inside a row, y the display row (fractional
while scrolled): the linear row, or, with long empty runs folded into bands
(`map_fold`), the row as drawn.  Zooming halves or doubles `row_gfns`; the
widest zoom shows the whole guest; the deepest shows MIN_ROW_GFNS pages per
row.  Cells are roughly square until MAX_ROW_PX; when the guest is smaller
than the view its rows stretch to fill the height, and rows of wide cells shrink
(down to FIT_ROW_PX) when that makes the whole guest fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs

from imemviz.app.panes.map_fold import (
    FoldMap,
    LongRuns,
    Runs,
    band_rows,
    find_folds,
    folds_kept,
    pins_touch_folds,
)

MIN_ROW_GFNS = 8
MAX_ROW_PX = 40.0
MIN_FIT_ROW_PX = 4.0  # the whole-guest view keeps rows at least this tall
FIT_ROW_PX = 28.0  # rows of wide cells shrink to this (a tile label's height) to fit all
MAX_CELL_PX = 2 * MAX_ROW_PX  # the folded whole-guest view: cells at most this wide
LEGIBLE_PX = 16.0  # a page (or range) drawn smaller than this is too small to see
PAGE = 4096
NO_RUNS = LongRuns(None)


def _pow2_at_least(n: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


@attrs.define
class MapLayout:
    """The zoom (`row_gfns`), the scroll position (`top`, in display rows) and the folds.

    With `fold` on and the state's runs known (`set_runs`), long runs of empty memory
    fold into bands (`imemviz.app.panes.map_fold`): rows are then *display rows*.
    Without runs, or with `fold` off, display rows are the linear rows.
    """

    extent: int = 1 << 20  # gfns drawn
    width: float = 800.0  # view size in pixels
    height: float = 600.0
    row_gfns: int = 1 << 11
    top: float = 0.0  # first visible display row
    fold: bool = True
    long_runs: LongRuns = attrs.field(default=NO_RUNS, eq=False, repr=False)
    pins: tuple[tuple[int, int], ...] = ()
    _maps: dict = attrs.field(factory=dict, eq=False, repr=False)
    _fit: int | None = attrs.field(default=None, eq=False, repr=False)
    # (gfn, its row's pixels from the top of the view, zoom): kept there by a refold
    held: tuple[int, float, int] | None = attrs.field(default=None, eq=False, repr=False)

    def copy(self) -> MapLayout:
        """An independent layout in the same state (its own caches)."""
        other = MapLayout(
            self.extent,
            self.width,
            self.height,
            self.row_gfns,
            self.top,
            self.fold,
            self.long_runs,
            self.pins,
        )
        other._fit = self._fit
        # Same runs, pins, size and extent: the fold maps built so far hold for the copy
        # too (a framing's probe then starts with them; `adopt_folds` brings its own back).
        other._maps = dict(self._maps)
        return other

    def adopt_folds(self, other: MapLayout) -> None:
        """Keep the fold maps `other` (a probe copied from this layout) built, when its
        folds come from the same runs, pins, fold switch, width and extent as this one's.

        A framing's probe (`map_frame.frame_target`) builds the fold map of every zoom
        from the current one to the target's, and the animation then passes those very
        zooms: with them kept, its frames build no fold map."""
        if (
            other is self
            or other.long_runs is not self.long_runs
            or (other.pins, other.fold, other.width, other.extent)
            != (self.pins, self.fold, self.width, self.extent)
        ):
            return
        for r, fm in other._maps.items():
            self._maps.setdefault(r, fm)

    # ----------------------------------------------------------------- folds
    def foldmap(self, row_gfns: int | None = None) -> FoldMap:
        """The fold map of a zoom (cached until the runs, pins, size or extent change)."""
        r = row_gfns or self.row_gfns
        fm = self._maps.get(r)
        if fm is None:
            rows = max(1, -(-self.extent // r))
            if self.fold and len(self.long_runs):
                band = band_rows(self._base_px(r))
                fm = FoldMap(find_folds(self.long_runs, r, band, self.pins), band, rows)
                fm = self._with_context(fm, r)
            else:
                fm = FoldMap(None, 1, rows)
            self._maps[r] = fm
        return fm

    def _rows_to_fill(self) -> int:
        """Fewer rows than this leave the view part empty even at their tallest."""
        return int(self.height // MAX_ROW_PX)

    def _context_free(self, fm: FoldMap) -> bool:
        """A fold map without context rows, whose rows fill the view: one whose folds an op
        or a pin leaves as they are may be kept (`set_runs`, `set_pins`); the others are
        made again (their context depends on the rows of the whole guest)."""
        return fm.context == 0 and (not fm or fm.rows_total >= self._rows_to_fill())

    def _with_context(self, fm: FoldMap, r: int) -> FoldMap:
        """`fm`, or, when its rows leave the view part empty (a small or sparse guest),
        the folds keeping as many rows of their runs beside each band as fill the view:
        the empty memory around what is populated shows as memory, not as white under
        the map.  Only where even rows at their tallest (MAX_ROW_PX) leave room (rows
        of narrow cells stretch first); the most context whose rows fit at that height
        (found by halving), or one row more where rows of wide cells, a little shorter
        (`row_px`, down to FIT_ROW_PX), then fill the view."""
        base = self._base_px(r)
        want = self._rows_to_fill()
        if not fm or fm.rows_total >= want:
            return fm
        band = fm.band

        def folds(k: int) -> FoldMap:
            return FoldMap(
                find_folds(self.long_runs, r, band, self.pins, k), band, fm.rows_linear, k
            )

        lo, hi = 0, (want - fm.rows_total) // (2 * len(fm))  # each fold gives back 2 a k
        best = fm
        for _ in range(8):
            if hi <= lo:
                break
            k = (lo + hi + 1) // 2
            got = folds(k)
            if got.rows_total <= want:
                lo, best = k, got
            else:
                hi = k - 1
        if base > FIT_ROW_PX and best:
            more = folds(best.context + 1)
            if more.rows_total * FIT_ROW_PX <= self.height:
                best = more
        return best

    def _invalidate(self) -> None:
        self._maps = {}
        self._fit = None

    def linear_top(self) -> float:
        """The gfn at the top-left of the view (fractional): a position folds cannot move."""
        return self._linear_top() * self.row_gfns

    def set_linear_top(self, gfn: float) -> None:
        self._set_linear_top(gfn / self.row_gfns)

    def _linear_top(self) -> float:
        """The fractional linear row at the top of the view (survives a change of folds)."""
        fm = self.foldmap()
        d = math.floor(self.top)
        row, i = fm.at_display_row(d)
        return row + (self.top - d if i < 0 else 0.0)

    def _set_linear_top(self, row: float) -> None:
        fm = self.foldmap()
        r = math.floor(row)
        self.top = fm.display_row(r) + (row - r if fm.fold_of_row(r) < 0 else 0.0)

    def hold(self, gfn: int | None) -> None:
        """Keep gfn's row where it is on the screen when the folds change (an op's refold,
        new pins) instead of the top row, until `hold(None)` or a zoom.  A gfn in a fold
        band or off the screen is not held (the top row is kept as before).

        Why: an op on a page that sits alone between fold bands can unfold the rows around
        it (a 2M folio fills them): kept by its top row, the view slid the page down and
        off the screen, and Follow changes then zoomed out to find it."""
        self.held = None
        if gfn is None or not 0 <= gfn < self.extent:
            return
        r = self.row_gfns
        fm = self.foldmap()
        if fm.fold_of_row(gfn // r) >= 0:
            return
        px = (fm.display_row(gfn // r) - self.top) * self.row_px()
        if 0 <= px < self.height:
            self.held = (int(gfn), px, r)

    def _place(self, keep_row: float) -> None:
        """After a refold: the held gfn back at its height, else the linear top row kept."""
        held = self.held
        if held is not None and held[2] == self.row_gfns:
            g, px, r = held
            self.top = self.foldmap().display_row(g // r) - px / self.row_px()
            return
        self._set_linear_top(keep_row)

    def set_runs(
        self, runs: Runs | LongRuns | None, changed: Iterable[tuple[int, int]] | None = None
    ) -> None:
        """The state's step function changed: refold, keeping the top row where it was.

        `changed`: the gfn ranges outside which the new runs equal the ones set before
        (an op's changed ranges); fold maps whose folds those runs leave as they were stay.
        The widest zoom (`fit_row_gfns`) is not recomputed for it (that costs a fold map
        per zoom level): `fit()` does that, and zooming out stops at the last one known.
        """
        new = runs if isinstance(runs, LongRuns) else LongRuns(runs)
        sizes_ok = all(
            fm.rows_linear == max(1, -(-self.extent // r)) for r, fm in self._maps.items()
        )
        if new.same_as(self.long_runs) and sizes_ok:
            return  # most ops change no foldable run: the fold maps stay (no refold per op)
        if changed is not None and sizes_ok and self._maps and self.long_runs is not None:
            # An op split or grew an empty run where its folds stay the same (a pinned
            # page, a run too short to fold at these zooms): keep the maps, no refold.
            kept: dict[int, FoldMap] = {}
            for r, fm in self._maps.items():
                if not self._context_free(fm):
                    if r == self.row_gfns:
                        break  # made again, and the view placed again
                    continue  # made again when that zoom is next drawn
                near = folds_kept(self.long_runs, new, changed, r, fm.band, self.pins, fm.context)
                if near is None and self.fold:
                    break
                kept[r] = fm if near is None else fm.with_runs(near)
            else:
                self.long_runs = new
                self._maps = kept
                return
        keep = self._linear_top()
        self.long_runs = new
        fit = self._fit
        self._invalidate()
        self._fit = fit
        self._place(keep)

    def set_pins(self, pins: Iterable[tuple[int, int]]) -> None:
        pins = tuple(sorted({(int(a), int(b)) for a, b in pins if b > a}))
        if pins == self.pins:
            return
        keep = self._linear_top()
        changed = set(pins) ^ set(self.pins)
        fm = self._maps.get(self.row_gfns)
        self.pins = pins
        fit = self._fit  # kept (stale at worst): see set_runs
        self._invalidate()
        self._fit = fit
        if (
            fm is not None
            and self._context_free(fm)
            and fm.rows_linear == max(1, -(-self.extent // self.row_gfns))
            and not pins_touch_folds(
                self.long_runs if self.fold else NO_RUNS,
                self.row_gfns,
                fm.band,
                changed,
                fm.context,
            )
        ):
            # The pins that came or went lie in no foldable run at this zoom (an op's
            # focus, the selection moving over populated memory): its folds stay, and so
            # does the view (re-placing by the top row would drop a fraction of a band).
            self._maps[self.row_gfns] = fm
            return
        self._place(keep)

    def set_fold(self, on: bool) -> None:
        if on == self.fold:
            return
        keep = self._linear_top()
        self.fold = on
        self._invalidate()
        self._set_linear_top(keep)

    # ----------------------------------------------------------------- sizes
    def rows_linear(self, row_gfns: int | None = None) -> int:
        r = row_gfns or self.row_gfns
        return max(1, -(-self.extent // r))

    def rows_total(self, row_gfns: int | None = None) -> int:
        """Display rows at this zoom (folded runs count as their bands)."""
        return self.foldmap(row_gfns).rows_total

    def _base_px(self, r: int) -> float:
        return min(max(self.width / r, 1.0), MAX_ROW_PX)

    def row_px(self, row_gfns: int | None = None) -> float:
        r = row_gfns or self.row_gfns
        base = self._base_px(r)
        fill = self.height / self.rows_total(r)
        if min(base, FIT_ROW_PX) <= fill < base:
            return fill  # wide cells: rows a little shorter, and every row fits the view
        return max(base, min(fill, MAX_ROW_PX))

    def rows_visible(self) -> float:
        return self.height / self.row_px()

    def fit_row_gfns(self) -> int:
        """The widest zoom: the smallest power of two whose rows all fit the height.

        Folded, everything may fit at a much deeper zoom; the fit then starts from the
        zoom whose cells are MAX_CELL_PX wide (no point in bigger), so a small guest
        opens with its populated pages as big tiles filling the view (rows of wide cells
        as short as FIT_ROW_PX, where a tile's label still fits), not as a few giant
        cells, nor as a strip at the top of an empty map.
        """
        if self._fit is not None:
            return self._fit
        folded = self.fold and len(self.long_runs)
        r = max(MIN_ROW_GFNS, _pow2_at_least(self.extent / max(self.height, 1)) // 4)
        if folded:
            # From the deepest zoom whose cells are at most MAX_CELL_PX wide: a small or
            # sparse guest fills the view with big tiles (at the zoom of square 16 px
            # cells it took a third of a 1920x1080 view, the rest of the map empty).
            r = max(MIN_ROW_GFNS, _pow2_at_least(self.width / MAX_CELL_PX))
        # Rows fit at their square height, or at FIT_ROW_PX for wider cells (`row_px`).
        while self.rows_total(r) * max(
            min(self._base_px(r), FIT_ROW_PX), MIN_FIT_ROW_PX
        ) > self.height and r < (1 << 52):
            r *= 2
        self._fit = r
        return r

    def max_top(self) -> float:
        return max(0.0, self.rows_total() - self.rows_visible())

    # -------------------------------------------------------------- changes
    def clamp(self) -> None:
        self.row_gfns = min(max(self.row_gfns, MIN_ROW_GFNS), self.fit_row_gfns())
        self.top = min(max(self.top, 0.0), self.max_top())

    def fit(self) -> None:
        self._fit = None
        self.row_gfns = self.fit_row_gfns()
        self.top = 0.0

    def resize(self, width: float, height: float, extent: int | None = None) -> None:
        width, height = max(width, 1.0), max(height, 1.0)
        if extent is not None:
            extent = max(extent, 1)
        if (width, height, extent or self.extent) != (self.width, self.height, self.extent):
            keep = self._linear_top()
            self.width, self.height = width, height
            if extent is not None:
                self.extent = extent
            self._invalidate()
            self._set_linear_top(keep)
        self.clamp()

    def scroll_rows(self, rows: float) -> None:
        self.top += rows
        self.clamp()

    def display_y(self, gfn: float) -> float:
        """The display row (fractional) of a gfn's position in the address space."""
        r = self.row_gfns
        row = gfn / r
        i = math.floor(row)
        fm = self.foldmap()
        if fm.fold_of_row(i) >= 0:
            return float(fm.display_row(i))
        return fm.display_row(i) + (row - i)

    def zoom(self, steps: int, anchor_gfn: float | None = None, anchor_frac: float = 0.5) -> bool:
        """Zoom in (steps > 0) or out around a gfn kept at `anchor_frac` of the height."""
        old = self.row_gfns
        if anchor_gfn is None:
            d = self.top + anchor_frac * self.rows_visible()
            row, _i = self.foldmap().at_display_row(math.floor(d))
            anchor_gfn = (row + (d - math.floor(d))) * old
        r = old
        if steps < 0:
            self._fit = None  # zooming out stops at the widest zoom of the current state
        for _ in range(abs(steps)):
            r = r // 2 if steps > 0 else r * 2
        self.row_gfns = min(max(r, MIN_ROW_GFNS), self.fit_row_gfns())
        self.top = self.display_y(anchor_gfn) - anchor_frac * self.rows_visible()
        self.clamp()
        return self.row_gfns != old

    def rows_of_range(self, start: int, end: int, row_gfns: int | None = None) -> int:
        """Display rows from start's row to (end - 1)'s row, both included."""
        r = row_gfns or self.row_gfns
        fm = self.foldmap(r)
        return fm.display_row((end - 1) // r) - fm.display_row(start // r) + 1

    def show_range(self, start: int, end: int) -> None:
        """Zoom so [start, end) is visible as large as possible, and scroll to it."""
        r = self.fit_row_gfns()
        while r > MIN_ROW_GFNS:
            half = r // 2
            if self.rows_of_range(start, end, half) * self.row_px(half) > self.height * 0.9:
                break
            r = half
        self.row_gfns = r
        self.center_on(start, end)

    def center_on(self, start: int, end: int) -> None:
        """Scroll (not zoom) so the rows of [start, end) are in the middle of the view."""
        r = self.row_gfns
        fm = self.foldmap()
        first, last = fm.display_row(start // r), fm.display_row((end - 1) // r)
        self.top = (first + last + 1) / 2 - self.rows_visible() / 2
        self.clamp()

    def ensure_visible(self, gfn: int) -> None:
        row = self.foldmap().display_row(gfn // self.row_gfns)
        if row < self.top:
            self.top = float(row)
        elif row + 1 > self.top + self.rows_visible():
            self.top = row + 1 - self.rows_visible()
        self.clamp()

    # ---------------------------------------------------------- conversions
    def gfn_at(self, x: float, y: float) -> int:
        """The gfn under view coordinates (x, y), clamped to [0, extent).  In a fold band:
        the first gfn of the folded rows."""
        r = self.row_gfns
        col = min(max(math.floor(x), 0), r - 1)
        row, i = self.foldmap().at_display_row(max(math.floor(y), 0))
        g = row * r + (0 if i >= 0 else col)
        return min(max(g, 0), self.extent - 1)

    def fold_at(self, y: float):
        """The `Fold` drawn at display row y, or None."""
        fm = self.foldmap()
        _row, i = fm.at_display_row(max(math.floor(y), 0))
        return fm.folds[i] if i >= 0 else None

    def cell_of(self, gfn: int) -> tuple[int, int]:
        """(x, y) view coordinates of the top-left corner of gfn's cell (in a fold: the
        band's first row)."""
        return gfn % self.row_gfns, self.foldmap().display_row(gfn // self.row_gfns)

    def display_ranges(self, ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """gfn ranges as display-index ranges: pass them to `staircase`/`outline_path`."""
        fm = self.foldmap()
        if not fm:
            return [(a, b) for a, b in ranges if b > a]
        return fm.display_ranges(ranges, self.row_gfns)

    def raster_window(self) -> tuple[int, int, int]:
        """(first display row, rows, cols) of the raster that covers the view."""
        row0 = max(0, math.floor(self.top))
        last = min(self.rows_total(), math.ceil(self.top + self.rows_visible()))
        rows = max(1, last - row0)
        cols = self.row_gfns if self.row_gfns <= self.width else max(1, int(self.width))
        return row0, rows, cols

    def raster_pieces(self) -> tuple[tuple[int, int, int], ...]:
        """The raster window as (first gfn, rows, fill code) pieces (see FoldMap.pieces)."""
        row0, rows, _cols = self.raster_window()
        return self.foldmap().pieces(row0, row0 + rows, self.row_gfns)

    def visible_gfns(self) -> tuple[int, int]:
        row0, rows, _ = self.raster_window()
        fm = self.foldmap()
        a = fm.linear_row(row0)
        last, fold = fm.at_display_row(row0 + rows - 1)
        b = fm.fold(fold).row1 if fold >= 0 else last + 1
        return a * self.row_gfns, min(self.extent, b * self.row_gfns)

    def cell_px(self) -> tuple[float, float]:
        return self.width / self.row_gfns, self.row_px()

    def range_px(self, start: int, end: int) -> tuple[float, float]:
        """(width, height) in pixels of the biggest box inside [start, end) as drawn (its
        rows are a staircase: a partial first row, whole rows, a partial last row).  In a
        fold band a range has no size."""
        r = self.row_gfns
        fm = self.foldmap()
        if fm.fold_of_row(start // r) >= 0 or fm.fold_of_row((end - 1) // r) >= 0:
            return 0.0, 0.0
        cw, ch = self.cell_px()
        rows = self.rows_of_range(start, end)
        if rows == 1:
            return (end - start) * cw, ch
        first = r - start % r  # cells of the first row's piece (its right end)
        last = (end - 1) % r + 1  # cells of the last row's piece (its left end)
        boxes = [(first * cw, ch), (last * cw, ch)]
        if rows == 2:
            boxes.append((max(0, last - start % r) * cw, 2 * ch))
        else:
            boxes += [
                (r * cw, (rows - 2) * ch),
                (first * cw, (rows - 1) * ch),
                (last * cw, (rows - 1) * ch),
            ]
        return max(boxes, key=lambda wh: (min(wh) >= LEGIBLE_PX / 2, wh[0] * wh[1]))

    def is_legible(self, start: int, end: int, px: float = LEGIBLE_PX) -> bool:
        """Whether [start, end) is drawn big enough to see: a box inside it of at least
        px x px in area, and no thinner than px / 2 either way (a 1-3 px sliver is not)."""
        w, h = self.range_px(start, end)
        return w * h >= px * px - 1e-6 and min(w, h) >= px / 2 - 1e-9


def staircase(start: int, end: int, row_gfns: int) -> list[tuple[float, float]]:
    """The outline polygon of gfns [start, end) in rows of `row_gfns` (view coordinates)."""
    r = row_gfns
    rs, cs = divmod(start, r)
    re, ce = divmod(end - 1, r)
    ce += 1
    if rs == re:
        return [(cs, rs), (ce, rs), (ce, rs + 1), (cs, rs + 1)]
    return [
        (cs, rs),
        (r, rs),
        (r, re),
        (ce, re),
        (ce, re + 1),
        (0, re + 1),
        (0, rs + 1),
        (cs, rs + 1),
    ]


def nice_step(min_units: float) -> int:
    """The smallest power of two >= min_units (tick spacing in rows or gfns)."""
    return _pow2_at_least(min_units)


def fmt_gpa(gpa: int) -> str:
    """A GPA as the kernel prints it: lower-case hex with 0x."""
    return f"{gpa:#x}"
