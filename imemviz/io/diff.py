"""`imemviz diff A B [--json]`: what changed between two states, grouped and coalesced.

Sections: config, counters, memslots (added/removed/changed), attributes
(gfn ranges whose value changed, from walking both extent maps' runs
together: a 1 TiB conversion is one range), guest_memfd files and their
folios, leaves per root, S-EPT state changes, shared host pages, poisoned
pages and page contents, held faults.  Ranges are coalesced: a change that
covers neighbouring folios or leaves the same way is one range.

Costs what the states hold (runs, leaves, folios), never the guest's size:
leaves and folios are compared as sorted numpy arrays.  The event log and
the op count are history, not state: diff ignores them.

Exit 0 when the states are equal, 1 when they differ, 2 on unusable input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from imemviz.io.check import GMEM_FLAGS, SLOT_FLAGS, flag_names
from imemviz.io.cmdline import CommandExit, Parser, output
from imemviz.io.state_doc import pairs
from imemviz.model.extents import ExtentMap
from imemviz.model.guest_memfd import FOLIO_ORDERS, GmemFile
from imemviz.model.memslots import Memslot
from imemviz.model.mmu import STATE_NAMES, LeafTable
from imemviz.model.units import LEVEL_NAMES, LEVELS, fmt_size, level_pages
from imemviz.model.vm import VM

I64 = np.int64


def main_diff(argv: Sequence[str]) -> int:
    """The `imemviz diff` command; returns the exit code."""
    parser = Parser(
        prog="imemviz diff",
        description="What differs between two state files: "
        "config, memslots, attributes, guest_memfd folios, mappings, S-EPT states, "
        "counters. Exit 0: equal; 1: different; 2: unusable input.",
    )
    parser.add_argument("a", metavar="A", help="the state before (or a script, which is run)")
    parser.add_argument("b", metavar="B", nargs="?", help="the state after (or a script)")
    parser.add_argument(
        "--kernels",
        metavar="K1,K2",
        help="run the script A under two kernels and show what changed (results and states)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    from imemviz.io.run_diff import format_results, load_pair

    try:
        ns = parser.parse(argv)
        a, b, results, kernels, name_a, name_b = load_pair(ns.a, ns.b, ns.kernels, parser.error)
    except CommandExit as e:
        return e.status
    d = diff_vms(a, b)
    text = format_diff(d, name_a, name_b)
    if results is not None:  # scripts were run: their results are compared too
        if results and d["equal"]:
            text = f"--- {name_a}\n+++ {name_b}\nstate: the same"
        if results:
            text += "\n" + format_results(results, kernels)
        d["results"] = results
        d["equal"] = d["equal"] and not results
    output(json.dumps(d, indent=1) if ns.json else text)
    return 0 if d["equal"] else 1


# ------------------------------------------------------------------ model


def diff_vms(a: VM, b: VM) -> dict[str, Any]:
    """Every difference between two VMs' states, as plain JSON values.

    ``equal`` is true when no section has anything; ranges are
    ``{"start", "end"}`` with `end` inclusive, addresses in hex.
    """
    mappings, states = _tables(a, b)
    out: dict[str, Any] = {
        "equal": True,
        "config": _fields(a.config.to_dict(), b.config.to_dict()),
        "counters": _fields(_counters(a), _counters(b)),
        "memslots": _by_key(
            {s.id: _slot(s) for s in a.memslots.all()},
            {s.id: _slot(s) for s in b.memslots.all()},
            "id",
        ),
        "attributes": attribute_changes(a.attributes, b.attributes),
        "gmem_files": _by_key(
            {fd: _file(f) for fd, f in sorted(a.files.items())},
            {fd: _file(f) for fd, f in sorted(b.files.items())},
            "fd",
        ),
        "folios": _folios(a, b),
        "mappings": mappings,
        "sept_states": states,
        "host_pages": _host_pages(a, b),
        "host": _host(a, b),
        "in_flight": _by_key(
            {v: _held(a, v) for v in sorted(a.in_flight)},
            {v: _held(b, v) for v in sorted(b.in_flight)},
            "vcpu",
        ),
    }
    out["equal"] = not any(_nonempty(v) for k, v in out.items() if k != "equal")
    return out


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
    return {
        "vm_dead": vm.dead,
        "td_state": vm.td_state,
        "mmu_invalidate_seq": vm.inv.seq,
        "mmu_invalidate_in_progress": vm.inv.in_progress,
        "host_free_bytes": vm.host.free_bytes,
        "sept_pages": len(vm.private.tables),
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
    }


def _file(f: GmemFile) -> dict[str, Any]:
    return {
        "fd": f.fd,
        "ino": f.inode.ino,
        "size": fmt_size(f.inode.size),
        "flags": flag_names(f.inode.flags, GMEM_FLAGS),
        "bindings": [f"slot {b.slot & 0xFFFF} at {b.pgoff << 12:#x}" for b in f.bindings],
        "kind": f.kind,
    }


def _held(vm: VM, vcpu: int) -> dict[str, Any]:
    pf = vm.in_flight[vcpu]
    return {
        "vcpu": vcpu,
        "gpa": hex(pf.access.gpa),
        "private": pf.is_private,
        "pfn": hex(pf.pfn),
        "mmu_seq": pf.mmu_seq,
    }


def _attr_name(v: Any) -> str:
    return "PRIVATE" if v == 8 else "shared" if not v else str(v)


def attribute_changes(a: ExtentMap, b: ExtentMap) -> list[dict[str, Any]]:
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
    """A sorted set of (start, span, code, pfn, flag) items as int64 columns."""

    def __init__(
        self,
        start: np.ndarray,
        span: np.ndarray,
        code: np.ndarray,
        pfn: np.ndarray,
        flag: np.ndarray,
    ) -> None:
        self.start, self.span, self.code, self.pfn, self.flag = start, span, code, pfn, flag

    @classmethod
    def concat(cls, parts: list[Items]) -> Items:
        cols = [
            np.concatenate([getattr(p, c) for p in parts]) if parts else np.zeros(0, I64)
            for c in ("start", "span", "code", "pfn", "flag")
        ]
        return cls(*cols)

    def take(self, idx: np.ndarray) -> Items:
        return Items(self.start[idx], self.span[idx], self.code[idx], self.pfn[idx], self.flag[idx])

    def __len__(self) -> int:
        return len(self.start)


def leaf_items(table: LeafTable) -> Items:
    parts = []
    for level in LEVELS:
        keys, vals = pairs(table.leaves[level])
        n = len(keys)
        parts.append(
            Items(
                keys,
                np.full(n, level_pages(level), I64),
                np.full(n, level, I64),
                vals >> 2,
                vals & 3,
            )
        )
    return Items.concat(parts)


def folio_items(f: GmemFile | None) -> Items:
    parts = []
    for order in FOLIO_ORDERS:
        if f is None:
            break
        keys, vals = pairs(f.inode.folios[order])
        n = len(keys)
        parts.append(
            Items(keys, np.full(n, 1 << order, I64), np.full(n, order, I64), vals >> 1, vals & 1)
        )
    return Items.concat(parts)


def hva_items(vm: VM) -> Items:
    """The VMM's host pages: anonymous pages by level, and device pages (VM_PFNMAP) at 4K."""
    parts = []
    keys, vals = pairs(vm.pfnmap)
    n = len(keys)
    parts.append(Items(keys, np.ones(n, I64), np.ones(n, I64), vals >> 1, np.zeros(n, I64)))
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
    order = np.lexsort((side, both.flag, both.pfn, both.code, both.start))
    s = both.take(order)
    same = np.zeros(len(s), bool)
    if len(s) > 1:
        eq = (
            (s.start[1:] == s.start[:-1])
            & (s.code[1:] == s.code[:-1])
            & (s.pfn[1:] == s.pfn[:-1])
            & (s.flag[1:] == s.flag[:-1])
        )
        same[1:] |= eq
        same[:-1] |= eq
    changed = np.zeros((0, 4), I64)
    rest = order[~same]
    if flags and len(rest) > 1:
        r = both.take(rest)
        rside = side[rest]
        # Sorted by (start, code, pfn, flag, side): a pair differing only in flag is adjacent.
        eq = (
            (r.start[1:] == r.start[:-1])
            & (r.code[1:] == r.code[:-1])
            & (r.pfn[1:] == r.pfn[:-1])
            & (rside[1:] != rside[:-1])
        )
        hit = np.flatnonzero(eq)
        if len(hit):
            first, second = hit, hit + 1
            old = np.where(rside[first] == 0, r.flag[first], r.flag[second])
            new = np.where(rside[first] == 0, r.flag[second], r.flag[first])
            changed = np.stack([r.start[first], old, new, r.span[first]], axis=1)
            keep = np.ones(len(rest), bool)
            keep[first] = keep[second] = False
            rest = rest[keep]
    ka, kb = rest[rest < len(a)], rest[rest >= len(a)] - len(a)
    return a.take(np.sort(ka)), b.take(np.sort(kb)), changed


def clusters(
    a: Items,
    b: Items,
    names: dict[int, str],
    added: str,
    removed: str,
    flag_names: dict[int, str] | None = None,
) -> list[dict[str, Any]]:
    """Coalesced ranges where a and b differ.

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

    def per_group(mask: np.ndarray) -> list[int]:
        return np.add.reduceat(mask.astype(I64), lo).tolist()

    sides = []
    for k in (0, 1):
        on = side == k
        cnt = per_group(on)
        sizes = {names[c]: per_group(on & (code == c)) for c in names}
        flags = {flag_names[f]: per_group(on & (flag == f)) for f in flag_names or {}}
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
    return out


def _flag_ranges(changed: np.ndarray, names: dict[int, str]) -> list[dict[str, Any]]:
    """Coalesced ranges of items whose flag (S-EPT state, hwpoison) changed; `changed`
    rows are (start, old, new, span)."""
    if not len(changed):
        return []
    c = changed[np.argsort(changed[:, 0], kind="stable")]
    start, old, new, span = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
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
            (last - first + 1).tolist(),
            strict=True,
        )
    ]


LEVEL_LABELS = {lv: LEVEL_NAMES[lv] for lv in LEVELS}
ORDER_LABELS = {o: f"order {o}" for o in FOLIO_ORDERS}
POISON_LABELS = {0: "ok", 1: "hwpoison"}


def _tables(a: VM, b: VM) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Leaf ranges per root, and the S-EPT state changes of the private one."""
    ranges, states = {}, []
    for name in ("private", "shared"):
        only_a, only_b, changed = split(leaf_items(getattr(a, name)), leaf_items(getattr(b, name)))
        ranges[name] = clusters(only_a, only_b, LEVEL_LABELS, "mapped", "unmapped", STATE_NAMES)
        if name == "private":
            states = _flag_ranges(changed, STATE_NAMES)
    return ranges, states


def _folios(a: VM, b: VM) -> dict[str, Any]:
    """Per fd (a file missing on one side has no folios there): folio ranges, hwpoison."""
    out: dict[str, Any] = {}
    for fd in sorted(set(a.files) | set(b.files)):
        only_a, only_b, flags = split(folio_items(a.files.get(fd)), folio_items(b.files.get(fd)))
        ranges = clusters(only_a, only_b, ORDER_LABELS, "allocated", "freed", POISON_LABELS)
        poison = _flag_ranges(flags, POISON_LABELS)
        if ranges or poison:
            out[str(fd)] = {"ranges": ranges, "hwpoison": poison}
    return out


def _host_pages(a: VM, b: VM) -> list[dict[str, Any]]:
    only_a, only_b, _f = split(hva_items(a), hva_items(b), flags=False)
    out = clusters(only_a, only_b, LEVEL_LABELS, "allocated", "freed")
    for r in out:  # hva page numbers -> byte addresses
        r["start"] = hex(int(r["start"], 16) << 12)
        r["end"] = hex(((int(r["end"], 16) + 1) << 12) - 1)
    return out


def _host(a: VM, b: VM) -> dict[str, Any]:
    ka, va = pairs(a.host.content)
    kb, vb = pairs(b.host.content)
    keys = np.union1d(ka, kb)
    old = np.zeros(len(keys), I64)
    new = np.zeros(len(keys), I64)
    old[np.searchsorted(keys, ka)] = va
    new[np.searchsorted(keys, kb)] = vb
    return {
        "poisoned_added": [hex(p) for p in sorted(b.host.poisoned - a.host.poisoned)],
        "poisoned_removed": [hex(p) for p in sorted(a.host.poisoned - b.host.poisoned)],
        "content_pages_changed": int((old != new).sum()),
    }


# ------------------------------------------------------------------- text


def format_diff(d: dict[str, Any], name_a: str = "A", name_b: str = "B") -> str:
    """The diff as text: one line per change, grouped by section."""
    if d["equal"]:
        return f"{name_a} and {name_b} hold the same state"
    lines = [f"--- {name_a}", f"+++ {name_b}"]

    def section(title: str, body: list[str]) -> None:
        if body:
            lines.append(f"{title}:")
            lines.extend(f"  {x}" for x in body)

    section("config", [f"{k}: {a} -> {b}" for k, (a, b) in d["config"].items()])
    section("counters", [f"{k}: {a} -> {b}" for k, (a, b) in d["counters"].items()])
    section("memslots", _keyed_lines(d["memslots"], "slot", "id", _slot_text))
    section("attributes", [f"{_range(r)}: {r['a']} -> {r['b']}" for r in d["attributes"]])
    section("guest_memfd files", _keyed_lines(d["gmem_files"], "fd", "fd", _file_text))
    for fd, f in d["folios"].items():
        section(
            f"fd {fd} folios (file index ranges)",
            [_cluster_text(r) for r in f["ranges"]]
            + [f"{_range(r)}: {r['a']} -> {r['b']} ({r['count']} folios)" for r in f["hwpoison"]],
        )
    for root, ranges in d["mappings"].items():
        section(f"{root} mappings (gfn ranges)", [_cluster_text(r) for r in ranges])
    section(
        "S-EPT states (gfn ranges)",
        [f"{_range(r)}: {r['a']} -> {r['b']} ({r['count']} leaves)" for r in d["sept_states"]],
    )
    section("shared host pages (hva ranges)", [_cluster_text(r) for r in d["host_pages"]])
    host = d["host"]
    section(
        "host memory",
        [f"poisoned: +{p}" for p in host["poisoned_added"]]
        + [f"poisoned: -{p}" for p in host["poisoned_removed"]]
        + (
            [f"page contents: {host['content_pages_changed']} host pages differ"]
            if host["content_pages_changed"]
            else []
        ),
    )
    section(
        "held faults",
        _keyed_lines(d["in_flight"], "vCPU", "vcpu", lambda h: f"gpa {h['gpa']}, pfn {h['pfn']}"),
    )
    return "\n".join(lines)


def _range(r: dict[str, Any]) -> str:
    return r["start"] if r["start"] == r["end"] else f"{r['start']}-{r['end']}"


def _side_text(s: dict[str, Any] | None) -> str:
    if s is None:
        return "none"
    sizes = ", ".join(f"{n} x {k}" for k, n in s["sizes"].items())
    flags = s.get("flags", {})
    if set(flags) - {"MAPPED", "ok"}:
        sizes += " [" + ", ".join(f"{n} {k}" for k, n in flags.items()) + "]"
    return sizes + (f" pfn {s['pfn']}" if "pfn" in s else "")


def _cluster_text(r: dict[str, Any]) -> str:
    if r["change"] == "changed":
        return f"{_range(r)}: {_side_text(r['a'])} -> {_side_text(r['b'])}"
    side = r["b"] if r["a"] is None else r["a"]
    return f"{_range(r)}: {r['change']} ({_side_text(side)})"


def _keyed_lines(d: dict[str, list[Any]], label: str, key: str, text: Any) -> list[str]:
    out = [f"+ {label} {x[key] & 0xFFFF if key == 'id' else x[key]}: {text(x)}" for x in d["added"]]
    out += [
        f"- {label} {x[key] & 0xFFFF if key == 'id' else x[key]}: {text(x)}" for x in d["removed"]
    ]
    out += [
        f"~ {label} {x[key] & 0xFFFF if key == 'id' else x[key]}: "
        + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in x["changes"].items())
        for x in d["changed"]
    ]
    return out


def _slot_text(s: dict[str, Any]) -> str:
    gmem = (
        f", guest_memfd fd {s['gmem_fd']} + {s['gmem_offset']}" if s["gmem_fd"] is not None else ""
    )
    return f"gpa {s['gpa']} size {s['size']}, hva {s['userspace_addr']}, flags {s['flags']}{gmem}"


def _file_text(f: dict[str, Any]) -> str:
    return f"size {f['size']}, flags {f['flags']}, inode {f['ino']}"
