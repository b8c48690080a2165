"""Desktop app benchmarks, offscreen at 1600x1000.

1. Redraw after an op on a 4 TiB TD with ~100,000 distinct extents, at several
   zooms: the time from submitting the op to the map repainted with the new
   state (engine thread: op, changed ranges, cache splice, raster; GUI: image
   and paint), and to the map repainted with the op's change marks on it too
   (they come with the action's record, right after the raster).  Target:
   median <= 16 ms.
2. GUI stall while the engine thread converts 1 TiB of that TD (with QEMU's
   discard, so the guest_memfd range is punched too): the longest gap of a 5 ms
   QTimer heartbeat from the submit until the map shows the result.  Target:
   <= 50 ms.
3. Launch to the default scene fully drawn, measured after the imports in a
   fresh process.  Target: <= 2 s.

    .venv/bin/python benchmarks/bench_app.py [--quick] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

T = 1 << 40
SIZE = (1600, 1000)


def build_big_td(n_extents: int = 100_000, n_leaves: int = 6000, seed: int = 0):
    """A 4 TiB TD (2 GiB low + the rest above 4 GiB, one guest_memfd), all private, with
    n_extents/2 small shared ranges and n_leaves accepted or shared-touched pages."""
    import numpy as np

    from imemviz.io.session import Session
    from imemviz.model import VM, VMConfig
    from imemviz.model import ops as O

    cfg = {"type": "tdx", "host_memory": "64G", "tdx_private_max_level": "2M", "gmem_max_order": 9}
    vm = VM(VMConfig.from_dict(cfg))
    vm.apply(O.CreateGuestMemfd(size=4 * T))
    vm.apply(
        O.SetUserMemoryRegion2(
            0,
            flags=4,
            guest_phys_addr=0,
            memory_size=2 << 30,
            userspace_addr=0x100000000000,
            guest_memfd=3,
        )
    )
    vm.apply(
        O.SetUserMemoryRegion2(
            1,
            flags=4,
            guest_phys_addr=4 << 30,
            memory_size=4 * T - (2 << 30),
            userspace_addr=0x100080000000,
            guest_memfd=3,
            guest_memfd_offset=2 << 30,
        )
    )
    vm.apply(O.SetMemoryAttributes(0, 2 << 30, 8))
    vm.apply(O.SetMemoryAttributes(4 << 30, 4 * T - (2 << 30), 8))
    vm.apply(O.TdxFinalizeVm())
    rng = np.random.default_rng(seed)
    total = (4 * T + (2 << 30)) >> 12
    starts = np.sort(rng.choice(total // 16, n_extents // 2, replace=False)) * 16
    for s in starts.tolist():
        if vm.memslots.lookup(s) is not None:
            vm.apply(O.SetMemoryAttributes(s << 12, 4 << 12, 0))
    for s in rng.choice(starts, min(n_leaves, len(starts)), replace=False).tolist():
        if vm.memslots.lookup(s) is None:
            continue
        vm.apply(O.GuestAccept((s + 8) << 12))  # a private page: AUG + accept
        vm.apply(O.GuestAccess(s << 12, write=True, value=1))  # a shared page (THP 4K)
    return Session({"vm": cfg}, vm)


def _app():
    from PySide6.QtWidgets import QApplication

    sys.setswitchinterval(float(os.environ.get("SWITCH", "0.0005")))  # as run_app does
    return QApplication.instance() or QApplication(sys.argv[:1])


def _wait(app, pred, timeout: float = 60.0) -> None:
    """Run the event loop until pred() holds, sleeping while there is nothing to do (as the
    app's own event loop does, leaving the GIL to the engine thread)."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.perf_counter() + timeout
    tick = QTimer()
    tick.start(50)  # wakes the loop now and then to look at the deadline
    try:
        while not pred():
            app.processEvents(QEventLoop.WaitForMoreEvents)
            if time.perf_counter() > deadline:
                raise TimeoutError("timed out")
    finally:
        tick.stop()


def _idle(app, ms: int = 60) -> None:
    """Let the event loop run for `ms` (pending paints, deferred refreshes)."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


def _window(app, session):
    import tempfile

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
    engine.set_session(session)
    _wait(app, w.wait_drawn)
    return w, engine


ZOOMS = (("whole guest", 0), ("1/64", 6), ("1/4096", 12), ("pages", 30))


def bench_redraw(
    app, w, n_ops: int, zooms: tuple[tuple[str, int], ...] = ZOOMS
) -> list[tuple[str, int, float, float, float, float, float]]:
    """(zoom name, pages per row, median ms, max ms, with marks: median ms, max ms, median
    GUI-thread CPU ms from the submit to the marked paint)."""
    from imemviz.app.panes.map_frame import on_screen
    from imemviz.io import plans

    pane = w.map
    engine = w.engine
    lay = pane.layout_
    vm = engine.worker.session.vm  # read-only here: the engine thread is idle between ops
    out = []
    pane.zoom_all()
    fit = lay.row_gfns
    for name, steps in zooms:
        pane.zoom_all()
        base = 1 << 30  # 4 GiB + ... : high memory, where the extents are
        pane.zoom(steps, base)
        _wait(app, w.wait_drawn)
        times = []
        marked_times = []
        cpu_times = []
        painted: list[float] = []
        marked: list[float] = []

        cpu_at: list[float] = []

        def paint_now(painted: list[float] = painted, cpu_at: list[float] = cpu_at) -> None:
            # the first paint of the new raster
            pane.view.viewport().repaint()
            painted.append(time.perf_counter())
            cpu_at.append(time.thread_time())

        def paint_marks(
            changes,
            marked: list[float] = marked,
            p: list[float] = painted,
            cpu_at: list[float] = cpu_at,
        ) -> None:
            # The op's marks (its ActionRecord comes just before the raster): the raster's
            # paint shows them; should they come later, the paint that adds them counts.
            if changes is None:
                return
            if p:
                pane.view.viewport().repaint()
            marked.append(time.perf_counter())
            cpu_at.append(time.thread_time())

        pane.drawn.connect(paint_now)
        w.marks.marked.connect(paint_marks)
        used: set[int] = set()
        # The first op at a folded zoom unfolds its neighbourhood (the view moves and
        # Follow frames the page again): a warm-up, not counted.
        warm = 1
        while len(times) < n_ops and len(used) < 4 * n_ops:
            # Pages on screen now (an op's refold can move the rows): a user's clicks.
            cand = [
                g
                for g in _candidates(lay, vm, 2 * n_ops + 5)
                if g not in used and on_screen(lay, [(g, g + 1)])
            ]
            if not cand:
                break
            g = cand[len(used) * 7 % len(cand)]
            used.add(g)
            # Select the page first, as a click does: what you point at is not framed, so
            # this measures the redraw (bench_framing measures the framing).
            w.selection.set_gfn(g)
            _idle(app)  # the previous op's other repaints (log, inspector) are done
            version = engine.snapshot.version
            painted.clear()
            marked.clear()
            cpu_at.clear()
            c0 = time.thread_time()
            t0 = time.perf_counter()
            engine.submit(plans.accept(g))
            _wait(
                app,
                lambda v=version, p=painted, m=marked: (
                    engine.snapshot.version > v and w.wait_drawn() and bool(p) and bool(m)
                ),
            )
            if warm:
                warm -= 1
                continue
            times.append((painted[0] - t0) * 1000)
            # The first paint showing the new raster and the marks both.
            marked_times.append((max(painted[0], marked[0]) - t0) * 1000)
            cpu_times.append((max(cpu_at[:2]) - c0) * 1000)
        pane.drawn.disconnect(paint_now)
        w.marks.marked.disconnect(paint_marks)
        out.append(
            (
                name,
                lay.row_gfns,
                statistics.median(times),
                max(times),
                statistics.median(marked_times),
                max(marked_times),
                statistics.median(cpu_times),
            )
        )
        print(
            f"  redraw at {name:12s} (row {lay.row_gfns} pages, fit {fit}): "
            f"median {out[-1][2]:.1f} ms, max {out[-1][3]:.1f} ms over {len(times)} ops; "
            f"with marks median {out[-1][4]:.1f} ms, max {out[-1][5]:.1f} ms; "
            f"GUI CPU median {out[-1][6]:.1f} ms"
        )
    return out


def _candidates(lay, vm, n: int) -> list[int]:
    """Private pages with no leaf, in rows on screen (not in fold bands), spread out."""
    from imemviz.app.panes.map_frame import visible_part

    spans = [(g, g + rows * lay.row_gfns) for g, rows, fill in lay.raster_pieces() if fill < 0]
    # The raster's pieces reach past the view (margin rows): only what is on screen.
    spans = [p for p in (visible_part(lay, a, b) for a, b in spans) if p is not None]
    total = sum(b - a for a, b in spans)
    step = max(1, total // (4 * n))
    out = []
    for a, b in spans:
        for g in range(a, min(b, lay.extent), step):
            if (
                vm.memslots.lookup(g) is not None
                and vm.attr_private(g)
                and vm.private.lookup(g) is None
            ):
                out.append(g)
    return out[:n]


def bench_framing(app, w, n_ops: int) -> tuple[float, float, float, int]:
    """Follow changes on: ops on pages the map does not show legibly (not selected, at the
    whole-guest zoom).  (median ms from submit to the first frame of the move, median ms
    to the framed view drawn after its animation, median GUI ms per animation step,
    animation steps in all)."""
    from imemviz.app.panes.map_frame import needs_frame
    from imemviz.io import plans

    pane, engine = w.map, w.engine
    lay = pane.layout_
    vm = engine.worker.session.vm
    firsts, ends, steps = [], [], []
    anim = pane.animator
    orig = anim._step

    def timed_step(t, orig=orig) -> None:
        t0 = time.perf_counter()
        orig(t)
        pane.view.viewport().repaint()
        steps.append((time.perf_counter() - t0) * 1000)

    anim._anim.valueChanged.disconnect(orig)
    anim._anim.valueChanged.connect(timed_step)
    try:
        for _ in range(n_ops):
            pane.zoom_all()
            w.selection.clear()
            _wait(app, w.wait_drawn)
            _idle(app)
            g = _candidates(lay, vm, 50)[len(firsts) * 3 % 50]
            version = engine.snapshot.version
            n0 = len(steps)
            t0 = time.perf_counter()
            engine.submit(plans.accept(g))
            _wait(app, lambda v=version, n0=n0: engine.snapshot.version > v and len(steps) > n0)
            firsts.append((time.perf_counter() - t0) * 1000)
            _wait(app, w.wait_drawn)
            pane.view.viewport().repaint()
            ends.append((time.perf_counter() - t0) * 1000)
            framed = w.navigator.last_framed
            assert framed and not needs_frame(lay, framed), "not framed"
    finally:
        anim._anim.valueChanged.disconnect(timed_step)
        anim._anim.valueChanged.connect(orig)
    return (
        statistics.median(firsts),
        statistics.median(ends),
        statistics.median(steps),
        len(steps),
    )


def bench_overview(w, runs: int = 20) -> tuple[float, float, float, int]:
    """Engine-thread cost per op of what the overview and folding add: (median ms of the
    overview's raster, of the foldable runs for the snapshot, GUI ms to refold the
    map's zoom; long runs)."""
    from imemviz.app.panes.map_fold import LongRuns

    worker = w.engine.worker
    req = w.minimap._req
    cache = worker._cache
    lay = w.map.layout_.copy()
    mm, lr, fold = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        worker._raster_answer(req)
        t1 = time.perf_counter()
        runs_ = LongRuns((cache.bounds, cache.codes))
        t2 = time.perf_counter()
        lay.set_runs(runs_)
        lay.foldmap()
        t3 = time.perf_counter()
        mm.append((t1 - t0) * 1000)
        lr.append((t2 - t1) * 1000)
        fold.append((t3 - t2) * 1000)
    return statistics.median(mm), statistics.median(lr), statistics.median(fold), len(runs_)


def bench_stall(app, w) -> tuple[float, float, float]:
    """(max heartbeat gap ms, op ms, end-to-end ms) of converting 1 TiB with discard."""
    from PySide6.QtCore import QTimer

    from imemviz.io import plans

    pane, engine = w.map, w.engine
    pane.zoom_all()
    _wait(app, w.wait_drawn)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def beat() -> None:
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1000)
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(beat)
    records = []
    engine.opApplied.connect(records.append)
    start, end = (4 << 30) >> 12, ((4 << 30) + T) >> 12
    timer.start()
    _wait(app, lambda: len(gaps) > 5)
    version = engine.snapshot.version
    t0 = time.perf_counter()
    last[0] = t0
    engine.submit(lambda vm: plans.convert(vm, start, end, private=False, discard=True))
    _wait(app, lambda: engine.snapshot.version > version and w.wait_drawn())
    pane.view.viewport().repaint()
    t1 = time.perf_counter()
    timer.stop()
    engine.opApplied.disconnect(records.append)
    op_ms = sum(r.seconds for r in records) * 1000
    return max(gaps), op_ms, (t1 - t0) * 1000


def bench_undo(app, w, n: int = 5) -> tuple[float, float]:
    """(median ms, max GUI gap ms) of undoing an action, until the window is settled: the
    map shows the result and Follow's framing animation (420 ms) is over.  Also printed:
    the median until the map first painted the undone state (what bench_undo.py calls
    latency)."""
    from PySide6.QtCore import QTimer

    engine = w.engine
    painted: list[float] = []
    want = [0]

    def paint_now() -> None:
        snap = engine.snapshot
        if snap is not None and snap.version > want[0] and not painted:
            w.map.view.viewport().repaint()
            painted.append(time.perf_counter())

    w.map.drawn.connect(paint_now)
    to_paint: list[float] = []
    gaps: list[float] = []
    last = [time.perf_counter()]

    def beat() -> None:
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1000)
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(beat)
    timer.start()
    times = []
    worst = 0.0
    try:
        for _ in range(n):
            _idle(app, 100)
            gaps.clear()
            last[0] = time.perf_counter()
            version = engine.snapshot.version
            want[0] = version
            painted.clear()
            t0 = time.perf_counter()
            engine.undo()
            _wait(app, lambda v=version: engine.snapshot.version > v and w.wait_drawn())
            times.append((time.perf_counter() - t0) * 1000)
            if painted:
                to_paint.append((painted[0] - t0) * 1000)
            worst = max([worst, *gaps])
    finally:
        timer.stop()
        w.map.drawn.disconnect(paint_now)
    if to_paint:
        print(f"  undo: map painted after a median {statistics.median(to_paint):.0f} ms")
    return statistics.median(times), worst


def launch_child() -> None:
    """In a fresh process: imports first, then time to the default scene drawn."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication  # noqa: F401

    import imemviz.app.window  # noqa: F401
    from imemviz.app.main import load_initial

    t0 = time.perf_counter()
    app = _app()
    import tempfile

    from imemviz.app.window import MainWindow
    from imemviz.app.worker import Engine

    engine = Engine()
    engine.start()
    w = MainWindow(
        engine, QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.IniFormat)
    )
    w.resize(*SIZE)
    w.show()
    load_initial(w, None)
    _wait(app, w.wait_drawn)
    w.repaint()
    print(f"{(time.perf_counter() - t0) * 1000:.0f}")
    w.close()
    engine.stop()


def bench_launch(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        p = subprocess.run(
            [sys.executable, __file__, "--launch-child"],
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
        )
        out.append(float(p.stdout.strip().splitlines()[-1]))
    return out


def write_section(path: str, text: str) -> None:
    """Replace (or append) the "## Desktop app" section of a markdown file."""
    head = "## Desktop app"
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="10,000 extents, fewer ops")
    ap.add_argument("--write", metavar="MD", help="write the results into this markdown file")
    ap.add_argument("--launch-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.launch_child:
        launch_child()
        return
    n_ext = 10_000 if a.quick else 100_000
    n_ops = 10 if a.quick else 40
    app = _app()
    t = time.perf_counter()
    session = build_big_td(n_ext)
    build_s = time.perf_counter() - t
    from imemviz.model.raster import step_function

    runs = len(step_function(session.vm, 0, (4 * T + (2 << 30)) >> 12)[1])
    n_attr = len(session.vm.attributes)
    print(
        f"4 TiB TD built in {build_s:.1f} s: {runs} distinct runs of codes, "
        f"{len(session.vm.attributes)} attribute extents"
    )
    w, engine = _window(app, session)
    try:
        redraw = bench_redraw(app, w, n_ops)
        overview = bench_overview(w)
        print(
            f"  per op: overview raster {overview[0]:.2f} ms, foldable runs "
            f"{overview[1]:.2f} ms (engine thread), refold {overview[2]:.2f} ms (GUI); "
            f"{overview[3]} long runs"
        )
        framing = bench_framing(app, w, 5 if a.quick else 12)
        print(
            f"  framing an op: first frame after {framing[0]:.0f} ms, framed and drawn "
            f"after {framing[1]:.0f} ms, {framing[2]:.1f} ms GUI per animation step "
            f"({framing[3]} steps)"
        )
        stall, op_ms, e2e = bench_stall(app, w)
        print(
            f"  1 TiB conversion: max GUI stall {stall:.1f} ms (op {op_ms:.0f} ms, "
            f"submit to drawn {e2e:.0f} ms)"
        )
        undo_ms, undo_gap = bench_undo(app, w)
        print(f"  undo: median {undo_ms:.0f} ms, max GUI stall {undo_gap:.1f} ms")
    finally:
        w.close()
        engine.stop()
    launches = bench_launch(3 if a.quick else 5)
    print(
        f"  launch to default scene drawn: median {statistics.median(launches):.0f} ms "
        f"({', '.join(f'{x:.0f}' for x in launches)})"
    )
    if a.write:
        import textwrap

        def para(text: str) -> list[str]:
            return [*textwrap.wrap(text, 78), ""]

        lines = [
            "## Desktop app",
            "",
            *para(
                f"`benchmarks/bench_app.py`, offscreen, window {SIZE[0]}x{SIZE[1]}, "
                f"{platform.python_implementation()} {platform.python_version()}, "
                f"{os.cpu_count()} CPUs. Guest: a 4 TiB TD (2 GiB low RAM + 4 TiB - 2 GiB "
                f"above 4 GiB, one guest_memfd) with {n_attr:,} attribute extents and "
                f"{runs:,} distinct runs of map codes."
            ),
            "| measurement | target | result |",
            "| --- | --- | --- |",
        ]
        for name, row, _med, _mx, mmed, mmx, _cpu in redraw:
            lines.append(
                f"| redraw after an op with its change marks, zoom {name} (row = {row:,} "
                f"pages) | median <= 16 ms | median {mmed:.1f} ms, max {mmx:.1f} ms |"
            )
        lines.append(
            f"| per op: the overview's raster (engine thread) | - | median {overview[0]:.2f} ms |"
        )
        lines.append(
            f"| per op: foldable runs for the snapshot (engine thread) / refolding the "
            f"map's zoom (GUI) | - | median {overview[1]:.2f} ms / {overview[2]:.2f} ms "
            f"({overview[3]:,} long runs) |"
        )
        lines.append(
            f"| framing an op on a page too small to see (Follow changes) | - | first "
            f"frame of the move after {framing[0]:.0f} ms (median), framed and drawn after "
            f"{framing[1]:.0f} ms (the animation lasts 420 ms); {framing[2]:.1f} ms of GUI "
            f"per animation step |"
        )
        lines.append(
            f"| GUI stall while converting 1 TiB (+ punch hole) | max <= 50 ms | "
            f"max {stall:.1f} ms (the op took {op_ms:.0f} ms, drawn after "
            f"{e2e:.0f} ms) |"
        )
        lines.append(
            f"| undo of one action (restore a checkpoint, replay, redraw what it changed) "
            f"| - | median {undo_ms:.0f} ms, max GUI stall {undo_gap:.1f} ms |"
        )
        lines.append(
            f"| launch to the default scene drawn (after imports) | <= 2 s | median "
            f"{statistics.median(launches) / 1000:.2f} s |"
        )
        lines += [""]
        lines += para(
            "Redraw = submit the op (a TDX accept of a visible page) until the map "
            "has repainted with the new state and the op's change marks: the engine thread "
            "applies it, splices the changed range into its cached step function, "
            "rasterises the visible rows and sends the action's record (the marks) just "
            "before the raster, so both land in one frame; the GUI sets the image and the "
            "marks and paints. The stall is the longest gap of a 5 ms QTimer heartbeat on "
            "the GUI thread from the submit to the map drawn. The log and the inspector "
            "update up to 40 ms after the map on purpose, so they never share its frame. "
            "Undo restores the newest checkpoint (a deep copy: the leaf and folio indexes "
            "copied whole, a few ms) and replays the ops after it, then redraws only the "
            "ranges the undone ops had changed. Numbers move between runs on this 2-core "
            "machine (two busy threads: the GUI and the engine), and more when other jobs "
            "share it."
        )
        write_section(a.write, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
