"""The entries show the state at the step even when they were hidden while stepping
(F8 brings the event log forward; the Entries tab is clicked afterwards)."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QAction

from imemviz.io import plans

from .conftest import td_session, wait_drawn, wait_idle
from .test_step_view import step_drawn

pytestmark = pytest.mark.qt


def test_entries_brought_forward_mid_step_show_that_step(make_window, qtbot) -> None:
    w = make_window(td_session())
    pane = w.panes2.entries
    w.docks["entries"].raise_()
    w.engine.submit(lambda vm: plans.accept(0x30))
    wait_idle(qtbot, w.engine)
    wait_drawn(qtbot, w)
    # The entries hold the present: 0x30 mapped.
    qtbot.waitUntil(lambda: 0x30 in set(pane.model.leaves.gfn.tolist()), timeout=10_000)
    w.findChild(QAction, "act_step_last").trigger()  # the event log comes forward
    assert not w.docks["entries"].isVisible() or w.docks["entries"].visibleRegion().isEmpty()
    st = w.panes2.stepper
    assert st.steps[0].name == "kvm_page_fault"
    step_drawn(qtbot, w, True)
    w.docks["entries"].raise_()
    # Before the fault's AUG there is no leaf at 0x30: the entries say so, not the present.
    qtbot.waitUntil(lambda: "step 1 of" in pane.model.leaves.step, timeout=10_000)
    assert 0x30 not in set(pane.model.leaves.gfn.tolist())
