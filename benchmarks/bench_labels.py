"""The map's cell labels at the pages zoom: GUI-thread CPU of a repaint after a new raster
that changes a row or two (what an op does), and the labels' part of it (the same repaint
with the labels hidden, subtracted).  Offscreen, folding off so every row carries labels
(the 4 TiB TD of bench_app, 10,000 extents).

    .venv/bin/python benchmarks/bench_labels.py [--size 1600x1000] [--steps 30] [--runs 60]

--steps: zoom steps in from the whole guest (30: the deepest zoom, 8 pages a row, address
and state in each tile; 28: 32 pages a row, the state alone at 1600x1000).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1600x1000")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--runs", type=int, default=60)
    a = ap.parse_args()
    width, height = (int(x) for x in a.size.split("x"))
    app = bench_app._app()
    w, engine = bench_app._window(app, bench_app.build_big_td(10_000))
    try:
        w.resize(width, height)
        w.navigator.actions["fold"].setChecked(False)
        pane = w.map
        pane.zoom_all()
        pane.zoom(a.steps, 1 << 30)
        bench_app._wait(app, w.wait_drawn)
        bench_app._idle(app, 500)
        cells, lay = pane.cells, pane.layout_
        assert cells._codes is not None
        codes0, row0 = cells._codes.copy(), cells._row0
        top = int(lay.top) - row0
        vp = pane.view.viewport()
        total, labels, wall = [], [], []
        for i in range(a.runs):
            # One cell of one row changes (and the last run's change goes back): a new
            # raster as an op brings it.
            codes = codes0.copy()
            r, c = top + 2 + i % 10, i % codes.shape[1]
            codes[r, c] = (int(codes[r, c]) + 1 + i % 3) % 12
            cells.set_data(codes, row0, lay)
            c0, t0 = time.thread_time(), time.perf_counter()
            vp.repaint()
            total.append((time.thread_time() - c0) * 1000)
            wall.append((time.perf_counter() - t0) * 1000)
            cells.setVisible(False)
            c0 = time.thread_time()
            vp.repaint()
            labels.append(total[-1] - (time.thread_time() - c0) * 1000)
            cells.setVisible(True)
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print(
            f"tier {cells.tier()}, {lay.rows_visible():.0f} rows of {lay.row_gfns} pages at "
            f"{a.size}: repaint GUI CPU median {statistics.median(total):.2f} ms (wall "
            f"{statistics.median(wall):.2f} ms), the labels' part {statistics.median(labels):.2f}"
            f" ms; load {load}"
        )
    finally:
        w.close()
        engine.stop()


if __name__ == "__main__":
    main()
