"""Where the GUI thread's time goes on a seek or an undo: every Qt event it handles, in order.

As `profile_open.py` does for an open, in the settled window of `bench_timeline.py`
with the 20,000-op recording replayed (`seek`) or opened as history (`undo`): every
event delivered from posting the command until the map shows the result and 100 ms
more, with its wall and thread CPU time, and the 5 ms heartbeat's beats (`beat`)
between them, so the longest gap shows which events ran in one turn.  Events of the
engine thread's worker (the command itself; `notify` runs on the receiver's thread)
are left out.

    .venv/bin/python benchmarks/profile_seek.py [seek|undo] [--moves N] [--min-ms X]
        [--recording JSONL]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_timeline as bt
import profile_open as po


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", nargs="?", choices=("seek", "undo"), default="seek")
    ap.add_argument("--moves", type=int, default=4)
    ap.add_argument("--min-ms", type=float, default=0.3)
    ap.add_argument("--recording", metavar="JSONL")
    a = ap.parse_args()
    sys.setswitchinterval(0.0005)  # as run_app does (main.SWITCH_INTERVAL_S)
    app = po.TimedApp(sys.argv[:1])
    path = a.recording or os.path.join(tempfile.mkdtemp(prefix="imemviz-profile-"), "long.jsonl")
    if not os.path.exists(path):
        bt.make_recording(path, 20_000)
    w, engine = bt._settled_window(app)
    hb = bt.Heartbeat()
    hb.timer.setObjectName("heartbeat")
    try:
        c = w.presenter.replay
        c.load(path)
        bt._wait(app, lambda: c.active and w.wait_drawn() and engine.snapshot.position == 0)
        n = c.length
        if a.mode == "undo":
            engine.open(path)
            bt._wait(app, lambda: not c.active and w.wait_drawn() and engine.snapshot.position == n)
        bt._idle(app, 300)
        hb.timer.start()
        rnd = random.Random(0)
        for i in range(a.moves):
            if a.mode == "seek":
                k = rnd.randrange(0, n + 1)
                while k == c.position:
                    k = rnd.randrange(0, n + 1)
                post = lambda k=k: c.seek(k)  # noqa: E731
            else:
                k, post = n - 1 - i, engine.undo
            po.TimedApp.rows.clear()
            po.TimedApp.on = True
            t0 = time.perf_counter()
            lat, gap, cpu = bt._move(app, w, hb, post, k)
            bt._idle(app, 100)
            po.TimedApp.on = False
            print(f"{a.mode} {i + 1}: latency {lat:.1f} ms, stall {gap:.1f} ms (GUI CPU {cpu:.1f})")
            last_beat, gap_cpu = t0, 0.0
            for row in po.TimedApp.rows:
                if row is None:
                    continue
                t, wall, cp, depth, name, kind = row
                if name.startswith("EngineWorker"):
                    continue
                if name == "QTimer:heartbeat" and kind == "1":
                    gap = (t - last_beat) * 1000
                    note = f" (gap {gap:.1f} ms, GUI CPU {gap_cpu * 1000:.1f})" if gap > 8 else ""
                    print(f"  +{(t - t0) * 1000:7.1f} ms ---- beat{note}")
                    last_beat, gap_cpu = t, 0.0
                    continue
                gap_cpu += cp if depth == 1 else 0.0
                if cp * 1000 >= a.min_ms:
                    print(
                        f"  +{(t - t0) * 1000:7.1f} ms {'  ' * (depth - 1)}type {kind:>3s}  "
                        f"cpu {cp * 1000:5.1f}  wall {wall * 1000:6.1f}  {name}"
                    )
    finally:
        po.TimedApp.on = False
        hb.timer.stop()
        w.close()
        engine.stop()


if __name__ == "__main__":
    main()
