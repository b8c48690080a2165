"""One timeline for the session: the scrubber on a live session (seek keeps redo), one op
numbering in the log, event log, step-through and counters through undo and seeks, and
seeking, undo and opening run on the engine thread."""

from __future__ import annotations

import threading

import pytest

from imemviz.io import plans
from imemviz.io.script import read_script, start_vm
from imemviz.io.session import Session
from imemviz.model.query import stats_dict

from .conftest import wait_drawn, wait_idle
from .helpers import session_vm

pytestmark = pytest.mark.qt


def actions(w, qtbot) -> None:
    """Three actions on the default scene: 2 ops, 1 op, 2 ops (session ops #0-#4)."""
    w.engine.submit(lambda vm: plans.accept_and_touch(vm, 0x20000))
    w.engine.submit(lambda vm: plans.accept(0x20001))
    w.engine.submit(lambda vm: plans.convert(vm, 0x20000, 0x20002, private=False, discard=True))
    wait_idle(qtbot, w.engine)
    wait_drawn(qtbot, w)


def scene_window(make_window, qtbot):
    w = make_window(Session.scene("default"))
    w.panes2.feed.always = True
    return w


def counters_x(w) -> list[int]:
    c = w.panes2.counters
    c.flush()
    return c.ops.tolist()


def test_one_op_numbering_across_the_panes(make_window, qtbot) -> None:
    w = scene_window(make_window, qtbot)
    s = w.engine.worker.session
    assert s.op_base > 0  # the scene's own ops came first: the VM counts them
    actions(w, qtbot)
    # The log numbers the session's ops from #0 ...
    w.log.flush()
    assert any(line.startswith("#0 guest_accept") for line in w.log.lines)
    # ... and so do the event log (the scene's own events say "start") ...
    m = w.panes2.events.model
    first, evs = m.op_events(0)
    assert evs and evs[0][0] == s.op_base
    assert m.data(m.index(m.row_of(first), 0)) == "0"
    assert m.data(m.index(0, 0)) == "start"
    # ... the step-through (F8 opens the conversion, op #3) ...
    w.panes2.step_action.trigger()
    assert w.panes2.stepper.op == 3 and "op #3" in w.panes2.stepper.title.text()
    # ... and the counters: the start at -1, then one point per op.
    qtbot.waitUntil(lambda: counters_x(w) == [-1, 0, 1, 2, 3, 4], timeout=10_000)


def test_undo_and_seek_cut_the_counters_back_not_restart_them(make_window, qtbot) -> None:
    w = scene_window(make_window, qtbot)
    actions(w, qtbot)
    qtbot.waitUntil(lambda: counters_x(w) == [-1, 0, 1, 2, 3, 4], timeout=10_000)
    full = w.panes2.counters.data.copy()
    w.engine.undo()
    wait_idle(qtbot, w.engine)
    qtbot.waitUntil(lambda: counters_x(w) == [-1, 0, 1, 2], timeout=10_000)
    assert (w.panes2.counters.data == full[:4]).all()
    # The timeline: back to after the first action, then forwards to the end again.
    w.presenter.replay.seek(1)
    wait_idle(qtbot, w.engine)
    qtbot.waitUntil(lambda: counters_x(w) == [-1, 0, 1], timeout=10_000)
    m = w.panes2.events.model
    assert max(m.session_ops()) == 0  # the event log: op #0 (#1, a plain read, has none)
    w.presenter.replay.seek(3)
    wait_idle(qtbot, w.engine)
    qtbot.waitUntil(lambda: counters_x(w) == [-1, 0, 1, 2, 3, 4], timeout=10_000)
    assert (w.panes2.counters.data == full).all()
    assert max(m.session_ops()) == 4


def test_the_live_scrubber_is_undo_to_a_point_keeping_redo(make_window, qtbot) -> None:
    w = scene_window(make_window, qtbot)
    actions(w, qtbot)
    c, pane = w.presenter.replay, w.presenter.pane
    assert not c.active and c.length == 3 and c.position == 3
    assert pane.model.rowCount() == 4 and pane.title.text().startswith("This session")
    assert "Convert to shared + discard" in pane.model.data(pane.model.index(3))
    pane.slider.setValue(1)
    wait_idle(qtbot, w.engine)
    wait_drawn(qtbot, w)
    snap = w.engine.snapshot
    assert snap.position == 1 and snap.length == 3 and snap.can_redo and snap.op_count == 2
    assert session_vm(w).private.lookup(0x20001) is None
    assert w.message.text().startswith("Back to op #1 (accept and touch)")
    # Step forwards = redo of the next action.
    pane.step_btn.click()
    wait_idle(qtbot, w.engine)
    assert w.engine.snapshot.position == 2 and session_vm(w).private.lookup(0x20001)
    # A new action replaces the undone future.
    w.engine.submit(plans.guest_access(0x20003))
    wait_idle(qtbot, w.engine)
    qtbot.waitUntil(lambda: c.length == 3 and c.position == 3, timeout=10_000)
    assert not w.engine.snapshot.can_redo


def test_seek_undo_and_open_run_on_the_engine_thread(make_window, qtbot, monkeypatch, tmp_path):
    w = scene_window(make_window, qtbot)
    engine_thread: list[int] = []
    w.engine.call(lambda s: engine_thread.append(threading.get_ident()))
    wait_idle(qtbot, w.engine)
    seen: dict[str, set[int]] = {}

    def spy(name, fn):
        def wrapper(*a, **kw):
            seen.setdefault(name, set()).add(threading.get_ident())
            return fn(*a, **kw)

        return wrapper

    monkeypatch.setattr(Session, "seek", spy("seek", Session.seek))
    monkeypatch.setattr(Session, "undo", spy("undo", Session.undo))
    monkeypatch.setattr(Session, "_rebuild", spy("rebuild", Session._rebuild))
    from_ops = Session.from_ops.__func__
    monkeypatch.setattr(
        Session, "from_ops", classmethod(lambda cls, *a, **k: spy("open", from_ops)(cls, *a, **k))
    )
    actions(w, qtbot)
    w.engine.undo()
    w.presenter.replay.seek(0)
    rec = tmp_path / "r.jsonl"
    w.engine.save_recording(str(rec))
    wait_idle(qtbot, w.engine)
    w.engine.open(str(rec))
    wait_idle(qtbot, w.engine)
    assert w.engine.snapshot.source == str(rec)
    w.presenter.replay.load(str(rec))
    qtbot.waitUntil(lambda: w.presenter.replay.active, timeout=20_000)
    w.presenter.replay.seek(0)
    wait_idle(qtbot, w.engine)
    gui = threading.get_ident()
    assert set(seen) == {"seek", "undo", "rebuild", "open"}
    for name, threads in seen.items():
        assert threads == set(engine_thread) and gui not in threads, name


def test_recording_follows_seeks(make_window, qtbot, tmp_path) -> None:
    w = scene_window(make_window, qtbot)
    rec = w.presenter.recorder
    path = tmp_path / "seek.jsonl"
    rec.start(path)
    actions(w, qtbot)
    assert rec.ops_written == 5
    w.presenter.replay.seek(1)  # back: the file is rewritten without the undone ops
    wait_idle(qtbot, w.engine)
    assert rec.ops_written == 2
    w.presenter.replay.seek(3)  # forwards again: appended
    wait_idle(qtbot, w.engine)
    assert rec.ops_written == 5
    rec.stop()
    wait_idle(qtbot, w.engine)
    script = read_script(path)
    vm = start_vm(script.header.start)
    for _line, op, _t in script.ops:
        vm.apply(op)
    assert stats_dict(vm) == stats_dict(session_vm(w))


def test_undo_and_seeks_redraw_exactly_what_a_full_redraw_would(make_window, qtbot) -> None:
    """Undo and short seeks splice only the ranges the ops crossed into the map's cached
    step function: it must equal one built from scratch after every move."""
    import numpy as np

    from imemviz.model.raster import StepCache

    w = scene_window(make_window, qtbot)
    actions(w, qtbot)
    w.engine.submit(lambda vm: plans.punch_hole(vm, 0x20000, 0x20004))
    w.engine.submit(plans.touch_without_accept(0x20010))
    wait_idle(qtbot, w.engine)
    worker = w.engine.worker
    bad: list[str] = []

    def same(label: str):
        def check(s) -> None:
            fresh = StepCache(s.vm, worker._extent(s.vm))
            c = worker._cache
            if not (
                np.array_equal(c.bounds, fresh.bounds) and np.array_equal(c.codes, fresh.codes)
            ):
                bad.append(label)

        return check

    moves = [
        ("undo", w.engine.undo),
        ("undo", w.engine.undo),
        ("redo", w.engine.redo),
        ("seek 1", lambda: w.engine.seek(1)),
        ("seek 4", lambda: w.engine.seek(4)),
        ("seek 0", lambda: w.engine.seek(0)),
        ("seek 5", lambda: w.engine.seek(5)),
    ]
    for label, move in moves:
        move()
        w.engine.call(same(label))
    wait_idle(qtbot, w.engine)
    assert not bad
