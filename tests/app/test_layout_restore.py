"""Presentation mode and the step-through both rearrange the docks for a while: leaving
either gives back exactly the layout from before (every dock's geometry and the map's),
in any order of entering and leaving the two."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication

from imemviz.io import plans

from .conftest import td_session, wait_idle

pytestmark = pytest.mark.qt


def layout_of(w) -> dict:
    """What a user sees of the window's layout: each dock's geometry, None for a dock
    closed or behind another's tab."""
    out = {
        n: (None if not d.isVisible() or d.visibleRegion().isEmpty() else d.geometry().getRect())
        for n, d in w.docks.items()
    }
    out["map"] = w.map.geometry().getRect()
    return out


def settled(qtbot, w) -> dict:
    """The layout once every posted relayout and zero-interval timer (fit_text) has run:
    polled until three passes in a row change nothing (not a timed assertion)."""
    last, same = None, 0
    for _ in range(400):
        QApplication.processEvents()
        qtbot.wait(5)
        now = layout_of(w)
        same = same + 1 if now == last else 0
        if same >= 3:
            break
        last = now
    return layout_of(w)


def window_with_an_action(make_window, qtbot):
    """1280x720 (where the step's text stretches the side column), a conversion done."""
    w = make_window(td_session(), size=(1280, 720))
    for g in (0x10, 0x11, 0x12):
        w.engine.submit(lambda vm, g=g: plans.accept_and_touch(vm, g))
    w.engine.submit(lambda vm: plans.convert(vm, 0x10, 0x13, private=False, discard=True))
    wait_idle(qtbot, w.engine)
    w.docks["event_log"].raise_()  # where F8 puts the bottom panes (not what is tested)
    return w


def step(qtbot, w) -> None:
    """F8 (its first step's text needs more room than the column has at 1280x720), until
    the map draws the step (the panel's text grows then)."""
    w.findChild(QAction, "act_step_last").trigger()
    qtbot.waitUntil(
        lambda: (
            w.engine.idle and w.step_view.shown is not None and w.step_view.shown.op is not None
        ),
        timeout=20_000,
    )


def unstep(w) -> None:
    """The step panel goes behind the inspector's tab, as a click on that tab does."""
    w.docks["inspector"].raise_()


def present(w, on: bool) -> None:
    w.presentation.set_on(on, fullscreen=False)


def test_the_step_stretches_the_column_and_gives_it_back(make_window, qtbot) -> None:
    w = window_with_an_action(make_window, qtbot)
    before = settled(qtbot, w)
    step(qtbot, w)
    stepped = settled(qtbot, w)
    # The step's text took room: the column runs down past the bottom panes' top (else
    # this test proves nothing).
    bottom = before["legend"][1] + before["legend"][3]
    assert stepped["legend"][1] + stepped["legend"][3] > bottom
    unstep(w)
    assert settled(qtbot, w) == before


@pytest.mark.parametrize(
    "order",
    [
        "step present unpresent unstep",  # the report: the column stayed stretched
        "step present unstep unpresent",
        "present step unpresent unstep",
        "present step unstep unpresent",
        "step present unpresent present unpresent unstep",
    ],
)
def test_leaving_presentation_and_step_restores_the_layout(make_window, qtbot, order) -> None:
    w = window_with_an_action(make_window, qtbot)
    base = settled(qtbot, w)
    before_presenting = base
    presenting = False
    for move in order.split():
        if move == "step":
            step(qtbot, w)
        elif move == "unstep":
            unstep(w)
            if not presenting:  # leaving the step gives back the layout from before it
                assert settled(qtbot, w) == base, order
        elif move == "present":
            before_presenting = settled(qtbot, w)
            present(w, True)
            presenting = True
            settled(qtbot, w)
        elif move == "unpresent":
            present(w, False)
            presenting = False
            assert settled(qtbot, w) == before_presenting, order
    # However it went, with the step panel put away the window is as it was at the start.
    unstep(w)
    assert settled(qtbot, w) == base, order
