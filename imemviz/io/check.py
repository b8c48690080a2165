"""`imemviz check STATE`: load a state file, print a summary of it, run the invariant checks.

Exit 0 when every invariant holds, 1 when some do not (each violation is
printed with its gfn/pfn), 2 when the file is unusable (one line on stderr).
The summary and the checks cost what the state holds (leaves, folios, runs),
never the guest's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imemviz.io.cmdline import CommandExit, Parser, load, output
from imemviz.model import uapi
from imemviz.model.guest_memfd import FOLIO_ORDERS
from imemviz.model.invariants import Violation, count_violations
from imemviz.model.mmu import STATE_NAMES, LeafTable
from imemviz.model.uapi import MEM_FLAGS, value_names
from imemviz.model.units import LEVEL_NAMES, LEVELS, fmt_size
from imemviz.model.vm import VM

MAX_SHOWN = 1000
"""Violations printed in full; the rest are counted."""


def main_check(argv: Sequence[str]) -> int:
    """The `imemviz check` command; returns the exit code."""
    parser = Parser(
        prog="imemviz check",
        description="Validate a state file, print a summary "
        "of it and run the model's invariant checks. Exit 0: all invariants hold; "
        "1: violations (listed); 2: unusable file.",
    )
    parser.add_argument("state", metavar="STATE", help="state file (.json, .json.gz, .json.zst)")
    try:
        ns = parser.parse(argv)
        vm = load(ns.state)
    except CommandExit as e:
        return e.status
    if not output(summary(vm, ns.state)):
        return 1
    violations, total = count_violations(vm, MAX_SHOWN)
    output(report(violations, total))
    return 1 if total else 0


def size(n: int) -> str:
    """A byte count for people: "2G" when whole and short, else "15.9G"."""
    exact = fmt_size(n)
    if exact[:-1].isdigit() and int(exact[:-1]) < 1024:
        return exact
    for suffix, shift in (("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f}{suffix}"
    return f"{n} bytes"


def flag_names(value: int, names: dict[int, str]) -> str:
    picked = [name for bit, name in names.items() if value & bit]
    rest = value & ~sum(names)
    if rest:
        picked.append(hex(rest))
    return "|".join(picked) if picked else "none"


SLOT_FLAGS = value_names(MEM_FLAGS)
GMEM_FLAGS = value_names(uapi.GMEM_FLAGS)
# upm-v8: bit 2 is KVM_MEM_PRIVATE (docs/kernels.md)
SLOT_FLAGS_V8 = value_names(uapi.MEM_FLAGS_V1)


def state_counts(table: LeafTable) -> dict[str, int]:
    """Leaves of a table by S-EPT state name (every level)."""
    counts = np.bincount(table.to_arrays().state, minlength=4)
    return {STATE_NAMES[s]: int(n) for s, n in enumerate(counts.tolist()) if n}


def summary(vm: VM, name: str = "") -> str:
    """A readable summary of a VM's state: config, memslots, files, mappings, host memory."""
    c = vm.config
    lines = []
    if name:
        lines.append(f"state: {name}")
    lines.append(
        f"VM: {c.type}, host_memory {fmt_size(c.host_memory)}, gmem_max_order "
        f"{c.gmem_max_order}, shared_page_size {fmt_size(c.shared_page_size)}"
        + (
            f", tdx_private_max_level {LEVEL_NAMES[c.tdx_private_max_level]}, gpaw {c.gpaw}"
            if c.is_tdx
            else ""
        )
        + f", seed {c.seed}, kernel {c.kernel}"
    )
    td = f"td_state {vm.td_state}, " if vm.td_state is not None else ""
    lines.append(
        f"{td}dead: {'yes' if vm.dead else 'no'}, ops applied: {vm.op_index}, "
        f"mmu_invalidate_seq {vm.inv.seq} (in progress {vm.inv.in_progress})"
    )
    slots = vm.memslots.all()
    lines.append(f"memslots: {len(slots)}")
    for s in slots:
        gpa = s.base_gfn << 12
        where = f"gpa {gpa:#x}-{gpa + (s.npages << 12) - 1:#x} ({fmt_size(s.npages << 12)})"
        if s.as_id:
            where = f"address space {s.as_id}, " + where
        if s.gmem_file is not None:
            what = "guest_memfd" if s.gmem_file.kind == "guest_memfd" else "inaccessible memfd"
            gmem = f"{what} fd {s.gmem_file.fd} + {s.gmem_pgoff << 12:#x}"
        elif s.has_gmem:
            gmem = f"guest_memfd fd {s.gmem_fd} (closed)"
        else:
            gmem = "no guest_memfd"
        lines.append(
            f"  slot {s.id & 0xFFFF}: {where}, hva {s.userspace_addr:#x}, flags "
            f"{flag_names(s.flags, SLOT_FLAGS_V8 if c.profile.upm else SLOT_FLAGS)}, {gmem}"
        )
    lines.append(f"guest_memfd files: {len(vm.files)}")
    totals = dict.fromkeys(FOLIO_ORDERS, 0)
    for fd in sorted(vm.files):
        inode = vm.files[fd].inode
        counts = {o: inode.count(o) for o in FOLIO_ORDERS}
        for o, n in counts.items():
            totals[o] += n
        bound = ", ".join(f"slot {b.slot & 0xFFFF}" for b in vm.files[fd].bindings) or "unbound"
        poisoned = (
            sum(g.count for g in inode.iter_segments() if g.hwpoison) if vm.host.poisoned else 0
        )
        kind = "" if vm.files[fd].kind == "guest_memfd" else f" ({vm.files[fd].kind})"
        lines.append(
            f"  fd {fd}{kind}: size {fmt_size(inode.size)}, flags "
            f"{flag_names(inode.flags, GMEM_FLAGS)}, folios "
            + ", ".join(f"order {o}: {n}" for o, n in counts.items())
            + (f", {poisoned} hwpoisoned" if poisoned else "")
            + f" ({bound})"
        )
    lines.append("mappings:")
    for name, table in (("private", vm.private), ("shared", vm.shared)):
        levels = ", ".join(f"{LEVEL_NAMES[lv]}: {table.count(lv)}" for lv in LEVELS)
        extra = ""
        if vm.is_tdx and table is vm.private:
            states = state_counts(table)
            extra = "; S-EPT " + (", ".join(f"{k}: {n}" for k, n in states.items()) or "empty")
            extra += f"; {len(table.tables)} S-EPT table pages"
        lines.append(f"  {name} ({table.root} root): {levels}{extra}")
    lines.append("folios by order: " + ", ".join(f"{o}: {n}" for o, n in totals.items()))
    host = vm.host
    lines.append(
        f"host memory: {size(host.free_bytes)} free of {fmt_size(host.npages << 12)} "
        f"({host.free_bytes} bytes free), {len(host.poisoned)} poisoned pages"
    )
    if vm.in_flight:
        for vcpu in sorted(vm.in_flight):
            pf = vm.in_flight[vcpu]
            lines.append(
                f"in-flight fault: vCPU {vcpu}, gpa {pf.access.gpa:#x}, "
                f"{'private' if pf.is_private else 'shared'}, pfn {pf.pfn:#x}"
            )
    else:
        lines.append("in-flight faults: none")
    ev = vm.events
    lines.append(f"events: {len(ev.log)} kept, {ev.total} in all ({ev.dropped} dropped)")
    return "\n".join(lines)


def report(violations: list[Violation], total: int | None = None) -> str:
    """The invariant section: "invariants: OK" or each violation (up to MAX_SHOWN); `total`
    counts those not kept (default: the list's length)."""
    n = len(violations) if total is None else total
    if not n:
        return "invariants: OK"
    lines = [f"invariants: {n} violation{'s' if n != 1 else ''}"]
    lines += [f"  {v}" for v in violations[:MAX_SHOWN]]
    if n > min(len(violations), MAX_SHOWN):
        lines.append(f"  ... and {n - min(len(violations), MAX_SHOWN)} more")
    return "\n".join(lines)
