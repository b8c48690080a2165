"""The map's rasters as the engine thread computes them: no Qt, tested headless.

`drawn_extent` is how much of the guest the map draws (its memslots up to a 2M
boundary, or 4 GiB of hole for a VM without any); `request_codes` computes a
`RasterRequest`'s uint8 codes from the cached step function of the guest
(`imemviz.model.raster.StepCache`), stacking the stretches of a folded map.
"""

from __future__ import annotations

import numpy as np

from imemviz.app.records import RasterRequest
from imemviz.model.raster import StepCache, guest_extent, raster_rows_at
from imemviz.model.vm import VM

EMPTY_EXTENT = 1 << 20  # gfns drawn for a VM without memslots: 4 GiB of hole
EXTENT_ALIGN = 512  # the drawn space ends on a 2M boundary


def drawn_extent(vm: VM) -> int:
    """The gfns [0, extent) the map draws for `vm`."""
    if not any(s.npages and s.as_id == 0 for s in vm.memslots.by_id.values()):
        return EMPTY_EXTENT
    return guest_extent(vm, EXTENT_ALIGN)


def request_codes(cache: StepCache, req: RasterRequest) -> np.ndarray:
    """The (rows, cols) uint8 codes of `req`, computed whole from `cache`."""
    if req.pieces:
        # Rows of the guest from every stretch in one pass; fold bands in their code.
        # Big stretches one by one (cost: their pixels plus runs), the many small
        # ones in one pass (cost: their pixels times log runs, no per-call overhead).
        r, cols, c = req.row_gfns, req.cols, cache
        small = [g + k * r for g, n, f in req.pieces if f < 0 and n * cols < 8192 for k in range(n)]
        rows = raster_rows_at(c.bounds, c.codes, c.limit, np.asarray(small), r, cols)
        codes = np.empty((req.rows, cols), np.uint8)
        at = i = 0
        for g, n, fill in req.pieces:
            if fill >= 0:
                codes[at : at + n] = fill
            elif n * cols < 8192:
                codes[at : at + n] = rows[i : i + n]
                i += n
            else:
                codes[at : at + n] = c.raster_rows(g, r, n, cols)
            at += n
        return codes
    return cache.raster_rows(req.start, req.row_gfns, req.rows, req.cols)
