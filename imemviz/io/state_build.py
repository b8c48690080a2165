"""State document (version 1) -> a new VM, after checking every field.

Each section is read into plain values first, with errors naming the JSON
path and the problem (wrong type, missing or unknown field, negative or huge
numbers, unaligned or overlapping entries, pfns outside host memory, unknown
names, absurd counts).  The VM is built from checked values only, into a
new VM that nobody sees before every field has passed.  Cross-structure
consistency (a leaf whose pfn is not its folio's, a page used twice) is not
refused here: that is what `imemviz check` reports, through
`imemviz.model.invariants`.

This module holds the document's top level (its keys, the VM's configuration
and scalars, the invalidation and the closed standard fds) and runs the
sections in order: `state_host` (host memory, VMM host pages, device pages),
`state_mappings` (attributes, leaves, S-EPT pages), `state_gmem` (memslots,
guest_memfd files and folios), `state_held` (held faults), `state_events`
(the event log) and `state_snp`; `state_limits` holds what they share (the
limits, the row lists' shapes, the entry budget).
"""

from __future__ import annotations

from typing import Any

from imemviz.io import state_snp
from imemviz.io.state import no_gc
from imemviz.io.state_events import build_events
from imemviz.io.state_fields import address, array, boolean, enum, fail, integer, obj
from imemviz.io.state_gmem import build_gmem_files, build_memslots, check_bindings, link_slots
from imemviz.io.state_held import build_in_flight
from imemviz.io.state_host import build_host, build_hva_pages, build_pfnmap
from imemviz.io.state_limits import U63, U64_END, Ctx, sorted_unique
from imemviz.io.state_mappings import build_attributes, build_mappings
from imemviz.model.config import ConfigError, VMConfig
from imemviz.model.mmu import INVALID_GFN
from imemviz.model.vm import VM

MAX_ENTRIES = 10_000_000
"""Most entries the loaded engine may hold one by one: leaves, pages, blocks, events,
single folios and folio runs (about 120 bytes each: ~1.2 GB at most).  Runs of folios
and of top-order free blocks count one each however long they are: the engine keeps
them as runs.  Checked from the row counts before anything is built."""

TOP_KEYS = (
    "format",
    "version",
    "vm",
    "op_index",
    "dead",
    "td_state",
    "tdx_epoch",
    "next_ino",
    "closed_std_fds",
    "invalidate",
    "host",
    "attributes",
    "memslots",
    "gmem_files",
    "mappings",
    "hva_pages",
    "poisoned_hva",
    "in_flight",
    "events",
)


def build_vm(doc: dict[str, Any]) -> VM:
    """A new VM from a version-1 document (format and version already checked)."""
    with no_gc():
        return _build_vm(doc)


def _build_vm(doc: dict[str, Any]) -> VM:
    obj(doc, "$", TOP_KEYS, ("pfnmap", "snp"))
    try:
        config = VMConfig.from_dict(doc["vm"], path="$.vm")
    except ConfigError as e:
        fail(e.path, e.message)
    vm = VM(config)
    ctx = Ctx(vm.host.npages, MAX_ENTRIES)
    vm.op_index = integer(doc["op_index"], "$.op_index", what="op_index")
    vm.dead = boolean(doc["dead"], "$.dead")
    if config.is_tdx:
        vm.td_state = enum(
            doc["td_state"], "$.td_state", {"BUILDING": "BUILDING", "RUNNABLE": "RUNNABLE"}
        )
    elif doc["td_state"] is not None:
        fail("$.td_state", f"must be null for a {config.type} VM (only TDX VMs have one)")
    vm.tdx_epoch = integer(doc["tdx_epoch"], "$.tdx_epoch", what="tdx_epoch")
    vm.next_ino = integer(doc["next_ino"], "$.next_ino", 1, U63, "next_ino")
    vm.closed_std_fds.update(_closed_std_fds(doc["closed_std_fds"]))
    _invalidate(vm, doc["invalidate"])
    build_host(vm, doc["host"], ctx)
    build_attributes(vm, doc["attributes"], ctx)
    slots = build_memslots(doc["memslots"])
    vm.files.update(build_gmem_files(vm, doc["gmem_files"], slots, ctx))
    link_slots(vm, slots, doc["memslots"])
    build_mappings(vm, doc["mappings"], ctx)
    build_hva_pages(vm, doc["hva_pages"], ctx)
    vm.poisoned_hva.update(
        sorted_unique(
            doc["poisoned_hva"],
            "$.poisoned_hva",
            U64_END - 1,
            "hva",
            limit=MAX_ENTRIES,
            align=0xFFF,
            shift=12,
        )
    )
    vm.in_flight.update(build_in_flight(vm, doc["in_flight"], ctx))
    build_events(vm, doc["events"], ctx)
    build_pfnmap(vm, doc.get("pfnmap", []), ctx)
    ctx.spend(state_snp.build(vm, doc.get("snp"), ctx.npages), "$.snp.rmp")
    check_bindings(vm, doc)
    return vm


def _closed_std_fds(v: Any) -> set[int]:
    fds = array(v, "$.closed_std_fds", 3)
    out = [
        integer(x, f"$.closed_std_fds[{i}]", 0, 2, "fd", "0-2 (stdin, stdout, stderr)")
        for i, x in enumerate(fds)
    ]
    if out != sorted(set(out)):
        fail("$.closed_std_fds", "must be sorted without repeats")
    return set(out)


def _invalidate(vm: VM, v: Any) -> None:
    d = obj(v, "$.invalidate", ("seq", "in_progress", "range"))
    inv = vm.inv
    inv.seq = integer(d["seq"], "$.invalidate.seq", what="seq")
    inv.in_progress = integer(
        d["in_progress"], "$.invalidate.in_progress", 0, (1 << 31) - 1, "in_progress"
    )
    if inv.in_progress:
        # Every invalidation begins and ends inside one op, so a state (saved between
        # ops) has none in progress; the engine relies on it: a fault in the range
        # would retry until an end that never comes.
        fail(
            "$.invalidate.in_progress",
            f"is {inv.in_progress}, must be 0 (invariant I6: no invalidation is in "
            "progress between ops; a fault in its range would retry forever)",
        )
    r = d["range"]
    if r is None:
        inv.range_start = inv.range_end = INVALID_GFN
        return
    r = array(r, "$.invalidate.range", 2)
    if len(r) != 2:
        fail("$.invalidate.range", "expected null or [start gfn, end gfn]")
    a = address(r[0], "$.invalidate.range[0]", U64_END, "gfn")
    b = address(r[1], "$.invalidate.range[1]", U64_END, "gfn")
    if b < a:
        fail("$.invalidate.range", "end is below start")
    inv.range_start, inv.range_end = a, b
