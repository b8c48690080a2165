"""Steps shown, not told: the map and the entries draw the state at a protocol step, F8
opens the action's main protocol, and the present comes back when the step-through ends."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QAction

from imemviz.io import plans
from imemviz.model.raster import Code

from .conftest import td_session, wait_drawn, wait_idle
from .helpers import assert_shows

pytestmark = pytest.mark.qt


def converted(make_window, qtbot):
    """A TD with 0x10-0x12 accepted, then 0x10-0x13 converted to shared with discard."""
    w = make_window(td_session())
    w.panes2.feed.always = True
    for g in (0x10, 0x11, 0x12):
        w.engine.submit(lambda vm, g=g: plans.accept_and_touch(vm, g))
    w.engine.submit(lambda vm: plans.convert(vm, 0x10, 0x13, private=False, discard=True))
    wait_idle(qtbot, w.engine)
    w.map.show_range(0, 0x40)
    w.selection.clear()
    wait_drawn(qtbot, w)
    return w


def step_drawn(qtbot, w, want_step: bool) -> None:
    """Until the map shows the raster of the step view (or of the present again)."""

    def ok() -> bool:
        s = w.map._shown
        return w.engine.idle and w.map.is_drawn() and s is not None and bool(s.step) == want_step

    qtbot.waitUntil(ok, timeout=20_000)


def test_f8_after_convert_opens_the_conversion_not_the_punch(make_window, qtbot) -> None:
    w = converted(make_window, qtbot)
    rec = w.last_action
    assert rec.label == "Convert to shared + discard" and rec.count == 2
    w.findChild(QAction, "act_step_last").trigger()
    st = w.panes2.stepper
    assert st.op == rec.first == rec.main
    assert w.engine.worker.session.ops[st.op].NAME == "set_memory_attributes"
    assert "attribute conversion" in st.title.text()


def test_the_block_step_draws_those_leaves_blocked_then_the_present(make_window, qtbot) -> None:
    w = converted(make_window, qtbot)
    for g in (0x10, 0x11, 0x12):
        assert_shows(w, g, Code.SHARED_EMPTY)  # the present: shared, backing discarded
    w.findChild(QAction, "act_step_last").trigger()
    st = w.panes2.stepper
    block = [s.name for s in st.steps].index("TDH.MEM.RANGE.BLOCK")
    st.go(block)
    step_drawn(qtbot, w, True)
    w.selection.clear()  # the step's highlight outlines the cells; their centres stay clear
    wait_drawn(qtbot, w)
    # Read back from the rendered map: the three S-EPT leaves BLOCKED, exactly those.
    for g in (0x10, 0x11, 0x12):
        assert_shows(w, g, Code.BLOCKED)
    for g in (0x0F, 0x13, 0x14):
        assert_shows(w, g, Code.PRIVATE_EMPTY)
    assert w.step_view.label.isVisible() and "step" in w.step_view.label.text()
    assert w.step_view.in_progress_shown()  # the invalidation is open at BLOCK
    # What the dotted outline means is said in the band above the plot, which covers
    # nothing of the map (no row, label or axis under it), not in a tag on the rows.
    assert "invalidation in progress" in w.step_view.label.text()
    band = w.step_view.label.geometry()
    assert not band.intersects(w.map.view.geometry()) and band.bottom() < w.map.view.y()
    tags = [it for it in w.map.vb.addedItems if type(it).__name__ == "Tag" and it.isVisible()]
    assert not tags
    # The entries show the leaves as they are at the step.
    lv = w.panes2.entries.model.leaves
    assert lv.step and "TDH.MEM.RANGE.BLOCK" in lv.step
    states = {int(g): int(s) for g, s, r in zip(lv.gfn, lv.state, lv.root, strict=True) if r == 0}
    assert all(states[g] == 2 for g in (0x10, 0x11, 0x12))  # BLOCKED
    # Before the zap (the first step) they are still mapped (orange 4K) ...
    st.go(0)
    step_drawn(qtbot, w, True)
    w.selection.clear()
    wait_drawn(qtbot, w)
    assert_shows(w, 0x11, Code.PRIVATE_4K)
    # ... and after REMOVE they are gone, still private until the invalidation ends.
    st.go([s.name for s in st.steps].index("TDH.MEM.PAGE.REMOVE"))
    step_drawn(qtbot, w, True)
    w.selection.clear()
    wait_drawn(qtbot, w)
    assert_shows(w, 0x11, Code.PRIVATE_ALLOCATED)
    # The step-through ends: the present comes back.
    st.presentRequested.emit()
    step_drawn(qtbot, w, False)
    w.selection.clear()
    wait_drawn(qtbot, w)
    for g in (0x10, 0x11, 0x12):
        assert_shows(w, g, Code.SHARED_EMPTY)
    assert not w.step_view.label.isVisible()
    qtbot.waitUntil(lambda: not w.panes2.entries.model.leaves.step, timeout=10_000)


def test_an_action_ends_the_step_view(make_window, qtbot) -> None:
    w = converted(make_window, qtbot)
    w.findChild(QAction, "act_step_last").trigger()
    st = w.panes2.stepper
    st.go([s.name for s in st.steps].index("TDH.MEM.RANGE.BLOCK"))
    step_drawn(qtbot, w, True)
    w.engine.submit(lambda vm: plans.accept_and_touch(vm, 0x20))
    step_drawn(qtbot, w, False)
    w.selection.clear()
    wait_drawn(qtbot, w)
    assert_shows(w, 0x10, Code.SHARED_EMPTY)
    assert_shows(w, 0x20, Code.PRIVATE_4K)
    assert not st.present_btn.isEnabled()


def test_accept_steps_pending_then_mapped(make_window, qtbot) -> None:
    w = make_window(td_session())
    w.engine.submit(lambda vm: plans.accept(0x30))
    wait_idle(qtbot, w.engine)
    w.map.show_range(0, 0x40)
    wait_drawn(qtbot, w)
    w.findChild(QAction, "act_step_last").trigger()
    st = w.panes2.stepper
    names = [s.name for s in st.steps]
    st.go(names.index("TDH.MEM.PAGE.AUG"))
    step_drawn(qtbot, w, True)
    w.selection.clear()
    wait_drawn(qtbot, w)
    assert_shows(w, 0x30, Code.PENDING_4K)
    st.go(names.index("TDG.MEM.PAGE.ACCEPT"))
    step_drawn(qtbot, w, True)
    w.selection.clear()
    wait_drawn(qtbot, w)
    assert_shows(w, 0x30, Code.PRIVATE_4K)


def test_a_step_of_an_older_op_unfolds_its_range_on_map_and_overview(make_window, qtbot) -> None:
    """The present folds a range an older op emptied (16 MiB made shared and discarded:
    shared, untouched); stepping through that op unfolds and frames it, and the map and
    the overview draw it as it was at the step (still private), then the present."""
    from imemviz.app.panes.map_frame import needs_frame
    from imemviz.model import ops as O

    w = make_window(td_session(64 << 20), fold=True)
    a, b = 0x2000, 0x3000
    w.engine.submit(lambda vm: plans.convert(vm, a, b, private=False, discard=True))
    wait_idle(qtbot, w.engine)
    conv = w.last_action.main
    # Something else afterwards: the conversion's range is no longer what just changed.
    w.engine.apply_ops([O.GuestAccept(0x100 << 12)], "accept")
    wait_idle(qtbot, w.engine)
    w.selection.clear()
    w.map.zoom_all()
    wait_drawn(qtbot, w)
    lay = w.map.layout_
    mid = (a + b) // 2
    assert lay.foldmap().fold_of_row(mid // lay.row_gfns) >= 0  # folded in the present
    first, evs = w.panes2.events.model.op_events(conv)
    st = w.panes2.stepper
    st.load(conv, evs, first)
    st.go(0)  # the invalidation has begun; the attributes are stored at its end
    step_drawn(qtbot, w, True)
    qtbot.waitUntil(lambda: w.step_view.shown is not None and w.step_view.shown.op == conv)
    assert w.step_view.shown.changed == ((a, b),)
    wait_drawn(qtbot, w)
    assert lay.foldmap().fold_of_row(mid // lay.row_gfns) < 0  # unfolded
    assert not needs_frame(lay, [(a, b)])
    va, vb = lay.visible_gfns()
    g = max(a, va) + 2 * lay.row_gfns  # a page of the range on screen
    assert g < min(b, vb)
    assert_shows(w, g, Code.PRIVATE_EMPTY)
    mm = w.minimap

    def overview_row() -> set[int]:
        req = mm._req
        return set(mm._codes[mid // req.row_gfns].tolist()) if mm._codes is not None else set()

    qtbot.waitUntil(lambda: overview_row() == {int(Code.PRIVATE_EMPTY)}, timeout=10_000)
    st.presentRequested.emit()
    step_drawn(qtbot, w, False)
    w.selection.clear()
    wait_drawn(qtbot, w)
    assert_shows(w, g, Code.SHARED_EMPTY)
    qtbot.waitUntil(lambda: overview_row() == {int(Code.SHARED_EMPTY)}, timeout=10_000)


def test_a_tdx_protocol_gets_no_rmp_note(make_window, qtbot) -> None:
    from imemviz.app.step_rmp import note_html, rmp_steps

    w = make_window(td_session())
    w.engine.submit(lambda vm: plans.convert(vm, 0x10, 0x14, private=False, discard=True))
    wait_drawn(qtbot, w)
    wait_idle(qtbot, w.engine)
    w.findChild(QAction, "act_step_last").trigger()
    st = w.panes2.stepper
    assert st.steps and not rmp_steps(st.events, st.steps)
    assert note_html(st.events, st.steps, 0) == "" and "RMP" not in st.text.text()
    assert not w.docks["rmp"].toggleViewAction().isChecked()  # no RMP tab on a TD
