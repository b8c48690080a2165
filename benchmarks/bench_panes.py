"""Desktop app, part 2 panes, offscreen.

1. S-EPT / EPT entries: a 1,000,000-row table (the arrays the engine feed
   publishes, synthetic: random gfns, levels, pfns, states) in a shown
   QTableView: sort (by pfn, level, state, gfn), filter (root / level / state),
   scroll (jump to a random row); each timed with the repaint.  Target:
   median <= 50 ms.
2. Event log: 1,000,000 events (a TDX zap's events repeated) in a shown table:
   kind filters, scroll, and appending one op's events.  Target: median <= 50 ms.
3. Host folios: redraw of the pfn space and of the guest_memfd offset space of a
   4 TiB TD (bench_app's, 2M folios) at several zooms and positions.  Target:
   median <= 16 ms.

    .venv/bin/python benchmarks/bench_panes.py [--quick] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(__file__))

N = 1_000_000


def _timed(fn, view, reps: int) -> list[float]:
    out = []
    for k in range(reps):
        t = time.perf_counter()
        fn(k)
        view.viewport().repaint()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _stats(ms: list[float]) -> tuple[float, float]:
    return statistics.median(ms), max(ms)


def synthetic_leaves(n: int):
    import numpy as np

    from imemviz.app.feeds import LeafArrays

    rng = np.random.default_rng(0)
    gfn = np.sort(rng.choice(1 << 30, n, replace=False)).astype(np.int64)
    pfn = rng.integers(0, 1 << 24, n).astype(np.int64)
    root = rng.integers(0, 2, n).astype(np.uint8)
    level = rng.choice([1, 1, 1, 1, 2, 3], n).astype(np.uint8)
    state = rng.choice([0, 0, 0, 1], n).astype(np.uint8)
    slot = rng.integers(0, 3, n).astype(np.int32)
    # The engine feed sorts these off the GUI thread (feeds.leaf_arrays).
    orders = {c: np.argsort(a, kind="stable") for c, a in ((0, root), (3, level), (5, state))}
    orders[6] = np.argsort(slot.astype(np.int16), kind="stable")
    return LeafArrays(
        1,
        root,
        gfn,
        level,
        pfn,
        state,
        slot,
        np.zeros((0, 3), np.int64),
        True,
        np.argsort(pfn, kind="stable"),
        orders,
    )


def bench_entries(app, reps: int) -> dict[str, tuple[float, float]]:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QHeaderView, QTableView

    from imemviz.app.panes.entries import EntriesModel

    model = EntriesModel()
    model.set_leaves(synthetic_leaves(N))
    view = QTableView()
    view.setModel(model)
    view.verticalHeader().hide()
    view.verticalHeader().setSectionResizeMode(QHeaderView.Fixed)
    view.resize(1200, 700)
    view.show()
    app.processEvents()
    cols = [
        (4, Qt.AscendingOrder),
        (3, Qt.DescendingOrder),
        (5, Qt.AscendingOrder),
        (1, Qt.DescendingOrder),
        (0, Qt.AscendingOrder),
        (6, Qt.AscendingOrder),
    ]
    out = {}
    model.sort(3, Qt.AscendingOrder)  # the first sort of a column builds its order once
    out["sort"] = _stats(_timed(lambda k: model.sort(*cols[k % len(cols)]), view, reps))
    filters = [
        ({0}, None, None),
        (None, {1}, None),
        (None, None, {1}),
        ({1}, {2, 3}, {0}),
        (None, None, None),
    ]
    out["filter"] = _stats(
        _timed(lambda k: model.set_filter(*filters[k % len(filters)]), view, reps)
    )
    model.set_filter()
    # After every op the feed publishes new arrays: the table re-applies sort and filter.
    model.sort(3, Qt.DescendingOrder)
    model.set_filter({0}, None, None)
    datas = [synthetic_leaves(N), model.leaves]
    out["new data (sorted by level, filtered)"] = _stats(
        _timed(lambda k: model.set_leaves(datas[k % 2]), view, reps)
    )
    model.set_filter()
    rng = random.Random(1)
    sb = view.verticalScrollBar()
    out["scroll"] = _stats(_timed(lambda k: sb.setValue(rng.randrange(sb.maximum())), view, reps))
    out["find gfn"] = _stats(
        _timed(
            lambda k: view.scrollTo(model.index(model.find_gfn(rng.randrange(1 << 30)), 0)),
            view,
            reps,
        )
    )
    view.close()
    return out


def bench_events(app, reps: int) -> dict[str, tuple[float, float]]:
    from PySide6.QtWidgets import QHeaderView, QTableView

    from imemviz.app.panes.event_log import EventLogModel
    from imemviz.model.protocols import EVENT_NAMES

    one = []
    for k in range(8):
        g = 0x800 + k
        one += [
            (0, "TDH.MEM.RANGE.BLOCK", g, 1),
            (0, "TDH.MEM.TRACK", k),
            (0, "TDH.MEM.PAGE.REMOVE", g, 1, 0x1000 + k),
            (0, "TDH.PHYMEM.PAGE.WBINVD", 0x1000 + k),
            (0, "kvm_tdp_mmu_spte_changed", "mirror", g, 1, 0x1000 + k, -1),
            (0, "kvm_gmem_folio_free", 3, g, 0, 0x1000 + k),
        ]
    events = [(i // 500, *ev[1:]) for i, ev in enumerate(one * (N // len(one)))]
    model = EventLogModel()
    model.reset(events)
    view = QTableView()
    view.setModel(model)
    view.verticalHeader().hide()
    view.verticalHeader().setSectionResizeMode(QHeaderView.Fixed)
    view.resize(1200, 700)
    view.show()
    app.processEvents()
    sets = [
        {"TDH.MEM.PAGE.REMOVE"},
        {n for n in EVENT_NAMES if n.startswith("TDH")},
        {"kvm_gmem_folio_free", "kvm_tdp_mmu_spte_changed"},
        set(EVENT_NAMES),
    ]
    out = {"filter": _stats(_timed(lambda k: model.set_enabled(sets[k % len(sets)]), view, reps))}
    model.set_enabled(None)
    rng = random.Random(2)
    sb = view.verticalScrollBar()
    out["scroll"] = _stats(_timed(lambda k: sb.setValue(rng.randrange(sb.maximum())), view, reps))

    def append(k: int) -> None:
        model.append([(10_000 + k, *ev[1:]) for ev in one])
        view.scrollToBottom()

    out["append an op + follow"] = _stats(_timed(append, view, reps))
    view.close()
    return out


def bench_folios(app, reps: int, quick: bool) -> dict[str, tuple[float, float]]:
    from bench_app import build_big_td

    from imemviz.app.feeds import HostSpaces, PaneFeed
    from imemviz.app.panes.folios import PFN_MODE, FoliosPane
    from imemviz.app.selection import SelectionModel
    from imemviz.app.worker import Engine
    from imemviz.model.host_raster import file_space, pfn_space

    s = build_big_td(n_extents=10_000 if quick else 100_000, n_leaves=2000 if quick else 6000)
    vm = s.vm
    t = time.perf_counter()
    spaces = HostSpaces(1, pfn_space(vm), {fd: file_space(vm, fd) for fd in vm.files})
    build_ms = (time.perf_counter() - t) * 1000
    engine = Engine()  # not started: the pane only needs its signals
    pane = FoliosPane(engine, PaneFeed(engine), SelectionModel())
    pane.resize(1400, 420)
    pane.show()
    pane.set_spaces(spaces)
    app.processEvents()
    rng = random.Random(3)
    out = {}
    for mode, name in ((PFN_MODE, "pfn space (64 GiB host)"), (3, "guest_memfd (4 TiB)")):
        pane.set_mode(mode)

        def step(k: int, limit: int = pane.space().limit) -> None:
            pane.set_zoom(k % 12, rng.randrange(limit))

        out[f"redraw, {name}"] = _stats(_timed(step, pane.view, reps))
    out["_build_ms"] = (build_ms, len(spaces.pfn) + sum(len(f) for f in spaces.files.values()))
    pane.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", metavar="MD")
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    reps = 15 if args.quick else 40
    results = {
        "S-EPT / EPT entries, 1,000,000 rows": bench_entries(app, reps),
        "Event log, 1,000,000 events": bench_events(app, reps),
        "Host folios, 4 TiB TD": bench_folios(app, reps, args.quick),
    }
    lines = []
    for group, res in results.items():
        for what, (med, mx) in res.items():
            if what.startswith("_"):
                continue
            target = 16 if group.startswith("Host") else 50
            ok = "ok" if med <= target else "OVER"
            lines.append(f"| {group} | {what} | {med:.1f} | {mx:.1f} | {target} | {ok} |")
    build_ms, n = results["Host folios, 4 TiB TD"]["_build_ms"]
    table = "\n".join(
        [
            "| pane | operation | median ms | max ms | target ms | |",
            "| --- | --- | --- | --- | --- | --- |",
            *lines,
        ]
    )
    text = (
        f"{table}\n\nBuilding the host spaces of that TD (engine thread, once per state): "
        f"{build_ms:.0f} ms for {n:,} intervals. The entries table's data for a million "
        "leaves (`feeds.leaf_arrays`: the sparse indexes to numpy, the sort orders) costs "
        "~0.2 s on the engine thread per command while the entries pane is visible (not "
        "at all while it is hidden). The entries rows are synthetic (random gfns, levels, "
        "pfns, states in the arrays the feed publishes): building a VM with a million leaves "
        "takes minutes and measures the engine, not the pane.\n\n"
        f"Measured with `benchmarks/bench_panes.py{' --quick' if args.quick else ''}` on "
        f"{platform.machine()} ({os.cpu_count()} cores), Python {platform.python_version()}, "
        f"offscreen; {reps} runs each; every time includes the repaint of the view.\n"
    )
    print(text)
    if args.write:
        _write(args.write, text)


SECTION = "## Desktop app, part 2 panes"


def _write(path: str, text: str) -> None:
    intro = (
        f"{SECTION}\n\n"
        "The S-EPT / EPT table and the event log with a million rows (sort, filter, scroll),\n"
        "and a redraw of the host folio pane for a 4 TiB TD "
        "(`benchmarks/bench_panes.py`).\n\n"
    )
    with open(path, encoding="utf-8") as f:
        doc = f.read()
    if SECTION in doc:
        start = doc.index(SECTION)
        nxt = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + intro + text + ("" if nxt < 0 else "\n" + doc[nxt + 1 :])
    else:
        doc = doc.rstrip("\n") + "\n\n" + intro + text
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
