"""The last raster of each standing view, so a change redraws only the rows it touched.

An op usually changes a page or a few ranges; the map's raster of a 4 TiB guest at
the whole-guest zoom costs 10 ms or more to compute from the step function (every
pixel is a search over ~130,000 runs).  `RasterMemo` keeps, per view key, the last
codes computed, with the `StepCache` and its `serial` they came from.  Asked for
the same request again, it copies them and recomputes only the rows holding a gfn
the cache has updated since (`StepCache.changed_since`), with `raster_rows_at`,
which splits a row exactly as the full raster does: the patched raster equals a
fresh one.  Anything else (another request, another cache, an unknown history,
many changed rows) is computed whole.  Qt-free; runs on the engine thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imemviz.app.panes.map_fold import LongRuns
from imemviz.model.raster import StepCache, raster_rows_at

MAX_RANGES = 512  # more changed ranges than this: compute the raster whole


def dirty_rows(
    pieces: tuple[tuple[int, int, int], ...],
    row_gfns: int,
    ranges: list[tuple[int, int]],
) -> tuple[np.ndarray, np.ndarray]:
    """(raster row indexes, their first gfns) of the rows of `pieces` (first gfn, rows,
    fill: -1 = rows of the guest) that hold a gfn of `ranges` (sorted, merged).  Fold
    bands (fill >= 0) are one code whatever the guest holds: never dirty."""
    idx: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    r = row_gfns
    at = 0
    for g, n, fill in pieces:
        if fill < 0:
            end = g + n * r
            for a, b in ranges:
                if b <= g:
                    continue
                if a >= end:
                    break
                k0 = max(0, (a - g) // r)
                k1 = min(n, -(-(b - g) // r))
                if k1 > k0:
                    k = np.arange(k0, k1, dtype=np.int64)
                    idx.append(at + k)
                    starts.append(g + k * r)
        at += n
    if not idx:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, first = np.unique(np.concatenate(idx), return_index=True)
    return rows, np.concatenate(starts)[first]


class RasterMemo:
    """Per view key: (request, cache, cache serial, codes) of the last raster made."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[Any, StepCache, int, np.ndarray]] = {}

    def clear(self) -> None:
        self._last.clear()

    def patched(self, req: Any, cache: StepCache) -> np.ndarray | None:
        """The raster of `req` from `cache` by patching the last one, or None (compute it
        whole).  The result is a new writable array."""
        last = self._last.get(req.key)
        if last is None:
            return None
        lreq, lcache, serial, codes = last
        if lreq != req or lcache is not cache:
            return None
        ranges = cache.changed_since(serial)
        if ranges is None or len(ranges) > MAX_RANGES:
            return None
        pieces = req.pieces or ((req.start, req.rows, -1),)
        rows, starts = dirty_rows(pieces, req.row_gfns, ranges)
        if len(rows) * 2 > req.rows:
            return None  # most of it changed: the whole raster costs no more
        out = codes.copy()
        if len(rows):
            out[rows] = raster_rows_at(
                cache.bounds, cache.codes, cache.limit, starts, req.row_gfns, req.cols
            )
        return out

    def store(self, req: Any, cache: StepCache, codes: np.ndarray) -> None:
        self._last[req.key] = (req, cache, cache.serial, codes)


class LongRunsMemo:
    """The foldable runs sent with each snapshot (`LongRuns`), updated from the ranges
    the step cache changed rather than recomputed over every run (2.4 ms an op on the
    4 TiB TD, before the GUI hears of the op).  Unchanged: the same object, which the
    map recognises without comparing."""

    def __init__(self) -> None:
        self._last: tuple[StepCache, int, LongRuns] | None = None

    def get(self, cache: StepCache | None) -> LongRuns | None:
        if cache is None:
            return None
        last = self._last
        runs = None
        if last is not None and last[0] is cache:
            ranges = cache.changed_since(last[1])
            if ranges is not None and len(ranges) <= MAX_RANGES:
                runs = last[2].updated(cache.bounds, cache.codes, ranges)
        if runs is None:
            runs = LongRuns((cache.bounds, cache.codes))
        self._last = (cache, cache.serial, runs)
        return runs
