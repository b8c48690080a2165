"""Bounded work on big inputs (docs/benchmarks.md, "Bounded work"): time and peak memory.

1. ``fallocate`` of 64 TiB on a 1 PiB host (the engine op alone, in process) and
   the whole three-line script through ``imemviz run`` (a subprocess: wall time
   and peak RSS);
2. the same fallocate on a 16 GiB host: ENOMEM once the free memory is taken;
3. ``imemviz check`` of a 412-byte state describing 50M folios (one run);
4. ``imemviz diff`` and ``imemviz check`` of two states of N scattered 4K leaves
   (N rows each, every leaf different: default 1,000,000).

Run: ``.venv/bin/python benchmarks/bench_bounded.py [--runs N] [--rows N]``.
Prints medians over the runs (default 3).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zstandard

from imemviz.io.state import encode, state_document
from imemviz.model import ops as O
from imemviz.model.config import VMConfig
from imemviz.model.vm import VM

T64 = 64 << 40
HEADER = {"format": "imemviz-recording", "version": 1}


def fallocate_op(host: str) -> float:
    vm = VM(VMConfig.from_dict({"type": "sw_protected", "host_memory": host}))
    assert vm.apply(O.CreateGuestMemfd(T64)).ok
    t0 = time.perf_counter()
    vm.apply(O.Fallocate(3, 1, 0, T64))
    return time.perf_counter() - t0


def command(*argv: str) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, exit code) of `imemviz ARGV` in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "imemviz", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _pid, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    dt = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return dt, usage.ru_maxrss / 1024, proc.returncode


def median_command(runs: int, *argv: str) -> str:
    results = [command(*argv) for _ in range(runs)]
    times = statistics.median(r[0] for r in results)
    rss = max(r[1] for r in results)
    return f"{times:.2f} s, peak RSS {rss:.0f} MB, exit {results[0][2]}"


def rows_state(path: Path, n: int, shift: int) -> None:
    vm = VM(VMConfig.from_dict({"type": "sw_protected", "host_memory": "256G"}))
    doc = state_document(vm)
    doc["mappings"]["private"] = [
        [hex(2 * g), "4K", hex((7 * g + shift) % (1 << 24))] for g in range(n)
    ]
    path.write_bytes(encode(doc, "zstd"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ns = ap.parse_args()
    runs = ns.runs
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for host in ("1P", "16G"):
            t = statistics.median(fallocate_op(host) for _ in range(runs))
            print(f"fallocate 64 TiB, host {host}: engine op {t * 1000:.1f} ms (median of {runs})")
        script = d / "f64.jsonl"
        lines = [
            {**HEADER, "start": {"vm": {"type": "sw_protected", "host_memory": "1P"}}},
            {"op": "create_guest_memfd", "size": "64T"},
            {"op": "fallocate", "fd": 3, "mode": ["KEEP_SIZE"], "offset": 0, "len": "64T"},
        ]
        script.write_text("\n".join(map(json.dumps, lines)) + "\n")
        print(
            "imemviz run (three-line script, 1 PiB host):", median_command(runs, "run", str(script))
        )
        vm = VM(VMConfig.from_dict({"type": "sw_protected", "host_memory": "256G"}))
        doc = json.loads(encode(state_document(vm)))
        doc["next_ino"] = 2
        doc["host"]["free"] = doc["host"]["other"] = []
        doc["gmem_files"] = [
            {
                "fd": 3,
                "ino": 1,
                "size": 200 << 30,
                "flags": 0,
                "bindings": [],
                "folios": [["0x0", 0, "0x1000000", 50_000_000]],
            }
        ]
        bomb = d / "folios.json.zst"
        bomb.write_bytes(zstandard.ZstdCompressor(level=19).compress(json.dumps(doc).encode()))
        print(
            f"imemviz check of a {bomb.stat().st_size}-byte state of 50M folios:",
            median_command(runs, "check", str(bomb)),
        )
        a, b = d / "a.json.zst", d / "b.json.zst"
        rows_state(a, ns.rows, 0)
        rows_state(b, ns.rows, 1)
        print(
            f"imemviz diff of two {ns.rows:,}-row states:",
            median_command(runs, "diff", str(a), str(b)),
        )
        print(f"imemviz check of a {ns.rows:,}-row state:", median_command(runs, "check", str(a)))


if __name__ == "__main__":
    main()
