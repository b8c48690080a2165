"""Every plot takes the current theme when it is created, not only when the theme
changes: a pane made while dark mode is on is dark (a window opened in dark mode)."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor

from imemviz.app import plot_theme
from imemviz.app import settings as S

from .conftest import td_session

pytestmark = pytest.mark.qt


def test_panes_created_in_dark_mode_are_dark(make_window, qapp) -> None:
    before = qapp.palette()
    S.apply_theme(qapp, "dark")
    try:
        w = make_window(td_session())
        theme = plot_theme.current()
        assert theme.dark
        bg = QColor(theme.background)
        folios, counters = w.panes2.folios, w.panes2.counters
        for view in (w.map.view, folios.view, counters.view):
            assert view.backgroundBrush().color() == bg, view
        # The folios' past-the-end colour is the background, as on the map.
        from imemviz.app.panes.folios import HostCode

        assert tuple(folios.img.lut[HostCode.OUTSIDE][:3]) == tuple(bg.getRgb()[:3])
        # The counters' titles, axes and the one black curve are light on dark.
        for plot in counters.plots:
            assert QColor(plot.getAxis("left").textPen().color()).lightness() > 180
        seq = counters.curves["mmu_invalidate_seq"].opts["pen"].color()
        assert seq.lightness() > 180
    finally:
        S.apply_theme(qapp, "light")
        qapp.setPalette(before)
