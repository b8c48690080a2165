"""The step function reduced to pixels: each of `npix` equal pixels gets the most
significant code of the gfns it covers (step 2 of raster.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from imemviz.model.raster_codes import Code
from imemviz.model.raster_steps import step_function

if TYPE_CHECKING:
    from imemviz.model.vm import VM


# ------------------------------------------------------------- pixel reduction


def pixel_bounds(start: int, end: int, npix: int) -> np.ndarray:
    """The npix + 1 integer gfn boundaries of `npix` equal pixels over [start, end)."""
    span = end - start
    q, r = divmod(span, npix)
    i = np.arange(npix + 1, dtype=np.int64)
    return start + i * q + (i * r) // npix


def _pixel_of(x: np.ndarray, start: int, q: int, r: int, npix: int) -> np.ndarray:
    """For gfns x in [start, end): the pixel i with p_i <= x < p_i+1 (exact, vectorised)."""
    span = q * npix + r
    i = np.floor((x - start).astype(np.float64) * (npix / span)).astype(np.int64)
    i = np.clip(i, 0, npix - 1)
    p = start + i * q + (i * r) // npix
    i = np.where(p > x, i - 1, i)
    p = start + (i + 1) * q + ((i + 1) * r) // npix
    return np.where(p <= x, i + 1, i)


def reduce_to_pixels(
    bounds: np.ndarray, codes: np.ndarray, start: int, end: int, npix: int
) -> np.ndarray:
    """Codes of `npix` equal pixels over [start, end) from a step function covering it.

    A pixel covering several gfns gets the highest code among them (the
    module's significance rule); with fewer gfns than pixels, each pixel
    shows the gfn at its left edge.  Cost: O(runs in the window + npix),
    with no per-pixel search.
    """
    if npix <= 0 or end <= start or not len(codes):
        return np.zeros(max(npix, 0), dtype=np.uint8)
    # The runs inside the window: i0 holds start, i1 - 1 holds end - 1.
    i0 = int(np.searchsorted(bounds, start, side="right")) - 1
    i1 = int(np.searchsorted(bounds, end, side="left"))
    i0 = max(i0, 0)
    inner = bounds[i0 + 1 : i1]  # run starts strictly inside the window
    wcodes = codes[i0:i1]
    span = end - start
    if span <= npix:
        # Pixel i shows gfn start + floor(i * span / npix); run k starts at pixel
        # ceil((b_k - start) * npix / span).
        first_pix = -((-(inner - start) * npix) // span)
        counts = np.diff(np.concatenate([[0], first_pix, [npix]]))
        return np.repeat(wcodes, counts)
    q, r = divmod(span, npix)
    k = _pixel_of(inner, start, q, r, npix)  # the pixel each inner run starts in
    p_k = start + k * q + (k * r) // npix
    # Run at each pixel's left edge: runs starting at or before that edge.
    edge = np.where(p_k == inner, k, k + 1)
    cnt = np.bincount(edge, minlength=npix + 1)[:npix]
    out = wcodes[np.cumsum(cnt)]
    # Runs starting inside a pixel also touch it.
    np.maximum.at(out, k, wcodes[1:])
    return out


def raster(vm: VM, start: int, end: int, npix: int) -> np.ndarray:
    """Pixel codes (uint8[npix]) of the window [start, end), straight from the VM."""
    b, c = step_function(vm, start, end)
    return reduce_to_pixels(b, c, start, end, npix)


def raster_rows(vm: VM, start: int, row_gfns: int, rows: int, cols: int) -> np.ndarray:
    """A rows x cols raster of rows of `row_gfns` gfns starting at gfn `start`."""
    end = start + rows * row_gfns
    return raster(vm, start, end, rows * cols).reshape(rows, cols)


def raster_rows_at(
    bounds: np.ndarray,
    codes: np.ndarray,
    limit: int,
    row_starts: np.ndarray,
    row_gfns: int,
    cols: int,
) -> np.ndarray:
    """(rows, cols) codes of rows of `row_gfns` gfns that start anywhere (`row_starts`),
    from the step function of [0, limit); gfns at or past `limit` are OUTSIDE.

    Each row is split as `reduce_to_pixels` splits it, so a row equals the same row of
    `StepCache.raster_rows`; one pass over all the rows (a folded map stacks rows from
    many places: one call instead of one per stretch).  Cost: O(pixels * log runs).
    """
    starts = np.asarray(row_starts, dtype=np.int64)
    if len(starts) == 0 or cols <= 0:
        return np.zeros((len(starts), max(cols, 0)), dtype=np.uint8)
    b = np.append(bounds[:-1], limit).astype(np.int64)
    c = np.append(codes, np.uint8(Code.OUTSIDE)).astype(np.uint8)  # [limit, ...) is outside
    pb = pixel_bounds(0, row_gfns, cols)
    left = (starts[:, None] + pb[None, :-1]).ravel()
    last = (starts[:, None] + pb[None, 1:]).ravel() - 1
    lo = np.searchsorted(b, left, side="right") - 1
    hi = np.searchsorted(b, last, side="right") - 1
    out: np.ndarray = c[np.clip(lo, 0, None)]
    multi = np.flatnonzero(hi > lo)
    if len(multi):
        # The most significant code of runs lo..hi: max over c[lo:hi + 1], by reduceat on
        # interleaved (lo, hi + 1) index pairs (every other result is the one wanted).
        idx = np.empty(2 * len(multi), dtype=np.int64)
        idx[0::2] = lo[multi]
        idx[1::2] = hi[multi] + 1
        cc = np.append(c, np.uint8(0))
        out[multi] = np.maximum.reduceat(cc, idx)[0::2]
    return out.reshape(len(starts), cols)
