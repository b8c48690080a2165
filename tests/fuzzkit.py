"""Mutated and foreign inputs for the no-traceback property test and the long fuzz run.

`mutated_script` and `mutated_state` turn a seed (a Hypothesis draw or a
`random.Random`) into the bytes of a broken, odd or merely unusual file;
`outcome` feeds one to a command the way a user would (`run`, `check`,
`diff`, the app's open path) and returns its exit code and stderr, raising
only when the command broke its contract: a traceback, an exit code other
than 0/1/2, or an error that is not exactly one line.

Used by tests/test_fuzz_inputs.py (small, in CI) and scripts/fuzz_inputs.py
(the long run, which counts the outcomes).
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import io
import json
import random
from pathlib import Path
from typing import Any

import zstandard

from imemviz.io.state import encode, state_document

HERE = Path(__file__).parent
SCENARIOS = sorted((HERE / "scenarios").glob("*.jsonl"))
SCENES = sorted((HERE.parent / "resources" / "scenes").glob("*.jsonl"))
BASE_SCRIPTS = [p.read_bytes() for p in SCENARIOS] + [
    p.read_bytes() for p in SCENES if p.stat().st_size < 50_000
]

# Ops that poke at whatever a loaded state holds: run after a mutated state loads.
PROBE = "\n".join(
    json.dumps(d)
    for d in [
        {"op": "stats"},
        *({"op": "guest_access", "gpa": hex(g << 12)} for g in (0, 1, 0x200, 0x3FF, 0x4000)),
        {"op": "guest_access", "gpa": "0x1000", "write": True, "value": 7, "private": True},
        {"op": "guest_access", "gpa": "0x2000", "private": False, "hold": True, "vcpu": 1},
        {"op": "vcpu_resume", "vcpu": 1},
        {"op": "vcpu_resume", "vcpu": 2},
        {"op": "guest_accept", "gpa": "0x5000"},
        {"op": "set_memory_attributes", "address": 0, "size": "4M", "attributes": 0},
        {"op": "set_memory_attributes", "address": 0, "size": "2M", "attributes": ["PRIVATE"]},
        {"op": "fallocate", "fd": 3, "mode": ["KEEP_SIZE"], "offset": 0, "len": "2M"},
        {
            "op": "fallocate",
            "fd": 3,
            "mode": ["KEEP_SIZE", "PUNCH_HOLE"],
            "offset": "4K",
            "len": "1M",
        },
        {"op": "host_access", "hva": "0x7f0000001000", "write": True, "value": 3},
        {"op": "madvise", "hva": "0x7f0000000000", "len": "2M"},
        {"op": "memory_failure", "pfn": "0x10"},
        {"op": "inspect", "gpa": "0x1000"},
        {"op": "close", "fd": 4},
        {
            "op": "set_user_memory_region2",
            "slot": 0,
            "guest_phys_addr": 0,
            "memory_size": 0,
        },
        {"op": "close", "fd": 3},
        {"op": "stats"},
    ]
)

_HUGE_INT = "9" * 5000
_HUGE_HEX = '"0x' + "f" * 5000 + '"'
_ODD_TOKENS = [
    _HUGE_INT,
    "-" + _HUGE_INT,
    _HUGE_HEX,
    '"' + "9" * 5000 + 'K"',
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-0",
    "0.5",
    "-1",
    "18446744073709551616",
    '"-0x1"',
    '"0x"',
    '"1P"',
    '"64T"',
    "true",
    "null",
    "[]",
    "{}",
    '"\\u0000"',
    '"\\ud800"',
    '"' + "x" * 300 + '"',
    "[" * 50 + "]" * 50,
]
_ODD_BYTES = [
    b"\xff",
    b"\xc3",
    b"\x00",
    b"\r",
    b"\x1b[31m",
    b"\xef\xbb\xbf",
    "é".encode(),
    b"\n",
    b"#",
    b"}",
    b"{",
    b'"',
]


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 2 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 255, 256, 4096, 1 << 52, 1 << 63, 1 << 64, -(1 << 70)])
    if kind == 3:
        return rng.randrange(-(1 << 20), 1 << 20)
    if kind == 4:
        return rng.choice(["0x0", "0x1000", "4K", "2M", "1G", "MAPPED", "PENDING", "-0x1"])
    if kind == 5:
        return hex(rng.randrange(1 << rng.choice([8, 20, 40, 64, 70])))
    if kind == 6:
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(6)))
    if kind == 7:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 8:
        return {
            rng.choice(["op", "gpa", "x", "fd", "size", "count"]): _json_value(rng, depth + 1)
            for _ in range(rng.randrange(3))
        }
    return rng.random() * 1e6


def _mutate_lines(lines: list[bytes], rng: random.Random) -> list[bytes]:
    if not lines:
        return [b"{}\n"]
    i = rng.randrange(len(lines))
    action = rng.randrange(9)
    if action == 0:
        del lines[i]
    elif action == 1:
        lines.insert(i, lines[i])
    elif action == 2:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif action in (3, 4, 5):
        # A JSON-level edit of one line: a field replaced, added or removed.
        try:
            obj = json.loads(lines[i])
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            keys = list(obj)
            if action == 3 and keys:
                obj[rng.choice(keys)] = _json_value(rng)
            elif action == 4:
                obj[rng.choice(["t", "value", "vcpu", "hold", "private", "zz", "op"])] = (
                    _json_value(rng)
                )
            elif keys:
                del obj[rng.choice(keys)]
            lines[i] = (json.dumps(obj) + "\n").encode()
        else:
            lines[i] = (json.dumps(_json_value(rng)) + "\n").encode()
    elif action == 6:
        # A token replaced by an odd one, as text (huge integers cannot be dumped).
        text = lines[i].decode("utf-8", "replace")
        spots = [k for k, c in enumerate(text) if c in ":,["]
        if spots:
            k = rng.choice(spots) + 1
            end = k
            while end < len(text) and text[end] not in ",}]":
                end += 1
            text = text[:k] + " " + rng.choice(_ODD_TOKENS) + text[end:]
        lines[i] = text.encode("utf-8", "surrogatepass")
    elif action == 7:
        pos = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:pos] + rng.choice(_ODD_BYTES) + lines[i][pos:]
    else:
        lines[i] = lines[i].replace(b"\n", b"\r\n")
    return lines


def mutated_script(rng: random.Random) -> bytes:
    """A script or recording with 1-3 mutations, sometimes cut short."""
    base = rng.choice(BASE_SCRIPTS)
    lines = base.splitlines(keepends=True)
    for _ in range(rng.randrange(1, 4)):
        lines = _mutate_lines(lines, rng)
    data = b"".join(lines)
    r = rng.random()
    if r < 0.2:
        data = data[: rng.randrange(len(data) + 1)]  # cut (a crash while recording)
    elif r < 0.25:
        data = data.replace(b"\n", b"", 1)
    elif r < 0.3:
        data = rng.choice([b"", b"\n\n", b"# only a comment\n", b"\x00" * 64, b"{"])
    return data


def base_docs() -> dict[str, Any]:
    from statecases import CASES, case_vm

    return {name: json.loads(encode(state_document(case_vm(name)))) for name in CASES}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:6]):
            out += _paths(v, (*prefix, i))
    return out


def mutated_state(rng: random.Random, docs: dict[str, Any]) -> bytes:
    """A state file's bytes: a valid document with 1-3 JSON edits, then maybe cut,
    compressed (and maybe cut again) or replaced by something foreign."""
    doc = copy.deepcopy(docs[rng.choice(sorted(docs))])
    for _ in range(rng.randrange(0, 4)):
        paths = _paths(doc)[1:]
        path = rng.choice(paths)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        old = parent[path[-1]]
        action = rng.randrange(6)
        if action <= 1 and type(old) in (int, str):
            n = rng.choice([0, 1, 2, 3, 1 << 20, 1 << 40, 50_000_000, rng.randrange(1 << 14)])
            parent[path[-1]] = hex(n) if isinstance(old, str) and old[:2] == "0x" else n
        elif action <= 2:
            parent[path[-1]] = _json_value(rng)
        elif action == 3:
            del parent[path[-1]]
        elif isinstance(parent, list):
            parent.insert(path[-1], _json_value(rng))
        else:
            parent[rng.choice(["zz", "count", path[-1]])] = _json_value(rng)
    data = json.dumps(doc, separators=(",", ":")).encode()
    r = rng.random()
    if r < 0.1:
        data = data[: rng.randrange(len(data) + 1)]
    elif r < 0.15:
        k = data.find(b"0x")
        if k >= 0:
            data = data[:k] + rng.choice(_ODD_TOKENS).encode() + data[k + 3 :]
    elif r < 0.2:
        data = rng.choice(
            [b"", b"null", b"[]", b"\xff\xfe", b"[" * 100_000, b"9" * 5000, BASE_SCRIPTS[0]]
        )
    c = rng.random()
    if c < 0.3:
        data = gzip.compress(data, mtime=0)
    elif c < 0.6:
        data = zstandard.ZstdCompressor().compress(data)
    if c < 0.6 and rng.random() < 0.2:
        data = data[: rng.randrange(len(data) + 1)]
    return data


# ---------------------------------------------------------------- running


class Broken(AssertionError):
    """A command broke the contract (traceback, odd exit code, more than one line)."""


def _cli(argv: list[str]) -> tuple[int, str, str]:
    from imemviz import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except Exception as e:  # what the console script would print as a traceback
            raise Broken(f"imemviz {' '.join(argv)}: {type(e).__name__}: {e}") from e
    return code, out.getvalue(), err.getvalue()


def check_contract(what: str, code: int, err: str) -> None:
    if code not in (0, 1, 2):
        raise Broken(f"{what}: exit {code}")
    if "Traceback" in err:
        raise Broken(f"{what}: traceback\n{err}")
    if code == 2 and (not err.endswith("\n") or err.count("\n") != 1):
        raise Broken(f"{what}: exit 2 without exactly one line on stderr: {err!r}")


def outcome(command: str, path: Path, other: Path) -> tuple[int, str]:
    """Run one command on a file; (exit code, stderr) once the contract held."""
    if command == "open":
        from imemviz.io.session import Session, SessionError

        try:
            Session.open(path)
        except SessionError as e:
            text = str(e)
            if "\n" in text:
                raise Broken(f"open {path.name}: message of several lines: {text!r}") from e
            return 2, text + "\n"
        except Exception as e:
            raise Broken(f"open {path.name}: {type(e).__name__}: {e}") from e
        return 0, ""
    argv = {
        "run": ["run", str(path)],
        "salvage": ["run", str(path), "--salvage", "--results-out", str(other.parent / "r.out")],
        "from-state": ["run", str(other), "--from-state", str(path)],
        "check": ["check", str(path)],
        "diff": ["diff", str(other), str(path), "--max-ranges", "5"],
    }[command]
    code, _out, err = _cli(argv)
    check_contract(" ".join(argv), code, err)
    return code, err
