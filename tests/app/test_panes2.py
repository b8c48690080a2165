"""Part 2 panes: host folios, entries, event log, counters, the protocol stepper, and how
selecting in one highlights in the others."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from imemviz.app.feeds import LeafArrays, leaf_arrays
from imemviz.app.highlight import from_span
from imemviz.app.panes.entries import EntriesModel
from imemviz.app.panes.event_log import EventLogModel
from imemviz.app.panes.folios import PFN_MODE
from imemviz.io import plans
from imemviz.model.host_raster import HostCode

from .conftest import td_session, wait_idle
from .helpers import session_vm

pytestmark = pytest.mark.qt

GFNS = (0x810, 0x811, 0x900)


@pytest.fixture
def win(make_window, qtbot):
    """A TD window with three accepted and touched pages, every pane fed."""
    w = make_window(td_session())
    w.panes2.feed.always = True  # every pane fed, visible or not
    for g in GFNS:
        w.engine.submit(lambda vm, g=g: plans.accept_and_touch(vm, g))
    wait_idle(qtbot, w.engine)
    p = w.panes2
    qtbot.waitUntil(lambda: len(p.entries.model.leaves) >= 3 + 1, timeout=10_000)
    qtbot.waitUntil(lambda: p.folios.spaces is not None, timeout=10_000)
    return w


def _row_of_gfn(model: EntriesModel, gfn: int) -> int:
    row = model.find_gfn(gfn)
    assert row >= 0
    return row


# ------------------------------------------------------------------ models
def test_entries_model_passes_modeltester(qtmodeltester):
    s = td_session()
    vm = s.vm
    for g in GFNS:
        s.apply_group(plans.accept_and_touch(vm, g).ops)
    slots = [m for m in vm.memslots.all() if m.npages]
    model = EntriesModel()
    model.set_leaves(leaf_arrays(vm, 1, slots))
    assert model.rowCount() == sum(vm.private.count(lv) + vm.shared.count(lv) for lv in (1, 2, 3))
    qtmodeltester.check(model)
    model.sort(4, Qt.DescendingOrder)
    qtmodeltester.check(model)
    model.set_filter(levels={1})
    qtmodeltester.check(model)
    assert {model.data(model.index(r, 3)) for r in range(model.rowCount())} == {"4K"}


def test_event_log_model_passes_modeltester(qtmodeltester):
    s = td_session()
    model = EventLogModel()
    model.reset(list(s.vm.events.log))
    qtmodeltester.check(model)
    s.vm.apply(plans.accept_and_touch(s.vm, 0x810).ops[0])
    model.append(s.vm.last_events)
    model.set_enabled({"TDH.MEM.PAGE.AUG", "TDG.MEM.PAGE.ACCEPT"})
    qtmodeltester.check(model)
    assert [model.data(model.index(r, 1)) for r in range(model.rowCount())][-2:] == [
        "TDH.MEM.PAGE.AUG",
        "TDG.MEM.PAGE.ACCEPT",
    ]


def _synthetic(n: int) -> LeafArrays:
    rng = np.random.default_rng(0)
    gfn = np.sort(rng.choice(1 << 30, n, replace=False)).astype(np.int64)
    return LeafArrays(
        1,
        rng.integers(0, 2, n).astype(np.uint8),
        gfn,
        rng.choice([1, 1, 1, 2], n).astype(np.uint8),
        rng.integers(0, 1 << 24, n).astype(np.int64),
        rng.integers(0, 2, n).astype(np.uint8),
        np.zeros(n, np.int32),
        np.zeros((0, 3), np.int64),
        True,
    )


@pytest.mark.slow
def test_entries_model_sorts_and_filters_many_rows(slow_scale):
    # Correctness on many rows; the time it takes is in benchmarks/bench_panes.py.
    model = EntriesModel()
    model.set_leaves(_synthetic(100_000 * slow_scale))
    model.sort(4, Qt.AscendingOrder)
    model.set_filter(roots={0}, levels={1})
    model.sort(3, Qt.DescendingOrder)
    pfn = model.leaves.pfn[model.view]
    lv = model.leaves
    assert np.all(lv.root[model.view] == 0) and np.all(lv.level[model.view] == 1)
    model.sort(4, Qt.AscendingOrder)
    assert np.all(np.diff(lv.pfn[model.view]) >= 0)
    assert len(pfn) == model.rowCount()


# ------------------------------------------------------------------ cross-highlighting
def test_entry_row_highlights_map_and_folios(win, qtbot):
    p = win.panes2
    vm = session_vm(win)
    leaf = vm.private.lookup(0x900)
    row = _row_of_gfn(p.entries.model, 0x900)
    p.entries.table.selectRow(row)
    assert win.selection.range == (0x900, 0x901)
    hl = win.selection.highlight
    assert hl.source == "entries" and hl.pfns == ((leaf.pfn, leaf.pfn + 1),)
    p.folios.set_mode(PFN_MODE)
    assert p.folios.highlighted_ranges() == [(leaf.pfn, leaf.pfn + 1)]
    assert not p.folios.hl_item.path().isEmpty()
    p.folios.set_mode(3)
    idx = vm.memslots.lookup(0x900).gmem_index(0x900)
    assert (idx, idx + 1) in p.folios.highlighted_ranges()


def test_map_selection_selects_entry_and_folio(win, qtbot):
    p = win.panes2
    vm = session_vm(win)
    win.selection.set_gfn(0x811)
    cur = p.entries.selected_leaf()
    assert cur is not None and int(p.entries.model.leaves.gfn[cur]) == 0x811
    folio = vm.files[3].inode.folio_at(vm.memslots.lookup(0x811).gmem_index(0x811))
    p.folios.set_mode(PFN_MODE)
    assert p.folios.highlighted_ranges() == [(folio.pfn, folio.pfn + 1)]


def test_folio_click_highlights_gfns_and_entry(win, qtbot):
    p = win.panes2
    vm = session_vm(win)
    f = p.folios
    f.set_mode(3)
    slot = vm.memslots.lookup(0x810)
    index = slot.gmem_index(0x810)
    assert f.space().code_at(index) == HostCode.FOLIO_4K
    text, _hl = f.describe(index)
    assert "backs gfn 0x810" in text
    f.click_page(index)
    assert win.selection.range == (0x810, 0x811)
    assert win.selection.highlight.source == "folios"
    cur = p.entries.selected_leaf()
    assert int(p.entries.model.leaves.gfn[cur]) == 0x810
    # the pfn space shows the same folio where the allocator put it
    f.set_mode(PFN_MODE)
    pfn = vm.files[3].inode.folio_at(index).pfn
    assert f.space().code_at(pfn) == HostCode.FOLIO_4K
    assert f.describe(pfn)[1].gfns == ((0x810, 0x811),)
    f.set_zoom(30, pfn)
    assert f.codes is not None and f.window is not None


def test_event_click_highlights_its_gfn(win, qtbot):
    p = win.panes2
    m = p.events.model
    pos = max(i for i, ev in enumerate(m.events) if ev[1] == "TDH.MEM.PAGE.AUG")
    ev = m.events[pos]
    p.events.table.selectRow(m.row_of(pos))
    hl = win.selection.highlight
    assert hl.source == "event_log" and hl.gfns == ((ev[2], ev[2] + 1),)
    assert hl.pfns == ((ev[4], ev[4] + 1),)
    assert win.selection.range == (ev[2], ev[2] + 1)
    assert int(p.entries.model.leaves.gfn[p.entries.selected_leaf()]) == ev[2]


def test_event_kind_filter_and_follow(win, qtbot):
    p = win.panes2
    kinds = p.events.kinds
    for i in range(kinds.topLevelItemCount()):
        top = kinds.topLevelItem(i)
        if top.text(0) != "TDX SEAMCALLs":
            top.setCheckState(0, Qt.Unchecked)
    qtbot.waitUntil(lambda: p.events.model.view is not None, timeout=2000)
    m = p.events.model
    names = {m.data(m.index(r, 1)) for r in range(m.rowCount())}
    assert names and all(n.startswith(("TDH.", "TDG.")) for n in names)
    n = m.rowCount()
    win.engine.submit(lambda vm: plans.accept_and_touch(vm, 0x920))
    wait_idle(qtbot, win.engine)
    qtbot.waitUntil(lambda: m.rowCount() > n, timeout=5000)
    assert m.data(m.index(m.rowCount() - 1, 1)).startswith(("TDH.", "TDG."))


def test_counters_follow_ops(win, qtbot):
    c = win.panes2.counters
    before = c.series("private 4K")
    win.engine.submit(lambda vm: plans.accept_and_touch(vm, 0x930))
    wait_idle(qtbot, win.engine)
    qtbot.waitUntil(lambda: len(c.series("private 4K")) > len(before), timeout=5000)
    s = c.series("private 4K")
    assert s[-1] == before[-1] + 1
    assert c.series("mmu_invalidate_seq")[-1] >= 0


# ------------------------------------------------------------------ stepper
def test_step_through_last_op(win, qtbot):
    p = win.panes2
    win.engine.submit(lambda vm: plans.convert(vm, 0x810, 0x812, private=False, discard=True))
    wait_idle(qtbot, win.engine)
    qtbot.waitUntil(lambda: p.events.model.op_first and max(p.events.model.op_first) >= 0)
    p.step_action.trigger()
    st = p.stepper
    assert st.steps, "no steps"
    op = st.op
    first, events = p.events.model.op_events(op)
    slots = win.engine.snapshot.slots
    seen = []
    for k, step in enumerate(st.steps):
        if k:
            qtbot.keyClick(st, Qt.Key_Right)
        assert st.current == k
        want = from_span(step.span, slots, "stepper", step.title)
        assert win.selection.highlight == want
        assert p.map_highlight.ranges() == want.gfns  # outlined on the map, every range
        cur = p.events.table.currentIndex()
        assert p.events.model.position(cur.row()) == first + step.positions[0]
        assert events[step.positions[0]][1] == step.name
        assert step.name in st.text.text()
        seen.append(step.name)
    assert not st.next_btn.isEnabled()
    qtbot.keyClick(st, Qt.Key_Left)
    assert st.current == len(st.steps) - 2
    # the steps of the op that ran last: the discard's hole punch, then its zap
    assert "kvm_gmem_invalidate_begin" in seen or "kvm_vm_set_mem_attributes" in seen


def test_step_through_from_event_log(win, qtbot):
    p = win.panes2
    m = p.events.model
    pos = max(i for i, ev in enumerate(m.events) if ev[1] == "TDH.MEM.PAGE.AUG")
    row = m.row_of(pos)
    table = p.events.table
    table.scrollTo(m.index(row, 0))
    p.events._on_menu(table.visualRect(m.index(row, 1)).center())  # the right click
    menu = p.events._menu
    act = menu.actions()[0]
    assert act.text() == f"Step through op #{m.events[pos][0]}"
    # ... then copy as text / as op JSON (imemviz/app/copy_text.py)
    assert "Copy event as text" in [a.text() for a in menu.actions()]
    act.trigger()
    menu.close()
    st = p.stepper
    assert st.op == m.events[pos][0]
    names = [s.name for s in st.steps]
    assert "TDH.MEM.PAGE.AUG" in names
    aug = st.steps[names.index("TDH.MEM.PAGE.AUG")]
    st.go(names.index("TDH.MEM.PAGE.AUG"))
    assert "TDG.MEM.PAGE.ACCEPT" in st.text.text()
    assert win.selection.highlight.gfns == aug.span.gfns


def test_hidden_panes_are_fed_when_shown(make_window, qtbot):
    w = make_window(td_session())
    p = w.panes2
    w.docks["log"].raise_()
    w.engine.submit(lambda vm: plans.accept_and_touch(vm, 0x950))
    wait_idle(qtbot, w.engine)
    n_before = len(p.entries.model.leaves)
    w.docks["entries"].raise_()  # the tab comes to the front: the feed builds the leaves
    qtbot.waitUntil(lambda: len(p.entries.model.leaves) > n_before, timeout=10_000)
    assert p.entries.model.find_gfn(0x950) >= 0
    w.docks["folios"].raise_()
    qtbot.waitUntil(lambda: p.folios.spaces is not None, timeout=10_000)


def test_counters_share_the_event_log_numbering(win, qtbot):
    c = win.panes2.counters
    win.engine.submit(lambda vm: plans.accept_and_touch(vm, 0x960))
    wait_idle(qtbot, win.engine)
    m = win.panes2.events.model
    qtbot.waitUntil(lambda: len(c.series("private 4K")) and c.ops[-1] >= m.events[-1][0])
    # the touch of an accepted page needs no fault and emits nothing: one op past the events
    assert m.events[-1][0] in set(c.ops.tolist())
    assert c.ops[-1] - m.events[-1][0] <= 1


def test_map_scrolls_to_what_a_pane_highlights(win, qtbot):
    p = win.panes2
    win.map.show_range(0x0, 0x20)  # zoomed in on the first pages: 0x900 is out of view
    a, b = win.map.layout_.visible_gfns()
    assert not a <= 0x900 < b
    p.entries.table.selectRow(_row_of_gfn(p.entries.model, 0x900))
    a, b = win.map.layout_.visible_gfns()
    assert a <= 0x900 < b


def test_sept_page_in_the_tree_highlights_its_gfns_and_host_page(win, qtbot):
    p = win.panes2
    vm = session_vm(win)
    tree = p.entries.tree
    sept = tree.topLevelItem(0).child(3)
    assert sept.text(0).startswith("S-EPT pages") and int(sept.text(1)) == len(vm.private.tables)
    grp = sept.child(sept.childCount() - 1)  # the pages holding 4K entries
    assert grp.text(0) == "holding 4K entries"
    item = grp.child(0)
    _, g0, g1, pfn = item.data(0, Qt.UserRole)
    assert g1 - g0 == 512 and (1, g0 >> 9) in vm.private.tables
    assert vm.private.tables[(1, g0 >> 9)] == pfn
    tree.itemClicked.emit(item, 0)
    assert win.selection.range == (g0, g1)
    p.folios.set_mode(PFN_MODE)
    assert p.folios.highlighted_ranges() == [(pfn, pfn + 1)]
    assert p.folios.space().code_at(pfn) == HostCode.SEPT


def test_a_map_selection_ends_the_highlight(win, qtbot):
    p = win.panes2
    p.entries.table.selectRow(_row_of_gfn(p.entries.model, 0x900))
    assert p.map_highlight.ranges() == ((0x900, 0x901),)
    win.selection.set_gfn(0x811)  # a click elsewhere on the map
    assert win.selection.highlight is None and p.map_highlight.ranges() == ()
    p.folios.set_mode(PFN_MODE)
    pfn = session_vm(win).private.lookup(0x811).pfn
    assert p.folios.highlighted_ranges() == [(pfn, pfn + 1)]  # the selection's folio


def test_address_tree_walks_1g_2m_leaves(win, qtbot):
    p = win.panes2
    tree = p.entries.tree
    top = tree.topLevelItem(0)
    addr = top.child(top.childCount() - 1)
    assert addr.text(0).startswith("by address")
    addr.setExpanded(True)
    region_1g = addr.child(0)
    assert region_1g.text(0) == "1G @ gfn 0x0"
    region_1g.setExpanded(True)
    names = [region_1g.child(k).text(0) for k in range(region_1g.childCount())]
    assert "2M @ gfn 0x800" in names
    r2m = region_1g.child(names.index("2M @ gfn 0x800"))
    r2m.setExpanded(True)
    leaves = [r2m.child(k).text(0) for k in range(r2m.childCount())]
    assert "4K leaf gfn 0x810" in leaves and "4K leaf gfn 0x811" in leaves
    leaf = r2m.child(leaves.index("4K leaf gfn 0x811"))
    tree.itemClicked.emit(leaf, 0)
    assert win.selection.range == (0x811, 0x812)
    assert int(p.entries.model.leaves.gfn[p.entries.selected_leaf()]) == 0x811
    # the open nodes stay open when the next op's data arrives
    win.engine.submit(lambda vm: plans.accept_and_touch(vm, 0x812))
    wait_idle(qtbot, win.engine)
    qtbot.waitUntil(lambda: p.entries.model.find_gfn(0x812) >= 0, timeout=5000)
    top = tree.topLevelItem(0)
    addr = top.child(top.childCount() - 1)
    r1 = addr.child(0)
    assert addr.isExpanded() and r1.isExpanded()
    kids = [r1.child(k) for k in range(r1.childCount())]
    r2m = next(c for c in kids if c.text(0) == "2M @ gfn 0x800")
    assert r2m.isExpanded()
    assert "4K leaf gfn 0x812" in [r2m.child(k).text(0) for k in range(r2m.childCount())]
