"""Change made visible: marks in every pane that fade, the action named in the status bar
and the log (undo and redo too), and the banner and map glyph of a severe outcome."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QAction, QColor
from PySide6.QtWidgets import QDialog

from imemviz.app.marks import FADE_S, HOLD_S
from imemviz.io import plans

from .conftest import td_session, wait_drawn, wait_idle

pytestmark = pytest.mark.qt


class Clock:
    """The marks' clock, moved by hand: no test waits for a fade in real time."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def setup(make_window, qtbot, session=None):
    w = make_window(session or td_session())
    clock = Clock()
    w.marks.clock = clock
    w.panes2.feed.always = True  # the entries and folios get their data while tabbed
    return w, clock


def act(w, qtbot, plan) -> None:
    w.engine.submit(plan)
    wait_drawn(qtbot, w)
    wait_idle(qtbot, w.engine)


def fade_out(w, clock) -> None:
    clock.t += HOLD_S + FADE_S + 0.01
    assert w.marks.step() == 0.0


def ink_pixels_near(w, gfn: int, dx: int) -> set[tuple[int, int, int]]:
    """Colours on screen along a horizontal line through gfn's cell, `dx` px each side of
    its left edge (where the mark's outline runs)."""
    pane = w.map
    img = pane.view.grab().toImage()
    centre = pane.gfn_pos(gfn)
    left = pane.gfn_pos(gfn - 1)
    edge_x = (centre.x() + left.x()) // 2
    out = set()
    for x in range(edge_x - dx, edge_x + dx + 1):
        c = QColor(img.pixelColor(x, centre.y()))
        out.add((c.red(), c.green(), c.blue()))
    return out


def test_a_convert_marks_its_ranges_in_every_pane_then_fades(make_window, qtbot) -> None:
    w, clock = setup(make_window, qtbot)
    act(w, qtbot, lambda vm: plans.accept_and_touch(vm, 0x12))
    act(w, qtbot, lambda vm: plans.convert(vm, 0x10, 0x14, private=False, discard=True))
    rec = w.last_action
    assert rec.label == "Convert to shared + discard"
    ch = w.marks.latest
    assert ch.gfns == ((0x10, 0x14),) and ch.pfns and ch.files and ch.leaves_removed == 1
    # The map: the dashed outline, in the map's own coordinates, at full strength.
    mm = w.map_marks
    assert mm.ink.isVisible() and mm.ink.opacity() == 1.0
    assert mm.ink.path().boundingRect().contains(0x10 % w.map.row_gfns + 0.5, 0.5)
    assert mm.tag.text().startswith("Convert to shared + discard: 4 pages")
    # Zoomed in, the outline runs on the cell edges: black and white, no legend colour.
    w.map.show_range(0, 0x40)
    wait_drawn(qtbot, w)
    assert {(0, 0, 0), (255, 255, 255)} & ink_pixels_near(w, 0x14, 4)  # its right edge
    # The host folios pane (pfn space) and the guest_memfd offsets.
    fm = w.folio_marks
    qtbot.waitUntil(lambda: bool(fm.visible_ranges()), timeout=10_000)
    assert fm.visible_ranges() == list(ch.pfns)
    w.panes2.folios.set_mode(3)
    assert fm.visible_ranges() == [(s, e) for fd, s, e in ch.files if fd == 3]
    # The event log: the rows of the conversion's two ops.
    span = w.event_marks.marked_positions()
    first, _ = w.panes2.events.model.op_events(rec.first)
    assert span is not None and span[0] == first
    assert w.event_marks.is_marked(w.panes2.events.model.row_of(first))
    # The fade: full for HOLD_S, then down to nothing; the items go.
    clock.t += HOLD_S / 2
    assert w.marks.step() == 1.0
    clock.t += HOLD_S / 2 + FADE_S / 2
    assert 0.3 < w.marks.step() < 0.7 and mm.ink.isVisible()
    fade_out(w, clock)
    assert not mm.ink.isVisible() and not fm.visible_ranges()
    assert not {(0, 0, 0), (255, 255, 255)} & ink_pixels_near(w, 0x14, 4)  # gone from screen
    assert w.marks.latest is ch  # still there for framing and screenshots


def test_entries_outline_the_leaves_an_accept_mapped(make_window, qtbot) -> None:
    w, clock = setup(make_window, qtbot)
    act(w, qtbot, lambda vm: plans.accept_and_touch(vm, 0x21))
    em = w.entries_marks
    qtbot.waitUntil(lambda: bool(em.marked_rows()), timeout=10_000)
    rows = em.marked_rows()
    model = w.panes2.entries.model
    assert [model.data(model.index(r, 1)) for r in rows] == ["0x21"]
    assert "outlined" in em.note.text()
    fade_out(w, clock)
    assert w.marks.opacity() == 0


def test_a_single_page_in_the_whole_guest_view_gets_a_ring(make_window, qtbot) -> None:
    w, _clock = setup(make_window, qtbot, td_session(ram=4096 << 20))
    w.map.zoom_all()
    wait_drawn(qtbot, w)
    assert w.map.layout_.row_gfns > 64  # one page is far below a pixel here
    # The page is selected first, as a click does: what you point at is not framed
    # (Follow changes), so the whole-guest view stays and the ring shows where it is.
    w.selection.set_gfn(0x12345)
    act(w, qtbot, lambda vm: plans.accept_and_touch(vm, 0x12345))
    assert w.map.layout_.row_gfns > 64
    assert w.map_marks.shown_rings() == [(0x12345, 0x12346)]
    w.map.show_range(0x12340, 0x12380)  # big cells: the outline alone is plain to see
    wait_drawn(qtbot, w)
    assert w.map_marks.shown_rings() == []


def test_status_and_log_name_the_action_undo_and_redo(make_window, qtbot) -> None:
    w, _clock = setup(make_window, qtbot)
    act(w, qtbot, lambda vm: plans.convert(vm, 0x30, 0x34, private=False, discard=True))
    assert w.message.text().startswith("Convert to shared + discard: ok — 4 pages changed")
    w.log.flush()
    assert any(x.startswith("▶ Convert to shared + discard: ok") for x in w.log.lines[-4:])
    n = w.last_action.count
    first = w.last_action.first
    # Undo: named, logged, and the range it changed back is marked.
    w.findChild(QAction, "act_undo").trigger()
    wait_drawn(qtbot, w)
    wait_idle(qtbot, w.engine)
    text = w.message.text()
    assert text.startswith("Undo: Convert to shared + discard — ")
    assert f"ops #{first}–#{first + n - 1} undone" in text
    assert w.log.lines[-1].startswith("↶ Undo: Convert to shared + discard")
    assert w.marks.latest.gfns == ((0x30, 0x34),) and w.map_marks.ink.isVisible()
    # Redo.
    w.findChild(QAction, "act_redo").trigger()
    wait_drawn(qtbot, w)
    wait_idle(qtbot, w.engine)
    assert w.message.text().startswith("Redo: Convert to shared + discard: ok")
    w.log.flush()
    assert any(x.startswith("↷ Redo: Convert to shared") for x in w.log.lines[-4:])
    assert w.marks.latest.gfns == ((0x30, 0x34),)


def test_a_refused_action_names_the_op_errno_and_rule(make_window, qtbot) -> None:
    w, _clock = setup(make_window, qtbot)
    act(w, qtbot, lambda vm: plans.accept(0x40))
    act(w, qtbot, lambda vm: plans.accept(0x40))  # already accepted
    text = w.message.text()
    assert text.startswith("Accept: guest_accept failed with EINVAL — TDG.MEM.PAGE.ACCEPT")
    assert "already accepted" in text


def test_a_td_kill_shows_a_banner_and_a_glyph_until_undone(make_window, qtbot) -> None:
    w, _clock = setup(make_window, qtbot)
    act(w, qtbot, plans.touch_without_accept(0x44))
    b = w.banner
    assert b.isVisible() and "The TD was killed at gfn 0x44" in b.text.text()
    assert "kvm_vm_dead" in b.text.text()  # the rule, from model/explain.py
    (g,) = w.map_marks.glyphs
    assert g.severe.kind == "td_killed" and g.severe.gfn == 0x44 and g.isVisible()
    # Not modal: no dialog, the window goes on taking input; the banner's Undo brings
    # the TD back.
    assert not [d for d in w.findChildren(QDialog) if d.isVisible()]
    b.undo_btn.click()
    wait_drawn(qtbot, w)
    qtbot.waitUntil(lambda: not b.isVisible(), timeout=10_000)
    assert not w.map_marks.glyphs
    assert not w.engine.worker.session.vm.dead


def test_a_memory_fault_exit_banner_can_be_dismissed(make_window, qtbot) -> None:
    w, _clock = setup(make_window, qtbot)
    act(w, qtbot, plans.guest_access(0x50, private=False))  # shared access to private memory
    b = w.banner
    assert b.isVisible() and b.severe.kind == "memory_fault" and b.severe.gfn == 0x50
    assert "KVM_EXIT_MEMORY_FAULT" in b.text.text()
    b.close_btn.click()
    assert not b.isVisible() and not w.map_marks.glyphs


def test_marks_stay_black_on_white_outlines_in_dark_presentation_mode_on_a_folded_map(
    make_window, qtbot
) -> None:
    """The marks are not a theme colour (no legend state is an outline): in dark mode and
    presentation mode they stay black dashes on a white halo, their lines as much
    thicker as the map's own, and drawn in the folded map's display rows."""
    from imemviz.app import plot_theme
    from imemviz.app.panes.map_marks import HALO_PX, INK_PX
    from imemviz.app.presentation import SCALE

    w = make_window(td_session(4096 << 20), fold=True)
    w.marks.clock = Clock()
    try:
        plot_theme.set_dark(True)
        w.presentation.set_on(True, fullscreen=False)
        wait_drawn(qtbot, w)
        g = 0x12345  # in the middle of untouched private memory: folded around it
        w.selection.set_gfn(g)
        act(w, qtbot, lambda vm: plans.accept_and_touch(vm, g))
        mm = w.map_marks
        assert mm.ink.pen().widthF() == pytest.approx(INK_PX * SCALE)
        assert mm.halo.pen().widthF() == pytest.approx(HALO_PX * SCALE)
        assert mm.ink.pen().color().name() == "#000000"
        assert mm.halo.pen().color().name() == "#ffffff"
        lay = w.map.layout_
        assert lay.foldmap()  # the map is folded
        assert lay.cell_of(g)[1] != g // lay.row_gfns  # display rows are not linear rows
        x, y = lay.cell_of(g)
        assert mm.ink.path().boundingRect().contains(x + 0.5, y + 0.5)
        w.map.show_range(g - 0x20, g + 0x20)
        wait_drawn(qtbot, w)
        x, y = lay.cell_of(g)
        assert mm.ink.path().boundingRect().contains(x + 0.5, y + 0.5)
        seen = ink_pixels_near(w, g, 6)
        assert (0, 0, 0) in seen and (255, 255, 255) in seen
    finally:
        w.presentation.set_on(False, fullscreen=False)
        plot_theme.set_dark(False)
