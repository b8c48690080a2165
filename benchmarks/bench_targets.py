"""Issue 14's performance targets in one run: `python benchmarks/bench_targets.py [--quick]`.

Reuses the builders of bench_model.py, bench_state.py and bench_app.py and measures:

- `imemviz run` of 1,000,000 private faults (subprocess, end to end), sw_protected
  (`guest_access`) and TDX (`guest_accept`): ops/s and peak RSS
  (targets >= 150,000 ops/s, <= 1 GiB);
- converting 1 TiB of a 4 TiB TD to shared with 100,000 scattered 4K leaves
  (target <= 10 ms of engine work: the op as `vm.apply` runs it);
- save and load of a state with 1,048,576 leaves (<= 1 s each), `check` of it
  (summary + invariants, <= 1 s), `diff` of two such states (<= 2 s);
- undo of one action on the 4 TiB TD of bench_app.py (io.Session, headless, <= 50 ms);
- building the 4 TiB TD of 2,097,152 2M accepts (<= 10 s).

Prints medians (and the spread) of `--runs` runs and the load average before and
after; figures go to docs/benchmarks.md by hand.  `--only a,b` picks sections
(run, convert, state, undo, build4t).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stdout

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_app
import bench_model
import bench_state

SECTIONS = ("run", "convert", "state", "undo", "build4t")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _fmt(name: str, xs: list[float], unit: str = "s", scale: float = 1.0) -> None:
    ys = [x * scale for x in xs]
    print(
        f"{name:44s} median {statistics.median(ys):9.3f} {unit}  "
        f"(min {min(ys):.3f}, max {max(ys):.3f}, n={len(ys)})  load {_load()}",
        flush=True,
    )


def section_run(quick: bool, runs: int) -> None:
    n = 100_000 if quick else 1_000_000
    for vm_type in ("sw_protected", "tdx"):
        r = bench_model.bench_run(vm_type, n, runs)
        print(
            f"run {vm_type:12s} {n:,} faults: median {r[f'{vm_type}_ops_per_s']:,.0f} ops/s, "
            f"peak RSS {r[f'{vm_type}_peak_rss_mib']:.0f} MiB  load {_load()}",
            flush=True,
        )


def section_convert(quick: bool, runs: int) -> None:
    r = bench_model.bench_conversion(runs, 10_000 if quick else 100_000)
    print(
        f"convert 1 TiB, {r['leaves_zapped']:,} of {10_000 if quick else 100_000:,} leaves "
        f"zapped: median {r['convert_1T_ms']:.1f} ms  load {_load()}",
        flush=True,
    )


def section_state(quick: bool, runs: int) -> None:
    from imemviz.io.check import main_check
    from imemviz.io.diff import main_diff
    from imemviz.io.state import load_state, save_state

    pages = 1 << 16 if quick else 1 << 20
    t = time.perf_counter()
    vm = bench_state.build_sw(pages)
    print(f"built {pages:,} sw_protected 4K faults in {time.perf_counter() - t:.1f} s", flush=True)
    folder = tempfile.mkdtemp(prefix="imemviz-bench-")
    a, b = os.path.join(folder, "a.json.zst"), os.path.join(folder, "b.json.zst")
    try:
        _fmt("save 1M leaves", _timed(lambda v=vm: save_state(v, a), runs))
        _fmt("load 1M leaves", _timed(lambda: load_state(a), runs))
        # The second state: the same VM with 1% more faults elsewhere (a real diff).
        from imemviz.model import ops as O

        for i in range(pages // 100):
            vm.apply(O.GuestAccess((1 << 30) + (i << 12), write=True, value=i % 255 + 1))
        save_state(vm, b)
        del vm
        sink = io.StringIO()

        def check() -> None:
            with redirect_stdout(sink):
                assert main_check([a]) == 0

        def diff() -> None:
            with redirect_stdout(sink):
                main_diff([a, b])

        _fmt("check 1M leaves", _timed(check, runs))
        _fmt("diff two 1M-leaf states", _timed(diff, runs))
    finally:
        for p in (a, b):
            if os.path.exists(p):
                os.unlink(p)
        os.rmdir(folder)


def section_undo(quick: bool, runs: int) -> None:
    from imemviz.model import ops as O

    session = bench_app.build_big_td(10_000 if quick else 100_000)
    times = []
    for i in range(max(runs, 5)):
        session.apply(O.GuestAccept((4 << 30) + (i << 21) + (7 << 12)))
        t = time.perf_counter()
        assert session.undo()
        times.append(time.perf_counter() - t)
    _fmt("undo one action, 4 TiB TD", times, "ms", 1e3)


def section_build4t(quick: bool, runs: int) -> None:
    size = bench_state.TIB // 16 if quick else 4 * bench_state.TIB
    xs = _timed(lambda: bench_state.build_tdx(size), 1)
    _fmt(f"build TD of {size >> 21:,} 2M accepts", xs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default=",".join(SECTIONS))
    ns = ap.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {_load()}", flush=True)
    for name in ns.only.split(","):
        globals()[f"section_{name}"](ns.quick, ns.runs)
    print(f"load at the end {_load()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
