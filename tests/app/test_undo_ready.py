"""The engine readies the next undo while it is idle (Session.prepare), and an undo, redo
or new action in the app then gives the state a fresh replay of the kept ops gives."""

from __future__ import annotations

from imemviz.io import plans
from imemviz.io.session import Session
from imemviz.io.state import state_document

from .conftest import td_session, wait_drawn


def _replayed(s: Session) -> dict:
    vm = Session(s.start).vm
    for op in s.ops:
        vm.apply(op)
    return state_document(vm)


def test_idle_engine_readies_undo_and_moves_match_a_replay(make_window, qtbot):
    s = td_session()
    w = make_window(s)
    engine = w.engine
    for g in (3, 4, 0x201):
        engine.submit(plans.accept_and_touch(s.vm, g))
        wait_drawn(qtbot, w)
    # Idle: the VM from before the last action is made ready (a copy, then the ops).
    qtbot.waitUntil(lambda: engine.idle and s.undo_ready, timeout=20_000)
    spare = s._loose[len(s.ops) - s.groups[-1]]
    engine.undo()
    wait_drawn(qtbot, w)
    assert s.vm is spare and state_document(s.vm) == _replayed(s)
    engine.redo()
    wait_drawn(qtbot, w)
    assert state_document(s.vm) == _replayed(s) and not s.can_redo
    engine.undo()
    engine.undo()  # queued right behind: nothing ready for it, a checkpoint is copied
    wait_drawn(qtbot, w)
    assert state_document(s.vm) == _replayed(s)
    engine.submit(plans.convert(s.vm, 0, 16, private=False, discard=True))
    wait_drawn(qtbot, w)
    qtbot.waitUntil(lambda: engine.idle and s.undo_ready, timeout=20_000)
    assert state_document(s.vm) == _replayed(s) and not s.can_redo
    assert all(p <= len(s.ops) for p in s.loose_positions)


def test_the_replay_session_is_not_prepared(make_window, qtbot, tmp_path):
    s = td_session()
    for g in range(6):
        s.apply_group(plans.accept_and_touch(s.vm, g).ops)
    path = tmp_path / "r.jsonl"
    s.save_recording(path)
    w = make_window(s)
    c = w.presenter.replay
    assert c.load(str(path))
    qtbot.waitUntil(lambda: c.active, timeout=20_000)
    wait_drawn(qtbot, w)
    c.seek(4)
    wait_drawn(qtbot, w)
    qtbot.wait(400)  # past the idle delay
    replay = w.engine.worker._replay
    # The VM before the seek stays loose (a seek forward again swaps it in); no VM is
    # made ready for a step back.
    assert replay is not None and replay.position == 4 and not replay.undo_ready
