"""The GPA map: what it draws for each state, clicks, drags, zoom, keys, hover."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QToolTip

from imemviz.app.panes.gpa_map import holes
from imemviz.io import plans
from imemviz.model.raster import Code

from .conftest import MB, WAIT_MS, sw_session, td_session, wait_drawn, wait_idle
from .helpers import assert_shows, click_gfn, drag, pixel_at_gfn, session_vm

pytestmark = pytest.mark.qt


def zoom_to(window, qtbot, gfn: int, steps: int = 4) -> None:
    window.selection.set_gfn(gfn)
    window.map.zoom(steps, gfn)
    wait_drawn(qtbot, window)


def test_map_draws_each_state_in_its_lut_colour(window, qtbot) -> None:
    e = window.engine
    s = td_session()
    s.apply_group(plans.accept_and_touch(s.vm, 0x40).ops)  # PRIVATE_4K
    s.apply_group(plans.convert(s.vm, 0x80, 0x88, private=False, discard=True).ops)
    s.apply_group(plans.guest_access(0x81, write=True, value=1).ops)  # SHARED_4K
    s.apply_group(plans.allocate(s.vm, 0xC0, 0xC4).ops)  # PRIVATE_ALLOCATED
    e.set_session(s)
    wait_drawn(qtbot, window)
    window.map.show_range(0, 0x110)
    window.selection.clear()
    wait_drawn(qtbot, window)
    assert window.map.layout_.cell_px()[0] >= 4
    assert_shows(window, 0x40, Code.PRIVATE_4K)
    assert_shows(window, 0x81, Code.SHARED_4K)
    assert_shows(window, 0x82, Code.SHARED_EMPTY)
    assert_shows(window, 0xC1, Code.PRIVATE_ALLOCATED)
    assert_shows(window, 0x100, Code.PRIVATE_EMPTY)
    assert window.map.code_at(0x81) == Code.SHARED_4K


def test_click_accepts_and_touches_a_td_private_page(window, qtbot) -> None:
    zoom_to(window, qtbot, 0x20)
    click_gfn(qtbot, window, 0x21)
    wait_idle(qtbot, window.engine)
    wait_drawn(qtbot, window)
    vm = session_vm(window)
    leaf = vm.private.lookup(0x21)
    assert leaf is not None and leaf.state == 0  # MAPPED
    assert window.selection.gfn == 0x21
    window.selection.clear()
    wait_drawn(qtbot, window)
    assert_shows(window, 0x21, Code.PRIVATE_4K)
    assert "guest_access" in window.log.lines[-1]


def test_click_on_a_hole_is_an_mmio_access(make_window, qtbot) -> None:
    w = make_window(td_session(ram=2048 * MB + 64 * MB))
    hole = (3 << 30) >> 12
    w.map.show_range(hole, hole + 64)
    wait_drawn(qtbot, w)
    click_gfn(qtbot, w, hole + 3)
    wait_idle(qtbot, w.engine)
    assert "KVM_EXIT_MMIO" in w.log.lines[-1]
    assert "MMIO" in w.message.text()


def test_ctrl_click_selects_without_acting(window, qtbot) -> None:
    n = len(window.engine.worker.session.ops)
    click_gfn(qtbot, window, 0x30, modifier=Qt.ControlModifier)
    wait_idle(qtbot, window.engine)
    assert window.selection.gfn == 0x30
    assert len(window.engine.worker.session.ops) == n


def test_drag_selects_a_range_and_shift_click_extends(window, qtbot) -> None:
    zoom_to(window, qtbot, 0x10, 3)
    drag(window, 0x10, 0x25)
    assert window.selection.range == (0x10, 0x26)
    assert window.map.range_item.isVisible()
    click_gfn(qtbot, window, 0x11, modifier=Qt.ControlModifier)
    click_gfn(qtbot, window, 0x18, modifier=Qt.ShiftModifier)
    assert window.selection.range == (0x11, 0x19)


def test_zoom_wheel_scroll_and_keys(window, qtbot) -> None:
    pane = window.map
    fit = pane.row_gfns
    pos = pane.gfn_pos(0x200)
    qtbot.wait(10)
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    vp = pane.view.viewport()

    def wheel(dy: int, mods=Qt.NoModifier) -> None:
        ev = QWheelEvent(
            QPointF(pos),
            QPointF(vp.mapToGlobal(pos)),
            QPoint(0, 0),
            QPoint(0, dy),
            Qt.NoButton,
            mods,
            Qt.NoScrollPhase,
            False,
        )
        QApplication.sendEvent(vp, ev)

    wheel(120, Qt.ControlModifier)
    assert pane.row_gfns == fit // 2
    wheel(120, Qt.ControlModifier)
    wheel(120, Qt.ControlModifier)
    assert pane.row_gfns == fit // 8
    top = pane.layout_.top
    wheel(-120)
    assert pane.layout_.top > top
    wait_drawn(qtbot, window)
    # Keys: arrows move the selection, +/- zoom (window actions), 0 shows everything.
    window.selection.set_gfn(0x100)
    pane.setFocus()
    qtbot.keyClick(pane, Qt.Key_Right)
    assert window.selection.gfn == 0x101
    qtbot.keyClick(pane, Qt.Key_Down)
    assert window.selection.gfn == 0x101 + pane.row_gfns
    qtbot.keyClick(pane, Qt.Key_Right, Qt.ShiftModifier)
    assert window.selection.range == (0x101 + pane.row_gfns, 0x103 + pane.row_gfns)
    r = pane.row_gfns
    window.registry["zoom_in"].trigger()
    assert pane.row_gfns == r // 2
    window.registry["zoom_out"].trigger()
    assert pane.row_gfns == r
    window.registry["zoom_all"].trigger()
    assert pane.row_gfns == fit
    wait_drawn(qtbot, window)


def test_hover_shows_the_whole_chain(window, qtbot) -> None:
    pane = window.map
    pane._set_hover(0x45)
    qtbot.waitUntil(lambda: QToolTip.isVisible() and "0x45000" in QToolTip.text(), timeout=5000)
    assert "folio" in QToolTip.text() and "memslot" in QToolTip.text()
    assert "gpa 0x45000" in pane.header.text()
    pane._set_hover(None)


def test_memslots_and_holes_are_labelled(make_window, qtbot) -> None:
    w = make_window(td_session(ram=2048 * MB + 64 * MB))
    texts = [t.textItem.toPlainText() for t in w.map._labels if t.isVisible()]
    assert any(t.startswith("slot 0") and "guest_memfd 3" in t for t in texts)
    assert any(t.startswith("slot 1") for t in texts)
    assert any(t.startswith("hole · 2G\n@ 0x80000000") for t in texts)
    assert not w.map.hatch.path().isEmpty()
    # The hole between the slots is drawn as a hole.
    hole = (3 << 30) >> 12
    assert w.map.code_at(hole) == Code.HOLE


def test_holes_helper() -> None:
    class S:
        def __init__(self, a, b):
            self.base_gfn, self.end_gfn = a, b

    assert holes([S(10, 20), S(0, 5)], 30) == [(5, 10), (20, 30)]
    assert holes([], 8) == [(0, 8)]


def test_sw_protected_conversion_redraws(make_window, qtbot) -> None:
    w = make_window(sw_session())
    w.map.show_range(0, 64)
    wait_drawn(qtbot, w)
    w.selection.set_range(0, 8)
    w.registry["to_shared"].trigger()
    wait_idle(qtbot, w.engine)
    w.selection.clear()
    wait_drawn(qtbot, w)
    assert_shows(w, 3, Code.SHARED_EMPTY)
    assert_shows(w, 9, Code.PRIVATE_EMPTY)
    c = pixel_at_gfn(w, 3)
    assert c.blue() > c.red()  # shared is blue


def test_a_slightly_smaller_guest_keeps_the_axis_width(make_window, engine, qtbot) -> None:
    """Opening a recording (no memslot at its start) or a guest a digit or two shorter
    does not resize the plot (a relayout and a second paint of the map); a longer
    guest widens the axis so its labels fit, a far shorter one narrows it."""
    w = make_window(td_session(6 * 1024 * MB))
    width = w.map._axis_width
    plot = w.map.vb.boundingRect().width()
    engine.set_session(td_session(64 * MB))  # 0x3ffffff: two digits fewer
    qtbot.waitUntil(lambda: w.engine.snapshot.extent < (1 << 20), timeout=WAIT_MS)
    wait_drawn(qtbot, w)
    assert w.map._axis_width == width
    assert w.map.vb.boundingRect().width() == plot
    engine.set_session(td_session(64 * 1024 * MB))  # 0x107fffffff: two digits more
    qtbot.waitUntil(lambda: w.engine.snapshot.extent > (1 << 24), timeout=WAIT_MS)
    wait_drawn(qtbot, w)
    wide = w.map._axis_width
    assert wide > width
    engine.set_session(td_session(4 * MB))  # 0x3fffff: four digits fewer
    qtbot.waitUntil(lambda: w.engine.snapshot.extent < (1 << 12), timeout=WAIT_MS)
    wait_drawn(qtbot, w)
    assert w.map._axis_width < wide
