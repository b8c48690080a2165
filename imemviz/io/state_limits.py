"""What a state document is checked against while a VM is built from it.

The limits of its numbers (slot ids, fds, page counts, the address spaces), the
shapes of its row lists (`RowSpec`s: leaves, folios, host pages and blocks,
device pages), and `Ctx`: the host's size that pfns are checked against and the
entry budget every section spends from before anything is built, so a hostile
document is refused before it costs memory.  The section builders
(`state_host`, `state_mappings`, `state_gmem`, `state_held`, `state_events`)
share them; `state_build` runs them in order.
"""

from __future__ import annotations

from typing import Any

from imemviz.io.state_fields import address, array, fail
from imemviz.io.state_rows import Rows, RowSpec, read_rows
from imemviz.model.guest_memfd import FOLIO_ORDERS
from imemviz.model.host_memory import MAX_ORDER
from imemviz.model.mmu import STATE_NAMES
from imemviz.model.units import LEVEL_BY_NAME
from imemviz.model.vm import GFN_LIMIT

U63 = (1 << 63) - 1
U64_END = 1 << 64
HVA_PAGES = 1 << 52
SLOT_ID_MAX = (1 << 16) | 0x7FFF  # as_id 0 or 1, slot id below KVM_MEM_SLOTS_NUM
MAX_SLOT_PAGES = (1 << 31) - 1  # KVM_MEM_MAX_NR_PAGES
FD_MAX = (1 << 31) - 1
MAX_VCPU = 1023
STATE_BY_NAME = {v: k for k, v in STATE_NAMES.items()}
LEVEL_SIZES = {name: (lv, 1 << (9 * (lv - 1))) for name, lv in LEVEL_BY_NAME.items()}
ORDER_SIZES = {o: (o, 1 << o) for o in range(MAX_ORDER + 1)}
FOLIO_SIZES = {o: (o, 1 << o) for o in FOLIO_ORDERS}
GFN_BEYOND = f"the guest physical address space (gfns end at {hex(GFN_LIMIT)})"
PFNMAP_FLAGS = {"none": 0, "refcounted": 1}


class Ctx:
    """What later sections are checked against, and the entry budget (`max_entries`:
    `state_build.MAX_ENTRIES`, read when the build starts)."""

    def __init__(self, npages: int, max_entries: int) -> None:
        self.npages = npages
        self.max_entries = max_entries
        self.budget = max_entries
        self.pfn_beyond = f"host memory (pfns end at {hex(npages)})"

    def spend(self, n: int, path: str) -> None:
        self.budget -= n
        if self.budget < 0:
            fail(
                path,
                f"the document describes more than {self.max_entries:,} leaves, folios, "
                "pages and events in all; refusing to load it",
            )

    def pfn_run(self, pfn: int, n: int, path: str) -> None:
        if pfn + n > self.npages:
            fail(path, f"pfns {hex(pfn)}-{hex(pfn + n - 1)} are outside {self.pfn_beyond}")


# ----------------------------------------------------------------- rows

FREE = RowSpec("free block", "pfn", "order", ORDER_SIZES)
OTHER = RowSpec("block", "pfn", "order", ORDER_SIZES)
CONTENT = RowSpec("page", "pfn", value=True)
FOLIOS = RowSpec("folio", "index", "order", FOLIO_SIZES, pfn=True, flag="hwpoison", align_pfn=True)
LEAVES = RowSpec("leaf", "gfn", "level", LEVEL_SIZES, pfn=True, flag="state", flags=STATE_BY_NAME)
HVA = RowSpec("host page", "hva", "level", LEVEL_SIZES, pfn=True, byte_addr=True)
PFNMAP = RowSpec(
    "device page",
    "hva",
    pfn=True,
    flag="refcount",
    flags=PFNMAP_FLAGS,
    byte_addr=True,
)


def checked_rows(
    ctx: Ctx, rows: Any, path: str, spec: RowSpec, limit: int, beyond: str, *, runs: bool = False
) -> Rows:
    """A checked row list, its cost spent from the budget before anything is built:
    every member of every run, or (`runs`: kept as runs) one per row."""
    r = read_rows(
        rows,
        path,
        spec,
        limit=limit,
        beyond=beyond,
        npages=ctx.npages,
        pfn_beyond=ctx.pfn_beyond,
        max_rows=ctx.max_entries,
    )
    ctx.spend(len(r.count) if runs else (int(r.count.sum()) if len(r.count) else 0), path)
    return r


def sorted_unique(
    v: Any, path: str, hi: int, what: str, *, limit: int, align: int = 0, shift: int = 0
) -> set[int]:
    """`sorted_list` as a set."""
    return set(sorted_list(v, path, hi, what, limit=limit, align=align, shift=shift))


def sorted_list(
    v: Any, path: str, hi: int, what: str, *, limit: int, align: int = 0, shift: int = 0
) -> list[int]:
    """A sorted list of at most `limit` addresses without repeats (each `>> shift`),
    checked."""
    items = array(v, path, limit)
    out: list[int] = []
    for i, x in enumerate(items):
        n = address(x, f"{path}[{i}]", hi, what)
        if n & align:
            fail(f"{path}[{i}]", f"{what} {hex(n)} is not page aligned")
        if out and n >> shift <= out[-1]:
            fail(f"{path}[{i}]", "out of order or repeated (the list is sorted, no repeats)")
        out.append(n >> shift)
    return out
