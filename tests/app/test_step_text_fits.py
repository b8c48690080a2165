"""The Step through panel shows each step's whole text at 1280x720: the RMP lines of an
SEV-SNP step and the BLOCK step of a TDX conversion included (nothing clipped, nothing to
scroll)."""

from __future__ import annotations

import contextlib

import pytest
from PySide6.QtGui import QTextDocument

from imemviz import resources
from imemviz.app.stepper import StepPanel
from imemviz.io import plans
from imemviz.io.session import Session

from .conftest import wait_drawn, wait_idle

pytestmark = pytest.mark.qt


def _clipped(st: StepPanel) -> str:
    """'' when the step's text fits its visible area, else what is cut and by how much."""
    vp = st.text_area.viewport()
    label = st.text
    if not label.isVisible() or vp.height() <= 0:
        return "the step's text is not visible"
    need = label.heightForWidth(vp.width())
    if need > vp.height():
        return f"{need - vp.height()} px of the text below the visible {vp.height()} px"
    # No line wider than the panel (a long word would run off its right edge).
    doc = QTextDocument()
    doc.setDefaultFont(label.font())
    doc.setDocumentMargin(0)
    doc.setHtml(label.text())
    doc.setTextWidth(label.contentsRect().width())
    if doc.idealWidth() > label.contentsRect().width() + 0.5:
        return f"a line {doc.idealWidth():.0f} px wide in {label.contentsRect().width()} px"
    if label.width() > vp.width():
        return f"the label is {label.width()} px wide in a {vp.width()} px area"
    return ""


def _every_step_fits(qtbot, st: StepPanel) -> None:
    assert st.steps
    for k in range(len(st.steps)):
        st.go(k)
        # The dock's new size is laid out in a pass or two of the event loop.
        with contextlib.suppress(qtbot.TimeoutError):
            qtbot.waitUntil(lambda: not st._fit_timer.isActive() and not _clipped(st), timeout=2000)
        why = _clipped(st)
        assert not why, f"step {k + 1} ({st.steps[k].title}): {why}"


def test_every_step_of_a_tdx_conversion_is_readable_at_1280x720(make_window, qtbot) -> None:
    w = make_window(size=(1280, 720), fold=True)
    for g in range(0x810, 0x818):
        w.engine.submit(lambda vm, g=g: plans.accept_and_touch(vm, g))
    wait_idle(qtbot, w.engine)
    w.engine.submit(lambda vm: plans.convert(vm, 0x810, 0x814, private=False, discard=True))
    wait_idle(qtbot, w.engine)
    wait_drawn(qtbot, w)
    w.panes2.step_action.trigger()  # F8
    st = w.panes2.stepper
    assert "TDH.MEM.RANGE.BLOCK" in [s.name for s in st.steps]
    _every_step_fits(qtbot, st)


def test_every_step_of_an_snp_hole_punch_with_its_rmp_lines_is_readable(make_window, qtbot) -> None:
    w = make_window(Session.open(resources.scene_path("snp-psmash")), size=(1280, 720))
    qtbot.waitUntil(lambda: len(w.rmp.model.rows) > 0, timeout=20_000)
    s = w.engine.worker.session
    op = max(i for i, o in enumerate(s.ops) if o.NAME == "fallocate")
    w.panes2.step_op(op)
    st = w.panes2.stepper
    k = [x.name for x in st.steps].index("psmash")
    st.go(k)
    assert "RMP:" in st.text.text()
    _every_step_fits(qtbot, st)
