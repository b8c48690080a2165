"""A/B of input checking: `python benchmarks/bench_parse.py BEFORE_TREE [--runs 7] [--only parse,load]`.

Runs each measure in child processes, for BEFORE_TREE (e.g. ``git archive main |
tar -x -C /tmp/before``) and this checkout alternating, and prints CPU medians:

- ``parse``: `parse_op` on five decoded op lines of the general path (flag-name
  lists, size and hex strings, booleans; not the run loop's pre-compiled lines,
  which `bench_ab.py` measures through ``imemviz run``), and `VMConfig.from_dict`;
- ``load``: `load_state` of one saved state of 1,048,576 4K leaves
  (`bench_state.build_sw`, built once with this checkout).

CPU time is the figure to compare on the shared machine; the load average is
printed with each line.  Figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PARSE = r"""
import sys, time
from imemviz.model.config import VMConfig
from imemviz.model.ops import parse_op
lines = [
    {"op": "guest_access", "gpa": "0x1000", "write": True, "value": 7},
    {"op": "set_memory_attributes", "address": 0, "size": "2M", "attributes": ["PRIVATE"]},
    {"op": "fallocate", "fd": 3, "mode": ["KEEP_SIZE", "PUNCH_HOLE"], "offset": 0, "len": "4K"},
    {"op": "set_user_memory_region2", "slot": 0, "flags": ["GUEST_MEMFD"], "guest_phys_addr": 0,
     "memory_size": "1G", "userspace_addr": "0x7f0000000000", "guest_memfd": 3},
    {"op": "guest_accept", "gpa": 4096, "level": "2M"},
]
n = int(sys.argv[1])
t = time.process_time()
for i in range(n):
    parse_op(lines[i % len(lines)])
ops = time.process_time() - t
cfg = {"type": "tdx", "host_memory": "64G", "gmem_max_order": 9,
       "tdx_private_max_level": "2M", "seed": 5}
t = time.process_time()
for _ in range(n // 10):
    VMConfig.from_dict(cfg)
print(ops / n, (time.process_time() - t) / (n // 10))
"""

LOAD = r"""
import sys, time
from imemviz.io.state import load_state
t = time.process_time()
load_state(sys.argv[1])
print(time.process_time() - t)
"""

BUILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); import bench_state; "
    "from imemviz.io.state import save_state; save_state(bench_state.build_sw(), sys.argv[2])"
)


def _child(tree: str, argv: list[str]) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", *argv],
        env=dict(os.environ, PYTHONPATH=tree),
        cwd=tempfile.gettempdir(),  # not this checkout: "" on sys.path would shadow `tree`
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [float(x) for x in out.split()]


def _ab(trees: dict[str, str], argv: list[str], runs: int) -> dict[str, list[float]]:
    """Per tree, the median of each number the child prints."""
    got: dict[str, list[list[float]]] = {k: [] for k in trees}
    for _ in range(runs):
        for label, tree in trees.items():
            got[label].append(_child(tree, argv))
    return {k: [statistics.median(col) for col in zip(*v, strict=True)] for k, v in got.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("before", help="source tree of the old version")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--only", default="parse,load")
    ns = ap.parse_args(argv)
    trees = {"before": os.path.abspath(ns.before), "after": HERE}
    if "parse" in ns.only:
        for label, (per_op, per_cfg) in _ab(trees, [PARSE, str(ns.ops)], ns.runs).items():
            print(
                f"parse {label:6s}: parse_op {per_op * 1e6:.2f} us/op, "
                f"VMConfig.from_dict {per_cfg * 1e6:.2f} us; load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    if "load" in ns.only:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "sw-1m.json.zst")
            subprocess.run(
                [sys.executable, "-c", BUILD, os.path.join(HERE, "benchmarks"), path],
                env=dict(os.environ, PYTHONPATH=HERE),
                check=True,
            )
            for label, (cpu,) in _ab(trees, [LOAD, path], max(3, ns.runs // 2)).items():
                print(
                    f"load  {label:6s}: load_state of 1,048,576 leaves, CPU {cpu:.2f} s; "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
