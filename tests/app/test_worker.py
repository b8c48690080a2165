"""The engine thread: ordered ops, coalesced rasters, immutable results, errors survive."""

from __future__ import annotations

import pytest

from imemviz.app.records import RasterRequest
from imemviz.app.worker import Engine
from imemviz.model import ops as O

from .conftest import sw_session, wait_idle

pytestmark = pytest.mark.qt


@pytest.fixture
def loaded(engine, qtbot) -> Engine:
    engine.set_session(sw_session())
    wait_idle(qtbot, engine)
    return engine


def test_ops_are_never_dropped_and_stay_in_order(loaded, qtbot) -> None:
    records = []
    loaded.opApplied.connect(records.append)
    for g in range(300):
        loaded.apply_ops([O.GuestAccess(g << 12, write=True, value=g & 0xFF)])
    wait_idle(qtbot, loaded)
    qtbot.waitUntil(lambda: len(records) == 300)
    assert [r.op.gpa >> 12 for r in records] == list(range(300))
    assert [r.index for r in records] == sorted(r.index for r in records)
    ops = loaded.worker.session.ops
    assert [op.gpa >> 12 for op in ops[-300:]] == list(range(300))


def test_raster_requests_are_coalesced(loaded, qtbot) -> None:
    answers = []
    loaded.rasterReady.connect(answers.append)
    loaded.call(lambda s: __import__("time").sleep(0.2))  # keep the worker busy
    reqs = [RasterRequest("k", 0, 64, 4, 16 + i) for i in range(40)]
    for r in reqs:
        loaded.request_raster(r)
    wait_idle(qtbot, loaded)
    qtbot.waitUntil(lambda: answers and answers[-1].request == reqs[-1], timeout=5000)
    assert len(answers) < len(reqs)
    a = answers[-1]
    assert a.codes.shape == (4, 16 + 39) and not a.codes.flags.writeable


def test_published_results_are_immutable(loaded, qtbot) -> None:
    records, snaps = [], []
    loaded.opApplied.connect(records.append)
    loaded.snapshotReady.connect(snaps.append)
    loaded.apply_ops([O.SetMemoryAttributes(0, 8 << 12, 0)])
    wait_idle(qtbot, loaded)
    qtbot.waitUntil(lambda: bool(snaps))
    rec = records[-1]
    with pytest.raises(TypeError):
        rec.line["ok"] = False  # type: ignore[index]
    with pytest.raises(TypeError):
        snaps[-1].stats["vm_dead"] = True  # type: ignore[index]
    # The attribute change, widened to the straddling 2M page KVM invalidates with it.
    assert rec.changed == ((0, 512),)
    assert snaps[-1].changed == ((0, 512),)
    assert all(isinstance(e, tuple) for e in rec.events)


def test_an_engine_error_is_reported_and_the_thread_survives(loaded, qtbot) -> None:
    errors = []
    loaded.failed.connect(errors.append)

    def boom(session):
        raise RuntimeError("kaboom")

    loaded.call(boom)
    loaded.apply_ops([O.GuestAccess(0x1000)])
    wait_idle(qtbot, loaded)
    qtbot.waitUntil(lambda: bool(errors))
    assert "kaboom" in errors[0]
    assert loaded.worker.session.ops[-1].NAME == "guest_access"
    assert loaded.engine_thread.isRunning()


def test_a_plan_with_nothing_to_do_says_why(loaded, qtbot) -> None:
    from imemviz.io import plans

    msgs = []
    loaded.message.connect(msgs.append)
    n = len(loaded.worker.session.ops)
    loaded.submit(lambda vm: plans.punch_hole(vm, 1 << 30, (1 << 30) + 5))
    wait_idle(qtbot, loaded)
    qtbot.waitUntil(lambda: bool(msgs))
    assert "No guest_memfd" in msgs[-1]
    assert len(loaded.worker.session.ops) == n


def test_stop_drops_queued_commands(qapp, qtbot) -> None:
    import threading

    e = Engine()
    e.start()
    gate = threading.Event()
    entered = threading.Event()
    try:
        session = sw_session()
        before = len(session.ops)
        e.set_session(session)
        # The worker is held in a command until every op is queued and the stop is asked
        # for, however slow the machine: no timing decides the outcome.  Queue nothing
        # before it is inside that command: a stop asked for earlier would drop the
        # session itself.
        e.call(lambda s: (entered.set(), gate.wait(30)))
        assert entered.wait(30)
        for g in range(2000):
            e.apply_ops([O.GuestAccess(g << 12)])
        e.worker.request_stop()
    finally:
        gate.set()
        assert e.stop()
    assert len(e.worker.session.ops) == before  # none of the 2000 queued ops ran


def test_after_an_open_the_maps_new_raster_comes_before_the_feeds(engine, qtbot, monkeypatch):
    """A new session: the GUI lays the map out on the snapshot and asks for its raster;
    the engine draws it before running the panes' feeds, so the map's first full frame
    does not wait for every other pane's update."""
    from PySide6.QtCore import Qt

    from imemviz.app import frame_fence

    monkeypatch.setattr(frame_fence, "OPEN_LIMIT_S", 60.0)  # wait for the GUI, however slow
    order: list[str] = []
    detach = engine.worker.attach_feeds(lambda *_a, **_k: order.append("feed"))
    req = RasterRequest("map-after-open", 0, 64, 4, 16)

    def on_raster(ans) -> None:
        if ans.request.key == req.key:
            order.append("raster")

    def on_snapshot(_snap) -> None:
        if not order:
            engine.request_raster(req)  # as the map does, laid out for the new session

    engine.worker.rasterReady.connect(on_raster, Qt.ConnectionType.DirectConnection)
    engine.snapshotReady.connect(on_snapshot)
    try:
        engine.set_session(sw_session())
        wait_idle(qtbot, engine)
        qtbot.waitUntil(lambda: "raster" in order and "feed" in order, timeout=10_000)
        assert order.index("raster") < order.index("feed"), order
    finally:
        detach()
