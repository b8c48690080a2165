"""A step-through frames the op's pages as tiles with their state written in them
(app/step_frame.py), and the entries show the state column in a narrow pane."""

from __future__ import annotations

import contextlib

import pytest
from PySide6.QtGui import QAction

from imemviz.app.panes.entries import COLUMNS
from imemviz.app.panes.map_frame import View
from imemviz.app.panes.map_items import CellLabels
from imemviz.app.panes.map_layout import MIN_ROW_GFNS, MapLayout
from imemviz.app.step_frame import cells_at_least, labelled_target, shown_whole, step_target
from imemviz.io import plans
from imemviz.io.session import Session
from imemviz.model.raster import Code

from .conftest import td_session, wait_drawn, wait_idle
from .helpers import assert_shows, lut_colour, pixel_at_gfn
from .test_step_view import step_drawn

CELLS = [CellLabels.FULL_PX, CellLabels.SHORT_PX]


def shown_at(w, k: int) -> bool:
    sh = w.step_view.shown
    return sh is not None and sh.op is not None and sh.step == k


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


def test_a_change_too_big_for_labelled_tiles_frames_the_step_or_the_whole_change() -> None:
    """A 4K conversion inside a 2M leaf changes 512 pages: too many for labelled tiles
    at 1280x720.  The steps on the 4K page show it as a tile; those on the 2M leaf show
    the leaf whole; those on no gfn, or on the whole memslot, stay."""
    lay = MapLayout(extent=1 << 18, width=610, height=330, fold=False)
    lay.fit()
    huge = [(0x10200, 0x10400)]
    assert labelled_target(lay, huge, CELLS) is None
    page = step_target(lay, huge, [(0x10200, 0x10201)], CELLS)
    assert page is not None
    page.apply(lay)
    assert shown_whole(lay, [(0x10200, 0x10201)]) and cells_at_least(lay, CellLabels.FULL_PX)
    assert step_target(lay, huge, (), CELLS) is None  # TRACK: stays
    assert step_target(lay, huge, [(0, 1 << 18)], CELLS) is None  # the whole memslot
    leaf = step_target(lay, huge, huge, CELLS)  # BLOCK of the 2M leaf
    assert leaf is not None
    leaf.apply(lay)
    assert shown_whole(lay, huge)
    assert step_target(lay, huge, huge, CELLS) is None


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
    # Every step keeps them so: the range_add over the whole memslot included (its
    # highlight around the view does not scroll the map to the memslot's start).
    for k in range(len(st.steps)):
        st.go(k)
        qtbot.waitUntil(lambda k=k: shown_at(w, k), timeout=10_000)
        wait_drawn(qtbot, w)
        why = f"step {k + 1} {st.steps[k].title}: {lay.visible_gfns()}, {lay.cell_px()}"
        assert shown_whole(lay, [(0x810, 0x814)]), why
        assert cells_at_least(lay, CellLabels.FULL_PX), why
    st.go([s.name for s in st.steps].index("TDH.MEM.RANGE.BLOCK"))
    step_drawn(qtbot, w, True)
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


@pytest.mark.qt
def test_a_demote_frames_the_2m_leaf_whole_then_the_4k_page(make_window, qtbot) -> None:
    """On a 2M TD, a 4K conversion inside a 2M leaf: the 2M leaf is shown whole at its
    BLOCK and DEMOTE, the 4K page as a tile at its BLOCK, and it stays in view to the
    end (the range_add over the whole memslot does not scroll the map to gfn 0), where
    it turns shared with its private folio kept."""
    from imemviz.model import ops as O

    cfg = {"host_memory": "4G", "gmem_max_order": 9, "tdx_private_max_level": "2M"}
    w = make_window(td_session(1024 << 20, **cfg), size=(1280, 720), fold=True)
    for g in range(0x10000, 0x10000 + 4 * 512, 512):
        w.engine.apply_ops([O.GuestAccept(gpa=g << 12, level=2)])
    w.engine.submit(lambda vm: plans.convert(vm, 0x10200, 0x10201, private=False, discard=True))
    wait_idle(qtbot, w.engine)
    wait_drawn(qtbot, w)
    w.findChild(QAction, "act_step_last").trigger()
    st = w.panes2.stepper
    names = [s.name for s in st.steps]
    lay = w.map.layout_
    page, leaf = [(0x10200, 0x10201)], [(0x10200, 0x10400)]

    def at(k: int) -> None:
        st.go(k)
        qtbot.waitUntil(lambda: shown_at(w, k), timeout=10_000)
        wait_drawn(qtbot, w)

    at(names.index("TDH.MEM.PAGE.DEMOTE"))
    assert shown_whole(lay, leaf)
    at(len(names) - 3)  # the 4K page's kvm_tdp_mmu_spte_changed
    assert shown_whole(lay, page) and cells_at_least(lay, CellLabels.FULL_PX)
    for k in (len(names) - 2, len(names) - 1):  # range_add over the memslot, end
        at(k)
        assert shown_whole(lay, page) and cells_at_least(lay, CellLabels.FULL_PX), names[k]
    w.selection.clear()
    wait_drawn(qtbot, w)
    # The view moved at this step's framing: its raster may land a turn after wait_drawn.
    want = lut_colour(Code.SHARED_KEPT)
    with contextlib.suppress(qtbot.TimeoutError):
        qtbot.waitUntil(lambda: pixel_at_gfn(w, 0x10200) == want, timeout=10_000)
    assert_shows(w, 0x10200, Code.SHARED_KEPT)


def test_from_small_tiles_a_step_zooms_to_tiles_that_hold_a_long_state() -> None:
    """Tiles of the short size carry a short state only: BLOCKED ran over its neighbours.
    A step whose pages are shown so zooms to the big tiles when they fit."""
    lay = MapLayout(extent=1 << 19, width=610, height=330, fold=False)
    lay.fit()
    pages = [(0x810, 0x814)]
    r = MIN_ROW_GFNS
    while not (
        cells_at_least(lay, CellLabels.SHORT_PX) and not cells_at_least(lay, CellLabels.FULL_PX)
    ):
        View(r, 0x812).apply(lay)
        r *= 2
    assert shown_whole(lay, pages)  # the short tiles show them already
    target = step_target(lay, pages, pages, CELLS)
    assert target is not None and target.row_gfns < lay.row_gfns
    target.apply(lay)
    assert shown_whole(lay, pages) and cells_at_least(lay, CellLabels.FULL_PX)
    assert step_target(lay, pages, pages, CELLS) is None  # and stays
