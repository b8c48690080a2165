"""What a bug-report reader needs to see first about a state, without Qt.

`summarize(vm)` gathers the kernel profile (when the config has one), the VM
type, the TD state, whether the VM is dead and why, the held faults with
their gfns, and the first invariant violations (with their total): the app's
State summary pane shows it when a state or recording is opened, `as_text`
writes it for the clipboard and the bug-report bundle.  The comparison side
(File > Compare with...) is `diff_entries`: a diff as a flat list of lines,
each with the gfn ranges it concerns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from imemviz.model.invariants import count_violations
from imemviz.model.protocols import file_to_gfns

if TYPE_CHECKING:
    from imemviz.model.vm import VM

MAX_VIOLATIONS = 200
"""Violations listed in the summary (the rest are counted)."""


@attrs.frozen
class HeldFault:
    vcpu: int
    gpa: int
    gfn: int
    private: bool
    write: bool
    retried: bool

    def text(self) -> str:
        kind = "private" if self.private else "shared"
        what = "write" if self.write else "read"
        return (
            f"vCPU {self.vcpu}: {kind} {what} of gpa {self.gpa:#x} held before mmu_lock"
            + (" (retried)" if self.retried else "")
            + "; vcpu_resume finishes it"
        )


@attrs.frozen
class ViolationLine:
    code: str
    text: str
    gfn: int | None
    pfn: int | None


@attrs.frozen
class StateSummary:
    kernel: str | None
    vm_type: str
    td_state: str | None
    dead: bool
    dead_reason: str
    ops: int
    held: tuple[HeldFault, ...]
    violations: tuple[ViolationLine, ...]
    violation_total: int
    warning: str | None = None
    source: str | None = None
    checked_at: int | None = None  # ops applied when the invariants were checked

    def banner(self) -> str | None:
        """The one line that must not be missed, or None."""
        if self.dead:
            what = "The TD is dead" if self.vm_type == "tdx" else "The VM is dead"
            why = f" ({self.dead_reason})" if self.dead_reason else ""
            return f"{what}{why}: KVM refuses further ioctls on it with EIO."
        return self.warning

    def lines(self) -> list[str]:
        """The summary as lines of text (without the violation list)."""
        out = []
        if self.source:
            out.append(f"file: {self.source}")
        if self.kernel:
            out.append(f"kernel: {self.kernel}")
        vm = f"VM type: {self.vm_type}"
        if self.td_state is not None:
            vm += f", TD state {self.td_state}"
        out.append(vm)
        out.append(
            f"dead: {'yes' + (f' ({self.dead_reason})' if self.dead_reason else '') if self.dead else 'no'}"
        )
        out.append(f"ops applied: {self.ops}")
        if self.held:
            out.append(f"held faults: {len(self.held)}")
            out += [f"  {h.text()}" for h in self.held]
        else:
            out.append("held faults: none")
        if self.warning:
            out.append(f"warning: {self.warning}")
        n = self.violation_total
        when = "" if self.checked_at in (None, self.ops) else f" (after op {self.checked_at})"
        if self.checked_at is None:
            out.append("invariants: not checked yet")
        else:
            out.append(
                ("invariants: OK" if not n else f"invariants: {n} violation{'s' * (n != 1)}") + when
            )
        return out


def summarize(
    vm: VM,
    *,
    warning: str | None = None,
    source: str | None = None,
    limit: int = MAX_VIOLATIONS,
    check: bool = True,
) -> StateSummary:
    """The summary of `vm`.  With `check` it runs the invariant checks (linear in what the
    state holds); without, it costs the held faults and leaves `checked_at` None."""
    held = tuple(
        HeldFault(
            vcpu,
            pf.access.gpa,
            pf.access.gfn,
            pf.is_private,
            pf.access.write,
            pf.access.retried,
        )
        for vcpu, pf in sorted(vm.in_flight.items())
    )
    violations, total = count_violations(vm, limit) if check else ([], 0)
    reason = ""
    if vm.dead:
        for ev in reversed(vm.events.log):
            if ev[1] == "kvm_vm_dead":
                reason = str(ev[2])
                break
    return StateSummary(
        kernel=getattr(vm.config, "kernel", None),
        vm_type=vm.config.type,
        td_state=vm.td_state,
        dead=vm.dead,
        dead_reason=reason,
        ops=vm.op_index,
        held=held,
        violations=tuple(ViolationLine(v.code, str(v), v.gfn, v.pfn) for v in violations),
        violation_total=total,
        warning=warning,
        source=source,
        checked_at=vm.op_index if check else None,
    )


def as_text(s: StateSummary) -> str:
    """The whole summary as text, violations included (clipboard, bug reports)."""
    lines = s.lines()
    lines += [f"  {v.text}" for v in s.violations]
    if s.violation_total > len(s.violations):
        lines.append(f"  ... and {s.violation_total - len(s.violations)} more")
    return "\n".join(lines)


# ------------------------------------------------------------------ compare


@attrs.frozen
class DiffEntry:
    """One line of a comparison; `gfns` are the guest ranges it concerns (may be empty)."""

    section: str
    text: str
    gfns: tuple[tuple[int, int], ...] = ()


def diff_entries(d: dict[str, Any], slots: Any = ()) -> list[DiffEntry]:
    """A diff (imemviz.io.diff) as lines with gfn ranges: attributes, mappings and S-EPT
    states directly, folios through the memslots bound to their file (`slots`: objects
    with id, base_gfn, npages, gmem_fd, gmem_pgoff), memslots by their gpa range."""
    from imemviz.io.diff import format_diff

    out: list[DiffEntry] = []

    def rng(r: dict[str, Any]) -> tuple[int, int]:
        return int(r["start"], 16), int(r["end"], 16) + 1

    text = format_diff(d).splitlines()
    if d["equal"]:
        return [DiffEntry("", text[0] if text else "the same state")]
    for r in d["attributes"]:
        out.append(DiffEntry("attributes", f"gfn {_span(r)}: {r['a']} -> {r['b']}", (rng(r),)))
    for root, ranges in d["mappings"].items():
        for r in ranges:
            out.append(DiffEntry(f"{root} mappings", f"gfn {_span(r)}: {_cluster(r)}", (rng(r),)))
    for r in d["sept_states"]:
        out.append(DiffEntry("S-EPT states", f"gfn {_span(r)}: {r['a']} -> {r['b']}", (rng(r),)))
    for fd, f in d["folios"].items():
        for r in f["ranges"] + f["hwpoison"]:
            a, b = rng(r)
            gfns = tuple(file_to_gfns(tuple(slots), int(fd), a, b))
            what = _cluster(r) if "change" in r else f"{r['a']} -> {r['b']}"
            out.append(DiffEntry(f"fd {fd} folios", f"index {_span(r)}: {what}", gfns))
    for kind in ("added", "removed", "changed"):
        for s in d["memslots"][kind]:
            if kind == "changed":
                changes = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in s["changes"].items())
                out.append(DiffEntry("memslots", f"~ slot {s['id'] & 0xFFFF}: {changes}"))
                continue
            gpa = int(s["gpa"], 16)
            gfns = ((gpa >> 12, (gpa >> 12) + _pages(s["size"])),)
            sign = "+" if kind == "added" else "-"
            out.append(
                DiffEntry(
                    "memslots", f"{sign} slot {s['id'] & 0xFFFF}: gpa {s['gpa']} {s['size']}", gfns
                )
            )
    # Everything else (counters, files, host memory, held faults, ...) as diff prints it.
    shown = {"attributes:", "memslots:"} | {
        line for line in text if line.endswith("(gfn ranges):") or "folios (file index" in line
    }
    section = ""
    skip = False
    for line in text[2:]:
        if not line.startswith("  "):
            section = line.rstrip(":")
            skip = line in shown
            continue
        if not skip:
            out.append(DiffEntry(section, line.strip()))
    for key, total in d.get("truncated", {}).items():
        out.append(
            DiffEntry(key, f"... {total:,} ranges in all: imemviz diff --max-ranges 0 lists them")
        )
    return out


def _span(r: dict[str, Any]) -> str:
    return r["start"] if r["start"] == r["end"] else f"{r['start']}-{r['end']}"


def _cluster(r: dict[str, Any]) -> str:
    from imemviz.io.diff import _cluster_text

    return _cluster_text(r).split(": ", 1)[1]


def _pages(size: str) -> int:
    from imemviz.model.units import parse_int

    return parse_int(size) >> 12
