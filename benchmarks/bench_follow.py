"""Follow changes' framing animation: the GUI thread's CPU per animation frame.

On the 4 TiB TD of `bench_app.py` (~100,000 extents, folded), ops on pages the map does
not show legibly (whole-guest zoom, nothing selected): Follow changes frames each with
a smooth pan/zoom.  For every frame the animation draws (its step and the paint),
`time.thread_time` of the GUI thread and the wall time, and how many fold maps
(`map_fold.find_folds`) the frame built; per framing (submit to framed and drawn), the
GUI thread's CPU and the fold maps built (the probe that picks the view, the frames).  Run it from any tree (it imports `imemviz`
from the running venv), so that two trees can be compared in the same minutes:

    .venv/bin/python benchmarks/bench_follow.py [--ops 12] [--extents 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_app import _app, _candidates, _idle, _wait, _window, build_big_td


def bench(app, w, n_ops: int) -> dict[str, float]:
    import imemviz.app.panes.map_layout as map_layout
    from imemviz.app.panes.map_frame import needs_frame
    from imemviz.io import plans

    pane, engine = w.map, w.engine
    lay = pane.layout_
    vm = engine.worker.session.vm
    anim = pane.animator
    orig = anim._step
    built = [0]
    fold_s = [0.0]
    real_find = map_layout.find_folds

    def counting_find(*a, **k):
        built[0] += 1
        c = time.thread_time()
        try:
            return real_find(*a, **k)
        finally:
            fold_s[0] += time.thread_time() - c

    refreshed = [0]
    real_refresh = pane.refresh

    def counting_refresh() -> None:
        refreshed[0] += 1
        real_refresh()

    cpu, wall, folds, fold_ms = [], [], [], []

    def timed_step(t, orig=orig) -> None:
        n, b, f = refreshed[0], built[0], fold_s[0]
        c0, t0 = time.thread_time(), time.perf_counter()
        orig(t)
        if refreshed[0] == n:
            return  # a frame the animation skipped (at most 30 a second)
        pane.view.viewport().repaint()
        cpu.append((time.thread_time() - c0) * 1000)
        wall.append((time.perf_counter() - t0) * 1000)
        folds.append(built[0] - b)
        fold_ms.append((fold_s[0] - f) * 1000)

    map_layout.find_folds = counting_find
    pane.refresh = counting_refresh
    anim._anim.valueChanged.disconnect(orig)
    anim._anim.valueChanged.connect(timed_step)
    ends, whole_cpu, whole_folds, whole_fold_ms = [], [], [], []
    try:
        for i in range(n_ops):
            pane.zoom_all()
            w.selection.clear()
            _wait(app, w.wait_drawn)
            _idle(app)
            g = _candidates(lay, vm, 50)[i * 3 % 50]
            version = engine.snapshot.version
            b0, f0 = built[0], fold_s[0]
            c0, t0 = time.thread_time(), time.perf_counter()
            engine.submit(plans.accept(g))
            _wait(app, lambda v=version: engine.snapshot.version > v and not anim.running)
            _wait(app, w.wait_drawn)
            pane.view.viewport().repaint()
            ends.append((time.perf_counter() - t0) * 1000)
            whole_cpu.append((time.thread_time() - c0) * 1000)
            whole_folds.append(built[0] - b0)
            whole_fold_ms.append((fold_s[0] - f0) * 1000)
            framed = w.navigator.last_framed
            assert framed and not needs_frame(lay, framed), "not framed"
    finally:
        anim._anim.valueChanged.disconnect(timed_step)
        anim._anim.valueChanged.connect(orig)
        map_layout.find_folds = real_find
        pane.refresh = real_refresh
    return {
        "frames": len(cpu),
        "cpu": statistics.median(cpu),
        "wall": statistics.median(wall),
        "folds": sum(folds) / max(len(folds), 1),
        "fold_ms": sum(fold_ms) / max(len(fold_ms), 1),
        "end": statistics.median(ends),
        "whole_cpu": statistics.median(whole_cpu),
        "whole_folds": statistics.median(whole_folds),
        "whole_fold_ms": statistics.median(whole_fold_ms),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=12)
    ap.add_argument("--extents", type=int, default=100_000)
    a = ap.parse_args()
    app = _app()
    session = build_big_td(a.extents)
    w, engine = _window(app, session)
    try:
        with open("/proc/loadavg") as f:
            load0 = f.read().split()[0]
        r = bench(app, w, a.ops)
        with open("/proc/loadavg") as f:
            load1 = f.read().split()[0]
    finally:
        w.close()
        engine.stop()
    import imemviz

    print(
        f"{os.path.dirname(os.path.dirname(imemviz.__file__))}: {a.ops} framings, "
        f"{r['frames']} frames drawn; per frame: GUI CPU median {r['cpu']:.2f} ms, wall "
        f"{r['wall']:.2f} ms, mean fold maps built {r['folds']:.2f} "
        f"({r['fold_ms']:.2f} ms); framed and drawn after "
        f"{r['end']:.0f} ms (median); per framing (medians): GUI CPU {r['whole_cpu']:.0f} ms, "
        f"{r['whole_folds']:.0f} fold maps built ({r['whole_fold_ms']:.1f} ms); load {load0} -> {load1}"
    )


if __name__ == "__main__":
    main()
