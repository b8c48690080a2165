"""The host's side of a state document, checked and filled: host memory (free and other
blocks, poisoned pages, page contents), the VMM's host pages, and device memory
mapped with host_mmap_pfnmap.

Host memory is filled through `HostMemory.from_arrays(check=False)`: every row is
checked here first, with messages naming the JSON path.
"""

from __future__ import annotations

from typing import Any

from imemviz.io.state_fields import obj
from imemviz.io.state_limits import (
    CONTENT,
    FREE,
    HVA,
    HVA_PAGES,
    OTHER,
    PFNMAP,
    Ctx,
    checked_rows,
    sorted_list,
)
from imemviz.io.state_rows import expand, fill
from imemviz.model.columns import BlockColumns, FreeColumns, HostColumns, PageValues, PfnList, int64
from imemviz.model.host_memory import MAX_ORDER
from imemviz.model.sparse import pack_pfnmaps
from imemviz.model.units import LEVELS
from imemviz.model.vm import VM


def build_host(vm: VM, v: Any, ctx: Ctx) -> None:
    d = obj(v, "$.host", ("free", "other", "poisoned", "content"))
    host = vm.host
    npages = host.npages
    free = checked_rows(ctx, d["free"], "$.host.free", FREE, npages, ctx.pfn_beyond, runs=True)
    # Top-order blocks stay runs (intervals); the others are kept one by one: spend them.
    low = free.code < MAX_ORDER
    ctx.spend(int(free.count[low].sum()) - int(low.sum()), "$.host.free")
    other = checked_rows(ctx, d["other"], "$.host.other", OTHER, npages, ctx.pfn_beyond)
    pfn, _p, order = expand(other._replace(extra=other.code))
    others = BlockColumns(pfn, order)
    poisoned = sorted_list(
        d["poisoned"], "$.host.poisoned", npages - 1, "pfn", limit=ctx.max_entries
    )
    ctx.spend(len(poisoned), "$.host.poisoned")
    content = checked_rows(ctx, d["content"], "$.host.content", CONTENT, npages, ctx.pfn_beyond)
    pfn, _p, value = expand(content)
    # Checked above with the file's rules (a free run below the top order is split into
    # blocks, as the allocator's own `from_free_runs` does).
    cols = HostColumns(
        npages,
        FreeColumns(free.start, free.code, free.count),
        others,
        PfnList(int64(poisoned)),
        PageValues(pfn, value),
    )
    host.from_arrays(cols, check=False)


def build_hva_pages(vm: VM, v: Any, ctx: Ctx) -> None:
    rows = checked_rows(ctx, v, "$.hva_pages", HVA, HVA_PAGES, "the 64-bit address space")
    for level in LEVELS:
        hvpn, pfn, _x = expand(rows, rows.code == level)
        fill(vm.hva_pages[level], hvpn, pfn)


def build_pfnmap(vm: VM, v: Any, ctx: Ctx) -> None:
    """Device memory mapped with host_mmap_pfnmap (absent in files before it existed)."""
    rows = checked_rows(ctx, v, "$.pfnmap", PFNMAP, HVA_PAGES, "the 64-bit address space")
    hvpn, pfn, ref = expand(rows)
    fill(vm.pfnmap, hvpn, pack_pfnmaps(pfn, ref))
