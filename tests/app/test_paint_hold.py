"""One repaint of the map per op: the paints between an action's announcement (with its
change marks) and the raster of the new state are held, so marks and image land in one
frame (imemviz/app/panes/paint_hold.py)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QObject

from imemviz.io import plans

from .conftest import td_session, wait_drawn, wait_idle
from .helpers import pixel_at_gfn

pytestmark = pytest.mark.qt


class PaintLog(QObject):
    """Records, for each paint of the map's viewport, the map's shown version and whether
    the change marks were up at that moment."""

    def __init__(self, w) -> None:
        super().__init__()
        self.w = w
        self.paints: list[tuple[int, bool]] = []
        w.map.view.viewport().installEventFilter(self)

    def eventFilter(self, obj, ev) -> bool:
        if ev.type() == QEvent.Type.Paint:
            shown = self.w.map._shown
            self.paints.append((shown.version if shown else -1, self.w.map_marks.ink.isVisible()))
        return False


def test_an_action_paints_its_marks_with_its_raster_not_before(make_window, qtbot) -> None:
    w = make_window(td_session())
    w.map.show_range(0, 0x40)
    wait_drawn(qtbot, w)
    log = PaintLog(w)
    hold = w.map.paint_hold
    v0 = w.engine.snapshot.version
    holds = hold.holds
    seen_hold: list[bool] = []
    w.engine.actionDone.connect(lambda _rec: seen_hold.append(hold.held))
    w.engine.submit(plans.accept_and_touch(w.engine.worker.session.vm, 0x21))
    wait_drawn(qtbot, w)
    wait_idle(qtbot, w.engine)
    qtbot.waitUntil(lambda: any(v > v0 for v, _m in log.paints), timeout=10_000)
    assert hold.holds == holds + 1 and seen_hold == [True]  # held from the announcement ...
    assert not hold.held and w.map.view.viewport().updatesEnabled()  # ... to the raster
    # No paint showed the new marks over the old image: the first paint with the marks
    # up is the first with the new state.
    marked = [v for v, m in log.paints if m]
    assert marked and min(marked) > v0
    assert pixel_at_gfn(w, 0x21) is not None


def test_a_hold_lets_go_by_itself_when_no_raster_comes(make_window, qtbot) -> None:
    w = make_window(td_session())
    wait_drawn(qtbot, w)
    hold = w.map.paint_hold
    hold.hold()
    assert hold.held and not w.map.view.viewport().updatesEnabled()
    qtbot.waitUntil(lambda: not hold.held, timeout=5_000)  # LIMIT_MS later
    assert w.map.view.viewport().updatesEnabled()
