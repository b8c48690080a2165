"""The engine sends the GUI one piece of work per turn and waits while the GUI handles
it (frame_fence.py, "Pacing"): every feed is computed before the first of their pieces
goes out, each piece is followed by a token the GUI acknowledges two timer hops later,
and a new session's map paints once, with its raster, its axes drawn a turn ahead."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QObject, Signal, Slot

from imemviz.app.frame_fence import AckLater, FrameFence

from .conftest import sw_session, td_session, wait_drawn, wait_idle

pytestmark = pytest.mark.qt


def test_an_acknowledgement_comes_two_timer_hops_later(qapp) -> None:
    f = FrameFence()
    ack = AckLater(f)
    ack.later(3)
    assert f._acked == 0  # not in the turn that handled the piece
    qapp.processEvents()  # a turn: its timer phase runs the first hop
    qapp.processEvents()  # the next turn's drain, then the second hop
    qapp.processEvents()
    assert f._acked == 3


class _Pieces(QObject):
    piece = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple] = []

    @Slot(int)
    def token(self, t: int) -> None:  # a slot of a GUI-thread object: runs on the GUI
        self.events.append(("token", t))


def test_every_feed_runs_before_its_pieces_go_out_one_per_turn(engine, qtbot) -> None:
    engine.set_session(sw_session())
    wait_idle(qtbot, engine)
    w = engine.worker
    pieces = _Pieces()  # lives on the GUI thread, as a pane's feed object does
    ran: list[str] = []
    events = pieces.events  # on the GUI thread: pieces and tokens, in arrival order

    def feed_a(*_a, **_k) -> None:
        ran.append("a")
        w.deliver(pieces.piece, "a1")
        w.deliver(pieces.piece, "a2")

    def feed_b(*_a, **_k) -> None:
        ran.append("b")
        w.deliver(pieces.piece, "b1")

    pieces.piece.connect(lambda p: events.append((p, tuple(ran))))
    w.paced.connect(pieces.token)
    detach_a, detach_b = w.attach_feeds(feed_a), w.attach_feeds(feed_b)
    try:
        engine.set_session(sw_session())
        wait_idle(qtbot, engine)
        qtbot.waitUntil(lambda: [e[0] for e in events if e[0] != "token"] == ["a1", "a2", "b1"])
    finally:
        detach_a()
        detach_b()
    kinds = [e[0] for e in events]
    start = kinds.index("a1")
    # One piece, then its token, then the next piece: never two pieces in one go.
    assert kinds[start : start + 6] == ["a1", "token", "a2", "token", "b1", "token"], kinds
    # When the first piece reached the GUI both feeds had run: the engine computed them
    # all while the GUI was idle, then waited while the GUI handled each piece.
    assert events[start][1][-2:] == ("a", "b")
    assert not w.fence.hurried  # every piece acknowledged in time


def test_outside_a_publish_a_piece_goes_out_at_once(engine, qtbot) -> None:
    got: list[object] = []
    pieces = _Pieces()
    pieces.piece.connect(got.append)
    engine.worker.deliver(pieces.piece, "now")  # a step view, a refresh: no publish
    qtbot.waitUntil(lambda: got == ["now"])


class _PaintCount(QObject):
    def __init__(self, widget) -> None:
        super().__init__()
        self.versions: list[int] = []
        self.w = widget
        widget.map.view.viewport().installEventFilter(self)

    def eventFilter(self, obj, ev) -> bool:
        if ev.type() == QEvent.Type.Paint:
            shown = self.w.map._shown
            self.versions.append(shown.version if shown else -1)
        return False


def test_a_new_sessions_map_paints_once_with_its_raster(make_window, qtbot) -> None:
    w = make_window(td_session())
    log = _PaintCount(w)
    holds = w.map.paint_hold.holds
    v0 = w.engine.snapshot.version
    w.engine.set_session(sw_session(256 << 20))  # another guest size: new axes
    wait_drawn(qtbot, w)
    wait_idle(qtbot, w.engine)
    qtbot.waitUntil(lambda: any(v > v0 for v in log.versions))
    assert w.map.paint_hold.holds == holds + 1  # held from the new session's snapshot
    assert not w.map.paint_hold.held and w.map.view.viewport().updatesEnabled()
    # No paint showed the new session's layout without its raster (the old one hidden).
    assert all(v > v0 for v in log.versions), log.versions
    # The left axis's picture was drawn ahead of that frame, in a turn of its own.
    assert w.map.warmed and w.map.warmed[0]


def test_the_outcome_comes_back_when_the_busy_bar_goes(make_window, qtbot) -> None:
    """An action is announced (its outcome in the status bar) before its panes' pieces;
    a command that goes on past the busy bar's delay shows "Working: ...", and the
    outcome comes back when it ends, unless a newer line came meanwhile."""
    w = make_window(sw_session())
    w.show_message("Undo: Convert to shared — ok")
    w.engine.busyChanged.emit(True, "Undo")
    assert w.message.text().startswith("Working: Undo")
    w.engine.busyChanged.emit(False, "")
    assert w.message.text() == "Undo: Convert to shared — ok"
    w.engine.busyChanged.emit(True, "Open")
    w.show_message("Opened a.jsonl")  # a newer line while busy stays
    w.engine.busyChanged.emit(False, "")
    assert w.message.text() == "Opened a.jsonl"


def test_the_next_raster_waits_until_the_gui_has_painted_the_last(engine, qtbot) -> None:
    """A framing's steps, a scroll: each raster answered is acknowledged by the GUI (two
    timer hops after it handled it) before the engine draws the next one, so the
    engine's Python does not share the GIL with the GUI's paint."""
    from PySide6.QtCore import Qt

    from imemviz.app.records import RasterRequest

    engine.set_session(sw_session())
    wait_idle(qtbot, engine)
    w = engine.worker
    order: list[str] = []
    a = RasterRequest("pace-a", 0, 64, 4, 16)
    b = RasterRequest("pace-b", 0, 64, 4, 16)

    def computed(ans) -> None:  # on the engine thread, as it emits
        if ans.request.key in (a.key, b.key):
            order.append(f"computed {ans.request.key}")

    def handled(ans) -> None:  # on the GUI thread: asks for the next one at once
        if ans.request.key == a.key:
            order.append("handled pace-a")
            engine.request_raster(b)

    ack = w.fence.ack

    def traced_ack(token: int) -> None:
        if "handled pace-a" in order and "ack" not in order:
            order.append("ack")
        ack(token)

    w.fence.ack = traced_ack
    w.rasterReady.connect(computed, Qt.ConnectionType.DirectConnection)
    engine.rasterReady.connect(handled)
    try:
        engine.request_raster(a)
        qtbot.waitUntil(lambda: "computed pace-b" in order, timeout=10_000)
    finally:
        w.rasterReady.disconnect(computed)
        w.fence.ack = ack
    # ("computed pace-a" may be logged after the GUI handled it: the engine thread logs
    # it after the emit that posts it to the GUI.)
    assert "computed pace-a" in order
    assert order.index("handled pace-a") < order.index("ack") < order.index("computed pace-b")


def test_a_new_view_is_applied_before_the_paint_not_during_it(make_window, qtbot) -> None:
    """pyqtgraph applies a new range to its items when it paints, and the labels and
    markers it moves then ask for a second paint; the map applies it when it sets the
    view, so one paint shows it."""
    from imemviz.io.session import Session

    w = make_window(Session.new({"type": "sw_protected", "host_memory": "1G"}))  # no memslot
    seen: list[tuple[bool, int, bool]] = []

    def after_the_maps_slot(_snap) -> None:  # before any paint of the new state
        shown = [t for t in w.map._labels if t.isVisible()]
        current = all(t._lastTransform == t.parentItem().sceneTransform() for t in shown)
        seen.append((w.map.vb._matrixNeedsUpdate, len(shown), current))

    w.engine.snapshotReady.connect(after_the_maps_slot)
    w.engine.set_session(td_session())  # memslots now: their labels are new items
    wait_drawn(qtbot, w)
    w.engine.set_session(Session.new({"type": "sw_protected", "host_memory": "1G"}))
    wait_drawn(qtbot, w)  # no memslot: the labels hidden, the view another
    w.engine.set_session(td_session())  # shown again, in a view they have not seen
    wait_drawn(qtbot, w)
    for steps in (3, -3):
        w.map.zoom(steps)
        after_the_maps_slot(None)
        wait_drawn(qtbot, w)
    assert seen and all(not stale for stale, _n, _c in seen)  # nothing left for the paint
    assert all(n > 0 and current for _s, n, current in seen), seen  # labels turned already


def test_a_new_sessions_cell_labels_are_drawn_in_the_turn_after_its_cells(
    make_window, qtbot
) -> None:
    """The labels' full draw (5-8 ms at 1600x1000) is not part of the first frame's paint:
    that paint shows the cells, the labels come in a paint of their own, and end drawn."""
    w = make_window(td_session(), fold=True)  # folded, as the app: labelled tiles
    cells = w.map.cells
    deferred, draws = cells.deferred, cells._layer.full_draws
    w.engine.set_session(sw_session(1 << 20))  # 256 pages: labelled tiles at once
    wait_drawn(qtbot, w)
    wait_idle(qtbot, w.engine)
    qtbot.waitUntil(lambda: cells.tier() == 2 and cells._layer.full_draws > draws)
    assert cells.deferred == deferred + 1 and not cells.defer
    assert w.map.warmed_texts > 0  # their texts laid out a turn ahead, too
