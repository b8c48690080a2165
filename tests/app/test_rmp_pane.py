"""The RMP pane (imemviz/app/panes/rmp.py): rows of an SNP guest's RMP, cross-highlighted
with the map, the state at a protocol step, the change marks of the last action."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from imemviz import resources
from imemviz.app.highlight import Highlight
from imemviz.app.rmp_palette import COLOURS, GLYPHS
from imemviz.io.session import Session
from imemviz.model.ops import parse_op
from imemviz.model.rmp_rows import FIRMWARE, GUEST_INVALID, GUEST_VALID, HYPERVISOR

from .conftest import wait_idle

pytestmark = pytest.mark.qt


def snp_window(make_window, qtbot, scene: str):
    w = make_window(Session.open(resources.scene_path(scene)), size=(1280, 860))
    qtbot.waitUntil(lambda: len(w.rmp.model.rows) > 0, timeout=20_000)
    return w


def test_rows_after_snp_launch(make_window, qtbot) -> None:
    w = snp_window(make_window, qtbot, "snp-launch")
    pane, m = w.rmp, w.rmp.model
    rows = m.rows
    assert w.docks["rmp"].isVisible()  # an SNP guest brings its RMP forward
    # The VMSA: a firmware page, immutable, at svm.h's INITIAL_VMSA_GPA.
    (vmsa,) = np.flatnonzero(rows.vmsa).tolist()
    assert rows.state[vmsa] == FIRMWARE and rows.immutable[vmsa]
    assert m.data(m.index(vmsa, 2)) == f"{GLYPHS[FIRMWARE]} firmware"
    assert m.data(m.index(vmsa, 5)) == "0xfffffffff000"
    assert m.data(m.index(vmsa, 7)) == "VMSA"
    assert m.data(m.index(vmsa, 2), Qt.BackgroundRole).color().name() == COLOURS[FIRMWARE][0]
    # SNP_LAUNCH_FINISH made every launched page Guest-Valid, at 4K (sev_gmem_post_populate).
    others = [r for r in range(len(rows)) if r != vmsa]
    assert others and all(rows.state[r] == GUEST_VALID for r in others)
    assert all(m.data(m.index(r, 3)) == "4K" for r in others)
    # The rows are the RMP: each run's pages are assigned to consecutive gfns.
    vm = w.engine.worker.session.vm
    for r in others:
        p, g = int(rows.pfn[r]), int(rows.gfn[r])
        assert vm.snp.rmp.lookup(p).gfn == g
        assert vm.snp.rmp.lookup(p + int(rows.count[r]) - 1).gfn == g + int(rows.count[r]) - 1
    assert "firmware 1" in pane.summary.text()


def test_map_selection_highlights_the_rows_behind_it_and_a_row_selects_its_gfns(
    make_window, qtbot
) -> None:
    w = snp_window(make_window, qtbot, "snp-launch")
    pane, rows = w.rmp, w.rmp.model.rows
    # Select the firmware volume's gfns on the map: the rows of the pfns behind them.
    w.selection.set_range(0xF00, 0xF10)
    want = [
        r
        for r in range(len(rows))
        if rows.gfn[r] >= 0 and rows.gfn[r] < 0xF10 and rows.gfn[r] + rows.count[r] > 0xF00
    ]
    assert want and pane.highlighted_rows == want
    selected = sorted({i.row() for i in pane.table.selectionModel().selectedRows()})
    assert selected == want
    # A click on a row selects its gfns on the map and highlights its pfns.
    r = want[-1]
    pane.table.scrollTo(pane.model.index(r, 0))
    rect = pane.table.visualRect(pane.model.index(r, 0))
    qtbot.mouseClick(pane.table.viewport(), Qt.LeftButton, pos=rect.center())
    g, n, p = int(rows.gfn[r]), int(rows.count[r]), int(rows.pfn[r])
    assert w.selection.range == (g, g + n)
    hl = w.selection.highlight
    assert hl is not None and hl.source == "rmp" and hl.pfns == ((p, p + n),)
    # Another pane's highlight (an event, a folio: host pfns) selects the rows of its pfns.
    other = int(rows.pfn[want[0]])
    w.selection.set_highlight(Highlight((), ((other, other + 1),), (), "events", "an event"))
    assert pane.highlighted_rows == [want[0]]


def test_the_tab_sits_right_after_the_entries(make_window, qtbot) -> None:
    from PySide6.QtWidgets import QTabBar

    w = snp_window(make_window, qtbot, "snp-launch")
    bars = [b for b in w.findChildren(QTabBar) if b.count() > 3]
    (bar,) = [b for b in bars if "RMP (SEV-SNP)" in [b.tabText(i) for i in range(b.count())]]
    tabs = [bar.tabText(i) for i in range(bar.count())]
    assert tabs.index("RMP (SEV-SNP)") == tabs.index("S-EPT / EPT entries") + 1


def test_step_view_at_psmash_and_the_marks_of_the_last_action(make_window, qtbot) -> None:
    w = snp_window(make_window, qtbot, "snp-psmash")
    pane = w.rmp
    s = w.engine.worker.session
    op = max(i for i, o in enumerate(s.ops) if o.NAME == "fallocate")
    w.panes2.step_op(op)
    w.docks["rmp"].raise_()  # step_op brings the event log forward; the user picks the RMP tab
    st = w.panes2.stepper
    k = [x.name for x in st.steps].index("psmash")

    def at(step: int):
        st.go(step)

        def shown() -> bool:
            sh = w.step_view.shown
            return sh is not None and sh.step == step and pane.model.rows.step == sh.title

        qtbot.waitUntil(shown, timeout=20_000)
        return pane.model.rows

    before = at(k - 1)
    big = np.flatnonzero(before.size_2m)
    assert len(big) == 1 and before.count[big[0]] == 512  # one 2M entry
    assert pane.model.data(pane.model.index(int(big[0]), 3)) == "2M"
    assert pane.summary.text().startswith("at ")
    rows = at(k)
    assert not rows.size_2m.any()  # PSMASH: 512 4K entries, Validated kept
    head = int(before.pfn[big[0]])
    inside = rows.rows_of_pfns(head, head + 512)
    assert int(rows.count[inside].sum()) == 512
    assert all(rows.state[r] == GUEST_VALID for r in inside)
    st.presentRequested.emit()
    qtbot.waitUntil(lambda: not pane.model.rows.step, timeout=20_000)
    # The present: the punched page is back with the host (freed, so no row).
    assert not pane.model.rows.rows_of_pfns(head + 3, head + 4).size
    # An action that changes the RMP marks its rows: the guest rescinds a page.
    w.engine.apply_ops(
        [parse_op({"op": "guest_pvalidate", "gpa": "0x205000", "level": "4K", "validate": False})],
        "rescind",
    )
    wait_idle(qtbot, w.engine)
    qtbot.waitUntil(lambda: pane.model.marked.any(), timeout=20_000)
    (marked,) = np.flatnonzero(pane.model.marked).tolist()
    rows = pane.model.rows
    assert rows.pfn[marked] == head + 5 and rows.count[marked] == 1
    assert pane.model.data(pane.model.index(marked, 2)).endswith("guest-invalid")
    assert "1 outlined" in pane.marks_note.text()
    assert HYPERVISOR not in rows.state.tolist()


def test_a_hidden_pane_builds_nothing_and_catches_up_when_shown(make_window, qtbot) -> None:
    w = snp_window(make_window, qtbot, "snp-psmash")
    pane = w.rmp
    w.docks["log"].raise_()
    qtbot.waitUntil(lambda: not pane.feed.want, timeout=5000)  # a background tab
    before = pane.model.rows
    w.engine.apply_ops(
        [parse_op({"op": "guest_pvalidate", "gpa": "0x205000", "level": "4K", "validate": False})],
        "rescind",
    )
    wait_idle(qtbot, w.engine)
    assert pane.model.rows is before  # hidden: not rebuilt after the op
    w.docks["rmp"].raise_()
    qtbot.waitUntil(lambda: pane.model.rows is not before, timeout=20_000)
    rows = pane.model.rows
    assert GUEST_INVALID in rows.state.tolist()


def test_the_rmp_tab_is_there_only_for_snp_guests(make_window, qtbot) -> None:
    """A TD or any other VM has no RMP: no empty tab in the way; an SNP guest brings it
    forward, and a VM of another type after it takes it away again."""
    from .conftest import td_session, wait_drawn

    w = make_window(td_session(), size=(1280, 860))
    wait_drawn(qtbot, w)
    dock = w.rmp.parentWidget()
    assert not dock.isVisible()
    w.engine.set_session(Session.open(resources.scene_path("snp-launch")))
    qtbot.waitUntil(dock.isVisible, timeout=20_000)
    w.engine.set_session(td_session())
    qtbot.waitUntil(lambda: not dock.isVisible(), timeout=20_000)


def test_f8_after_an_snp_action_shows_the_rmp_part_of_its_protocol(make_window, qtbot) -> None:
    """The step panel says what each step does to the RMP, and stepping an op whose
    protocol changes the RMP brings the RMP tab forward (imemviz/app/step_rmp.py)."""
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QTabBar

    from imemviz.app.step_rmp import rmp_steps

    w = snp_window(make_window, qtbot, "snp-psmash")

    def front() -> str:
        (bar,) = [
            b
            for b in w.findChildren(QTabBar)
            if "RMP (SEV-SNP)" in [b.tabText(i) for i in range(b.count())]
        ]
        return bar.tabText(bar.currentIndex())

    s = w.engine.worker.session
    op = max(i for i, o in enumerate(s.ops) if o.NAME == "fallocate")
    w.docks["log"].raise_()
    w.panes2.step_op(op)
    assert front() == "RMP (SEV-SNP)"
    st = w.panes2.stepper
    names = [x.name for x in st.steps]
    k = names.index("psmash")
    st.go(0 if k else 1)
    assert "changes the RMP at step" in st.text.text() and str(k + 1) in st.text.text()
    st.go(k)
    text = st.text.text()
    assert "this step changes the RMP" in text and "PSMASH: the 2M entry" in text
    st.presentRequested.emit()
    # F8 right after an SNP action that changes the RMP: the guest rescinds a page.
    w.docks["log"].raise_()
    w.engine.apply_ops(
        [parse_op({"op": "guest_pvalidate", "gpa": "0x205000", "level": "4K", "validate": False})],
        "rescind",
    )
    wait_idle(qtbot, w.engine)
    qtbot.waitUntil(lambda: getattr(w, "last_action", None) is not None, timeout=20_000)
    w.findChild(QAction, "act_step_last").trigger()
    assert front() == "RMP (SEV-SNP)"
    assert "this protocol changes the RMP at step" in st.text.text()
    (at,) = rmp_steps(st.events, st.steps)
    st.go(at)
    assert "PVALIDATE: the guest validates or rescinds" in st.text.text()
