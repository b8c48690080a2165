"""A/B of the fault path: `python benchmarks/bench_ab.py BEFORE_TREE [--faults N] [--runs 3]`.

Runs each measure in a child process for BEFORE_TREE (a source tree of the old
version, e.g. ``git archive main | tar -x -C /tmp/before``) and for this checkout,
alternating (before, after, before, after, ...) so both see the same load, and
prints the medians of CPU time (user + system of the child) and wall time:

- ``imemviz run`` of N private faults (default 1,000,000; bench_model's script:
  sw_protected ``guest_access`` and TDX ``guest_accept`` on distinct random gfns),
  with ops/s from both times and the peak RSS;
- building the 4 TiB TD of 2,097,152 2M accepts (each tree's bench_state.build_tdx,
  in process: one VM.apply each before s19, fault_batch.apply_plain since).

On the shared 2-core machine CPU time is the figure to compare; the load average
is printed with each line.  Figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(HERE, "benchmarks"))

import bench_model  # noqa: E402

BUILD = (
    "import sys, time; sys.path.insert(0, sys.argv[1]); import bench_state; "
    "t = time.perf_counter(); bench_state.build_tdx(4 * bench_state.TIB); "
    "print(time.perf_counter() - t)"
)
RUN = "import sys; from imemviz.cli import main; sys.exit(main(sys.argv[1:]))"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _child(tree: str, argv: list[str]) -> tuple[float, float, int]:
    """(CPU s, wall s, peak RSS KiB) of one child run with PYTHONPATH=tree."""
    t = time.perf_counter()
    # cwd "/": `python -c` puts the working directory first on sys.path, so a child
    # started in a checkout would import that checkout's imemviz, not `tree`'s.
    p = subprocess.Popen(
        [sys.executable, *argv],
        env=dict(os.environ, PYTHONPATH=tree),
        stdout=subprocess.DEVNULL,
        cwd="/",
    )
    _pid, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"{argv[:3]} failed with {p.returncode}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss


def _check_tree(tree: str) -> None:
    """A child with PYTHONPATH=tree imports imemviz from tree (or the A/B compares nothing)."""
    got = subprocess.run(
        [sys.executable, "-c", "import imemviz; print(imemviz.__file__)"],
        env=dict(os.environ, PYTHONPATH=tree),
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not got.startswith(os.path.join(tree, "")):
        raise SystemExit(f"PYTHONPATH={tree} imports {got}")


def _ab(name: str, trees: dict[str, str], argv_for, runs: int, n: int | None) -> None:
    got: dict[str, list[tuple[float, float, int]]] = {k: [] for k in trees}
    loads = []
    for _ in range(runs):
        for label, tree in trees.items():
            got[label].append(_child(tree, argv_for(tree)))
            loads.append(os.getloadavg()[0])
    for label in trees:
        cpu = statistics.median(x[0] for x in got[label])
        wall = statistics.median(x[1] for x in got[label])
        rate = f", {n / cpu:,.0f} ops/s CPU, {n / wall:,.0f} ops/s wall" if n else ""
        print(
            f"{name} {label:6s}: CPU {cpu:7.2f} s, wall {wall:7.2f} s{rate} "
            f"(CPU runs {', '.join(f'{x[0]:.2f}' for x in got[label])}; "
            f"peak RSS {max(x[2] for x in got[label]) / 1024:.0f} MiB) "
            f"load {min(loads):.1f}-{max(loads):.1f}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", help="source tree of the old version")
    ap.add_argument("--faults", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="run,build4t")
    ns = ap.parse_args(argv)
    trees = {"before": os.path.abspath(ns.before), "after": HERE}
    for tree in trees.values():
        _check_tree(tree)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {_load()}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        if "run" in ns.only:
            for vm_type in ("sw_protected", "tdx"):
                script = os.path.join(d, f"{vm_type}.jsonl")
                bench_model.write_fault_script(script, vm_type, ns.faults)
                out = os.path.join(d, "r.jsonl")
                _ab(
                    f"run {vm_type} {ns.faults:,}",
                    trees,
                    lambda _tree, s=script, o=out: ["-c", RUN, "run", s, "--results-out", o],
                    ns.runs,
                    ns.faults,
                )
        if "build4t" in ns.only:
            _ab(
                "build 4 TiB TD, 2,097,152 2M accepts",
                trees,
                lambda tree: ["-c", BUILD, os.path.join(tree, "benchmarks")],
                ns.runs,
                None,
            )
    print(f"load at the end {_load()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
