"""The observed state at one point of a timeline, reduced to the map's pixel codes.

The codes are the simulator's (`imemviz.model.raster.Code`) wherever the trace
says as much as the simulator knows, with their colours and legend; four
codes of its own stand for what a trace cannot tell:

- `UNKNOWN`: no event has said whether the gfn is private or shared, and no
  leaf maps it;
- `LEAF_UNKNOWN_4K/2M/1G`: a leaf maps the gfn, but whether the access that
  made it was private is unknown (an Intel trace before 6.17 without QEMU's
  conversion events, say).

What a trace never tells is not drawn as if known: without QEMU's memslot
events there are no holes (memslots unknown, not absent); "shared, no leaf"
and "private, no leaf" say nothing about folios or host pages (the trace has
no event for them).  The significance order of the simulator's map holds,
with unknown below everything known: a pixel shows the most significant
state among its gfns.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np

from imemviz.model.raster import Code


class ObservedCode(IntEnum):
    UNKNOWN = 40
    LEAF_UNKNOWN_1G = 41
    LEAF_UNKNOWN_2M = 42
    LEAF_UNKNOWN_4K = 43


# Lowest first: the reduction keeps the most significant code of a pixel.
RANKED = (
    Code.OUTSIDE,
    ObservedCode.UNKNOWN,
    Code.HOLE,
    Code.SHARED_EMPTY,
    Code.PRIVATE_EMPTY,
    Code.SHARED_1G,
    Code.SHARED_2M,
    Code.SHARED_4K,
    ObservedCode.LEAF_UNKNOWN_1G,
    ObservedCode.LEAF_UNKNOWN_2M,
    ObservedCode.LEAF_UNKNOWN_4K,
    Code.PRIVATE_1G,
    Code.PRIVATE_2M,
    Code.PRIVATE_4K,
)
_RANK_OF = np.zeros(256, dtype=np.uint8)
for _r, _c in enumerate(RANKED):
    _RANK_OF[int(_c)] = _r
_CODE_OF = np.array([int(c) for c in RANKED], dtype=np.uint8)

# (code, name, description, colour) of the observed view's legend.
OBSERVED_LEGEND: tuple[tuple[int, str, str, tuple[int, int, int]], ...] = (
    (
        ObservedCode.UNKNOWN,
        "unknown",
        "the trace has not said whether the gfn is private or shared",
        # Muted sage: apart from white, "shared/private, no leaf" and holes (CIEDE2000
        # >= 20 in normal and dichromat vision) and from every leaf colour (>= 12):
        # tests/app/test_observed_palette.py.  (236, 232, 244) vanished on white.
        (104, 144, 96),
    ),
    (
        ObservedCode.LEAF_UNKNOWN_1G,
        "leaf 1G, kind unknown",
        "a 1G leaf; private or shared not known",
        (60, 60, 60),
    ),
    (
        ObservedCode.LEAF_UNKNOWN_2M,
        "leaf 2M, kind unknown",
        "a 2M leaf; private or shared not known",
        (105, 105, 105),
    ),
    (
        ObservedCode.LEAF_UNKNOWN_4K,
        "leaf 4K, kind unknown",
        "a 4K leaf; private or shared not known",
        (150, 150, 150),
    ),
)
DESCRIPTIONS = {
    int(Code.HOLE): "no memslot covers the gfn (QEMU's kvm_set_user_memory events say so)",
    int(Code.SHARED_EMPTY): "shared, no leaf maps it (host pages are not in the trace)",
    int(Code.PRIVATE_EMPTY): "private, no leaf maps it (guest_memfd folios are not in the trace)",
}
NAMES = {
    int(Code.HOLE): "hole (no memslot)",
    int(Code.SHARED_EMPTY): "shared, no leaf",
    int(Code.PRIVATE_EMPTY): "private, no leaf",
}


_LEAF_CODES = {
    (1, 1): Code.PRIVATE_4K,
    (2, 1): Code.PRIVATE_2M,
    (3, 1): Code.PRIVATE_1G,
    (1, 0): Code.SHARED_4K,
    (2, 0): Code.SHARED_2M,
    (3, 0): Code.SHARED_1G,
    (1, -1): ObservedCode.LEAF_UNKNOWN_4K,
    (2, -1): ObservedCode.LEAF_UNKNOWN_2M,
    (3, -1): ObservedCode.LEAF_UNKNOWN_1G,
}


def pixel_span(
    starts: np.ndarray, ends: np.ndarray, start: int, span: int, npix: int
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi): the pixels [lo, hi) that the intervals [starts, ends) touch, where pixel k
    covers [lo_edge[k], hi_edge[k]) as raster_rows cuts them (lo_edge[k] = start +
    k * span // npix, hi_edge[k] = max(lo_edge[k + 1], lo_edge[k] + 1)).

    The same as searchsorted(hi_edge, starts, "right") and searchsorted(lo_edge, ends,
    "left"), in closed form: a binary search of random leaves in half a million edges
    misses the cache at every step (it was two thirds of a 1M-event point's time).
    """
    d = np.clip(np.asarray(starts, dtype=np.int64) - start, 0, span)
    e = np.clip(np.asarray(ends, dtype=np.int64) - start, 0, span)
    # hi: #k with k * span // npix < e  <=>  k < e * npix / span
    hi = np.minimum(-((-e * npix) // span), npix)
    # lo: #k with hi_edge[k] <= d  <=>  k + 1 < (d + 1) * npix / span and k < d * npix / span
    lo = np.minimum(-((-(d + 1) * npix) // span) - 1, -((-d * npix) // span))
    return np.clip(lo, 0, npix), hi


def _paint(
    out: np.ndarray, start: int, span: int, starts: np.ndarray, ends: np.ndarray, rank: int
) -> None:
    """out[k] = max(out[k], rank) for every pixel k touching one of the intervals."""
    if not len(starts):
        return
    n = len(out)
    lo, hi = pixel_span(starts, ends, start, span, n)
    ok = hi > lo
    if not ok.any():
        return
    diff = np.bincount(lo[ok], minlength=n + 1) - np.bincount(hi[ok], minlength=n + 1)
    cover = np.cumsum(diff[:n]) > 0
    np.maximum(out, np.where(cover, np.uint8(rank), np.uint8(0)), out=out)


def raster_rows(
    state: dict[str, dict[str, np.ndarray]],
    start: int,
    row_gfns: int,
    rows: int,
    cols: int,
    extent: int,
    attr_default: int | None,
    slots_known: bool,
) -> np.ndarray:
    """Codes (uint8, rows x cols) of rows of `row_gfns` gfns from `start`, for one point.

    Painted per pixel straight from the instance arrays, O(instances + pixels) per
    significance level: no sort, so any point of a long timeline draws at once.  A
    pixel narrower than a gfn shows the gfn at its left edge, as the simulator's map.
    """
    npix = rows * cols
    end = start + rows * row_gfns
    span = end - start
    k = np.arange(npix, dtype=np.int64)
    q, r = divmod(span, npix)
    lo_edge = start + k * q + (k * r) // npix  # pixel k's first gfn (see pixel_span)
    out = np.zeros(npix, dtype=np.uint8)
    inside = lo_edge < extent
    base = (
        _RANK_OF[ObservedCode.UNKNOWN]
        if attr_default is None
        else (_RANK_OF[Code.PRIVATE_EMPTY] if attr_default else _RANK_OF[Code.SHARED_EMPTY])
    )
    out[inside] = base
    at = state["attrs"]
    for v, code in ((0, Code.SHARED_EMPTY), (1, Code.PRIVATE_EMPTY)):
        m = at["private"] == v
        _paint(out, start, span, at["start"][m], at["end"][m], _RANK_OF[code])
    if slots_known:
        sl = state["slots"]
        m = sl["as_id"] == 0
        cov = np.zeros(npix, dtype=np.uint8)
        _paint(cov, start, span, sl["base_gfn"][m], sl["base_gfn"][m] + sl["npages"][m], 1)
        out[(cov == 0) & inside] = _RANK_OF[Code.HOLE]
    lv = state["leaves"]
    as0 = lv["as_id"] == 0
    for (level, pv), leaf_code in _LEAF_CODES.items():
        m = as0 & (lv["level"] == level) & (lv["private"] == pv)
        if m.any():
            g = lv["gfn"][m]
            _paint(out, start, span, g, g + (1 << (9 * (level - 1))), _RANK_OF[leaf_code])
    out[~inside] = 0
    return _CODE_OF[out].reshape(rows, cols)


def gfn_info(
    state: dict[str, dict[str, np.ndarray]], gfn: int, attr_default: int | None, slots_known: bool
) -> dict[str, Any]:
    """What the trace tells about one gfn at this point (the map's tooltip)."""
    sl, at, lv = state["slots"], state["attrs"], state["leaves"]
    slot = None
    for k in range(len(sl["base_gfn"])):
        if sl["base_gfn"][k] <= gfn < sl["base_gfn"][k] + sl["npages"][k]:
            slot = {
                "as_id": int(sl["as_id"][k]),
                "slot": int(sl["slot"][k]),
                "base_gfn": int(sl["base_gfn"][k]),
                "gmem_fd": int(sl["gmem_fd"][k]),
            }
    attr = attr_default
    j = np.searchsorted(at["start"], gfn, side="right") - 1
    if j >= 0 and gfn < at["end"][j]:
        attr = int(at["private"][j])
    leaves = []
    span = np.int64(1) << (9 * (lv["level"] - 1))
    hit = (lv["gfn"] <= gfn) & (gfn < lv["gfn"] + span)
    for k in np.flatnonzero(hit).tolist():
        p = int(lv["private"][k])
        leaves.append(
            {
                "as_id": int(lv["as_id"][k]),
                "level": {1: "4K", 2: "2M", 3: "1G"}[int(lv["level"][k])],
                "pfn": int(lv["pfn"][k] + (gfn - lv["gfn"][k])),
                "private": None if p < 0 else bool(p),
            }
        )
    return {
        "gfn": gfn,
        "attribute": None if attr is None else ("private" if attr else "shared"),
        "memslot": slot if slots_known else "unknown (no QEMU memslot events)",
        "leaves": leaves,
    }


# What the map may fold in the observed view: the simulator's empties and the unknown.
FOLDABLE = (Code.OUTSIDE, Code.HOLE, Code.SHARED_EMPTY, Code.PRIVATE_EMPTY, ObservedCode.UNKNOWN)

# Leaves closer than this many gfns are one unfoldable block for fold_runs: no fold is
# shorter (map_fold: FOLD_MIN_ROWS rows of at least MIN_FOLD_ROW_GFNS gfns).
_FOLD_GAP = 48
_SPAN = np.array([1, 1, 512, 512 * 512], np.int64)  # gfns a leaf of each level maps


def fold_runs(
    state: dict[str, dict[str, np.ndarray]],
    extent: int,
    attr_default: int | None,
    slots_known: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(bounds, codes): the point's map as a step function over [0, extent), exact where
    it can fold (holes, "shared/private, no leaf", unknown) and one leaf code over each
    stretch of leaves (gaps shorter than any fold included), for the map's folded bands.

    O(leaves) with no sort of them: state_at gives leaves by gfn within an address
    space, and only address space 0 is drawn."""
    extent = max(int(extent), 1)
    at, sl, lv = state["attrs"], state["slots"], state["leaves"]
    base = (
        ObservedCode.UNKNOWN
        if attr_default is None
        else (Code.PRIVATE_EMPTY if attr_default else Code.SHARED_EMPTY)
    )
    # The empties: the attribute runs over the base, holes where no memslot is.
    a_s = np.clip(at["start"].astype(np.int64), 0, extent)
    a_e = np.clip(at["end"].astype(np.int64), 0, extent)
    m0 = sl["as_id"] == 0
    s_s = np.clip(sl["base_gfn"][m0].astype(np.int64), 0, extent)
    s_e = np.clip(s_s + sl["npages"][m0].astype(np.int64), 0, extent)
    cuts = [np.array([0, extent], np.int64), a_s, a_e]
    if slots_known:
        cuts += [s_s, s_e]
    # The leaves, merged into blocks: a running maximum of their ends finds where a new
    # block starts (a leaf starting past every end before it, by more than _FOLD_GAP).
    g, level = lv["gfn"], lv["level"]
    if lv["as_id"].any():
        as0 = lv["as_id"] == 0
        g, level = g[as0], level[as0]
    if len(g):
        reach = np.maximum.accumulate(g + _SPAN[level])
        new = np.ones(len(g), bool)
        new[1:] = g[1:] > reach[:-1] + _FOLD_GAP
        b_s = np.clip(g[new], 0, extent)
        b_e = np.clip(reach[np.r_[np.flatnonzero(new)[1:] - 1, len(g) - 1]], 0, extent)
        cuts += [b_s, b_e]
    else:
        b_s = b_e = np.zeros(0, np.int64)
    bounds = np.unique(np.concatenate(cuts))
    starts = bounds[:-1]
    codes = np.full(len(starts), int(base), np.uint8)
    if len(a_s):
        j = np.searchsorted(a_s, starts, side="right") - 1
        inside = (j >= 0) & (starts < a_e[np.maximum(j, 0)])
        pv = at["private"][np.maximum(j, 0)]
        codes[inside] = np.where(pv[inside] == 1, Code.PRIVATE_EMPTY, Code.SHARED_EMPTY)
    if slots_known:
        # memslots do not overlap in one address space: covered = one slot holds it
        order = np.argsort(s_s, kind="stable")
        ss, se = s_s[order], s_e[order]
        covered = np.zeros(len(starts), bool)
        if len(ss):
            j = np.searchsorted(ss, starts, side="right") - 1
            covered = (j >= 0) & (starts < se[np.maximum(j, 0)])
        codes[~covered] = Code.HOLE
    if len(b_s):
        j = np.searchsorted(b_s, starts, side="right") - 1
        codes[(j >= 0) & (starts < b_e[np.maximum(j, 0)])] = Code.PRIVATE_4K
    # Adjacent stretches with the same code are one run.
    keep = np.ones(len(codes), bool)
    keep[1:] = codes[1:] != codes[:-1]
    return np.append(starts[keep], extent), codes[keep]


def _window(
    state: dict[str, dict[str, np.ndarray]], lo: int, hi: int
) -> dict[str, dict[str, np.ndarray]]:
    """The instances that can touch gfns [lo, hi): a slice of the leaves (by gfn) and the
    attribute runs, so a narrow piece of a folded map costs what it shows."""
    lv, at = state["leaves"], state["attrs"]
    g = lv["gfn"]
    if len(g) > 1 and np.all(g[1:] >= g[:-1]):
        i, j = np.searchsorted(g, [lo - _SPAN[3] + 1, hi])
        leaves = {k: v[i:j] for k, v in lv.items()}
    else:
        m = (g < hi) & (g + _SPAN[lv["level"]] > lo)
        leaves = {k: v[m] for k, v in lv.items()}
    i = max(int(np.searchsorted(at["start"], lo, side="right")) - 1, 0)
    j = int(np.searchsorted(at["start"], hi))
    attrs = {k: v[i:j] for k, v in at.items()}
    return {**state, "leaves": leaves, "attrs": attrs}


def raster_pieces(
    state: dict[str, dict[str, np.ndarray]],
    pieces: tuple[tuple[int, int, int], ...],
    row_gfns: int,
    cols: int,
    extent: int,
    attr_default: int | None,
    slots_known: bool,
) -> np.ndarray:
    """Codes of a folded map: `pieces` of (first gfn, rows, fill), where fill -1 means
    rows of the guest from that gfn and a code a band drawn in that one code."""
    out = np.empty((sum(n for _g, n, _f in pieces), cols), np.uint8)
    at = 0
    for g, n, fill in pieces:
        if fill >= 0:
            out[at : at + n] = fill
        elif n:
            part = _window(state, g, g + n * row_gfns)
            out[at : at + n] = raster_rows(
                part, g, row_gfns, n, cols, extent, attr_default, slots_known
            )
        at += n
    return out
