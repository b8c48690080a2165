"""VM -> state document (version 1): every piece of engine state, in a canonical order.

The layout and every field are described in ``docs/state-format.md``.  The
per-page structures (leaves, folios, host pages, free blocks, page contents)
are lists of short rows, ``[start, size, pfn, count, flag]``, sorted by
address; a run of neighbours that continue each other (addresses and pfns
contiguous, same size and flag) is one row with a ``count``, so a 4 TiB guest
of 2M folios is a few rows.  Trailing columns at their default (count 1,
state MAPPED, hwpoison false) are left out.  Addresses (gfn, pfn, hva, gpa,
file index) are hex strings, small numbers JSON integers.

Runs are found with numpy: a million scattered leaves cost a few array
passes, not a Python loop per leaf.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from imemviz.io import state_snp
from imemviz.io.row_bytes import Column, RawRows, rows_json
from imemviz.io.state import FORMAT, VERSION, no_gc
from imemviz.model.columns import NO_FD
from imemviz.model.events import EventLog
from imemviz.model.extents import ExtentMap
from imemviz.model.fault import PendingFault
from imemviz.model.guest_memfd import GUEST_MEMFD, GmemFile
from imemviz.model.host_memory import HostMemory
from imemviz.model.memslots import Memslots
from imemviz.model.mmu import INVALID_GFN, STATE_NAMES, LeafTable
from imemviz.model.sparse import SparseIndex, unpack_pfnmaps
from imemviz.model.units import LEVEL_NAMES, LEVELS, level_pages
from imemviz.model.vm import VM

Row = list[Any]


def pairs(idx: SparseIndex[int]) -> tuple[np.ndarray, np.ndarray]:
    """(keys, values) of a sparse index as int64 arrays, sorted by key."""
    return idx.int_arrays()


def runs(
    keys: np.ndarray,
    pfns: np.ndarray,
    span: int | np.ndarray,
    tags: np.ndarray | None = None,
    pfn_step: int | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Where runs start and how long they are.

    Entry i continues entry i-1 when its key is i-1's key + span, its pfn is
    i-1's pfn + `pfn_step` (default: span) and its tag is equal.  Returns
    (indices of the first entries of runs, run lengths).
    """
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    step = span if pfn_step is None else pfn_step
    head = np.ones(n, bool)
    if isinstance(span, np.ndarray):
        cont = (np.diff(keys) == span[:-1]) & (span[1:] == span[:-1])
    else:
        cont = np.diff(keys) == span
    cont &= np.diff(pfns) == (step[:-1] if isinstance(step, np.ndarray) else step)
    if tags is not None:
        cont &= tags[1:] == tags[:-1]
    head[1:] = ~cont
    starts = np.flatnonzero(head)
    return starts, np.diff(np.append(starts, n))


def coalesce(
    keys: np.ndarray, pfns: np.ndarray, span: np.ndarray, counts: np.ndarray, tags: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Runs of entries that are themselves runs: entry i (`counts[i]` items of `span[i]`
    pages) continues i-1 when keys and pfns go on where i-1's end and span and tag are
    equal.  Returns (indices of the first entries of runs, total counts)."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    step = counts * span
    head = np.ones(n, bool)
    head[1:] = ~(
        (keys[1:] == keys[:-1] + step[:-1])
        & (pfns[1:] == pfns[:-1] + step[:-1])
        & (span[1:] == span[:-1])
        & (tags[1:] == tags[:-1])
    )
    starts = np.flatnonzero(head)
    return starts, np.add.reduceat(counts, starts)


def _merge(parts: Sequence[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    """Concatenate per-level/order columns and order them by start (stable)."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return []
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    if len(parts) > 1:
        order = np.argsort(cols[0], kind="stable")
        cols = [c[order] for c in cols]
    return cols


def document(vm: VM, raw: bool = False) -> dict[str, Any]:
    """The version-1 state document of `vm`.

    `raw`: the leaves and folios as `RawRows` (their JSON text, written from the
    arrays), for `state.encode_spliced`; otherwise every value is plain JSON.
    """
    with no_gc():
        return _document(vm, raw)


def _document(vm: VM, raw: bool = False) -> dict[str, Any]:
    inv = vm.inv
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "vm": vm.config.to_dict(),
        "op_index": vm.op_index,
        "dead": vm.dead,
        "td_state": vm.td_state,
        "tdx_epoch": vm.tdx_epoch,
        "next_ino": vm.next_ino,
        "closed_std_fds": sorted(vm.closed_std_fds),
        "invalidate": {
            "seq": inv.seq,
            "in_progress": inv.in_progress,
            "range": None
            if inv.range_start == INVALID_GFN
            else [hex(inv.range_start), hex(inv.range_end)],
        },
        "host": host_section(vm.host),
        "attributes": _attributes(vm.attributes),
        "memslots": _memslots(vm.memslots),
        "gmem_files": [_gmem_file(vm.files[fd], raw) for fd in sorted(vm.files)],
        "mappings": {
            "private": _leaves(vm.private, raw),
            "shared": _leaves(vm.shared, raw),
            "sept_pages": sept_pages(vm.private),
        },
        "hva_pages": _hva_pages(vm),
        "poisoned_hva": [hex(p << 12) for p in sorted(vm.poisoned_hva)],
        "in_flight": [held_fault(vm, v, vm.in_flight[v]) for v in sorted(vm.in_flight)],
        "events": _events(vm.events),
        "pfnmap": _pfnmap(vm),
    }
    if vm.snp is not None:
        doc["snp"] = state_snp.document(vm)  # only SNP VMs have the section
    return doc


def _blocks(pfn: np.ndarray, order: np.ndarray, counts: np.ndarray) -> list[Row]:
    """Blocks (`counts` blocks of `order` at pfn, ...), sorted by pfn -> [pfn, order, count?]
    rows."""
    if not len(pfn):
        return []
    span = np.left_shift(1, order)
    first, count = coalesce(pfn, pfn, span, counts, order)
    return _rows([pfn[first], order[first], count], (0,), 2)


def host_section(host: HostMemory) -> dict[str, Any]:
    """The state document's `host` section: free and other blocks, poisoned pages and
    contents as rows (`diff` compares them as the file spells them)."""
    cols = host.to_arrays()
    c, free, other = cols.content, cols.free, cols.other
    first, count = runs(c.pfn, c.pfn, 1, tags=c.value)
    content = _rows([c.pfn[first], c.value[first], count], (0,), 2)
    return {
        "free": _blocks(free.pfn, free.order, free.count),
        "other": _blocks(other.pfn, other.order, np.ones(len(other), np.int64)),
        "poisoned": [hex(p) for p in cols.poisoned.pfn.tolist()],
        "content": content,
    }


def _attributes(attributes: ExtentMap[int]) -> list[Row]:
    """The runs of attributes that are not 0: [start gfn, end gfn, attributes]."""
    c = attributes.to_arrays()
    set_ = c.value != 0
    cols = (c.start[set_].tolist(), c.end[set_].tolist(), c.value[set_].tolist())
    return [[hex(a), hex(b), v] for a, b, v in zip(*cols, strict=True)]


def _memslots(memslots: Memslots) -> list[dict[str, Any]]:
    c = memslots.to_arrays()
    out = []
    for sid, flags, base, npages, uaddr, file, fd, pgoff, only in zip(
        *(a.tolist() for a in c.as_dict().values()), strict=True
    ):
        out.append(
            {
                "id": sid,
                "flags": flags,
                "base_gfn": hex(base),
                "npages": npages,
                "userspace_addr": hex(uaddr),
                "gmem_file": None if file == NO_FD else file,
                "gmem_fd": None if fd == NO_FD else fd,
                "gmem_pgoff": hex(pgoff),
                "gmem_only": only,
            }
        )
    return out


def _rows(
    cols: list[Any],
    hexcols: tuple[int, ...],
    count_col: int,
    flag: list[Any] | None = None,
    flag_default: Any = None,
) -> list[Row]:
    """Rows from columns (numpy arrays or lists): `hexcols` in hex, then count and flag.

    The common row (count 1, flag at its default) is built by C-level
    map/zip; only the others get their trailing columns appended.
    """
    fixed = []
    for i, c in enumerate(cols[:count_col]):
        c = c.tolist() if isinstance(c, np.ndarray) else c
        fixed.append(list(map(hex, c)) if i in hexcols else c)
    rows = list(map(list, zip(*fixed, strict=True)))
    counts = np.asarray(cols[count_col])
    for i in np.flatnonzero(counts != 1).tolist():
        rows[i].append(int(counts[i]))
    if flag is not None:
        for i, f in enumerate(flag):
            if f != flag_default:
                if len(rows[i]) == count_col:
                    rows[i].append(1)
                rows[i].append(f)
    return rows


def _by_size(size: np.ndarray) -> np.ndarray | None:
    """The order that groups key-sorted rows by `size` (level or order), each group still
    by key: runs are found within one size, as the engine stores each size apart.  None
    when there is one size (the rows are already so)."""
    if not len(size) or size.min() == size.max():
        return None
    order: np.ndarray = np.argsort(size, kind="stable")
    return order


def _by_start(
    first: np.ndarray, count: np.ndarray, key: np.ndarray, grouped: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The run heads of size-grouped rows back in key order (ties: the smaller size first)."""
    if not grouped:
        return first, count
    o = np.argsort(key[first], kind="stable")
    return first[o], count[o]


def _gmem_file(f: GmemFile, raw: bool = False) -> dict[str, Any]:
    inode = f.inode
    c = inode.to_arrays()
    index, order, pfn, poison, counts = (
        c.index,
        c.order,
        c.pfn,
        c.hwpoison.astype(np.int64),  # codes for rows_json's names, not a mask
        c.count,
    )
    grouped = _by_size(order)
    if grouped is not None:
        index, order, pfn, poison, counts = (
            a[grouped] for a in (index, order, pfn, poison, counts)
        )
    first, count = coalesce(index, pfn, np.left_shift(1, order), counts, poison)
    first, count = _by_start(first, count, index, grouped is not None)
    cols = [index[first], order[first], pfn[first], count, poison[first]] if len(first) else []
    rows: list[Row] | RawRows = []
    if cols and raw:
        poison = cols[4].astype(bool)
        rows = RawRows(
            rows_json(
                [
                    Column("hex", cols[0]),
                    Column("int", cols[1]),
                    Column("hex", cols[2]),
                    Column("int", cols[3], (cols[3] != 1) | poison),
                    Column("name", cols[4], poison, (b"false", b"true")),
                ]
            )
        )
    elif cols:
        poisoned = [bool(h) for h in cols[4].tolist()] if cols[4].any() else None
        rows = _rows(cols, (0, 2), 3, poisoned, False)
    out = {
        "fd": f.fd,
        "ino": inode.ino,
        "size": inode.size,
        "flags": inode.flags,
        "bindings": [
            {"pgoff": hex(b.pgoff), "npages": b.npages, "slot": b.slot} for b in f.bindings
        ],
        "folios": rows,
    }
    if f.kind != GUEST_MEMFD:
        out["kind"] = f.kind
    return out


_LEVEL_NAME = np.array([None, *(LEVEL_NAMES[lv] for lv in LEVELS)], dtype=object)
_STATE_NAME = np.array([STATE_NAMES[s] for s in sorted(STATE_NAMES)], dtype=object)
# The same names as JSON text, for rows_json (codes are levels and states).
_LEVEL_JSON = tuple(json.dumps(n).encode() for n in _LEVEL_NAME.tolist())
_STATE_JSON = tuple(json.dumps(n).encode() for n in _STATE_NAME.tolist())
_MAPPED = _STATE_NAME.tolist().index("MAPPED")


def _named_levels(parts: Sequence[tuple[np.ndarray, ...]]) -> list[Any]:
    """_merge's columns with the level column (1) as names: columns for _rows."""
    cols: list[Any] = _merge(parts)
    if cols:
        cols[1] = _LEVEL_NAME[cols[1]].tolist()
    return cols


def _leaves(table: LeafTable, raw: bool = False) -> list[Row] | RawRows:
    c = table.to_arrays()
    gfn, level, pfn, state = c.gfn, c.level, c.pfn, c.state
    grouped = _by_size(level)
    if grouped is not None:
        gfn, level, pfn, state = (a[grouped] for a in (gfn, level, pfn, state))
        span: int | np.ndarray = np.left_shift(1, 9 * (level - 1))
    else:
        span = level_pages(int(level[0])) if len(level) else 1
    first, count = runs(gfn, pfn, span, tags=state)
    first, count = _by_start(first, count, gfn, grouped is not None)
    if not len(first):
        return RawRows(b"[]") if raw else []
    cols: list[Any] = [gfn[first], level[first], pfn[first], count, state[first]]
    if raw:
        flagged = cols[4] != _MAPPED
        return RawRows(
            rows_json(
                [
                    Column("hex", cols[0]),
                    Column("name", cols[1], None, _LEVEL_JSON),
                    Column("hex", cols[2]),
                    Column("int", cols[3], (cols[3] != 1) | flagged),
                    Column("name", cols[4], flagged, _STATE_JSON),
                ]
            )
        )
    cols[1] = _LEVEL_NAME[cols[1]].tolist()
    states = None
    if cols[4].any():
        states = _STATE_NAME[cols[4]].tolist()
    return _rows(cols, (0, 2), 3, states, "MAPPED")


def sept_pages(table: LeafTable) -> list[Row]:
    """The mirror root's S-EPT table pages, [gfn, level, pfn, count?], by level then gfn.

    `level` is the level of the entries the page holds (1: 4K leaves); a run
    is consecutive tables of one level with consecutive pfns.
    """
    rows: list[Row] = []
    for level in sorted({lv for (lv, _i) in table.tables}):
        items = sorted((i, pfn) for (lv, i), pfn in table.tables.items() if lv == level)
        a = np.array(items, np.int64)
        first, count = runs(a[:, 0], a[:, 1], 1)
        heads = a[first, 0] << (9 * level)
        cols = [heads, [level] * len(heads), a[first, 1], count]
        rows.extend(_rows(cols, (0, 2), 3))
    return rows


def _hva_pages(vm: VM) -> list[Row]:
    parts = []
    for level in LEVELS:
        keys, pfn = pairs(vm.hva_pages[level])
        first, count = runs(keys, pfn, level_pages(level))
        parts.append((keys[first] << 12, np.full(len(first), level), pfn[first], count))
    cols = _named_levels(parts)
    return _rows(cols, (0, 2), 3) if cols else []


def _pfnmap(vm: VM) -> list[Row]:
    """Device memory the VMM mapped: [hva, pfn, count?, "refcounted"?] (a run: consecutive
    pages with consecutive pfns and one refcount kind)."""
    keys, vals = pairs(vm.pfnmap)
    pfn, ref = unpack_pfnmaps(vals)
    first, count = runs(keys, pfn, 1, tags=ref)
    if not len(first):
        return []
    flags = [PFNMAP_REFCOUNT[int(r)] for r in ref[first].tolist()] if ref.any() else None
    return _rows([keys[first] << 12, pfn[first], count], (0, 1), 2, flags, "none")


PFNMAP_REFCOUNT = {0: "none", 1: "refcounted"}


def held_fault(vm: VM, vcpu: int, pf: PendingFault) -> dict[str, Any]:
    """One entry of the document's `in_flight`: the fault `vcpu` holds, as plain JSON."""
    acc = pf.access
    return {
        "vcpu": vcpu,
        "gpa": hex(acc.gpa),
        "gfn": hex(acc.gfn),
        "alias": acc.alias,
        "private": acc.private_arg,
        "write": acc.write,
        "value": acc.value,
        "accept_level": None if acc.accept_level is None else LEVEL_NAMES[acc.accept_level],
        "retried": acc.retried,
        "is_private": pf.is_private,
        "mmu_seq": pf.mmu_seq,
        "slot": pf.slot.id,
        "slot_live": vm.memslots.by_id.get(pf.slot.id) is pf.slot,
        "slot_base": hex(pf.slot_base),
        "pfn": hex(pf.pfn),
        "host_level": LEVEL_NAMES[pf.host_level],
    }


def _events(ev: EventLog) -> dict[str, Any]:
    return {
        "maxlen": ev.maxlen,
        "total": ev.total,
        "dropped": ev.dropped,
        "log": list(map(list, ev.log)),
    }
