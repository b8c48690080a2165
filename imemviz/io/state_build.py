"""State document (version 1) -> a new VM, after checking every field.

Each section is read into plain values first, with errors naming the JSON
path and the problem (wrong type, missing or unknown field, negative or huge
numbers, unaligned or overlapping entries, pfns outside host memory, unknown
names, absurd counts).  The VM is built from checked values only, into a
new VM that nobody sees before every field has passed.  Cross-structure consistency (a leaf whose pfn is not its
folio's, a page used twice) is not refused here: that is what
`imemviz check` reports, through `imemviz.model.invariants`.
"""

from __future__ import annotations

from collections import deque
from itertools import chain, pairwise
from operator import itemgetter
from typing import Any

import numpy as np

from imemviz.io import state_snp
from imemviz.io.state import no_gc
from imemviz.io.state_fields import (
    address,
    array,
    boolean,
    count,
    enum,
    fail,
    integer,
    json_type,
    obj,
    optional_bool,
    wrong,
)
from imemviz.io.state_rows import Rows, RowSpec, expand, fill, read_rows
from imemviz.model.columns import (
    NO_FD,
    BlockColumns,
    FolioColumns,
    FreeColumns,
    HostColumns,
    LeafColumns,
    MemslotColumns,
    PageValues,
    PfnList,
    RunColumns,
    int64,
)
from imemviz.model.config import ConfigError, VMConfig
from imemviz.model.events import EVENT_FIELDS
from imemviz.model.fault import Access, PendingFault
from imemviz.model.guest_memfd import (
    FILE_KINDS,
    FOLIO_ORDERS,
    GUEST_MEMFD,
    INACCESSIBLE,
    Binding,
    GmemFile,
    GmemInode,
)
from imemviz.model.host_memory import MAX_ORDER
from imemviz.model.memslots import Memslot
from imemviz.model.mmu import INVALID_GFN, STATE_NAMES
from imemviz.model.pfnmap import pack_pfnmaps
from imemviz.model.units import LEVEL_BY_NAME, LEVELS
from imemviz.model.vm import GFN_LIMIT, VM

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


class _Ctx:
    """What later sections are checked against, and the entry budget."""

    def __init__(self, npages: int) -> None:
        self.npages = npages
        self.budget = MAX_ENTRIES
        self.pfn_beyond = f"host memory (pfns end at {hex(npages)})"

    def spend(self, n: int, path: str) -> None:
        self.budget -= n
        if self.budget < 0:
            fail(
                path,
                f"the document describes more than {MAX_ENTRIES:,} leaves, folios, "
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


def _rows(
    ctx: _Ctx, rows: Any, path: str, spec: RowSpec, limit: int, beyond: str, *, runs: bool = False
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
        max_rows=MAX_ENTRIES,
    )
    ctx.spend(len(r.count) if runs else (int(r.count.sum()) if len(r.count) else 0), path)
    return r


# ------------------------------------------------------------- sections


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
    ctx = _Ctx(vm.host.npages)
    vm.op_index = integer(doc["op_index"], "$.op_index", what="op_index")
    vm.dead = boolean(doc["dead"], "$.dead")
    if config.is_tdx:
        vm.td_state = enum(
            doc["td_state"],
            "$.td_state",
            {"BUILDING": "BUILDING", "RUNNABLE": "RUNNABLE"},
            "td_state",
        )
    elif doc["td_state"] is not None:
        fail("$.td_state", f"must be null for a {config.type} VM (only TDX VMs have one)")
    vm.tdx_epoch = integer(doc["tdx_epoch"], "$.tdx_epoch", what="tdx_epoch")
    vm.next_ino = integer(doc["next_ino"], "$.next_ino", 1, U63, "next_ino")
    vm.closed_std_fds.update(_closed_std_fds(doc["closed_std_fds"]))
    _invalidate(vm, doc["invalidate"])
    _host(vm, doc["host"], ctx)
    _attributes(vm, doc["attributes"])
    slots = _memslots(doc["memslots"])
    vm.files.update(_gmem_files(vm, doc["gmem_files"], slots, ctx))
    _link_slots(vm, slots, doc["memslots"])
    _mappings(vm, doc["mappings"], ctx)
    _hva_pages(vm, doc["hva_pages"], ctx)
    vm.poisoned_hva.update(
        _sorted_unique(
            doc["poisoned_hva"], "$.poisoned_hva", U64_END - 1, "hva", align=0xFFF, shift=12
        )
    )
    vm.in_flight.update(_in_flight(vm, doc["in_flight"], ctx))
    _events(vm, doc["events"], ctx)
    _pfnmap(vm, doc.get("pfnmap", []), ctx)
    ctx.spend(state_snp.build(vm, doc.get("snp"), ctx.npages), "$.snp.rmp")
    _engine_invariants(vm, doc)
    return vm


PFNMAP = RowSpec(
    "device page",
    "hva",
    pfn=True,
    flag="refcount",
    flags={"none": 0, "refcounted": 1},
    byte_addr=True,
)


def _pfnmap(vm: VM, v: Any, ctx: _Ctx) -> None:
    """Device memory mapped with host_mmap_pfnmap (absent in files before it existed)."""
    rows = _rows(ctx, v, "$.pfnmap", PFNMAP, HVA_PAGES, "the 64-bit address space")
    hvpn, pfn, ref = expand(rows)
    fill(vm.pfnmap, hvpn, pack_pfnmaps(pfn, ref))


def _engine_invariants(vm: VM, doc: dict[str, Any]) -> None:
    """Refuse what the engine relies on and no single field shows (I5: a binding and its
    memslot point at each other); `imemviz check` reports the other invariants."""
    for i, f in enumerate(doc["gmem_files"]):
        fd = f["fd"]
        for j, b in enumerate(vm.files[fd].bindings):
            slot = vm.memslots.by_id.get(b.slot)
            if slot is None or slot.gmem_file is not vm.files[fd]:
                fail(
                    f"$.gmem_files[{i}].bindings[{j}].slot",
                    f"slot {b.slot} does not point back at fd {fd} (invariant I5: a "
                    "binding and its memslot name each other)",
                )
            if slot.npages != b.npages or slot.gmem_pgoff != b.pgoff:
                fail(
                    f"$.gmem_files[{i}].bindings[{j}]",
                    f"does not match slot {b.slot}'s npages and gmem_pgoff (invariant I5)",
                )
    for i, s in enumerate(doc["memslots"]):
        slot = vm.memslots.by_id[s["id"]]
        f = slot.gmem_file
        if f is not None and not any(b.slot == slot.id for b in f.bindings):
            fail(
                f"$.memslots[{i}].gmem_file",
                f"fd {f.fd} has no binding for slot {slot.id} (invariant I5: a binding "
                "and its memslot name each other)",
            )


def _closed_std_fds(v: Any) -> set[int]:
    fds = array(v, "$.closed_std_fds", 3)
    out = [
        integer(x, f"$.closed_std_fds[{i}]", 0, 2, "fd", "0-2 (stdin, stdout, stderr)")
        for i, x in enumerate(fds)
    ]
    if out != sorted(set(out)):
        fail("$.closed_std_fds", "must be sorted without repeats")
    return set(out)


def _sorted_unique(
    v: Any, path: str, hi: int, what: str, *, align: int = 0, shift: int = 0
) -> set[int]:
    return set(_sorted_list(v, path, hi, what, align=align, shift=shift))


def _sorted_list(
    v: Any, path: str, hi: int, what: str, *, align: int = 0, shift: int = 0
) -> list[int]:
    """A sorted list of addresses without repeats (each `>> shift`), checked."""
    items = array(v, path, MAX_ENTRIES)
    out: list[int] = []
    for i, x in enumerate(items):
        n = address(x, f"{path}[{i}]", hi, what)
        if n & align:
            fail(f"{path}[{i}]", f"{what} {hex(n)} is not page aligned")
        if out and n >> shift <= out[-1]:
            fail(f"{path}[{i}]", "out of order or repeated (the list is sorted, no repeats)")
        out.append(n >> shift)
    return out


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


def _host(vm: VM, v: Any, ctx: _Ctx) -> None:
    d = obj(v, "$.host", ("free", "other", "poisoned", "content"))
    host = vm.host
    npages = host.npages
    free = _rows(ctx, d["free"], "$.host.free", FREE, npages, ctx.pfn_beyond, runs=True)
    # Top-order blocks stay runs (intervals); the others are kept one by one: spend them.
    low = free.code < MAX_ORDER
    ctx.spend(int(free.count[low].sum()) - int(low.sum()), "$.host.free")
    other = _rows(ctx, d["other"], "$.host.other", OTHER, npages, ctx.pfn_beyond)
    pfn, _p, order = expand(other._replace(extra=other.code))
    others = BlockColumns(pfn, order)
    poisoned = _sorted_list(d["poisoned"], "$.host.poisoned", npages - 1, "pfn")
    ctx.spend(len(poisoned), "$.host.poisoned")
    content = _rows(ctx, d["content"], "$.host.content", CONTENT, npages, ctx.pfn_beyond)
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


def _attributes(vm: VM, v: Any) -> None:
    runs = array(v, "$.attributes", MAX_ENTRIES)
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


_SLOT_KEYS = (
    "id",
    "flags",
    "base_gfn",
    "npages",
    "userspace_addr",
    "gmem_file",
    "gmem_fd",
    "gmem_pgoff",
    "gmem_only",
)


def _memslots(v: Any) -> list[Memslot]:
    entries = array(v, "$.memslots", 2 * 32768)
    out: list[Memslot] = []
    for i, e in enumerate(entries):
        p = f"$.memslots[{i}]"
        obj(e, p, _SLOT_KEYS)
        sid = integer(
            e["id"],
            f"{p}.id",
            0,
            SLOT_ID_MAX,
            "slot id",
            "the slot ids KVM has (address space 0 or 1, slot below 32767)",
        )
        if sid & 0xFFFF >= 32767:
            fail(f"{p}.id", f"slot {sid & 0xFFFF} is beyond KVM_MEM_SLOTS_NUM (32767)")
        if out and sid <= out[-1].id:
            fail(f"{p}.id", "out of order or repeated (memslots are sorted by id)")
        flags = integer(
            e["flags"],
            f"{p}.flags",
            0,
            7,
            "flags",
            "the defined flags (LOG_DIRTY_PAGES 1, READONLY 2, GUEST_MEMFD 4)",
        )
        npages = integer(e["npages"], f"{p}.npages", 1, MAX_SLOT_PAGES, "npages")
        base = address(e["base_gfn"], f"{p}.base_gfn", GFN_LIMIT - npages, "base_gfn", GFN_BEYOND)
        uaddr = address(
            e["userspace_addr"],
            f"{p}.userspace_addr",
            U64_END - (npages << 12),
            "userspace_addr",
            "the 64-bit address space",
        )
        if uaddr & 0xFFF:
            fail(f"{p}.userspace_addr", f"{hex(uaddr)} is not page aligned")
        gfd = e["gmem_fd"]
        if gfd is not None:
            gfd = integer(gfd, f"{p}.gmem_fd", 0, FD_MAX, "gmem_fd")
        if e["gmem_file"] is not None:
            # below 0: an inaccessible memfd no descriptor refers to (upm-v8), keyed -ino
            integer(e["gmem_file"], f"{p}.gmem_file", -U63, FD_MAX, "fd")
        pgoff = address(e["gmem_pgoff"], f"{p}.gmem_pgoff", HVA_PAGES - 1, "gmem_pgoff")
        only = boolean(e["gmem_only"], f"{p}.gmem_only")
        out.append(Memslot(sid, flags, base, npages, uaddr, None, gfd, pgoff, only))
    for as_id in (0, 1):
        mine = sorted((s for s in out if s.as_id == as_id), key=lambda s: s.base_gfn)
        for a, b in pairwise(mine):
            if b.base_gfn < a.end_gfn:
                fail(
                    f"$.memslots[{out.index(b)}].base_gfn",
                    f"slot {b.id} overlaps slot {a.id} in address space {as_id}",
                )
    return out


def _link_slots(vm: VM, slots: list[Memslot], raw: list[dict[str, Any]]) -> None:
    files = []
    for i, _s in enumerate(slots):
        fd = raw[i]["gmem_file"]
        if fd is not None and fd not in vm.files:
            fail(f"$.memslots[{i}].gmem_file", f"no guest_memfd file has fd {fd}")
        files.append(NO_FD if fd is None else fd)
    # Every value checked above (the file's messages name the JSON path): from_arrays'
    # own checks, a few rows, then pass.
    cols = [(s.id, s.flags, s.base_gfn, s.npages, s.userspace_addr, s.gmem_pgoff) for s in slots]
    a = np.array(cols, np.int64).reshape(-1, 6)
    vm.memslots.from_arrays(
        MemslotColumns(
            a[:, 0],
            a[:, 1],
            a[:, 2],
            a[:, 3],
            a[:, 4],
            int64(files),
            int64([NO_FD if s.gmem_fd is None else s.gmem_fd for s in slots]),
            a[:, 5],
            np.array([s.gmem_only for s in slots], bool),
        ),
        vm.files,
    )


def _gmem_files(vm: VM, v: Any, slots: list[Memslot], ctx: _Ctx) -> dict[int, GmemFile]:
    entries = array(v, "$.gmem_files", 1 << 20)
    slot_ids = {s.id for s in slots}
    files: dict[int, GmemFile] = {}
    inos: set[int] = set()
    last_fd = -U63 - 1
    for i, e in enumerate(entries):
        p = f"$.gmem_files[{i}]"
        obj(e, p, ("fd", "ino", "size", "flags", "bindings", "folios"), ("kind",))
        kind = enum(e.get("kind", GUEST_MEMFD), f"{p}.kind", {k: k for k in FILE_KINDS}, "kind")
        if kind == INACCESSIBLE and type(e["fd"]) is int and e["fd"] < 0:
            fd = integer(e["fd"], f"{p}.fd", -U63, -1, "fd")
            if fd != -integer(e["ino"], f"{p}.ino", 1, U63, "ino"):
                fail(f"{p}.fd", "an inaccessible memfd without a descriptor is keyed -ino")
        else:
            fd = integer(e["fd"], f"{p}.fd", 3, FD_MAX, "fd")
        if fd <= last_fd:
            fail(f"{p}.fd", "out of order or repeated (files are sorted by fd)")
        ino = integer(
            e["ino"],
            f"{p}.ino",
            1,
            vm.next_ino - 1,
            "ino",
            f"next_ino ({vm.next_ino}): inode numbers are below it",
        )
        if ino in inos:
            fail(f"{p}.ino", f"inode {ino} appears twice")
        inos.add(ino)
        last_fd = fd
        size = integer(e["size"], f"{p}.size", 0 if kind != GUEST_MEMFD else 1, U63, "size")
        if size & 0xFFF:
            fail(f"{p}.size", f"size {size} is not a multiple of 4096")
        flags = integer(
            e["flags"], f"{p}.flags", 0, 3, "flags", "the defined flags (MMAP 1, INIT_SHARED 2)"
        )
        inode = GmemInode(ino, size, flags)
        bindings = []
        for j, b in enumerate(array(e["bindings"], f"{p}.bindings", 2 * 32768)):
            q = f"{p}.bindings[{j}]"
            obj(b, q, ("pgoff", "npages", "slot"))
            pgoff = address(b["pgoff"], f"{q}.pgoff", HVA_PAGES - 1, "pgoff")
            n = integer(b["npages"], f"{q}.npages", 1, MAX_SLOT_PAGES, "npages")
            sid = integer(b["slot"], f"{q}.slot", 0, SLOT_ID_MAX, "slot")
            if sid not in slot_ids:
                fail(f"{q}.slot", f"no memslot has id {sid}")
            bindings.append(Binding(pgoff, n, sid))
        # A memfd may hold pages past i_size: fallocate(KEEP_SIZE) there, and v8's private
        # slots (shmem SGP_WRITE allocates past i_size).
        past_eof = kind != GUEST_MEMFD
        rows = _rows(
            ctx,
            e["folios"],
            f"{p}.folios",
            FOLIOS,
            HVA_PAGES if past_eof else inode.npages,
            "the 64-bit file offsets"
            if past_eof
            else f"the end of the file ({hex(inode.npages)} pages)",
            runs=True,
        )
        # A run row stays one run (never expanded).  Every row is checked (`_rows`,
        # messages with the JSON path): filled as it is.
        inode.from_arrays(
            FolioColumns(rows.start, rows.code, rows.pfn, rows.extra.astype(bool), rows.count),
            check=False,
        )
        files[fd] = GmemFile(fd, inode, bindings, kind)
    return files


def _mappings(vm: VM, v: Any, ctx: _Ctx) -> None:
    d = obj(v, "$.mappings", ("private", "shared", "sept_pages"))
    for name, table in (("private", vm.private), ("shared", vm.shared)):
        rows = _rows(ctx, d[name], f"$.mappings.{name}", LEAVES, GFN_LIMIT, GFN_BEYOND)
        gfn, pfn, state = expand(rows)
        level = rows.code if len(gfn) == len(rows.code) else np.repeat(rows.code, rows.count)
        # Rows sorted by gfn without overlaps and every value checked, with the JSON path
        # in the messages: filled as they are.
        table.from_arrays(LeafColumns(gfn, level, pfn, state), check=False)
    vm.private.tables.update(_sept_pages(d["sept_pages"], ctx))


def _sept_pages(v: Any, ctx: _Ctx) -> dict[tuple[int, int], int]:
    """[gfn, level, pfn, count?] rows sorted by level then gfn -> {(level, gfn >> 9*level): pfn}."""
    tables: dict[tuple[int, int], int] = {}
    prev = (0, -1)
    for i, e in enumerate(array(v, "$.mappings.sept_pages", MAX_ENTRIES)):
        p = f"$.mappings.sept_pages[{i}]"
        if type(e) is not list or not 3 <= len(e) <= 4:
            wrong(p, "a row [gfn, level, pfn, count?]", e)
        level = integer(e[1], f"{p}[1]", 1, 4, "level", "4 (the root table belongs to the TD)")
        shift = 9 * level
        gfn = address(e[0], f"{p}[0]", GFN_LIMIT - 1, "gfn", GFN_BEYOND)
        if gfn & ((1 << shift) - 1):
            fail(f"{p}[0]", f"gfn {hex(gfn)} is not the first gfn of a level-{level} table")
        pfn = address(e[2], f"{p}[2]", ctx.npages - 1, "pfn", ctx.pfn_beyond)
        n = count(e[3], f"{p}[3]", MAX_ENTRIES) if len(e) == 4 else 1
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


def _hva_pages(vm: VM, v: Any, ctx: _Ctx) -> None:
    rows = _rows(ctx, v, "$.hva_pages", HVA, HVA_PAGES, "the 64-bit address space")
    for level in LEVELS:
        hvpn, pfn, _x = expand(rows, rows.code == level)
        fill(vm.hva_pages[level], hvpn, pfn)


_HELD_KEYS = (
    "vcpu",
    "gpa",
    "gfn",
    "alias",
    "private",
    "write",
    "value",
    "accept_level",
    "retried",
    "is_private",
    "mmu_seq",
    "slot",
    "slot_live",
    "slot_base",
    "pfn",
    "host_level",
)


def _in_flight(vm: VM, v: Any, ctx: _Ctx) -> dict[int, PendingFault]:
    out: dict[int, PendingFault] = {}
    levels = {n: lv for n, (lv, _s) in LEVEL_SIZES.items()}
    for i, e in enumerate(array(v, "$.in_flight", MAX_VCPU + 1)):
        p = f"$.in_flight[{i}]"
        obj(e, p, _HELD_KEYS)
        vcpu = integer(e["vcpu"], f"{p}.vcpu", 0, MAX_VCPU, "vcpu")
        if out and vcpu <= next(reversed(out)):
            fail(f"{p}.vcpu", "out of order or repeated (held faults are sorted by vcpu)")
        value = e["value"]
        if value is not None:
            value = integer(value, f"{p}.value", 0, 255, "value", "a byte (0-255)")
        accept = e["accept_level"]
        if accept is not None:
            accept = enum(accept, f"{p}.accept_level", levels, "level")
        acc = Access(
            vcpu,
            address(e["gpa"], f"{p}.gpa", U64_END - 1, "gpa"),
            address(e["gfn"], f"{p}.gfn", GFN_LIMIT - 1, "gfn", GFN_BEYOND),
            boolean(e["alias"], f"{p}.alias"),
            optional_bool(e["private"], f"{p}.private"),
            boolean(e["write"], f"{p}.write"),
            value,
            accept,
            boolean(e["retried"], f"{p}.retried"),
        )
        sid = integer(e["slot"], f"{p}.slot", 0, SLOT_ID_MAX, "slot")
        base = address(e["slot_base"], f"{p}.slot_base", GFN_LIMIT - 1, "gfn", GFN_BEYOND)
        if boolean(e["slot_live"], f"{p}.slot_live"):
            slot = vm.memslots.by_id.get(sid)
            if slot is None:
                fail(f"{p}.slot", f"no memslot has id {sid} (slot_live is true)")
        else:
            # The slot was deleted or replaced while the fault was held: only its
            # identity matters (the fault retries), so a detached stand-in will do.
            slot = Memslot(sid, 0, base, 0, 0)
        out[vcpu] = PendingFault(
            acc,
            boolean(e["is_private"], f"{p}.is_private"),
            integer(e["mmu_seq"], f"{p}.mmu_seq", what="mmu_seq"),
            slot,
            base,
            address(e["pfn"], f"{p}.pfn", ctx.npages - 1, "pfn", ctx.pfn_beyond),
            enum(e["host_level"], f"{p}.host_level", levels, "level"),
        )
    return out


def _events(vm: VM, v: Any, ctx: _Ctx) -> None:
    d = obj(v, "$.events", ("maxlen", "total", "dropped", "log"))
    maxlen = integer(d["maxlen"], "$.events.maxlen", 1, MAX_ENTRIES, "maxlen")
    log = vm.events  # kept: the VM holds on to its `current` list
    log.maxlen = maxlen
    log.total = integer(d["total"], "$.events.total", what="total")
    log.dropped = integer(d["dropped"], "$.events.dropped", what="dropped")
    raw = array(d["log"], "$.events.log", maxlen)
    ctx.spend(len(raw), "$.events.log")
    # Checked a column at a time (C-level iteration); a bad event is then found row by row.
    ok = not raw or set(map(type, raw)) == {list}
    if ok and raw:
        lens = list(map(len, raw))
        ok = min(lens) >= 2
        if ok:
            names = list(map(itemgetter(1), raw))
            try:  # a name that is a list or an object is unhashable: row by row below
                want = list(map(_EVENT_LEN.get, names))
            except TypeError:
                want = []
            ops = list(map(itemgetter(0), raw))
            ok = (
                want == lens
                and set(map(type, ops)) == {int}
                and min(ops) >= 0
                and set(map(type, chain.from_iterable(raw))) <= _EVENT_SCALARS
            )
    if not ok:
        for i, ev in enumerate(raw):
            _check_event(ev, f"$.events.log[{i}]")
    log.log = deque(map(tuple, raw), maxlen=maxlen)
    last = vm.op_index - 1
    tail = []
    for ev in reversed(log.log):
        if ev[0] != last:
            break
        tail.append(ev)
    vm.last_events = tail[::-1]


_EVENT_LEN = {name: 2 + len(fields) for name, fields in EVENT_FIELDS.items()}
_EVENT_SCALARS = {int, str, bool, type(None)}


def _check_event(ev: Any, p: str) -> None:
    """One event, [op_index, name, fields...]: raise naming what is wrong with it."""
    if type(ev) is not list or len(ev) < 2:
        wrong(p, "an event [op_index, name, fields...]", ev)
    integer(ev[0], f"{p}[0]", what="op_index")
    name = ev[1]
    if type(name) is not str or name not in EVENT_FIELDS:
        fail(f"{p}[1]", f"unknown event {json_type(name).removeprefix('the string ')}")
    names = EVENT_FIELDS[name]
    if len(ev) != 2 + len(names):
        fail(p, f"{name} has {len(names)} fields ({', '.join(names) or 'none'}), got {len(ev) - 2}")
    for j, x in enumerate(ev[2:]):
        if type(x) not in _EVENT_SCALARS:
            wrong(f"{p}[{j + 2}]", f"a number or a string ({name}.{names[j]})", x)
