"""Following changes, framing, Back/Forward, the overview, Go to and folds, in the window."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAction

from imemviz.app.palette import LEGEND_BY_CODE
from imemviz.app.panes.map_frame import View, needs_frame, on_screen
from imemviz.app.panes.map_layout import LEGIBLE_PX
from imemviz.io import plans
from imemviz.io.session import Session
from imemviz.model import ops as O
from imemviz.model.raster import Code, StepCache, guest_extent

from .conftest import MB, td_session, wait_drawn, wait_idle

pytestmark = pytest.mark.qt

PAGE = 0x3000  # a page in the middle of a fresh 64 MiB TD's private memory


def recording(tmp_path, *ops) -> str:
    """A recording: a fresh 64 MiB TD's layout, then `ops`."""
    s = td_session(64 * MB)
    for op in ops:
        s.apply_group([op], op.NAME)
    path = tmp_path / "r.jsonl"
    s.save_recording(path)
    return str(path)


def spread_session() -> Session:
    """A 4 GiB TD with small shared ranges all over it: its folded launch view is a wide
    zoom (an empty guest's is the deepest, with nothing to animate to)."""
    s = td_session(4096 * MB)
    for i in range(256):
        s.apply_group([O.SetMemoryAttributes((i * 0x1000 + 0x100) << 12, 4 << 12, 0)], "shared")
    return s


def act(window, name: str) -> QAction:
    a = window.findChild(QAction, f"act_{name}")
    assert a is not None, name
    return a


def replay_to_before_last(w, qtbot, path: str) -> None:
    rp = w.presenter.replay
    assert rp.load(path)
    wait_drawn(qtbot, w)
    rp.seek(len(rp.timeline) - 1)
    wait_drawn(qtbot, w)


def step_and_settle(w, qtbot) -> None:
    w.presenter.replay.step()
    wait_drawn(qtbot, w)


def test_replay_frames_a_change_too_small_to_see(make_window, qtbot, tmp_path) -> None:
    w = make_window(fold=False)
    replay_to_before_last(w, qtbot, recording(tmp_path, O.GuestAccept(PAGE << 12)))
    w.map.zoom_all()
    wait_drawn(qtbot, w)
    lay = w.map.layout_
    assert not lay.is_legible(PAGE, PAGE + 1)  # the whole 64 MiB guest: a page is a sliver
    before = View.of(lay)
    step_and_settle(w, qtbot)
    assert w.navigator.last_framed == ((PAGE, PAGE + 1),)
    assert lay.is_legible(PAGE, PAGE + 1) and not needs_frame(lay, [(PAGE, PAGE + 1)])
    a, b = lay.visible_gfns()
    assert a <= PAGE < b
    # Back returns to the framing before it.
    act(w, "view_back").trigger()
    wait_drawn(qtbot, w)
    assert View.of(lay).row_gfns == before.row_gfns


def test_replay_leaves_a_legible_visible_change_alone(make_window, qtbot, tmp_path) -> None:
    w = make_window(fold=False)
    replay_to_before_last(w, qtbot, recording(tmp_path, O.GuestAccept(PAGE << 12)))
    w.map.show_range(PAGE - 16, PAGE + 16)
    wait_drawn(qtbot, w)
    lay = w.map.layout_
    assert lay.is_legible(PAGE, PAGE + 1)
    before, history = View.of(lay), len(w.map.history.back)
    step_and_settle(w, qtbot)
    assert View.of(lay) == before and len(w.map.history.back) == history
    assert w.navigator.last_framed == ()


def test_replay_frames_an_off_screen_change(make_window, qtbot, tmp_path) -> None:
    w = make_window(fold=True)
    g = PAGE + 0xC00
    path = recording(tmp_path, O.GuestAccept(g << 12))
    replay_to_before_last(w, qtbot, path)
    w.map.show_range(0x10, 0x20)
    wait_drawn(qtbot, w)
    assert not on_screen(w.map.layout_, [(g, g + 1)])  # folded away, or below
    step_and_settle(w, qtbot)
    a, b = w.map.layout_.visible_gfns()
    assert a <= g < b and w.map.layout_.is_legible(g, g + 1)


def test_follow_changes_off_leaves_the_view(make_window, qtbot, tmp_path) -> None:
    w = make_window(fold=False)
    replay_to_before_last(w, qtbot, recording(tmp_path, O.GuestAccept(PAGE << 12)))
    act(w, "follow_changes").setChecked(False)
    w.map.zoom_all()
    wait_drawn(qtbot, w)
    before = View.of(w.map.layout_)
    step_and_settle(w, qtbot)
    assert View.of(w.map.layout_) == before


def test_live_ops_elsewhere_are_followed_and_pointed_ones_are_not(make_window, qtbot) -> None:
    w = make_window(fold=False)
    lay = w.map.layout_
    w.map.zoom_all()
    wait_drawn(qtbot, w)
    # What you pointed at (the selection) is where you look: no move, even if small.
    w.selection.set_gfn(PAGE)
    before = View.of(lay)
    w.engine.submit(plans.accept(PAGE))
    wait_drawn(qtbot, w)
    assert View.of(lay) == before
    # An op elsewhere (a form, a script line): followed.
    w.engine.apply_ops([O.GuestAccept((PAGE + 0x800) << 12)], "accept")
    wait_drawn(qtbot, w)
    assert lay.is_legible(PAGE + 0x800, PAGE + 0x801)


def test_framing_is_animated(make_window, qtbot) -> None:
    w = make_window(fold=False)
    w.map.zoom_all()
    wait_drawn(qtbot, w)
    zooms: list[int] = []
    w.map.viewChanged.connect(lambda _t: zooms.append(w.map.layout_.row_gfns))
    w.map.animator.duration_ms = 300
    w.map.show_range(PAGE, PAGE + 1, animate=True)
    assert w.map.animator.running
    qtbot.waitUntil(lambda: not w.map.animator.running, timeout=10_000)
    assert len(set(zooms)) >= 3  # it went through zooms in between
    assert w.map.layout_.row_gfns == zooms[-1] and w.map.layout_.is_legible(PAGE, PAGE + 1)


def test_zoom_to_selection_and_back(make_window, qtbot) -> None:
    w = make_window(fold=False)
    w.map.zoom_all()
    wait_drawn(qtbot, w)
    start = View.of(w.map.layout_)
    w.selection.set_range(PAGE, PAGE + 64)
    act(w, "zoom_selection").trigger()
    wait_drawn(qtbot, w)
    assert w.map.layout_.row_gfns < start.row_gfns
    act(w, "view_back").trigger()
    wait_drawn(qtbot, w)
    assert View.of(w.map.layout_) == start
    act(w, "view_forward").trigger()
    wait_drawn(qtbot, w)
    assert w.map.layout_.row_gfns < start.row_gfns


# ------------------------------------------------------------------ the overview


def test_minimap_shows_the_viewport_and_navigates(make_window, qtbot) -> None:
    w = make_window(fold=False)
    mm = w.minimap
    qtbot.waitUntil(lambda: mm._image is not None, timeout=10_000)
    w.map.show_range(0x100, 0x140)
    wait_drawn(qtbot, w)
    a, b = w.map.layout_.visible_gfns()
    boxes = mm.viewport_boxes()
    assert len(boxes) == 1
    assert abs(boxes[0].top() - mm.y_of(a)) <= 2
    assert boxes[0].height() >= 3
    # A click further down centres the map there, zoom kept.
    r = w.map.layout_.row_gfns
    y = int(mm.strip_rect().top() + mm.strip_rect().height() * 0.75)
    target = mm.gfn_at(y)
    qtbot.mouseClick(mm, Qt.LeftButton, Qt.NoModifier, QPoint(mm.width() // 2, y))
    wait_drawn(qtbot, w)
    a, b = w.map.layout_.visible_gfns()
    assert a <= target < b and w.map.layout_.row_gfns == r
    act(w, "view_back").trigger()
    wait_drawn(qtbot, w)
    assert w.map.layout_.visible_gfns()[0] <= 0x100


# ------------------------------------------------------------------ Go to


def goto(w, qtbot, text: str) -> str:
    box = w.goto_box
    box.edit.setText(text)
    qtbot.keyClick(box.edit, Qt.Key_Return)
    wait_drawn(qtbot, w)
    return box.answer.text()


def test_goto_frames_and_selects(make_window, qtbot) -> None:
    w = make_window(fold=True)
    assert "gpa 0x3000000" in goto(w, qtbot, "0x3000000")
    assert w.selection.gfn == 0x3000
    lay = w.map.layout_
    assert lay.is_legible(0x3000, 0x3001) and lay.visible_gfns()[0] <= 0x3000
    assert "memslot 0" in goto(w, qtbot, "slot 0")
    assert w.selection.range == (0, 64 * MB >> 12)
    # A host pfn: resolved on the engine thread, then framed.
    w.engine.submit(plans.accept(0x2345))
    wait_idle(qtbot, w.engine)
    pfn = w.engine.worker.session.vm.private.lookup(0x2345).pfn
    goto(w, qtbot, f"pfn {pfn:#x}")
    qtbot.waitUntil(lambda: w.selection.gfn == 0x2345, timeout=10_000)
    assert "guest_memfd" in w.goto_box.answer.text()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("gpa 0x40000000", "past the end of the guest's address space"),
        ("0xzz", "is not a number"),
        ("slot 5", "no such memslot"),
        ("hva 0x10", "in no memslot"),
    ],
)
def test_goto_bad_input_says_why_inline(make_window, qtbot, text, says) -> None:
    w = make_window()
    sel = (w.selection.gfn, w.selection.range)
    before = View.of(w.map.layout_)
    answer = goto(w, qtbot, text)
    assert says in answer
    assert "d32f2f" in w.goto_box.answer.styleSheet()  # red
    assert (w.selection.gfn, w.selection.range) == sel and View.of(w.map.layout_) == before
    w.goto_box.edit.setText("0x1000")  # typing again clears the line
    qtbot.keyClick(w.goto_box.edit, Qt.Key_0)
    assert w.goto_box.answer.text() == ""


def test_goto_unknown_pfn_says_so(make_window, qtbot) -> None:
    w = make_window()
    goto(w, qtbot, "pfn 0x7fffffff")
    qtbot.waitUntil(lambda: "past the host's memory" in w.goto_box.answer.text(), timeout=10_000)


def test_ctrl_g_focuses_the_box(make_window, qtbot) -> None:
    w = make_window()
    w.activateWindow()
    act(w, "goto").trigger()
    assert w.goto_box.edit.hasFocus() or w.focusWidget() is w.goto_box.edit


# ------------------------------------------------------------------ folds and the launch view


def test_default_scene_opens_on_what_exists(make_window, qtbot) -> None:
    """At 1600x1000 the default scene opens with every populated run on screen at a
    legible size; the empty runs between them are labelled fold bands."""
    w = make_window(Session.scene("default"), size=(1600, 1000), fold=True)
    lay = w.map.layout_
    vm = w.engine.worker.session.vm
    cache = StepCache(vm, guest_extent(vm, 512))
    empty = {Code.PRIVATE_EMPTY, Code.SHARED_EMPTY, Code.HOLE, Code.OUTSIDE}
    populated = [
        (int(cache.bounds[i]), int(cache.bounds[i + 1]))
        for i in range(len(cache.codes))
        if cache.codes[i] not in empty
    ]
    a, b = lay.visible_gfns()
    assert (a, b) == (0, lay.extent)
    for s, e in populated:
        assert lay.is_legible(s, e), (hex(s), lay.range_px(s, e))
        assert (
            w.map.code_at(s)
            == cache.codes[__import__("numpy").searchsorted(cache.bounds, s, "right") - 1]
        )
    fm = lay.foldmap()
    assert len(fm) >= 5
    assert any(
        "1.9G private, no folio" in w.map.fold_bands.label(f, lay.row_gfns) for f in fm.folds
    )


def test_click_a_fold_band_opens_it_and_zoom_all_folds_again(make_window, qtbot) -> None:
    w = make_window(Session.scene("default"), fold=True)
    lay = w.map.layout_
    n = len(lay.foldmap())
    f = max(lay.foldmap().folds, key=lambda f: f.row1 - f.row0)
    y = f.drow + lay.foldmap().band / 2
    pos = w.map.view.mapFromScene(
        w.map.vb.mapViewToScene(
            __import__("PySide6.QtCore", fromlist=["QPointF"]).QPointF(lay.row_gfns / 2, y)
        )
    )
    qtbot.mouseClick(w.map.view.viewport(), Qt.LeftButton, Qt.NoModifier, pos)
    wait_drawn(qtbot, w)
    assert len(lay.foldmap()) == n - 1
    assert w.engine.worker.session.ops == w.engine.worker.session.ops  # no op was applied
    act(w, "zoom_all").trigger()
    wait_drawn(qtbot, w)
    assert len(lay.foldmap()) == n
    act(w, "fold_empty").setChecked(False)
    wait_drawn(qtbot, w)
    assert len(lay.foldmap()) == 0


def test_patterns_mark_the_states_colour_cannot_tell_apart(make_window, qtbot) -> None:
    w = make_window(fold=False)
    w.engine.submit(plans.touch_without_accept(PAGE))  # a PENDING leaf (and a dead TD)
    w.engine.apply_ops([O.Fallocate(3, 1, (PAGE + 64) << 12, 16 << 12)], "fallocate")
    wait_drawn(qtbot, w)
    # A zoom whose cells are too small for tile labels but big enough for patterns.
    w.map.go_to(View(64, PAGE + 32.0))
    wait_drawn(qtbot, w)
    cw, ch = w.map.layout_.cell_px()
    assert w.map.cells.tier() == 0 and min(cw, ch) >= 6
    codes = {int(c) for *_rest, c in w.map.patterns.runs().tolist()}
    assert {Code.PENDING_4K, Code.PRIVATE_ALLOCATED} <= codes
    assert Code.PRIVATE_EMPTY not in codes
    # On screen, the patterned cell has pixels other than its colour (the ink).
    img = w.map.view.grab().toImage()
    c = w.map.gfn_pos(PAGE)
    base = LEGEND_BY_CODE[Code.PENDING_4K].rgb
    seen = {
        img.pixelColor(c.x() + dx, c.y() + dy).getRgb()[:3]
        for dx in range(-5, 6)
        for dy in range(-5, 6)
    }
    assert base in seen and len(seen) > 1
    # Zoomed in until tiles carry labels, the label is the second channel instead.
    w.map.show_range(PAGE, PAGE + 32)
    wait_drawn(qtbot, w)
    assert w.map.cells.tier() > 0 and w.map.layout_.is_legible(PAGE, PAGE + 1, LEGIBLE_PX)
    assert LEGEND_BY_CODE[Code.PENDING_4K].short == "PENDING"


def test_follow_frames_the_marks_ranges_after_undo_and_seeks(make_window, qtbot, tmp_path) -> None:
    """One source of "what changed": Follow changes frames the ranges the change marks
    outline (ActionRecord.changes, model/changes.py), for an undo and for a seek back in a
    replay, not only for ops applied forwards."""
    w = make_window(fold=False)
    lay = w.map.layout_
    g = PAGE + 0x800
    w.engine.apply_ops([O.GuestAccept(g << 12)], "accept")
    wait_drawn(qtbot, w)
    w.map.zoom_all()
    w.selection.clear()
    wait_drawn(qtbot, w)
    assert not lay.is_legible(g, g + 1)
    w.engine.undo()
    wait_drawn(qtbot, w)
    assert w.navigator.last_framed == w.marks.ranges() == ((g, g + 1),)
    assert lay.is_legible(g, g + 1)
    # A replay stepped back: the op now last is what the marks show and the map frames.
    path = recording(tmp_path, O.GuestAccept(PAGE << 12), O.GuestAccept(g << 12))
    replay_to_before_last(w, qtbot, path)
    step_and_settle(w, qtbot)
    w.map.zoom_all()
    wait_drawn(qtbot, w)
    w.presenter.replay.step_back()
    wait_drawn(qtbot, w)
    assert w.marks.ranges() == ((PAGE, PAGE + 1),)
    assert w.navigator.last_framed == ((PAGE, PAGE + 1),)
    assert lay.is_legible(PAGE, PAGE + 1) and on_screen(lay, [(PAGE, PAGE + 1)])


def test_fold_band_labels_rest_while_the_map_moves(make_window, qtbot, monkeypatch) -> None:
    """A framing animation draws the fold bands' edges, not their labels (a new set per
    frame's zoom, unreadable in motion); the last frame has them again."""
    w = make_window(spread_session(), fold=True)
    w.map.zoom_all()
    wait_drawn(qtbot, w)
    bands = w.map.fold_bands
    pills: list[str] = []
    real = bands._pill
    monkeypatch.setattr(bands, "_pill", lambda text, *a: pills.append(text) or real(text, *a))
    w.map.view.grab()
    assert pills, "the launch view shows labelled fold bands"
    w.map.animator.duration_ms = 10_000
    w.map.show_range(PAGE, PAGE + 1, animate=True)
    assert w.map.animator.running and bands.moving
    pills.clear()
    w.map.view.grab()
    assert not pills
    w.map.animator.finish()
    wait_drawn(qtbot, w)
    assert not bands.moving
    w.map.view.grab()
    assert pills


def test_an_op_that_unfolds_the_rows_around_a_lone_page_keeps_it_in_place(
    make_window, qtbot
) -> None:
    """At the pages zoom a page in the row of a small shared range sits alone between
    fold bands; accepting it fills its 2M folio, whose empty rows were folded away.  The
    refold opens those rows around the page: the page stays where it was on the screen
    (it slid 1200 px down, off the screen, and Follow zoomed out to find it)."""
    s = td_session(256 * MB, tdx_private_max_level="2M", gmem_max_order=9)
    shared = [0x3100 + 0x1000 * i for i in range(8)]  # in the middle of a 2M range
    for a in shared:
        s.apply_group([O.SetMemoryAttributes(a << 12, 4 << 12, 0)], "shared")
    w = make_window(s, fold=True)
    lay = w.map.layout_
    g = shared[3] + 4  # private, no folio, beside the shared range: a row between bands
    w.map.go_to(View(8, float(g)))
    w.selection.set_gfn(g)
    wait_drawn(qtbot, w)
    fm = lay.foldmap()
    row = g // lay.row_gfns
    assert fm.fold_of_row(row - 1) >= 0 and fm.fold_of_row(row + 1) >= 0  # alone
    before, zoom = w.map.gfn_pos(g), lay.row_gfns
    w.engine.submit(plans.accept(g))
    wait_idle(qtbot, w.engine)
    wait_drawn(qtbot, w)
    assert lay.foldmap().fold_of_row(row - 1) < 0  # the folio's rows opened around it
    assert lay.row_gfns == zoom and w.map.gfn_pos(g) == before
    # Not pointed at (a script line, a form): the changed page on screen stays put too.
    h = shared[5] + 4
    w.selection.clear()
    w.map.go_to(View(8, float(h)))
    wait_drawn(qtbot, w)
    row = h // lay.row_gfns
    assert lay.foldmap().fold_of_row(row - 1) >= 0 and on_screen(lay, [(h, h + 1)])
    before = w.map.gfn_pos(h)
    w.engine.apply_ops([O.GuestAccept(h << 12)], "accept")
    wait_idle(qtbot, w.engine)
    wait_drawn(qtbot, w)
    assert lay.foldmap().fold_of_row(row - 1) < 0
    assert lay.row_gfns == zoom and w.map.gfn_pos(h) == before


def test_follows_animation_frames_build_no_fold_map(make_window, qtbot, monkeypatch) -> None:
    """The framing's probe (`frame_target`) builds the fold map of each zoom between the
    current view and the target; the map keeps them, so the animation's frames, which
    pass through those zooms, build none (each frame built its zoom's again)."""
    import imemviz.app.panes.map_layout as map_layout
    from imemviz.app.panes.map_frame import interpolate

    w = make_window(spread_session(), fold=True)
    lay, anim = w.map.layout_, w.map.animator
    w.map.zoom_all()
    w.selection.clear()
    wait_drawn(qtbot, w)
    g = 0x40800  # private, no folio, between two shared ranges: too small to see
    anim.duration_ms = 10_000
    w.engine.apply_ops([O.GuestAccept(g << 12)], "accept")
    qtbot.waitUntil(lambda: anim.running, timeout=20_000)
    built: list[int] = []
    real = map_layout.find_folds
    monkeypatch.setattr(
        map_layout, "find_folds", lambda *a, **k: built.append(a[1]) or real(*a, **k)
    )
    a, b = anim._from, anim._to
    assert a is not None and b is not None and b.row_gfns < a.row_gfns // 8
    zooms = set()
    for i in range(1, 11):  # the frames the animation draws, as its timer would
        interpolate(a, b, i / 10).apply(lay)
        w.map.refresh()
        zooms.add(lay.row_gfns)
    assert len(zooms) >= 4 and not built
    anim.finish()
    wait_drawn(qtbot, w)
    assert lay.is_legible(g, g + 1)
