"""The session's timeline on a 20,000-op recording: opening it, seeking and undo, offscreen.

Every move runs on the engine thread from the session's checkpoints; the GUI
thread only posts commands and draws.  Measured, in a window of 1600x1000:

- GUI stall: the longest gap between beats of a 5 ms QTimer on the GUI thread,
  from posting the command until the map shows the result (target <= 16 ms);
- latency: from posting the command until the map has painted the state at the
  new position (target <= 100 ms for a seek): the end of the map view's own paint,
  as the event loop runs it (until s19 the benchmark forced a synchronous repaint
  in the slot that set the raster, which put the paint into that slot's turn).

The recording: a 4 GiB TDX TD laid out as QEMU does, then 20,000 ops drawn from
a seeded mix (accept-and-touch, plain accesses, 4K-64K conversions both ways
with discard, hole punches, preallocation), the kind of history a long
session leaves.  Seeks go to seeded random positions; undo goes back one op at
a time from the end of the recording opened as history.  Opens: `--opens` of
each kind per run (replay, and File > Open as history), each in a new window
that shows the default scene as at launch and is idle; the stall is split into
the part while the engine loads and the part once the new state is there, and
the same heartbeat over an idle window gives the machine's own floor.

    .venv/bin/python benchmarks/bench_timeline.py [--quick] [--runs N] [--opens N]
        [--only-open] [--recording JSONL] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SIZE = (1600, 1000)
GIB = 1 << 30


def make_recording(path: str, n_ops: int, seed: int = 7) -> None:
    """Write a recording of `n_ops` ops on a 4 GiB TD (every op valid for the TD)."""
    from imemviz.io import plans
    from imemviz.io.session import Session

    rnd = random.Random(seed)
    s = Session.new({"type": "tdx", "host_memory": "16G"})
    s.apply_group(plans.qemu_layout("tdx", 4 * GIB), "layout")
    low = (2 * GIB) >> 12  # gfns [0, low) and [1M, 1M + low) are RAM
    hot = [rnd.randrange(0, low - 64) for _ in range(400)]  # where this guest works

    def gfn() -> int:
        g = rnd.choice(hot) + rnd.randrange(0, 64)
        return g if rnd.random() < 0.5 else g + (1 << 20)

    while len(s.ops) < n_ops:
        vm = s.vm
        r = rnd.random()
        g = gfn()
        if r < 0.45:
            plan = plans.accept_and_touch(vm, g)
        elif r < 0.6:
            plan = plans.guest_access(g, write=True, value=rnd.randrange(256))
        elif r < 0.8:
            n = rnd.choice((1, 4, 16))
            plan = plans.convert(vm, g, g + n, private=rnd.random() < 0.5, discard=True)
        elif r < 0.9:
            plan = plans.punch_hole(vm, g, g + rnd.choice((1, 8)))
        else:
            plan = plans.allocate(vm, g, g + 8)
        if plan.ops:
            s.apply_group(plan.ops, plan.label)
    s.save_recording(path, with_times=False)


def _app():
    from PySide6.QtWidgets import QApplication

    sys.setswitchinterval(0.0005)  # as run_app does (main.SWITCH_INTERVAL_S)
    return QApplication.instance() or QApplication(sys.argv[:1])


def _wait(app, pred, timeout: float = 300.0) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.perf_counter() + timeout
    tick = QTimer()
    tick.start(50)
    try:
        while not pred():
            app.processEvents(QEventLoop.WaitForMoreEvents)
            if time.perf_counter() > deadline:
                raise TimeoutError("timed out")
    finally:
        tick.stop()


def _idle(app, ms: int) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


class Heartbeat:
    """A 5 ms QTimer on the GUI thread; `gap()` is the longest time between two beats
    since `reset()`, the time the GUI could not run."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._beat)
        self.reset()

    def _beat(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        if now - self.last > self.worst:
            self.worst = now - self.last
            self.worst_cpu = cpu - self.last_cpu
        self.last, self.last_cpu = now, cpu

    def reset(self) -> None:
        self.last, self.last_cpu = time.perf_counter(), time.thread_time()
        self.worst = self.worst_cpu = 0.0

    def gap_ms(self) -> float:
        return max(self.worst, time.perf_counter() - self.last) * 1000

    def gap_cpu_ms(self) -> float:
        """The GUI thread's own CPU time within the longest gap: the stall without the
        time it waited for the CPU (other processes) or the GIL (the engine thread)."""
        if time.perf_counter() - self.last > self.worst:
            return (time.thread_time() - self.last_cpu) * 1000
        return self.worst_cpu * 1000


def _window(app):
    from PySide6.QtCore import QSettings

    from imemviz.app.window import MainWindow
    from imemviz.app.worker import Engine

    tmp = tempfile.mkdtemp(prefix="imemviz-bench-")
    engine = Engine()
    engine.failed.connect(lambda m: print(f"engine failed: {m}", file=sys.stderr))
    engine.start()
    w = MainWindow(engine, QSettings(os.path.join(tmp, "s.ini"), QSettings.IniFormat))
    w.resize(*SIZE)
    w.show()
    return w, engine


def _paints(w) -> list:
    """Listeners called after each paint of the map's view (its own `paintEvent`, as the
    app's event loop runs it: no forced repaint that would move the paint into the turn
    that set the raster)."""
    view = w.map.view
    listeners = getattr(view, "_bench_paint_listeners", None)
    if listeners is None:
        listeners = []
        orig = view.paintEvent

        def paint_event(ev):
            r = orig(ev)
            for f in list(listeners):
                f()
            return r

        view.paintEvent = paint_event
        view._bench_paint_listeners = listeners
    return listeners


def _move(app, w, hb: Heartbeat, post, want_position: int) -> tuple[float, float, float]:
    """(latency ms to the map painted at the new position, max GUI gap ms, the GUI
    thread's CPU ms within that gap)."""
    engine = w.engine
    painted: list[float] = []

    def at_position() -> bool:
        snap = engine.snapshot
        return snap is not None and snap.position == want_position and w.map.is_drawn()

    def paint_done() -> None:
        if not painted and at_position():
            painted.append(time.perf_counter())

    def drawn() -> None:  # a state that changed nothing visible still gets its paint
        if at_position():
            w.map.view.viewport().update()

    listeners = _paints(w)
    listeners.append(paint_done)
    w.map.drawn.connect(drawn)
    try:
        _idle(app, 30)
        hb.reset()
        t0 = time.perf_counter()
        post()
        _wait(
            app,
            lambda: (
                bool(painted)
                and engine.snapshot.position == want_position
                and w.map.is_drawn()
                and engine.idle
            ),
        )
        gap, cpu = hb.gap_ms(), hb.gap_cpu_ms()
    finally:
        listeners.remove(paint_done)
        w.map.drawn.disconnect(drawn)
    return (painted[0] - t0) * 1000, gap, cpu


def _settled_window(app):
    """A new window as a user has it before opening a file: shown, the default scene
    (what the app opens at launch) loaded and drawn, the event loop idle."""
    w, engine = _window(app)
    engine.load_scene("default")
    _wait(app, w.wait_drawn)
    _idle(app, 300)
    return w, engine


def _open(app, w, hb: Heartbeat, how: str, path: str) -> dict[str, float]:
    """Open the recording in a settled window: `replay` (Replay > Replay recording: read,
    applied with checkpoints and rewound to its start) or `history` (File > Open: the
    ops as the session's undo history, at its end), both on the engine thread.  The
    stall is measured until the map shows it, the engine is idle and 150 ms more have
    passed (panes that refresh after the map's frame count), in two parts: while the
    engine reads and applies (the GUI has next to nothing to do) and from the new
    state's arrival (the GUI draws it; the GUI thread's CPU in that gap beside it)."""
    engine, c = w.engine, w.presenter.replay
    # The machine's own floor: the longest gap of the same heartbeat while the window is
    # idle, over about as long as an open takes (other processes, the scheduler).
    hb.reset()
    _idle(app, 1500)
    floor = hb.gap_ms()
    arrived: list[float] = []
    loading: list[float] = []  # the longest gap before the new state arrived
    drawn: list[float] = []  # the map painted with the new state's raster

    def first_snapshot(_snap) -> None:
        if not arrived:
            arrived.append(time.perf_counter())
            loading.append(hb.gap_ms())
            hb.reset()  # from here: the GUI handles the new state

    def map_drawn() -> None:
        if arrived and not drawn and w.map.is_drawn():  # its raster set (painted next)
            drawn.append(time.perf_counter())

    engine.snapshotReady.connect(first_snapshot)
    w.map.drawn.connect(map_drawn)
    try:
        hb.reset()
        t0 = time.perf_counter()
        if how == "replay":
            c.load(path)
            _wait(app, lambda: c.active and w.wait_drawn() and engine.snapshot.position == 0)
        else:
            engine.open(path)
            _wait(app, lambda: bool(arrived) and not c.active and w.wait_drawn())
        shown = time.perf_counter()
        _idle(app, 150)
    finally:
        engine.snapshotReady.disconnect(first_snapshot)
        w.map.drawn.disconnect(map_drawn)
    return {
        "ms": (shown - t0) * 1000,
        "stall ms": max(loading[0], hb.gap_ms()),
        "stall (loading) ms": loading[0],
        "stall (new state) ms": hb.gap_ms(),
        "stall (new state) cpu": hb.gap_cpu_ms(),
        "map drawn after arrival ms": ((drawn[0] if drawn else shown) - arrived[0]) * 1000,
        "all done after arrival ms": (shown - arrived[0]) * 1000,
        "idle floor ms": floor,
    }


def open_samples(app, path: str, n: int) -> dict[str, list[float]]:
    """`n` opens for replay and `n` as history, alternated, each in a new settled window."""
    hb = Heartbeat()
    hb.timer.start()
    out: dict[str, list[float]] = {}
    try:
        for _ in range(n):
            for how in ("replay", "history"):
                w, engine = _settled_window(app)
                try:
                    prefix = "open" if how == "replay" else "open history"
                    for k, v in _open(app, w, hb, how, path).items():
                        out.setdefault(f"{prefix} {k}", []).append(v)
                finally:
                    w.close()
                    engine.stop()
                    w.deleteLater()
                    _idle(app, 50)
    finally:
        hb.timer.stop()
    return out


def run(app, path: str, n_seeks: int, n_undo: int, n_open: int, seed: int) -> dict:
    out = open_samples(app, path, n_open)
    if n_seeks == 0 and n_undo == 0:
        return out
    w, engine = _settled_window(app)
    hb = Heartbeat()
    hb.timer.start()
    try:
        c = w.presenter.replay
        c.load(path)
        _wait(app, lambda: c.active and w.wait_drawn() and engine.snapshot.position == 0)
        n = c.length
        rnd = random.Random(seed)
        lat, gaps, cpus = [], [], []
        for _ in range(n_seeks):
            k = rnd.randrange(0, n + 1)
            while k == c.position:
                k = rnd.randrange(0, n + 1)
            a, g, cpu = _move(app, w, hb, lambda k=k: c.seek(k), k)
            lat.append(a)
            gaps.append(g)
            cpus.append(cpu)
        out["seek ms"], out["seek stall ms"], out["seek stall cpu"] = lat, gaps, cpus
        # Undo: the recording opened as history (File > Open), one op back at a time.
        engine.open(path)
        _wait(app, lambda: not c.active and w.wait_drawn() and engine.snapshot.position == n)
        lat, gaps, cpus = [], [], []
        for i in range(n_undo):
            a, g, cpu = _move(app, w, hb, engine.undo, n - 1 - i)
            lat.append(a)
            gaps.append(g)
            cpus.append(cpu)
        out["undo ms"], out["undo stall ms"], out["undo stall cpu"] = lat, gaps, cpus
        out["checkpoints"] = [len(engine.worker.session.checkpoints)]
    finally:
        hb.timer.stop()
        w.close()
        engine.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2,000 ops, fewer moves")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--opens", type=int, default=5, help="opens of each kind per run")
    ap.add_argument("--only-open", action="store_true", help="no seeks and undos")
    ap.add_argument("--recording", metavar="JSONL", help="reuse this recording (else written)")
    ap.add_argument("--write", metavar="MD", help="write the results into this markdown file")
    a = ap.parse_args()
    n_ops = 2000 if a.quick else 20_000
    app = _app()
    path = a.recording or os.path.join(tempfile.mkdtemp(prefix="imemviz-timeline-"), "long.jsonl")
    if not a.recording or not os.path.exists(path):
        t = time.perf_counter()
        make_recording(path, n_ops)
        print(f"recording of {n_ops:,} ops written in {time.perf_counter() - t:.1f} s")
    seeks, undos = (0, 0) if a.only_open else (10, 5) if a.quick else (25, 10)
    runs = []
    for seed in range(a.runs):
        runs.append(run(app, path, seeks, undos, a.opens, seed))
        print(f"run {seed + 1}: load {os.getloadavg()[0]:.2f}", flush=True)
    keys = list(runs[0])
    summary = {}
    for k in keys:
        per_run = [statistics.median(r[k]) for r in runs]
        worst = max(max(r[k]) for r in runs)
        summary[k] = (statistics.median(per_run), worst)
        print(
            f"  {k:36s} median {summary[k][0]:8.1f}  max {worst:8.1f}  (runs: "
            + ", ".join(f"{x:.1f}" for x in per_run)
            + ")"
        )
    if a.write:
        write(a.write, n_ops, a.runs, summary)


def write(path: str, n_ops: int, runs: int, s: dict) -> None:
    lines = [
        "## Session timeline: seek, undo and open",
        "",
        f"`benchmarks/bench_timeline.py`, offscreen, window {SIZE[0]}x{SIZE[1]}, "
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} "
        f"CPUs. A recording of {n_ops:,} ops on a 4 GiB TD (accepts, accesses, conversions "
        "both ways with discard, hole punches, preallocation); medians of the per-run "
        f"medians over {runs} runs, max over all moves. Stall = the longest gap between "
        "beats of a 5 ms QTimer on the GUI thread, from posting the command until the map "
        "shows the result; latency = until the map has painted the new position.",
        "",
        "| measurement | target | median | max |",
        "| --- | --- | --- | --- |",
        f"| seek to a random op: latency | <= 100 ms | {s['seek ms'][0]:.0f} ms | "
        f"{s['seek ms'][1]:.0f} ms |",
        f"| seek: GUI stall | <= 16 ms | {s['seek stall ms'][0]:.1f} ms | "
        f"{s['seek stall ms'][1]:.1f} ms |",
        f"| undo one op (the recording opened as history): latency | - | "
        f"{s['undo ms'][0]:.0f} ms | {s['undo ms'][1]:.0f} ms |",
        f"| undo: GUI stall | <= 16 ms | {s['undo stall ms'][0]:.1f} ms | "
        f"{s['undo stall ms'][1]:.1f} ms |",
        f"| open for replay (read, apply, checkpoints, rewind) | - | "
        f"{s['open ms'][0] / 1000:.1f} s | {s['open ms'][1] / 1000:.1f} s |",
        f"| open: GUI stall | <= 16 ms | {s['open stall ms'][0]:.1f} ms | "
        f"{s['open stall ms'][1]:.1f} ms |",
        f"| - while the engine reads and applies | - | {s['open stall (loading) ms'][0]:.1f} ms"
        f" | {s['open stall (loading) ms'][1]:.1f} ms |",
        f"| - once the new state is there (GUI CPU in it) | - | "
        f"{s['open stall (new state) ms'][0]:.1f} ms ({s['open stall (new state) cpu'][0]:.1f})"
        f" | {s['open stall (new state) ms'][1]:.1f} ms |",
        f"| - the same heartbeat, window idle, 1.5 s (the machine's floor) | - | "
        f"{s['open idle floor ms'][0]:.1f} ms | {s['open idle floor ms'][1]:.1f} ms |",
        f"| open as history (File > Open) | - | {s['open history ms'][0] / 1000:.1f} s | "
        f"{s['open history ms'][1] / 1000:.1f} s |",
        f"| open as history: GUI stall | <= 16 ms | {s['open history stall ms'][0]:.1f} ms | "
        f"{s['open history stall ms'][1]:.1f} ms |",
        "",
        f"Checkpoints kept for the {n_ops:,} ops: {s['checkpoints'][0]:.0f}.",
    ]
    text = "\n".join(lines) + "\n"
    head = lines[0]
    old = "# Benchmarks\n"
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
    if head in old:
        before, rest = old.split(head, 1)
        nxt = rest.find("\n## ")
        after = rest[nxt + 1 :] if nxt >= 0 else ""
        new = before + text + ("\n" + after if after else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    with open(path, "w", encoding="utf-8") as f:
        f.write(new.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
