"""What changed between two states, as a JSON-ready dict (`diff_sides`, `diff_vms`).

Sections: config, counters, memslots (added/removed/changed), attributes
(gfn ranges whose value changed, from walking both extent maps' runs
together: a 1 TiB conversion is one range), guest_memfd files and their
folios, leaves per root, S-EPT state changes, shared host pages, poisoned
pages and page contents, held faults.  Ranges are coalesced: a change that
covers neighbouring folios or leaves the same way is one range.

Costs what the states hold (runs, leaves, folios), never the guest's size:
leaves and folios are compared as sorted numpy arrays.  The event log and
the op count are history, not state: diff ignores them.  The text of a diff
is diff_text.py's; the command is diff.py's.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from imemviz.io.check import GMEM_FLAGS, SLOT_FLAGS, flag_names
from imemviz.io.state_doc import coalesce, held_fault, host_section, pairs, sept_pages
from imemviz.model.extents import ExtentMap
from imemviz.model.guest_memfd import FOLIO_ORDERS, GmemFile
from imemviz.model.memslots import Memslot
from imemviz.model.mmu import INVALID_GFN, STATE_NAMES, LeafTable
from imemviz.model.sparse import unpack_pfnmaps
from imemviz.model.units import LEVEL_NAMES, LEVELS, fmt_size, level_pages
from imemviz.model.vm import VM

I64 = np.int64


# ------------------------------------------------------------------ model

MAX_RANGES = 1000
"""Ranges listed per section by default; the others are counted (``truncated``)."""


@attrs.frozen(eq=False)
class Side:
    """What diff compares of one state, without the engine's per-page objects: the
    small parts as plain JSON values (most of them as the state file spells them, so
    nothing that the file holds escapes the comparison), the big ones as columns."""

    config: dict[str, Any]
    counters: dict[str, Any]
    process: dict[str, Any]
    slots: dict[int, dict[str, Any]]
    attributes: ExtentMap[int]
    files: dict[int, dict[str, Any]]
    folios: dict[int, Items]
    leaves: dict[str, Items]
    hva: Items
    content: tuple[np.ndarray, np.ndarray]
    poisoned: frozenset[int]
    poisoned_hva: frozenset[int]
    blocks: dict[str, list[tuple[Any, ...]]]
    held: dict[int, dict[str, Any]]


def side(vm: VM) -> Side:
    """The parts of `vm` that diff compares."""
    from imemviz.io import state_snp

    host = host_section(vm.host)
    return Side(
        config=vm.config.to_dict(),
        counters=_counters(vm),
        process={"closed_std_fds": sorted(vm.closed_std_fds)},
        slots={s.id: _slot(s) for s in vm.memslots.all()},
        attributes=vm.attributes,
        files={fd: _file(f) for fd, f in sorted(vm.files.items())},
        folios={fd: folio_items(f) for fd, f in vm.files.items()},
        leaves={name: leaf_items(getattr(vm, name)) for name in ("private", "shared")},
        hva=hva_items(vm),
        content=pairs(vm.host.content),
        poisoned=frozenset(vm.host.poisoned),
        poisoned_hva=frozenset(vm.poisoned_hva),
        blocks={
            "free blocks": [tuple(r) for r in host["free"]],
            "other host blocks": [tuple(r) for r in host["other"]],
            "S-EPT table pages": [tuple(r) for r in sept_pages(vm.private)],
            "RMP entries": []
            if vm.snp is None
            else [tuple(r) for r in state_snp.rmp_rows(vm.snp.rmp)],
        },
        held={v: held_fault(vm, v, vm.in_flight[v]) for v in sorted(vm.in_flight)},
    )


def diff_vms(a: VM, b: VM, max_ranges: int | None = MAX_RANGES) -> dict[str, Any]:
    """Every difference between two VMs' states, as plain JSON values (see diff_sides)."""
    return diff_sides(side(a), side(b), max_ranges)


def diff_sides(a: Side, b: Side, max_ranges: int | None = MAX_RANGES) -> dict[str, Any]:
    """Every difference between two states, as plain JSON values.

    ``equal`` is true when no section has anything: then the two states give the
    same result for every op (the event log is history and is not compared; its
    counters are).  Ranges are ``{"start", "end"}`` with `end` inclusive,
    addresses in hex; a section lists at most `max_ranges` ranges (None: all),
    and ``truncated`` says how many each section had in all.
    """
    truncated: dict[str, int] = {}
    mappings, states = _tables(a, b, max_ranges, truncated)
    out: dict[str, Any] = {
        "equal": True,
        "config": _fields(a.config, b.config),
        "counters": _fields(a.counters, b.counters),
        "process": _fields(a.process, b.process),
        "memslots": _by_key(a.slots, b.slots, "id"),
        "attributes": attribute_changes(a.attributes, b.attributes),
        "gmem_files": _by_key(a.files, b.files, "fd"),
        "folios": _folios(a, b, max_ranges, truncated),
        "mappings": mappings,
        "sept_states": states,
        "host_pages": _host_pages(a, b, max_ranges, truncated),
        "host": _host(a, b),
        "host_blocks": _blocks(a, b, max_ranges, truncated),
        "in_flight": _by_key(a.held, b.held, "vcpu"),
    }
    out["equal"] = not any(_nonempty(v) for k, v in out.items() if k != "equal")
    out["truncated"] = truncated
    return out


def _cap(
    section: str, items: list[Any], max_ranges: int | None, truncated: dict[str, int]
) -> list[Any]:
    if max_ranges is not None and len(items) > max_ranges:
        truncated[section] = len(items)
        return items[:max_ranges]
    return items


def _nonempty(v: Any) -> bool:
    if isinstance(v, dict):
        return any(_nonempty(x) for x in v.values())
    if isinstance(v, list):
        return bool(v)
    return v is not None and v != 0


def _fields(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: [a.get(k), b.get(k)] for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)}


def _by_key(
    a: dict[Any, dict[str, Any]], b: dict[Any, dict[str, Any]], key: str
) -> dict[str, list[Any]]:
    return {
        "added": [b[k] for k in b if k not in a],
        "removed": [a[k] for k in a if k not in b],
        "changed": [{key: k, "changes": _fields(a[k], b[k])} for k in a if k in b and a[k] != b[k]],
    }


def _counters(vm: VM) -> dict[str, Any]:
    ev = vm.events
    return {
        "vm_dead": vm.dead,
        "td_state": vm.td_state,
        "mmu_invalidate_seq": vm.inv.seq,
        "mmu_invalidate_in_progress": vm.inv.in_progress,
        "mmu_invalidate_range": None
        if vm.inv.range_start == INVALID_GFN
        else [hex(vm.inv.range_start), hex(vm.inv.range_end)],
        "host_free_bytes": vm.host.free_bytes,
        "sept_pages": len(vm.private.tables),
        "tdx_epoch": vm.tdx_epoch,
        "snp_launched": None if vm.snp is None else vm.snp.launched,
        "snp_vmsa_pfn": None if vm.snp is None or vm.snp.vmsa_pfn is None else hex(vm.snp.vmsa_pfn),
        "next_ino": vm.next_ino,
        "ops_applied": vm.op_index,
        # `stats` reports the events so far; the log keeps the last `event_log_size`.
        "events_total": ev.total + len(ev.current),
        "events_dropped": ev.dropped,
        "event_log_size": ev.maxlen,
    }


def _slot(s: Memslot) -> dict[str, Any]:
    return {
        "id": s.id,
        "gpa": hex(s.base_gfn << 12),
        "size": fmt_size(s.npages << 12),
        "userspace_addr": hex(s.userspace_addr),
        "flags": flag_names(s.flags, SLOT_FLAGS),
        "gmem_fd": None if s.gmem_file is None else s.gmem_file.fd,
        "gmem_offset": hex(s.gmem_pgoff << 12),
        # The fd the binding was made with (the file may be closed since) and whether
        # every fault takes its pfn from guest_memfd.
        "bound_fd": s.gmem_fd,
        "gmem_only": s.gmem_only,
    }


def _file(f: GmemFile) -> dict[str, Any]:
    return {
        "fd": f.fd,
        "ino": f.inode.ino,
        "size": fmt_size(f.inode.size),
        "flags": flag_names(f.inode.flags, GMEM_FLAGS),
        "bindings": [
            f"slot {b.slot & 0xFFFF} at {b.pgoff << 12:#x} ({fmt_size(b.npages << 12)})"
            + (f" (address space {b.slot >> 16})" if b.slot >> 16 else "")
            for b in f.bindings
        ],
        "kind": f.kind,
    }


def _attr_name(v: Any) -> str:
    return "PRIVATE" if v == 8 else "shared" if not v else str(v)


def attribute_changes(a: ExtentMap[int], b: ExtentMap[int]) -> list[dict[str, Any]]:
    """Ranges whose attributes differ, walking both maps' runs together (coalesced)."""
    out: list[dict[str, Any]] = []
    ia, ib = a.items(), b.items()
    ra, rb = next(ia, None), next(ib, None)
    pos = 0
    last: dict[str, Any] | None = None
    while ra is not None and rb is not None:
        end = min(ra[1], rb[1])
        if ra[2] != rb[2]:
            was, now = _attr_name(ra[2]), _attr_name(rb[2])
            if last is not None and last["_end"] == pos and (last["a"], last["b"]) == (was, now):
                last["_end"] = end
            else:
                last = {"_start": pos, "_end": end, "a": was, "b": now}
                out.append(last)
        pos = end
        if ra[1] == end:
            ra = next(ia, None)
        if rb[1] == end:
            rb = next(ib, None)
    return [
        {"start": hex(r["_start"]), "end": hex(r["_end"] - 1), "a": r["a"], "b": r["b"]}
        for r in out
    ]


# ------------------------------------------------------- leaves and folios


class Items:
    """A sorted set of (start, span, code, pfn, flag) items as int64 columns; `weight` is
    how many leaves or folios an item stands for (a run of folios is one item)."""

    COLUMNS = ("start", "span", "code", "pfn", "flag", "weight")

    def __init__(
        self,
        start: np.ndarray,
        span: np.ndarray,
        code: np.ndarray,
        pfn: np.ndarray,
        flag: np.ndarray,
        weight: np.ndarray | None = None,
    ) -> None:
        self.start, self.span, self.code, self.pfn, self.flag = start, span, code, pfn, flag
        self.weight = np.ones(len(start), I64) if weight is None else weight

    @classmethod
    def concat(cls, parts: list[Items]) -> Items:
        cols = [
            np.concatenate([getattr(p, c) for p in parts]) if parts else np.zeros(0, I64)
            for c in cls.COLUMNS
        ]
        return cls(*cols)

    def take(self, idx: np.ndarray) -> Items:
        return Items(*(getattr(self, c)[idx] for c in self.COLUMNS))

    def __len__(self) -> int:
        return len(self.start)


def leaf_items(table: LeafTable) -> Items:
    """A table's leaves (`LeafTable.to_arrays`), level by level, by gfn in each."""
    c = table.to_arrays()
    parts = []
    for level in LEVELS:
        m = c.level == level
        n = int(m.sum())
        parts.append(
            Items(c.gfn[m], np.full(n, level_pages(level), I64), c.level[m], c.pfn[m], c.state[m])
        )
    return Items.concat(parts)


def folio_items(f: GmemFile | None) -> Items:
    """A file's folios as maximal runs (however the page cache stores them): equal folio
    sets give equal items, and 64 TiB of fallocated folios is a few items."""
    parts = []
    c = None if f is None else f.inode.to_arrays()
    for order in FOLIO_ORDERS:
        if c is None:
            break
        m = c.order == order
        keys, pfn, poison, counts = c.index[m], c.pfn[m], c.hwpoison[m].astype(I64), c.count[m]
        span = np.full(len(keys), 1 << order, I64)
        first, total = coalesce(keys, pfn, span, counts, poison)
        n = len(first)
        parts.append(
            Items(
                keys[first],
                total << order,
                np.full(n, order, I64),
                pfn[first],
                poison[first],
                total,
            )
        )
    return Items.concat(parts)


def hva_items(vm: VM) -> Items:
    """The VMM's host pages: anonymous pages by level, and device pages (VM_PFNMAP) at 4K."""
    parts = []
    keys, vals = pairs(vm.pfnmap)
    n = len(keys)
    pfn, ref = unpack_pfnmaps(vals)
    # The refcount kind is the item's flag: the same device page mapped refcounted and
    # not is not the same host page (the state file writes it: state_doc._pfnmap).
    parts.append(Items(keys, np.ones(n, I64), np.ones(n, I64), pfn, ref.astype(I64)))
    for level in LEVELS:
        keys, pfn = pairs(vm.hva_pages[level])
        n = len(keys)
        parts.append(
            Items(
                keys,
                np.full(n, level_pages(level), I64),
                np.full(n, level, I64),
                pfn,
                np.zeros(n, I64),
            )
        )
    return Items.concat(parts)


def split(a: Items, b: Items, *, flags: bool = True) -> tuple[Items, Items, np.ndarray]:
    """(only in a, only in b, flag changes) with array operations only.

    Items equal in every column are dropped.  With `flags`, an item of a and
    one of b equal but for the flag are taken out of both and returned as a
    row (start, old flag, new flag, span) of the third result.
    """
    both = Items.concat([a, b])
    side = np.concatenate([np.zeros(len(a), I64), np.ones(len(b), I64)])
    order = _order(both, side)
    s = both.take(order)
    same = np.zeros(len(s), bool)
    if len(s) > 1:
        eq = (
            (s.start[1:] == s.start[:-1])
            & (s.code[1:] == s.code[:-1])
            & (s.span[1:] == s.span[:-1])
            & (s.pfn[1:] == s.pfn[:-1])
            & (s.flag[1:] == s.flag[:-1])
        )
        same[1:] |= eq
        same[:-1] |= eq
    changed = np.zeros((0, 5), I64)
    rest = order[~same]
    if flags and len(rest) > 1:
        r = both.take(rest)
        rside = side[rest]
        # Sorted by (start, code, span, pfn, flag, side): a pair differing only in flag
        # is adjacent.
        eq = (
            (r.start[1:] == r.start[:-1])
            & (r.code[1:] == r.code[:-1])
            & (r.span[1:] == r.span[:-1])
            & (r.pfn[1:] == r.pfn[:-1])
            & (rside[1:] != rside[:-1])
        )
        hit = np.flatnonzero(eq)
        if len(hit):
            first, second = hit, hit + 1
            old = np.where(rside[first] == 0, r.flag[first], r.flag[second])
            new = np.where(rside[first] == 0, r.flag[second], r.flag[first])
            changed = np.stack([r.start[first], old, new, r.span[first], r.weight[first]], axis=1)
            keep = np.ones(len(rest), bool)
            keep[first] = keep[second] = False
            rest = rest[keep]
    ka, kb = rest[rest < len(a)], rest[rest >= len(a)] - len(a)
    return a.take(np.sort(ka)), b.take(np.sort(kb)), changed


def _order(both: Items, side: np.ndarray) -> np.ndarray:
    """The order of `both` by (start, code, span, pfn, flag, side).

    Each side holds at most one item per (start, code) in a sane state (leaves by
    level, folio runs by order, host pages by level): then (start, code, side)
    orders alike, and one stable argsort of a combined key costs a fraction of the
    six-key lexsort.  Anything else takes the lexsort."""
    start, code = both.start, both.code
    if len(start) and (
        start.min() >= 0 and start.max() < 1 << 56 and code.min() >= 0 and code.max() < 64
    ):
        order = np.argsort((start << 6) | code, kind="stable")  # a before b on ties
        key = ((start << 6) | code)[order]
        dup = (key[1:] == key[:-1]) & (side[order][1:] == side[order][:-1])
        if not dup.any():
            return order
    return np.lexsort((side, both.flag, both.pfn, both.span, both.code, both.start))


def clusters(
    a: Items,
    b: Items,
    names: dict[int, str],
    added: str,
    removed: str,
    flag_names: dict[int, str] | None = None,
    max_ranges: int | None = None,
) -> list[dict[str, Any]]:
    """Coalesced ranges where a and b differ.

    With `max_ranges`, at most that many ranges are built; when there were more,
    the list ends with ``{"more": TOTAL}`` (the callers move it to ``truncated``).

    Items whose spans overlap form a cluster (a 2M leaf and the 4K leaves
    that replaced it); a cluster is `added` (only in b), `removed` (only in
    a) or "changed" (both).  Neighbouring clusters of the same kind merge.
    Each side is summarised by counts per size (and per flag), with the pfn
    of a lone item.  Array operations throughout; the Python loop runs once
    per output range.
    """
    both = Items.concat([a, b])
    n = len(both)
    if not n:
        return []
    side = np.concatenate([np.zeros(len(a), I64), np.ones(len(b), I64)])
    order = np.argsort(both.start, kind="stable")
    start, end = both.start[order], (both.start + both.span)[order]
    side, code, pfn, flag = side[order], both.code[order], both.pfn[order], both.flag[order]
    weight = both.weight[order]
    reach = np.maximum.accumulate(end)
    head = np.ones(n, bool)
    head[1:] = start[1:] >= reach[:-1]
    c_first = np.flatnonzero(head)
    c_last = np.append(c_first[1:], n) - 1
    n_b = np.add.reduceat(side, c_first)
    n_all = np.diff(np.append(c_first, n))
    kind = np.where(n_b == 0, 0, np.where(n_b == n_all, 1, 2))  # removed, added, changed
    c_start, c_end = start[c_first], reach[c_last]
    g_head = np.ones(len(c_first), bool)
    g_head[1:] = (kind[1:] != kind[:-1]) | (c_start[1:] != c_end[:-1])
    groups = np.flatnonzero(g_head)
    lo = c_first[groups]
    g_start = c_start[groups]
    g_end = c_end[np.append(groups[1:], len(c_first)) - 1]
    g_kind = kind[groups]
    more = 0
    if max_ranges is not None and len(groups) > max_ranges:
        # Only the listed ranges are summarised: a 3M-range diff costs arrays, not dicts.
        more, cut = len(groups), lo[max_ranges]
        lo, g_start, g_end, g_kind = (x[:max_ranges] for x in (lo, g_start, g_end, g_kind))
        side, code, pfn, flag, weight = (x[:cut] for x in (side, code, pfn, flag, weight))

    def per_group(mask: np.ndarray) -> list[int]:
        sums: list[int] = np.add.reduceat(np.where(mask, weight, 0), lo).tolist()
        return sums

    sides = []
    for k in (0, 1):
        on = side == k
        cnt = per_group(on)
        sizes = {names[c]: per_group(on & (code == c)) for c in names}
        fnames = flag_names or {}
        flags = {fnames[f]: per_group(on & (flag == f)) for f in fnames}
        lone = np.add.reduceat(np.where(on, pfn, 0), lo).tolist()
        sides.append((cnt, sizes, flags, lone))
    labels = (removed, added, "changed")
    out = []
    for g, (s0, e0, kd) in enumerate(
        zip(g_start.tolist(), g_end.tolist(), g_kind.tolist(), strict=True)
    ):
        item: dict[str, Any] = {"start": hex(s0), "end": hex(e0 - 1), "change": labels[kd]}
        for key, (cnt, sizes, flags, lone) in zip(("a", "b"), sides, strict=True):
            if not cnt[g]:
                item[key] = None
                continue
            summary: dict[str, Any] = {
                "count": cnt[g],
                "sizes": {k: v[g] for k, v in sizes.items() if v[g]},
            }
            if flag_names is not None:
                summary["flags"] = {k: v[g] for k, v in flags.items() if v[g]}
            if cnt[g] == 1:
                summary["pfn"] = hex(lone[g])
            item[key] = summary
        out.append(item)
    if more:
        out.append({"more": more})
    return out


def _flag_ranges(changed: np.ndarray, names: dict[int, str]) -> list[dict[str, Any]]:
    """Coalesced ranges of items whose flag (S-EPT state, hwpoison) changed; `changed`
    rows are (start, old, new, span, weight)."""
    if not len(changed):
        return []
    c = changed[np.argsort(changed[:, 0], kind="stable")]
    start, old, new, span, weight = c[:, 0], c[:, 1], c[:, 2], c[:, 3], c[:, 4]
    head = np.ones(len(c), bool)
    head[1:] = (start[1:] != (start + span)[:-1]) | (old[1:] != old[:-1]) | (new[1:] != new[:-1])
    first = np.flatnonzero(head)
    last = np.append(first[1:], len(c)) - 1
    return [
        {"start": hex(s0), "end": hex(e0 - 1), "a": names[o], "b": names[w], "count": k}
        for s0, e0, o, w, k in zip(
            start[first].tolist(),
            (start + span)[last].tolist(),
            old[first].tolist(),
            new[first].tolist(),
            np.add.reduceat(weight, first).tolist(),
            strict=True,
        )
    ]


LEVEL_LABELS = {lv: LEVEL_NAMES[lv] for lv in LEVELS}
ORDER_LABELS = {o: f"order {o}" for o in FOLIO_ORDERS}
POISON_LABELS = {0: "ok", 1: "hwpoison"}


def _tables(
    a: Side, b: Side, max_ranges: int | None, truncated: dict[str, int]
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Leaf ranges per root, and the S-EPT state changes of the private one."""
    ranges, states = {}, []
    for name in ("private", "shared"):
        only_a, only_b, changed = split(a.leaves[name], b.leaves[name])
        ranges[name] = clusters(
            only_a, only_b, LEVEL_LABELS, "mapped", "unmapped", STATE_NAMES, max_ranges
        )
        if len(ranges[name]) and ranges[name][-1].get("more"):
            truncated[f"mappings.{name}"] = ranges[name].pop()["more"]
        if name == "private":
            states = _cap("sept_states", _flag_ranges(changed, STATE_NAMES), max_ranges, truncated)
    return ranges, states


def _folios(a: Side, b: Side, max_ranges: int | None, truncated: dict[str, int]) -> dict[str, Any]:
    """Per fd (a file missing on one side has no folios there): folio ranges, hwpoison."""
    out: dict[str, Any] = {}
    empty = Items.concat([])
    for fd in sorted(set(a.folios) | set(b.folios)):
        only_a, only_b, flags = split(a.folios.get(fd, empty), b.folios.get(fd, empty))
        ranges = clusters(
            only_a, only_b, ORDER_LABELS, "allocated", "freed", POISON_LABELS, max_ranges
        )
        if ranges and ranges[-1].get("more"):
            truncated[f"folios.{fd}"] = ranges.pop()["more"]
        poison = _cap(
            f"folios.{fd}.hwpoison", _flag_ranges(flags, POISON_LABELS), max_ranges, truncated
        )
        if ranges or poison:
            out[str(fd)] = {"ranges": ranges, "hwpoison": poison}
    return out


def _host_pages(
    a: Side, b: Side, max_ranges: int | None, truncated: dict[str, int]
) -> list[dict[str, Any]]:
    only_a, only_b, _f = split(a.hva, b.hva, flags=False)
    out = clusters(only_a, only_b, LEVEL_LABELS, "allocated", "freed", None, max_ranges)
    if out and out[-1].get("more"):
        truncated["host_pages"] = out.pop()["more"]
    for r in out:  # hva page numbers -> byte addresses
        r["start"] = hex(int(r["start"], 16) << 12)
        r["end"] = hex(((int(r["end"], 16) + 1) << 12) - 1)
    return out


def _host(a: Side, b: Side) -> dict[str, Any]:
    ka, va = a.content
    kb, vb = b.content
    keys = np.union1d(ka, kb)
    old = np.zeros(len(keys), I64)
    new = np.zeros(len(keys), I64)
    old[np.searchsorted(keys, ka)] = va
    new[np.searchsorted(keys, kb)] = vb
    return {
        "poisoned_added": [hex(p) for p in sorted(b.poisoned - a.poisoned)],
        "poisoned_removed": [hex(p) for p in sorted(a.poisoned - b.poisoned)],
        "poisoned_hva_added": [hex(p << 12) for p in sorted(b.poisoned_hva - a.poisoned_hva)],
        "poisoned_hva_removed": [hex(p << 12) for p in sorted(a.poisoned_hva - b.poisoned_hva)],
        "content_pages_changed": int((old != new).sum()),
    }


def _blocks(
    a: Side, b: Side, max_ranges: int | None, truncated: dict[str, int]
) -> dict[str, dict[str, list[Any]]]:
    """Rows of the host's block lists (as the state file writes them) only on one side:
    where the allocator's free memory, the rest of the host and the S-EPT pages lie
    decides which pfns later allocations get."""
    out = {}
    for name in a.blocks:
        ra, rb = set(a.blocks[name]), set(b.blocks[name])
        if ra == rb:
            continue
        out[name] = {
            "removed": _cap(
                f"host_blocks.{name}.removed", sorted(ra - rb, key=_row_key), max_ranges, truncated
            ),
            "added": _cap(
                f"host_blocks.{name}.added", sorted(rb - ra, key=_row_key), max_ranges, truncated
            ),
        }
    return out


def _row_key(row: tuple[Any, ...]) -> tuple[int, ...]:
    return tuple(
        (int(x, 16) if x.startswith("0x") else 0) if isinstance(x, str) else int(x) for x in row
    )
