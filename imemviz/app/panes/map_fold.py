"""Folding the GPA map (no Qt): long runs of nothing shrink to one band, so what exists shows.

A 4 GiB TD at launch is 99% "private, no folio": drawn linearly, its few mapped pages
are 1-3 px slivers.  The map therefore folds, at every zoom, each run of rows that
holds only *empty* memory (a hole, untouched private or shared memory, the end of the
address space) and fills at least `FOLD_MIN_ROWS` whole rows: the rows of it become a
band `FOLD_PX` high that names the run ("1.9G private, no folio") and the address jump.
When the folded rows would leave the view part empty (a small or sparse guest), each
fold keeps as many rows of its run on each side as fill it (`context`, chosen by
`MapLayout`): the colour goes on beside the band.  Runs that hold anything else
(a folio, a leaf, a poisoned page) are never folded, so their size on screen stays
true.  Pinned gfn ranges (the selection, the change being framed, a Go to target, a
fold the user opened) are never folded either.

Coordinates: the map draws *display rows*; a linear row is gfns [row * r, (row + 1) * r)
for `r` gfns per row.  A `FoldMap` converts between the two for one zoom: display rows
before a fold are linear rows; a fold of linear rows [row0, row1) takes `band` display
rows; the rows after it move up by (row1 - row0 - band).  Display index = display row
* r + column, the space outlines and selections are drawn in.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import attrs
import numpy as np

from imemviz.model.raster import Code

FOLDABLE = (Code.OUTSIDE, Code.HOLE, Code.SHARED_EMPTY, Code.PRIVATE_EMPTY)
FOLD_MIN_ROWS = 6  # a run folds only if this many whole rows of it would go
CONTEXT_ROWS = 0  # whole rows of a folded run kept on each side of its band
FOLD_PX = 14.0  # height of a fold band on screen (pixels)
MIN_FOLD_ROW_GFNS = 8  # the deepest zoom (map_layout.MIN_ROW_GFNS)

Runs = tuple[np.ndarray, np.ndarray]  # the step function: bounds int64[k+1], codes uint8[k]


@attrs.frozen
class Fold:
    row0: int  # first linear row folded away
    row1: int  # end of the folded rows (exclusive)
    code: int  # what they hold (a FOLDABLE code)
    run: tuple[int, int]  # the whole run of that code, in gfns (for the label)
    drow: int  # first display row of the band


class LongRuns:
    """The foldable runs of one step function, by start (computed once per state, on the
    engine thread): runs shorter than any zoom could fold are left out."""

    def __init__(self, runs: Runs | None, foldable: tuple[int, ...] = FOLDABLE) -> None:
        if runs is None or len(runs[1]) == 0:
            self.start = self.end = np.zeros(0, np.int64)
            self.code = np.zeros(0, np.uint8)
            return
        bounds, codes = runs
        s, e = bounds[:-1], bounds[1:]
        ok = np.isin(codes, np.asarray(foldable, np.uint8))
        ok &= (e - s) >= (FOLD_MIN_ROWS + 2 * CONTEXT_ROWS) * MIN_FOLD_ROW_GFNS
        self.start = np.ascontiguousarray(s[ok], np.int64)
        self.end = np.ascontiguousarray(e[ok], np.int64)
        self.code = np.ascontiguousarray(codes[ok], np.uint8)

    def __len__(self) -> int:
        return len(self.start)

    def updated(self, bounds: np.ndarray, codes: np.ndarray, ranges) -> LongRuns:
        """The long runs of the step function (bounds, codes), which differs from the one
        these were made from only inside the gfn `ranges` (sorted, merged): only the runs
        around each range are looked at again (2 ms for 130,000 runs otherwise).

        Around a range, the span from the run before the one holding its start to the run
        after the one holding its end: those outer boundaries lie outside the range, where
        both step functions agree, so they are run boundaries in both, and every old run
        lies wholly inside or wholly outside each span."""
        n = len(codes)
        spans: list[list[int]] = []  # [first run, last run] index spans, merged
        for a, b in ranges:
            a, b = max(int(a), int(bounds[0])), min(int(b), int(bounds[-1]))
            if a >= b:
                continue
            i0 = max(int(np.searchsorted(bounds, a, side="right")) - 2, 0)
            i1 = min(int(np.searchsorted(bounds, b - 1, side="right")), n - 1)
            if spans and i0 <= spans[-1][1] + 1:
                spans[-1][1] = max(spans[-1][1], i1)
            else:
                spans.append([i0, i1])
        if not spans:
            return self
        out = LongRuns(None)
        gone = np.zeros(len(self.start), bool)
        parts_s, parts_e, parts_c = [], [], []
        for i0, i1 in spans:
            lo, hi = int(bounds[i0]), int(bounds[i1 + 1])
            gone[np.searchsorted(self.start, lo) : np.searchsorted(self.start, hi)] = True
            fresh = LongRuns((bounds[i0 : i1 + 2], codes[i0 : i1 + 1]))
            parts_s.append(fresh.start)
            parts_e.append(fresh.end)
            parts_c.append(fresh.code)
        start = np.concatenate([self.start[~gone], *parts_s])
        order = np.argsort(start, kind="stable")
        out.start = np.ascontiguousarray(start[order], np.int64)
        out.end = np.ascontiguousarray(np.concatenate([self.end[~gone], *parts_e])[order])
        out.code = np.ascontiguousarray(np.concatenate([self.code[~gone], *parts_c])[order])
        return out

    def same_as(self, other: LongRuns | None) -> bool:
        """The same runs (the fold maps made from `other` still hold)."""
        return other is not None and (
            other is self
            or (
                np.array_equal(self.start, other.start)
                and np.array_equal(self.end, other.end)
                and np.array_equal(self.code, other.code)
            )
        )

    def candidates(self, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Runs long enough to fold at r gfns per row, by start (kept per zoom: an op asks
        for them twice, for the selection's pins and for the new fold map)."""
        memo: dict[int, tuple[np.ndarray, ...]]
        memo = self.__dict__.setdefault("_candidates", {})
        got = memo.get(r)
        if got is None or got[3] is not self.start:
            m = (self.end - self.start) >= (FOLD_MIN_ROWS + 2 * CONTEXT_ROWS) * r
            got = (self.start[m], self.end[m], self.code[m], self.start)
            memo[r] = got
        return got[0], got[1], got[2]


FoldArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def pins_touch_folds(
    long_runs: LongRuns,
    r: int,
    band: int,
    pins: Iterable[tuple[int, int]],
    context: int = CONTEXT_ROWS,
) -> bool:
    """Whether any of `pins` lies in a run `find_folds` could fold at r gfns per row
    with this band: if none does, adding or removing them leaves the folds as they are."""
    pins = [(a, b) for a, b in pins if b > a]
    if not pins or not len(long_runs):
        return False
    s, e, _c = long_runs.candidates(r)
    ra = -(-s // r) + context
    rb = e // r - context
    keep = _foldable(ra, rb, band, context)
    ra, rb = ra[keep], rb[keep]
    for a, b in pins:
        pa, pb = a // r - context, (b - 1) // r + 1 + context
        i0 = int(np.searchsorted(rb, pa, side="right"))
        i1 = int(np.searchsorted(ra, pb, side="left"))
        if i1 > i0:
            return True
    return False


def _near(long_runs: LongRuns, ranges: Iterable[tuple[int, int]]) -> LongRuns:
    """The runs of `long_runs` that overlap or touch any of the gfn `ranges`."""
    keep = np.zeros(len(long_runs), bool)
    for a, b in ranges:
        i0 = int(np.searchsorted(long_runs.end, a, side="left"))  # first run ending at >= a
        i1 = int(np.searchsorted(long_runs.start, b, side="right"))  # runs starting at <= b
        keep[i0:i1] = True
    out = LongRuns(None)
    out.start, out.end, out.code = long_runs.start[keep], long_runs.end[keep], long_runs.code[keep]
    return out


def folds_kept(
    old: LongRuns,
    new: LongRuns,
    ranges: Iterable[tuple[int, int]],
    r: int,
    band: int,
    pins: Sequence[tuple[int, int]] = (),
    context: int = CONTEXT_ROWS,
) -> FoldArrays | None:
    """The folds at r gfns per row near `ranges` from `new`, if they fold the same rows
    as those from `old` (else None), when the two differ only inside the gfn `ranges`
    (an op's changed ranges; runs away from them are the same runs).  A fold comes from
    one run and the pins, so it is enough to fold the runs touching the ranges, old and
    new, and compare: an op on a selected page splits its empty run, but the pin had
    split the fold there already (no refold; `FoldMap.with_runs` renames the runs)."""
    ranges = list(ranges)
    a = find_folds(_near(old, ranges), r, band, pins, context)
    b = find_folds(_near(new, ranges), r, band, pins, context)
    same = all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3], strict=True))
    return b if same else None


def _foldable(ra: np.ndarray, rb: np.ndarray, band: int, context: int) -> np.ndarray:
    """Which runs, whose rows [ra, rb) are left to fold once `context` rows are kept on
    each side, fold: runs of at least FOLD_MIN_ROWS whole rows (and more than a band),
    however many rows the context then leaves, as long as the band is shorter (so that
    a little more context gives back a little more room, not a whole run at once)."""
    least = max(FOLD_MIN_ROWS, band + 1)
    return (rb - ra + 2 * context >= least) & (rb - ra >= band + 1)


def find_folds(
    long_runs: LongRuns,
    r: int,
    band: int,
    pins: Sequence[tuple[int, int]] = (),
    context: int = CONTEXT_ROWS,
) -> FoldArrays:
    """(row0, row1, code, run start, run end) arrays of every fold at r gfns per row.

    A fold keeps `context` whole rows of its run on each side (and of a pinned range),
    never covers a row that touches a pinned range, and removes more rows than its
    band adds back.
    """
    s, e, c = long_runs.candidates(r)
    ra = -(-s // r) + context  # first whole row inside the run, plus context
    rb = e // r - context
    least = max(FOLD_MIN_ROWS, band + 1) if context == 0 else band + 1
    keep = _foldable(ra, rb, band, context)
    ra, rb, c, s, e = ra[keep], rb[keep], c[keep], s[keep], e[keep]
    if pins and len(ra):
        pin_rows = sorted((a // r - context, (b - 1) // r + 1 + context) for a, b in pins if b > a)
        hit = np.zeros(len(ra), bool)
        for pa, pb in pin_rows:
            i0 = int(np.searchsorted(rb, pa, side="right"))
            i1 = int(np.searchsorted(ra, pb, side="left"))
            hit[i0:i1] = True
        extra: list[tuple[int, int, int, int, int]] = []
        for i in np.flatnonzero(hit).tolist():
            pieces = [(int(ra[i]), int(rb[i]))]
            for pa, pb in pin_rows:
                nxt = []
                for x, y in pieces:
                    if pb <= x or pa >= y:
                        nxt.append((x, y))
                        continue
                    if pa > x:
                        nxt.append((x, pa))
                    if pb < y:
                        nxt.append((pb, y))
                pieces = nxt
            extra += [(x, y, int(c[i]), int(s[i]), int(e[i])) for x, y in pieces if y - x >= least]
        ok = ~hit
        ra, rb, c, s, e = ra[ok], rb[ok], c[ok], s[ok], e[ok]
        if extra:
            more = np.asarray(extra, np.int64)
            ra, rb = np.concatenate([ra, more[:, 0]]), np.concatenate([rb, more[:, 1]])
            c = np.concatenate([c, more[:, 2].astype(np.uint8)])
            s, e = np.concatenate([s, more[:, 3]]), np.concatenate([e, more[:, 4]])
            order = np.argsort(ra, kind="stable")
            ra, rb, c, s, e = ra[order], rb[order], c[order], s[order], e[order]
    return ra, rb, c, s, e


def band_rows(row_px: float) -> int:
    """Display rows a fold band takes at `row_px` pixels per row."""
    return max(1, math.ceil(FOLD_PX / max(row_px, 1e-9) - 1e-9))


_EMPTY = np.zeros(0, np.int64)


class FoldMap:
    """Linear rows <-> display rows for one zoom (r gfns per row) and one set of folds."""

    def __init__(
        self, folds: FoldArrays | None, band: int, rows_linear: int, context: int = CONTEXT_ROWS
    ) -> None:
        self.band = band
        self.context = context  # rows of each folded run kept beside its band
        self.rows_linear = rows_linear
        if folds is None:
            folds = (_EMPTY, _EMPTY, np.zeros(0, np.uint8), _EMPTY, _EMPTY)
        r0, r1, code, rs, re = folds
        r1 = np.minimum(r1, rows_linear)
        ok = r1 - r0 > band
        self._r0, self._r1, self._code = r0[ok], r1[ok], code[ok]
        self._rs, self._re = rs[ok], re[ok]
        removed = np.cumsum(self._r1 - self._r0 - band)
        before = np.concatenate([[0], removed[:-1]]).astype(np.int64)
        self._d0 = self._r0 - before
        self.rows_total = max(1, rows_linear - int(removed[-1]) if len(removed) else rows_linear)

    def __len__(self) -> int:
        return len(self._r0)

    def __bool__(self) -> bool:
        return len(self._r0) > 0

    def with_runs(self, folds: FoldArrays) -> FoldMap:
        """This map with the runs (`Fold.run`) of the folds starting at `folds`' rows
        taken from `folds` (same rows folded, runs split or grown by an op)."""
        r0, _r1, _code, rs, re = folds
        i = np.searchsorted(self._r0, r0)
        ok = i < len(self._r0)
        ok[ok] &= self._r0[i[ok]] == r0[ok]
        if not ok.any():
            return self
        out = copy.copy(self)
        out._rs, out._re = self._rs.copy(), self._re.copy()
        out._rs[i[ok]], out._re[i[ok]] = rs[ok], re[ok]
        return out

    def key(self) -> tuple:
        return (self.band, self.rows_linear, self._r0.tobytes(), self._r1.tobytes())

    def fold(self, i: int) -> Fold:
        return Fold(
            int(self._r0[i]),
            int(self._r1[i]),
            int(self._code[i]),
            (int(self._rs[i]), int(self._re[i])),
            int(self._d0[i]),
        )

    @property
    def folds(self) -> tuple[Fold, ...]:
        return tuple(self.fold(i) for i in range(len(self)))

    def folds_between(self, d0: float, d1: float) -> list[Fold]:
        """The folds whose bands intersect display rows [d0, d1)."""
        i0 = max(0, int(np.searchsorted(self._d0, d0, side="right")) - 1)
        i1 = int(np.searchsorted(self._d0, d1, side="left"))
        return [f for f in (self.fold(i) for i in range(i0, i1)) if f.drow + self.band > d0]

    # ------------------------------------------------------------ linear -> display
    def fold_of_row(self, row: int) -> int:
        """Index of the fold holding linear row `row`, or -1."""
        i = int(np.searchsorted(self._r0, row, side="right")) - 1
        if i >= 0 and row < self._r1[i]:
            return i
        return -1

    def display_row(self, row: int) -> int:
        """The display row of linear row `row` (a folded row: its band's first row)."""
        i = int(np.searchsorted(self._r0, row, side="right")) - 1
        if i < 0:
            return row
        if row < self._r1[i]:
            return int(self._d0[i])
        return int(self._d0[i]) + self.band + (row - int(self._r1[i]))

    def display_index(self, gfn: int, r: int, end: bool = False) -> int:
        """gfn's position in display rows * r + column.  A folded gfn maps to its band's
        start (or, as the end of a range, to the band's end)."""
        row, col = divmod(gfn, r)
        i = self.fold_of_row(row)
        if i < 0:
            return self.display_row(row) * r + col
        d = int(self._d0[i])
        return (d + self.band) * r if end else d * r

    def display_ranges(self, ranges: Iterable[tuple[int, int]], r: int) -> list[tuple[int, int]]:
        """gfn ranges [a, b) as ranges of display indexes (for outlines drawn in rows)."""
        out = []
        for a, b in ranges:
            if b > a:
                da = self.display_index(a, r)
                db = self.display_index(b - 1, r, end=True)
                if self.fold_of_row((b - 1) // r) < 0:
                    db += 1
                if db > da:
                    out.append((da, db))
        return out

    # ------------------------------------------------------------ display -> linear
    def at_display_row(self, drow: int) -> tuple[int, int]:
        """(linear row, -1) for a row of rows, or (first folded row, fold index) in a band."""
        i = int(np.searchsorted(self._d0, drow, side="right")) - 1
        if i < 0:
            return drow, -1
        d0 = int(self._d0[i])
        if drow < d0 + self.band:
            return int(self._r0[i]), i
        return int(self._r1[i]) + drow - d0 - self.band, -1

    def in_band(self, drows: np.ndarray) -> np.ndarray:
        """Whether each display row of `drows` lies in a fold band (vectorised
        `at_display_row(d)[1] >= 0`)."""
        drows = np.asarray(drows, np.int64)
        i = np.searchsorted(self._d0, drows, side="right") - 1
        ok = i >= 0
        out = np.zeros(drows.shape, bool)
        out[ok] = drows[ok] < self._d0[i[ok]] + self.band
        return out

    def linear_row(self, drow: int) -> int:
        return self.at_display_row(drow)[0]

    def pieces(self, d0: int, d1: int, r: int) -> tuple[tuple[int, int, int], ...]:
        """Display rows [d0, d1) as (first gfn, rows, fill code): fill -1 = rows of the
        guest, else a fold band of that many rows drawn in one code."""
        out: list[tuple[int, int, int]] = []
        d = d0
        while d < d1:
            row, i = self.at_display_row(d)
            if i >= 0:
                n = min(int(self._d0[i]) + self.band, d1) - d
                out.append((row * r, n, int(self._code[i])))
            else:
                j = int(np.searchsorted(self._d0, d, side="right"))
                nxt = int(self._d0[j]) if j < len(self) else d1
                n = min(nxt, d1) - d
                out.append((row * r, n, -1))
            d += n
        return tuple(out)
