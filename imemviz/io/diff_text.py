"""A state diff (state_diff.py's dict) as the text `imemviz diff` prints."""

from __future__ import annotations

from typing import Any

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

    more = d.get("truncated", {})

    def ranges(key: str, body: list[str]) -> list[str]:
        if key in more:
            body.append(
                f"... and {more[key] - len(body):,} more ranges (--max-ranges 0 lists them all)"
            )
        return body

    section("config", [f"{k}: {a} -> {b}" for k, (a, b) in d["config"].items()])
    section("counters", [f"{k}: {a} -> {b}" for k, (a, b) in d["counters"].items()])
    section("process", [f"{k}: {a} -> {b}" for k, (a, b) in d.get("process", {}).items()])
    section("memslots", _keyed_lines(d["memslots"], "slot", "id", _slot_text))
    section("attributes", [f"{_range(r)}: {r['a']} -> {r['b']}" for r in d["attributes"]])
    section("guest_memfd files", _keyed_lines(d["gmem_files"], "fd", "fd", _file_text))
    for fd, f in d["folios"].items():
        section(
            f"fd {fd} folios (file index ranges)",
            ranges(f"folios.{fd}", [_cluster_text(r) for r in f["ranges"]])
            + [f"{_range(r)}: {r['a']} -> {r['b']} ({r['count']} folios)" for r in f["hwpoison"]],
        )
    for root, rs in d["mappings"].items():
        section(
            f"{root} mappings (gfn ranges)",
            ranges(f"mappings.{root}", [_cluster_text(r) for r in rs]),
        )
    section(
        "S-EPT states (gfn ranges)",
        ranges(
            "sept_states",
            [f"{_range(r)}: {r['a']} -> {r['b']} ({r['count']} leaves)" for r in d["sept_states"]],
        ),
    )
    section(
        "shared host pages (hva ranges)",
        ranges("host_pages", [_cluster_text(r) for r in d["host_pages"]]),
    )
    host = d["host"]
    section(
        "host memory",
        [f"poisoned: +{p}" for p in host["poisoned_added"]]
        + [f"poisoned: -{p}" for p in host["poisoned_removed"]]
        + [f"poisoned hva: +{p}" for p in host.get("poisoned_hva_added", [])]
        + [f"poisoned hva: -{p}" for p in host.get("poisoned_hva_removed", [])]
        + (
            [f"page contents: {host['content_pages_changed']} host pages differ"]
            if host["content_pages_changed"]
            else []
        ),
    )
    for name, rows in d.get("host_blocks", {}).items():
        section(
            f"{name} (rows as the state file writes them)",
            [f"- {_row_text(r)}" for r in rows["removed"]]
            + [f"+ {_row_text(r)}" for r in rows["added"]],
        )
    section(
        "held faults",
        _keyed_lines(d["in_flight"], "vCPU", "vcpu", _held_text),
    )
    return "\n".join(lines)


def _row_text(row: Any) -> str:
    return "[" + ", ".join(str(x) for x in row) + "]"


def _held_text(h: dict[str, Any]) -> str:
    if "changes" in h:
        return ""
    return f"gpa {h['gpa']}, pfn {h['pfn']}"


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
