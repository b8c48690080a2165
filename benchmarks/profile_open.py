"""Where the GUI thread's time goes when a recording opens: every Qt event it handles, in order.

Opens a recording (by default the 20,000-op one `bench_timeline.py` writes) in a
settled window (the default scene drawn, idle) and times every event Qt delivers
on the GUI thread after the new state's snapshot slots until the map has drawn
it and the engine is idle: wall and thread CPU time, nesting depth, the event type
and the receiver (with its nearest named parent), with the 5 ms heartbeat's beats
(`beat`) between them, so the longest gap shows which events ran in one turn (the
event that delivered the snapshot is listed too: it starts just before the arrival).  Paints show as UpdateRequest
(77) of the main window with Paint (12) events of the widgets inside; the engine's
signals as MetaCall (43) on the receiver of the slot; layouts as LayoutRequest (76).
Wall far above CPU means the GUI thread waited: for the GIL (the engine thread runs
Python) or for a core (other processes).

    .venv/bin/python benchmarks/profile_open.py [--history] [--opens N] [--min-ms X]
        [--recording JSONL]

The first open of the process is shown too (cold caches); compare it with the next.
Profiling adds a Python call to every event: the figures are for finding the big
items, not for the benchmark's table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from typing import ClassVar

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_timeline as bt
from PySide6.QtWidgets import QApplication

Row = tuple[float, float, float, int, str, str]  # start, wall, cpu, depth, receiver, type


class TimedApp(QApplication):
    """Times every event delivered while `on` is set (nested ones too)."""

    on = False
    local = threading.local()
    rows: ClassVar[list[Row | None]] = []

    def notify(self, obj, ev):  # type: ignore[override]  # PySide6's stub types it loosely
        if not TimedApp.on:
            return super().notify(obj, ev)
        local = TimedApp.local
        local.depth = getattr(local, "depth", 0) + 1  # per thread: the engine's own events
        depth, kind = local.depth, ev.type()
        t0, c0 = time.perf_counter(), time.thread_time()
        i = len(TimedApp.rows)
        TimedApp.rows.append(None)
        try:
            return super().notify(obj, ev)
        finally:
            local.depth -= 1
            TimedApp.rows[i] = (
                t0,
                time.perf_counter() - t0,
                time.thread_time() - c0,
                depth,
                _name(obj),
                str(int(kind.value) if hasattr(kind, "value") else kind),
            )


ENGINE_SIGNALS = (
    "snapshotReady",
    "rasterReady",
    "timelineChanged",
    "actionDone",
    "opApplied",
    "message",
    "commandFinished",
)


def _trace_engine(engine) -> None:
    """Rows for the engine thread's emissions and its frame fence (time, no CPU)."""
    from PySide6.QtCore import Qt

    def mark(what: str) -> None:
        if TimedApp.on:
            TimedApp.rows.append((time.perf_counter(), 0.0, 0.0, 0, what, "engine"))

    w = engine.worker
    for sig in ENGINE_SIGNALS:
        getattr(w, sig).connect(lambda *_a, s=sig: mark(s), Qt.DirectConnection)
    for feed in w.feeds:  # each pane's feed: its start
        name = getattr(getattr(feed, "__self__", None), "__class__", type(feed)).__name__

        def traced(*args, _f=feed, _n=name, **kw):
            mark(f"feed {_n}")
            return _f(*args, **kw)

        w.feeds[w.feeds.index(feed)] = traced
    fence = w.fence
    ack, wait = fence.ack, fence.wait

    def t_ack(version: int) -> None:
        mark(f"(GUI) ack {version}")
        ack(version)

    def t_wait(version: int, limit: float = 0.03) -> None:
        mark(f"fence wait {version}")
        wait(version, limit)
        mark(f"fence done {version}")

    fence.ack, fence.wait = t_ack, t_wait


def _name(obj) -> str:
    try:
        name = f"{type(obj).__name__}:{obj.objectName()}"
        q = obj
        for _ in range(6):
            q = q.parent() if hasattr(q, "parent") else None
            if q is None:
                break
            if q.objectName():
                return f"{name} <{type(q).__name__}:{q.objectName()}>"
        return name
    except RuntimeError:  # deleted while the event was delivered
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--history", action="store_true", help="File > Open, not Replay")
    ap.add_argument("--opens", type=int, default=2)
    ap.add_argument(
        "--min-ms", type=float, default=0.5, help="CPU below which an event is not listed"
    )
    ap.add_argument("--recording", metavar="JSONL")
    ap.add_argument("--turns", action="store_true", help="mark each event-loop iteration")
    ap.add_argument(
        "--engine", action="store_true", help="the engine thread's signals and fence, too"
    )
    a = ap.parse_args()
    sys.setswitchinterval(0.0005)  # as run_app does (main.SWITCH_INTERVAL_S)
    app = TimedApp(sys.argv[:1])
    path = a.recording or os.path.join(tempfile.mkdtemp(prefix="imemviz-profile-"), "long.jsonl")
    if not os.path.exists(path):
        bt.make_recording(path, 20_000)
    hb = bt.Heartbeat()
    hb.timer.setObjectName("heartbeat")
    from PySide6.QtCore import QAbstractEventDispatcher

    def awake() -> None:  # the event loop starts an iteration (a "turn")
        if TimedApp.on:
            TimedApp.rows.append((time.perf_counter(), 0.0, 0.0, 0, "awake", "-"))

    QAbstractEventDispatcher.instance().awake.connect(awake)
    for k in range(a.opens):
        w, engine = bt._settled_window(app)
        c = w.presenter.replay
        arrived: list[float] = []
        gaps: list[tuple[float, float]] = []

        def first(_snap, arrived=arrived) -> None:
            if not arrived:
                arrived.append(time.perf_counter())
                hb.reset()

        engine.snapshotReady.connect(first)
        if a.engine:
            _trace_engine(engine)
        TimedApp.rows.clear()
        TimedApp.on = True
        hb.timer.start()
        try:
            if a.history:
                engine.open(path)
            else:
                c.load(path)
            bt._wait(app, lambda a=arrived, w=w, e=engine: bool(a) and w.wait_drawn() and e.idle)
            bt._idle(app, 150)
            gaps.append((hb.gap_ms(), hb.gap_cpu_ms()))
        finally:
            TimedApp.on = False
            hb.timer.stop()
            w.close()
            engine.stop()
        t0 = arrived[0]
        top = 0.0
        last_beat, gap_cpu = t0, 0.0
        print(
            f"open {k + 1} ({'history' if a.history else 'replay'}): from the new state's "
            f"arrival; longest heartbeat gap {gaps[0][0]:.1f} ms (GUI CPU {gaps[0][1]:.1f})"
        )
        for row in TimedApp.rows:
            if row is None:
                continue
            t, wall, cpu, depth, name, kind = row
            if t + wall < t0 or name.startswith("EngineWorker"):
                continue  # while loading; the engine thread's own events
            if name == "QTimer:heartbeat" and kind == "1":
                gap = (t - last_beat) * 1000
                note = f" (gap {gap:.1f} ms, GUI CPU {gap_cpu * 1000:.1f})" if gap > 8 else ""
                print(f"  +{(t - t0) * 1000:7.1f} ms ---- beat{note}")
                last_beat, gap_cpu = t, 0.0
                continue
            if kind == "engine":
                print(f"  +{(t - t0) * 1000:7.1f} ms                  [engine] {name}")
                continue
            if name == "awake":
                if a.turns:
                    print(f"  +{(t - t0) * 1000:7.1f} ms -- turn")
                continue
            top += cpu if depth == 1 else 0.0
            gap_cpu += cpu if depth == 1 else 0.0
            if cpu * 1000 >= a.min_ms:
                print(
                    f"  +{(t - t0) * 1000:7.1f} ms {'  ' * (depth - 1)}type {kind:>3s}  "
                    f"cpu {cpu * 1000:5.1f}  wall {wall * 1000:6.1f}  {name}"
                )
        print(f"  GUI CPU in top-level events: {top * 1000:.1f} ms")


if __name__ == "__main__":
    main()
