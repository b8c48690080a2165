"""Undo, redo and seeks of the session on the 4 TiB TD, headless and in the app.

The TD is bench_app.py's (4 TiB, ~100,000 attribute extents; `--full-td`: the TD of
bench_state.py, every 2M page of 4 TiB accepted, 2,097,152 leaves and folios) with
the history a user leaves: `--history` accept actions spread over it, a 1 TiB
conversion to shared with discard, then rounds of one more accept.  Per round:

- headless (`io.Session`): undo, redo, another undo (the one after it, with no idle
  time between), seeks back and forth by 10 actions; wall and CPU (process_time)
  medians.  Between rounds the session gets the idle time the app gives it: its
  `prepare()` when it has one (this branch; main has none);
- `--app`: the same in a 1600x1000 offscreen window through the engine thread:
  latency from posting the undo/redo until the map has painted the new state, the
  longest gap of a 5 ms GUI heartbeat in that time (the stall) with the GUI thread's
  CPU inside it, the process CPU until the engine is idle, and the time until the
  window is settled (engine idle, map drawn, Follow's framing animation over).

Run it with either checkout's interpreter (the imemviz it imports is that
checkout's):

    .venv/bin/python benchmarks/bench_undo.py [--rounds N] [--history N] [--app] [--full-td]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

T = 1 << 40
HIGH = (4 << 30) >> 12  # the first gfn above 4 GiB


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _med(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.1f} (min {min(xs):.1f}, max {max(xs):.1f})"


def _free_pages(vm, n: int, start: int, stride: int) -> list[int]:
    """n private pages with no leaf, above 4 GiB, spread `stride` 2M pages apart."""
    out = []
    g = start
    while len(out) < n and g < HIGH + (T >> 12) * 4:
        if (
            vm.memslots.lookup(g) is not None
            and vm.attr_private(g)
            and vm.private.lookup(g) is None
        ):
            out.append(g)
        g += stride * 512
    return out


def build(full: bool, n_history: int):
    """The session with its history: (session, pages for the rounds' accepts)."""
    from imemviz.io import plans

    t = time.perf_counter()
    if full:
        import bench_state

        from imemviz.io.session import Session

        vm = bench_state.build_tdx()
        s = Session({"vm": vm.config.to_dict()}, vm)
        # Every page is accepted: the actions punch 2M holes and accept a 4K page there.
        later = [((g << 21) >> 12) + 3 for g in range(7, 2_000_000, 9973)]
        hist = [plans.punch_hole(s.vm, g & ~0x1FF, (g & ~0x1FF) + 512) for g in later[:n_history]]
        for p in hist:
            s.apply_group(list(p.ops), p.label)
        rounds = [g for g in later[n_history:] if s.vm.private.lookup(g) is not None]
    else:
        import bench_app

        s = bench_app.build_big_td(100_000)
        for g in _free_pages(s.vm, n_history, HIGH + 3, 4099):
            p = plans.accept(g)
            s.apply_group(list(p.ops), p.label)
        rounds = _free_pages(s.vm, 96, HIGH + (T >> 12) + 5, 1000)
    print(f"built in {time.perf_counter() - t:.1f} s, {len(s.ops)} ops  load {_load()}", flush=True)
    # The 1 TiB conversion (bench_app's stall measurement): a big group in the history.
    p = plans.convert(s.vm, HIGH, HIGH + (T >> 12), private=False, discard=True)
    t = time.perf_counter()
    s.apply_group(list(p.ops), p.label)
    print(f"1 TiB conversion {1000 * (time.perf_counter() - t):.0f} ms", flush=True)
    return s, rounds


def round_plan(full: bool, s, g: int):
    from imemviz.io import plans

    if full:
        return plans.punch_hole(s.vm, g & ~0x1FF, (g & ~0x1FF) + 512)
    return plans.accept(g)


def headless(s, rounds: list[int], n: int, full: bool) -> None:
    prepare = getattr(s, "prepare", None)
    res: dict[str, list[float]] = {}

    def timed(name: str, fn) -> None:
        c, t = time.process_time(), time.perf_counter()
        fn()
        res.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        res.setdefault(name + " cpu", []).append((time.process_time() - c) * 1000)

    for i in range(n):
        p = round_plan(full, s, rounds[i])
        s.apply_group(list(p.ops), p.label)
        if prepare is not None:
            prepare()  # the idle time the app gives it after an action
        timed("undo", s.undo)
        timed("redo", s.redo)
        if prepare is not None:
            prepare()
        s.undo()
        # Two undos in a row, the second with no idle time before it: not prepared.
        timed("second undo, no idle between", s.undo)
        timed("redo", s.redo)
        timed("redo", s.redo)
        if prepare is not None:
            prepare()
        pos = s.position
        timed("seek back 10 actions", lambda pos=pos: s.seek(pos - 10))
        timed("seek forward 10 actions", lambda pos=pos: s.seek(pos))
    print(f"headless, {n} rounds (ms, wall and CPU)  load {_load()}")
    for name, xs in res.items():
        if not name.endswith(" cpu"):
            print(f"  {name:34s} wall {_med(xs)}  cpu {_med(res[name + ' cpu'])}")


def in_app(s, rounds: list[int], n: int, full: bool) -> None:
    import bench_app
    import bench_timeline as bt

    app = bench_app._app()
    w, engine = bench_app._window(app, s)
    hb = bt.Heartbeat()
    hb.timer.start()
    res: dict[str, list[float]] = {}
    try:

        def ready() -> None:
            """Idle as a user is between clicks: 300 ms, and (this branch) until the engine
            has readied the next undo in that idle time."""
            bench_app._idle(app, 300)
            s = engine.worker.session
            if hasattr(s, "undo_ready"):
                bench_app._wait(app, lambda: engine.idle and s.undo_ready)

        def move(name: str, post, want: int) -> None:
            c = time.process_time()
            t0 = time.perf_counter()
            lat, gap, cpu = bt._move(app, w, hb, post, want)
            proc = (time.process_time() - c) * 1000
            bench_app._wait(app, w.wait_drawn)
            settled = (time.perf_counter() - t0) * 1000
            for k, v in (("latency", lat), ("stall", gap), ("GUI CPU in stall", cpu)):
                res.setdefault(f"{name} {k}", []).append(v)
            res.setdefault(f"{name} process CPU", []).append(proc)
            res.setdefault(f"{name} settled", []).append(settled)
            res.setdefault(f"{name} stall until settled", []).append(hb.gap_ms())
            ready()

        for i in range(n):
            engine.submit(round_plan(full, engine.worker.session, rounds[2 * i]))
            bench_app._wait(app, w.wait_drawn)
            ready()
            pos = engine.snapshot.position
            move("undo", engine.undo, pos - 1)
            move("redo", engine.redo, pos)
            # An undo right after an action is drawn: no idle time to ready it.
            engine.submit(round_plan(full, engine.worker.session, rounds[2 * i + 1]))
            bench_app._wait(app, w.wait_drawn)
            move("undo at once after an action", engine.undo, pos)
        print(f"in the app, {n} rounds (ms)  load {_load()}")
        for name, xs in res.items():
            print(f"  {name:32s} {_med(xs)}")
    finally:
        hb.timer.stop()
        w.close()
        engine.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--history", type=int, default=200, help="accept actions before the rounds")
    ap.add_argument("--app", action="store_true", help="also in the app (offscreen)")
    ap.add_argument("--no-headless", action="store_true")
    ap.add_argument("--full-td", action="store_true", help="every 2M page of 4 TiB accepted")
    a = ap.parse_args()
    import imemviz

    print(f"imemviz from {os.path.dirname(imemviz.__file__)}, load {_load()}", flush=True)
    s, rounds = build(a.full_td, a.history)
    if not a.no_headless:
        headless(s, rounds, a.rounds, a.full_td)
    if a.app:
        in_app(s, rounds[2 * a.rounds :], a.rounds, a.full_td)
    print(f"load at the end {_load()}")


if __name__ == "__main__":
    main()
