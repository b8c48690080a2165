"""`imemviz diff` of runs: one script under two kernels, or two recordings.

``imemviz diff SCRIPT --kernels K1,K2`` runs SCRIPT twice, its header's
VMCONFIG with ``kernel`` K1 and then K2, and reports what changed between the
two runs: every op whose result differs (ok, errno or ret, by index and script
line) and then the final states, as ``imemviz diff`` of two state files does.
``imemviz diff A B`` where A and B are recordings (scripts) runs each and
reports the same.  This is how a bug report's script shows what a kernel
upgrade changes (docs/kernels.md lists the rules behind it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, NoReturn

from imemviz.io.script import ScriptError, open_script, start_vm
from imemviz.model.kernels import PROFILES
from imemviz.model.result import Result
from imemviz.model.vm import VM

_SNIFF = 1 << 20  # a header is short; a longer first line is a state document


def is_recording(path: str) -> bool:
    """True when `path` starts like a script/recording (its first line that is neither blank
    nor a comment is the imemviz-recording header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF)
    except OSError:
        return False
    if head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd":
        return False  # a compressed state file
    for raw in head.split(b"\n"):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested too deep: not a header
            return False
        return isinstance(value, dict) and value.get("format") == "imemviz-recording"
    return False


def parse_kernels(text: str) -> tuple[str, str]:
    """ "7.1,mainline" -> ("7.1", "mainline"); ValueError with a reason otherwise."""
    names = [k.strip() for k in text.split(",")]
    if len(names) != 2 or not all(names):
        raise ValueError(f"--kernels takes two kernels, e.g. 7.1,mainline (got {text!r})")
    for k in names:
        if k not in PROFILES:
            raise ValueError(f"unknown kernel {k!r} (kernels: {', '.join(PROFILES)})")
    return names[0], names[1]


def run_script(path: str, kernel: str | None = None) -> tuple[VM, list[tuple[int, str, Result]]]:
    """Run a script (its header's VMCONFIG with `kernel` when given): the final VM and
    (line, op name, result) per op.  Raises ScriptError for unusable input."""
    source = os.fspath(path)
    with open_script(source) as reader:
        header = reader.header
        assert header is not None  # open_script() without ops_only always reads one
        start = dict(header.start)
        if kernel is not None:
            if set(start) != {"vm"} or not isinstance(start["vm"], dict):
                raise ScriptError(
                    source,
                    header.line,
                    "--kernels needs a script that starts from a VMCONFIG "
                    '({"vm": {...}}), not from a scene or a state',
                )
            start = {"vm": {**start["vm"], "kernel": kernel}}
        vm = start_vm(start, source, header.line)
        results = [(line, op.NAME, vm.apply(op)) for line, op, _t in reader]
    return vm, results


def result_changes(
    a: list[tuple[int, str, Result]], b: list[tuple[int, str, Result]]
) -> list[dict[str, Any]]:
    """The ops whose results differ: index, op, script line, and each side's result."""
    out = []
    for i, ((line, name, ra), (_l, _n, rb)) in enumerate(zip(a, b, strict=False)):
        if (ra.ok, ra.errno, ra.ret) != (rb.ok, rb.errno, rb.ret):
            out.append(
                {
                    "index": i,
                    "op": name,
                    "line": line,
                    "a": {"ok": ra.ok, "errno": ra.errno, "ret": ra.ret},
                    "b": {"ok": rb.ok, "errno": rb.errno, "ret": rb.ret},
                }
            )
    if len(a) != len(b):
        out.append({"index": min(len(a), len(b)), "op": None, "ops": [len(a), len(b)]})
    return out


def _outcome(r: dict[str, Any]) -> str:
    text = "ok" if r["ok"] else f"{r['errno']}"
    exit_ = r["ret"].get("exit") if isinstance(r["ret"], dict) else None
    if isinstance(exit_, dict) and exit_.get("reason"):
        text += f" {exit_['reason']}"
    return text


def _short(v: Any, limit: int = 100) -> str:
    s = json.dumps(v, separators=(",", ":"))
    return s if len(s) <= limit else s[: limit - 3] + "..."


def format_results(changes: list[dict[str, Any]], kernels: tuple[str, str] | None) -> str:
    """The result changes as text, one op per line (plus the ret keys that differ)."""
    if not changes:
        return ""
    title = f"results ({kernels[0]} -> {kernels[1]})" if kernels else "results"
    lines = [f"{title}:"]
    for c in changes:
        if c["op"] is None:
            lines.append(f"  the runs have {c['ops'][0]} and {c['ops'][1]} ops")
            continue
        a, b = c["a"], c["b"]
        head = f"  #{c['index']} {c['op']} (line {c['line']}): "
        if _outcome(a) != _outcome(b):
            lines.append(head + f"{_outcome(a)} -> {_outcome(b)}")
        else:
            keys = sorted(set(a["ret"]) | set(b["ret"]))
            diff = [k for k in keys if a["ret"].get(k) != b["ret"].get(k)]
            lines.append(
                head
                + "; ".join(
                    f"{k}: {_short(a['ret'].get(k))} -> {_short(b['ret'].get(k))}" for k in diff
                )
            )
    return "\n".join(lines)


def load_pair(
    a: str, b: str | None, kernels: str | None, usage: Callable[[str], NoReturn]
) -> tuple[VM, VM, list[dict[str, Any]] | None, tuple[str, str] | None, str, str]:
    """What `imemviz diff` compares: (VM a, VM b, result changes or None, kernels, name a,
    name b).  State files load as before; scripts run.  `usage(msg)` reports a command-line
    error; other unusable input is one line on stderr and CommandExit(2)."""
    import sys

    from imemviz.io.cmdline import CommandExit, load

    def run(path: str, kernel: str | None) -> tuple[VM, list[tuple[int, str, Result]]]:
        try:
            return run_script(path, kernel)
        except ScriptError as e:
            print(str(e), file=sys.stderr)
        except OSError as e:
            print(f"{path}: cannot read: {e.strerror or e}", file=sys.stderr)
        raise CommandExit(2)

    if kernels is not None:
        if b is not None:
            usage("--kernels takes one script (it runs it under both kernels)")
        try:
            k1, k2 = parse_kernels(kernels)
        except ValueError as e:
            usage(str(e))
        if not is_recording(a):
            print(f"{a}: --kernels needs a script (a recording), not a state file", file=sys.stderr)
            raise CommandExit(2)
        vm_a, ra = run(a, k1)
        vm_b, rb = run(a, k2)
        return vm_a, vm_b, result_changes(ra, rb), (k1, k2), f"{a} ({k1})", f"{a} ({k2})"
    if b is None:
        usage("the following arguments are required: B (or --kernels K1,K2 with one script)")
    both = is_recording(a) and is_recording(b)
    if both:
        vm_a, ra = run(a, None)
        vm_b, rb = run(b, None)
        return vm_a, vm_b, result_changes(ra, rb), None, a, b
    vms = [run(p, None)[0] if is_recording(p) else load(p) for p in (a, b)]
    return vms[0], vms[1], None, None, a, b
