"""A step-through frames the op's pages as tiles with their state written in them
(app/step_frame.py), and the entries show the state column in a narrow pane."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QAction

from imemviz.app.panes.entries import COLUMNS
from imemviz.app.panes.map_frame import View
from imemviz.app.panes.map_items import CellLabels
from imemviz.app.panes.map_layout import MapLayout
from imemviz.app.step_frame import cells_at_least, labelled_target, shown_whole
from imemviz.io import plans
from imemviz.io.session import Session
from imemviz.model.raster import Code

from .conftest import wait_drawn, wait_idle
from .helpers import assert_shows
from .test_step_view import step_drawn

CELLS = [CellLabels.FULL_PX, CellLabels.SHORT_PX]


def test_a_few_pages_are_framed_as_labelled_tiles_at_the_widest_such_zoom() -> None:
    lay = MapLayout(extent=1 << 19, width=610, height=330, fold=False)  # a 2 GiB guest
    lay.fit()
    assert not cells_at_least(lay, CellLabels.SHORT_PX)  # the whole guest: tiny cells
    target = labelled_target(lay, [(0x810, 0x814)], CELLS)
    assert target is not None
    target.apply(lay)
    assert shown_whole(lay, [(0x810, 0x814)])
    assert cells_at_least(lay, CellLabels.FULL_PX)
    lay.row_gfns *= 2  # one zoom wider: no room for the labels any more
    assert not cells_at_least(lay, CellLabels.FULL_PX)
    # Already shown so: it stays.
    View(target.row_gfns, target.center).apply(lay)
    assert labelled_target(lay, [(0x810, 0x814)], CELLS) is None


def test_a_change_too_big_for_labelled_tiles_is_left_to_the_usual_framing() -> None:
    lay = MapLayout(extent=1 << 19, width=610, height=330, fold=False)
    lay.fit()
    assert labelled_target(lay, [(0x10200, 0x10400)], CELLS) is None  # 512 pages


@pytest.mark.qt
def test_the_block_step_on_the_whole_guest_view_zooms_to_the_blocked_tiles(
    make_window, qtbot
) -> None:
    """The default scene opens on the whole guest: four converted pages are a 40x10 px
    strip there.  At the BLOCK step the map shows them as tiles carrying their state,
    BLOCKED, and the entries' state column is in view at 1280x720."""
    w = make_window(Session.scene("default"), size=(1280, 720), fold=True)
    w.panes2.feed.always = True
    for g in range(0x810, 0x818):
        w.engine.submit(lambda vm, g=g: plans.accept_and_touch(vm, g))
    w.engine.submit(lambda vm: plans.convert(vm, 0x810, 0x814, private=False, discard=True))
    wait_idle(qtbot, w.engine)
    wait_drawn(qtbot, w)
    assert not cells_at_least(w.map.layout_, CellLabels.SHORT_PX)
    w.findChild(QAction, "act_step_last").trigger()
    st = w.panes2.stepper
    st.go([s.name for s in st.steps].index("TDH.MEM.RANGE.BLOCK"))
    step_drawn(qtbot, w, True)
    wait_drawn(qtbot, w)
    lay = w.map.layout_
    assert shown_whole(lay, [(0x810, 0x814)])
    assert cells_at_least(lay, CellLabels.FULL_PX), lay.cell_px()
    w.selection.clear()
    wait_drawn(qtbot, w)
    for g in range(0x810, 0x814):
        assert_shows(w, g, Code.BLOCKED)
    assert_shows(w, 0x814, Code.PRIVATE_4K)
    # The entries: the BLOCKED row's state cell lies inside the table's viewport.
    w.docks["entries"].raise_()
    pane = w.panes2.entries
    qtbot.waitUntil(lambda: "BLOCK" in pane.model.leaves.step, timeout=10_000)
    table = pane.table
    header = table.horizontalHeader()
    state_x = header.sectionViewportPosition(COLUMNS.index("state"))
    width = header.sectionSize(COLUMNS.index("state"))
    assert state_x >= 0 and state_x + min(width, 60) <= table.viewport().width()
