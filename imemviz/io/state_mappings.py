"""The guest's side of a state document, checked and filled: the memory attributes
(runs of PRIVATE), the leaves of both roots (private/mirror and shared/direct) and
the mirror root's S-EPT table pages.

Leaves are filled through `LeafTable.from_arrays(check=False)` and the attributes
through `ExtentMap.from_arrays`: every row is checked here first, with messages
naming the JSON path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imemviz.io.state_fields import address, array, count, fail, integer, obj, wrong
from imemviz.io.state_limits import GFN_BEYOND, LEAVES, Ctx, checked_rows
from imemviz.io.state_rows import expand
from imemviz.model.columns import LeafColumns, RunColumns, int64
from imemviz.model.vm import GFN_LIMIT, VM


def build_attributes(vm: VM, v: Any, ctx: Ctx) -> None:
    runs = array(v, "$.attributes", ctx.max_entries)
    out = []
    prev = 0
    for i, e in enumerate(runs):
        p = f"$.attributes[{i}]"
        if type(e) is not list or len(e) != 3:
            wrong(p, "a row [start gfn, end gfn, attributes]", e)
        a = address(e[0], f"{p}[0]", GFN_LIMIT - 1, "gfn", GFN_BEYOND)
        b = address(e[1], f"{p}[1]", GFN_LIMIT, "gfn", GFN_BEYOND)
        if b <= a:
            fail(f"{p}[1]", "end must be above start (runs are [start, end))")
        if a < prev:
            fail(p, "overlaps the run before or is out of order (runs are sorted)")
        val = integer(e[2], f"{p}[2]", 0, (1 << 64) - 1, "attributes")
        if val != 8:
            fail(
                f"{p}[2]",
                f"unknown attributes {val} (only PRIVATE, 8, is defined; runs of 0 are not stored)",
            )
        out.append((a, b, val))
        prev = b
    vm.attributes.from_arrays(_attribute_runs(out))


def _attribute_runs(rows: list[tuple[int, int, int]]) -> RunColumns:
    """The file's runs (those that are not 0, sorted, checked) as the map's: coalesced runs
    covering [0, GFN_LIMIT), the gaps 0, neighbours with one value merged (a file may
    list them apart)."""
    start: list[int] = []
    end: list[int] = []
    value: list[int] = []

    def add(a: int, b: int, val: int) -> None:
        if value and value[-1] == val:  # the run before ends at a: one run
            end[-1] = b
        else:
            start.append(a)
            end.append(b)
            value.append(val)

    pos = 0
    for a, b, val in rows:
        if a > pos:
            add(pos, a, 0)
        add(a, b, val)
        pos = b
    if pos < GFN_LIMIT:
        add(pos, GFN_LIMIT, 0)
    return RunColumns(int64(start), int64(end), int64(value))


def build_mappings(vm: VM, v: Any, ctx: Ctx) -> None:
    d = obj(v, "$.mappings", ("private", "shared", "sept_pages"))
    for name, table in (("private", vm.private), ("shared", vm.shared)):
        rows = checked_rows(ctx, d[name], f"$.mappings.{name}", LEAVES, GFN_LIMIT, GFN_BEYOND)
        gfn, pfn, state = expand(rows)
        level = rows.code if len(gfn) == len(rows.code) else np.repeat(rows.code, rows.count)
        # Rows sorted by gfn without overlaps and every value checked, with the JSON path
        # in the messages: filled as they are.
        table.from_arrays(LeafColumns(gfn, level, pfn, state), check=False)
    vm.private.tables.update(_sept_pages(d["sept_pages"], ctx))


def _sept_pages(v: Any, ctx: Ctx) -> dict[tuple[int, int], int]:
    """[gfn, level, pfn, count?] rows sorted by level then gfn -> {(level, gfn >> 9*level): pfn}."""
    tables: dict[tuple[int, int], int] = {}
    prev = (0, -1)
    for i, e in enumerate(array(v, "$.mappings.sept_pages", ctx.max_entries)):
        p = f"$.mappings.sept_pages[{i}]"
        if type(e) is not list or not 3 <= len(e) <= 4:
            wrong(p, "a row [gfn, level, pfn, count?]", e)
        level = integer(e[1], f"{p}[1]", 1, 4, "level", "4 (the root table belongs to the TD)")
        shift = 9 * level
        gfn = address(e[0], f"{p}[0]", GFN_LIMIT - 1, "gfn", GFN_BEYOND)
        if gfn & ((1 << shift) - 1):
            fail(f"{p}[0]", f"gfn {hex(gfn)} is not the first gfn of a level-{level} table")
        pfn = address(e[2], f"{p}[2]", ctx.npages - 1, "pfn", ctx.pfn_beyond)
        n = count(e[3], f"{p}[3]", ctx.max_entries) if len(e) == 4 else 1
        ctx.pfn_run(pfn, n, f"{p}[2]")
        if gfn + (n << shift) > GFN_LIMIT:
            fail(f"{p}[3]", f"the run ends past {GFN_BEYOND}")
        first = (level, gfn >> shift)
        if first <= prev:
            fail(p, "out of order or overlapping (rows are sorted by level, then gfn)")
        prev = (level, first[1] + n - 1)
        ctx.spend(n, p)
        for k in range(n):
            tables[(level, first[1] + k)] = pfn + k
    return tables
