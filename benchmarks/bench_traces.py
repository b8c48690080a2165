"""Benchmarks of real-trace import (issue 12): import speed and memory, scrubbing, GUI stalls.

    .venv/bin/python benchmarks/bench_traces.py [--lines N] [--runs R]

1. Import of N trace lines (default 1,000,000: faults, SPTE changes, set_spte,
   attribute changes, in tracefs framing): wall time and CPU time (the import and
   its parsing processes; medians of R runs) and the peak RSS of the
   `imemviz import` process.
2. Loading the observed timeline, then showing 20 random points of it (the
   state's instance masks and a 512 x 1024 raster): median and worst.
3. The app's GUI thread while File > Import trace runs (in its child process):
   the longest gap between 2 ms timer ticks during the import (the GUI stall),
   then while the result opens, and a cancel.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from imemviz.io.trace.formats import BY_EVENT, c_printf
from imemviz.io.trace.kernel_export import leaf_spte

NP = 1 << 63


def write_trace(path: str, n: int) -> None:
    rnd = random.Random(1)
    pf = BY_EVENT["kvm_page_fault"][0].printk
    sc = BY_EVENT["kvm_tdp_mmu_spte_changed"][0].printk
    ss = BY_EVENT["kvm_mmu_set_spte"][0].printk
    at = BY_EVENT["kvm_vm_set_mem_attributes"][0].printk
    t = 1000.0
    with open(path, "w") as f:
        w = f.write
        i = 0
        while i < n:
            t += 3e-6
            v = i % 8
            head = f"       CPU {v}/KVM-{4100 + v}  [{v:03d}] .....  {t:.6f}: "
            gfn = rnd.randrange(1 << 20)
            if i % 400 == 0:
                w(
                    f"  qemu-system-x86-4000  [000] .....  {t:.6f}: kvm_vm_set_mem_attributes: "
                    + c_printf(at, gfn, gfn + 512, 8 * (i % 800 == 0))
                    + "\n"
                )
                i += 1
                continue
            spte = leaf_spte(0x100000 + gfn, 1)
            w(
                head
                + "kvm_page_fault: "
                + c_printf(pf, v, 0xFFFFFFFF81000000, gfn << 12, 0x182)
                + "\n"
            )
            w(head + "kvm_tdp_mmu_spte_changed: " + c_printf(sc, 0, gfn, 1, NP, spte) + "\n")
            w(
                head
                + "kvm_mmu_set_spte: "
                + c_printf(ss, gfn, spte, "r", "w", "x", "u", 1, 0x8A53B01FF8)
                + "\n"
            )
            i += 3


def bench_import(trace: str, out: str, runs: int) -> tuple[list[float], int, list[float]]:
    """Wall times, peak RSS and CPU times (user + sys of the import and its parsing
    processes) of `imemviz import` runs."""
    times, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "imemviz", "import", trace, "-o", out],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return times, rss, cpus


def bench_scrub(out: str) -> tuple[float, list[float]]:
    from imemviz.io.trace import observed_raster as OR
    from imemviz.io.trace.timeline import ObservedTimeline

    t = time.perf_counter()
    tl = ObservedTimeline.load(out)
    load = time.perf_counter() - t
    rnd = random.Random(2)
    times = []
    ext = tl.extent
    for _ in range(20):
        i = rnd.randrange(len(tl))
        t = time.perf_counter()
        st = tl.state_at(i)
        # the observed engine's work for a point: the fold runs, then the raster
        OR.fold_runs(st, ext, tl.settings.get("attr_default"), False)
        OR.raster_rows(
            st, 0, max(1, ext // 512), 512, 1024, ext, tl.settings.get("attr_default"), False
        )
        times.append(time.perf_counter() - t)
    tl.close()
    return load, times


def bench_gui(trace: str, tmp: str) -> tuple[float, float, float, float]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.setswitchinterval(0.0005)  # as run_app does (main.SWITCH_INTERVAL_S)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from imemviz.app.observed import import_dialog

    app = QApplication.instance() or QApplication([])
    gaps: list[float] = []  # while the import runs
    opening: list[float] = []  # once it is done: the dialog closes, the new window opens
    last = [time.perf_counter()]
    dlg = None

    def tick() -> None:
        now = time.perf_counter()
        done = dlg is not None and (dlg.result_ is not None or bool(dlg.error))
        (opening if done else gaps).append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(2)
    timer.timeout.connect(tick)
    timer.start()
    out = os.path.join(tmp, "gui.jsonl")
    t0 = time.perf_counter()
    dlg = import_dialog(None, [trace], out)
    while dlg.result_ is None and not dlg.error:
        app.processEvents()
        time.sleep(0.0005)
    took = time.perf_counter() - t0
    t = time.perf_counter()
    while time.perf_counter() - t < 0.3:  # the new window's first ticks
        app.processEvents()
        time.sleep(0.0005)
    during = sorted(gaps)
    opened = max(opening, default=0.0)
    dlg.close()
    from imemviz.app import observed as mod

    for w in list(mod._OPEN_WINDOWS):
        w.close()
    # Cancel: how long from Cancel to the dialog saying so.
    dlg = import_dialog(None, [trace], os.path.join(tmp, "cancelled.jsonl"))
    t = time.perf_counter()
    while time.perf_counter() - t < 0.5:
        app.processEvents()
    t = time.perf_counter()
    dlg.cancel()
    while not dlg.error and dlg.result_ is None:
        app.processEvents()
        time.sleep(0.0005)
    cancel = time.perf_counter() - t
    dlg.close()
    timer.stop()
    return took, during[-1], opened, cancel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="imemviz-bench-") as tmp:
        trace = os.path.join(tmp, "trace.txt")
        write_trace(trace, ns.lines)
        out = os.path.join(tmp, "out.jsonl")
        size = os.path.getsize(trace) / 1e6
        load = os.getloadavg()[0]
        times, rss, cpus = bench_import(trace, out, ns.runs)
        print(
            f"import {ns.lines} lines ({size:.0f} MB): median {statistics.median(times):.2f} s "
            f"(runs {', '.join(f'{x:.2f}' for x in times)}), CPU median "
            f"{statistics.median(cpus):.2f} s, peak RSS {rss / 1024:.0f} MB, "
            f"timeline {os.path.getsize(out) / 1e6:.0f} MB (load {load})"
        )
        load, scrub = bench_scrub(out)
        print(
            f"load timeline {load:.2f} s; show a point: median {statistics.median(scrub) * 1e3:.1f} ms, "
            f"worst {max(scrub) * 1e3:.1f} ms"
        )
        took, stall, opened, cancel = bench_gui(trace, tmp)
        print(
            f"app import {took:.2f} s; longest GUI stall during it {stall * 1e3:.1f} ms, "
            f"opening the result {opened * 1e3:.1f} ms; cancel {cancel * 1e3:.0f} ms"
        )


if __name__ == "__main__":
    main()
