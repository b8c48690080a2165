"""Line framings: where a line's time, thread, CPU, event name and payload are.

| framing | example |
| --- | --- |
| tracefs `trace` | `qemu-system-x86-8397 [002] d.... 1404.389366: kvm_exit: vcpu 0 ...` (flags 4 or 5 chars; `(tgid)` column optional) |
| `trace-cmd report` | `CPU 0/KVM-995362 [016] 55709.716253: kvm_mmu_spte_requested: gfn ...` (no flags, padded names) |
| `perf script` | `CPU 0/KVM 4145 [002] 86.581928: kvm:kvm_page_fault: vcpu 5 ...` (`system:event`) |
| QEMU log, old | `15268@1647341556.928341:kvm_run_exit cpu_index 0, reason 8` |
| QEMU log, `-msg timestamp=on` | `2024-03-20T08:39:45.991426Z kvm_convert_memory start 0x... ...` |
| QEMU log, plain | `kvm_set_user_memory AddrSpace#0 Slot#0 ...` (QEMU events only; the time is the file's last) |
| dmesg (SEV-SNP) | `[ 1234.567890] SEV-SNP: PFN 0x..., RMP entry: [0x... - 0x...]` (`dmesg`, `dmesg -r`'s `<3>`, `dmesg -T`'s or journalctl's prefix: no time) |
| QEMU ftrace backend | `... tracing_mark_write: kvm_convert_memory start ...` (or trace-cmd's `print:`) |

`frame(line)` returns a `Frame` or the reason the line is not a trace line.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import NamedTuple

from imemviz.io.trace.formats import QEMU_EVENTS


class Frame(NamedTuple):
    ts: float | None  # seconds; None: the line carries no time (plain QEMU log)
    pid: int | None
    cpu: int | None
    comm: str
    event: str
    payload: str
    framing: str  # "ftrace", "perf", "qemu", "dmesg"


_FTRACE = re.compile(
    r"\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?:\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:[^\s\[\]:]{4,6}\s+)?(?P<ts>\d+(?:\.\d+)?):\s+(?P<event>[A-Za-z_][\w.]*):\s*(?P<payload>.*)"
)
_PERF = re.compile(
    r"\s*(?P<comm>.*?)\s+(?P<pid>\d+)(?:/\d+)?\s+\[(?P<cpu>\d+)\]\s+(?P<ts>\d+\.\d+):\s+"
    r"(?:\d+\s+)?(?P<sys>\w+):(?P<event>\w+):\s*(?P<payload>.*)"
)
_QEMU_PID = re.compile(r"(?P<pid>\d+)@(?P<ts>\d+\.\d+):(?P<event>\w+)(?: (?P<payload>.*))?")
_QEMU_ISO = re.compile(
    r"(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z?\s+(?P<event>\w+)(?: (?P<payload>.*))?"
)
_QEMU_PLAIN = re.compile(r"(?P<event>[a-z]\w*)(?: (?P<payload>.*))?")
# The kernel log: the event is the pr_fmt prefix ("SEV-SNP": arch/x86/virt/svm/sev.c),
# after dmesg's optional "<level>" and "[time]" or journalctl's "... kernel: ".
_DMESG = re.compile(
    r"(?:<\d+>)?(?:\[\s*(?:(?P<ts>\d+\.\d+)|[^\]]*)\]\s*|.*?kernel: )?"
    r"(?P<event>SEV-SNP): (?P<payload>.*)"
)
_MARKER_PREFIX = re.compile(r"(?:tracing_mark_write: |0x[0-9a-f]+s?: )")
_VCPU_COMM = re.compile(r"CPU (\d+)/KVM")

NOT_A_TRACE_LINE = "not_a_trace_line"
COMMENT = "comment"


def _qemu_in_marker(f: Frame) -> Frame | None:
    """QEMU's ftrace backend writes `event args` into trace_marker."""
    p = _MARKER_PREFIX.match(f.payload)
    text = f.payload[p.end() :] if p else f.payload
    m = _QEMU_PLAIN.fullmatch(text)
    if m is None or m.group("event") not in QEMU_EVENTS:
        return None
    return f._replace(event=m.group("event"), payload=m.group("payload") or "", framing="qemu")


def frame(line: str) -> Frame | str:
    """The framing of one line (without its newline), or a skip reason."""
    s = line.lstrip()
    if not s:
        return COMMENT
    if s[0] == "#":
        return COMMENT
    m = _FTRACE.fullmatch(line)
    if m is not None:
        f = Frame(
            float(m.group("ts")),
            int(m.group("pid")),
            int(m.group("cpu")),
            m.group("comm").strip(),
            m.group("event"),
            m.group("payload"),
            "ftrace",
        )
        if f.event in ("tracing_mark_write", "print"):
            return _qemu_in_marker(f) or f
        return f
    if "SEV-SNP: " in s:
        m = _DMESG.fullmatch(s)
        if m is not None:
            ts = m.group("ts")
            return Frame(
                float(ts) if ts else None,
                None,
                None,
                "kernel",
                m.group("event"),
                m.group("payload"),
                "dmesg",
            )
    c = s[0]
    if c.isdigit():
        m = _QEMU_PID.fullmatch(s)
        if m is not None:
            return Frame(
                float(m.group("ts")),
                int(m.group("pid")),
                None,
                "qemu",
                m.group("event"),
                m.group("payload") or "",
                "qemu",
            )
        m = _QEMU_ISO.fullmatch(s)
        if m is not None:
            try:
                ts = datetime.fromisoformat(m.group("iso") + "+00:00").timestamp()
            except ValueError:
                return NOT_A_TRACE_LINE
            return Frame(ts, None, None, "qemu", m.group("event"), m.group("payload") or "", "qemu")
    m = _PERF.fullmatch(line)
    if m is not None:
        return Frame(
            float(m.group("ts")),
            int(m.group("pid")),
            int(m.group("cpu")),
            m.group("comm").strip(),
            m.group("event"),
            m.group("payload"),
            "perf",
        )
    m = _QEMU_PLAIN.fullmatch(s)
    if m is not None and m.group("event") in QEMU_EVENTS:
        return Frame(None, None, None, "qemu", m.group("event"), m.group("payload") or "", "qemu")
    return NOT_A_TRACE_LINE


def vcpu_of_comm(comm: str) -> int | None:
    """QEMU names its vCPU threads `CPU <n>/KVM`: the vCPU index, when the comm says it."""
    m = _VCPU_COMM.search(comm)
    return int(m.group(1)) if m else None
