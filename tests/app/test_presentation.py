"""Presentation mode, tile labels at 1280x720, dark plots, outlines instead of tints."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QAction, QColor

from imemviz.app import plot_theme
from imemviz.app import settings as S
from imemviz.app.highlight import Highlight
from imemviz.app.palette import LEGEND_BY_CODE
from imemviz.io import plans
from imemviz.io.session import Session
from imemviz.model.raster import Code

from .conftest import td_session, wait_drawn
from .helpers import assert_shows

pytestmark = pytest.mark.qt


def test_presentation_mode_scales_tidies_and_labels_tiles_at_1280x720(make_window, qtbot):
    w = make_window(Session.scene("default"), size=(1280, 720), fold=True)
    font = w.font().pointSizeF()
    act = w.findChild(QAction, "act_presentation")
    assert act is not None and act.shortcut().toString() == "F11"
    w.presentation.set_on(True, fullscreen=False)  # offscreen: keep the 1280x720 window
    wait_drawn(qtbot, w)
    assert act.isChecked() and w.map.ui_scale > 1
    assert w.font().pointSizeF() > font
    assert w.docks["legend"].isVisible()
    assert not w.docks["log"].isVisible() and not w.docks["inspector"].isVisible()
    # The deepest zoom labels every page with its state, legibly, at this size.
    w.map.show_range(0x800, 0x810)
    wait_drawn(qtbot, w)
    cells = w.map.cells
    assert cells.tier() >= 1
    cw, ch = w.map.layout_.cell_px()
    assert cw >= cells.SHORT_PX[0] * cells.scale_ and ch >= cells.SHORT_PX[1] * cells.scale_
    # Off: everything as it was.
    act.trigger()
    wait_drawn(qtbot, w)
    assert not act.isChecked() and w.map.ui_scale == 1
    assert w.font().pointSizeF() == pytest.approx(font)
    assert w.docks["log"].isVisible() and w.docks["inspector"].isVisible()


def test_the_legend_is_not_behind_a_tab(make_window) -> None:
    w = make_window()
    assert w.docks["legend"].isVisible()
    assert w.docks["legend"] not in w.tabifiedDockWidgets(w.docks["stepper"])
    assert w.docks["legend"].visibleRegion().boundingRect().height() > 100


def test_dark_mode_reaches_the_plots_and_the_log(make_window, qtbot, qapp) -> None:
    w = make_window(td_session(), fold=True)
    before = qapp.palette()
    try:
        S.apply_theme(qapp, "dark")
        wait_drawn(qtbot, w)
        theme = plot_theme.current()
        assert theme.dark
        bg = QColor(theme.background)
        assert bg.lightness() < 60
        for view in (w.map.view, w.panes2.folios.view, w.panes2.counters.view):
            assert view.backgroundBrush().color() == bg, view
        assert QColor(w.map.left_axis.textPen().color()).lightness() > 180
        # Past the guest's end the map is the background, not a white slab.
        assert tuple(w.map.img.lut[Code.OUTSIDE][:3]) == tuple(bg.getRgb()[:3])
        assert w.minimap.dark
        # The log's colours are readable on the dark base (no dark blue on black).
        w.log.note("a message", "info")
        w.log.flush()
        html = w.log.text.document().toHtml()
        assert theme.info.lower() in html.lower()
        assert plot_theme.LIGHT.info.lower() not in html.lower()
        S.apply_theme(qapp, "light")
        wait_drawn(qtbot, w)
        assert QColor(w.map.view.backgroundBrush().color()).lightness() > 200
        assert plot_theme.LIGHT.info.lower() in w.log.text.document().toHtml().lower()
    finally:
        S.apply_theme(qapp, "light")
        qapp.setPalette(before)


def test_selection_and_highlight_are_outlines_not_tints(make_window, qtbot) -> None:
    w = make_window(fold=False)
    w.engine.submit(plans.accept_and_touch(w.engine.worker.session.vm, 0x40))
    wait_drawn(qtbot, w)
    w.map.show_range(0x40, 0x48)
    wait_drawn(qtbot, w)
    w.selection.set_range(0x38, 0x50)
    w.selection.set_highlight(Highlight(((0x3C, 0x48),), source="test"))
    wait_drawn(qtbot, w)
    # Inside the selected and highlighted range each cell still shows its legend colour.
    assert_shows(w, 0x40, Code.PRIVATE_4K)
    assert_shows(w, 0x44, Code.PRIVATE_EMPTY)
    assert LEGEND_BY_CODE[Code.PRIVATE_4K].rgb != LEGEND_BY_CODE[Code.PRIVATE_1G].rgb
