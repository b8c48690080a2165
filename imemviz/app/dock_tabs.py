"""Tab bars of the main window's dock groups that Qt left on screen after a rebuild.

QMainWindow makes a tab bar for each group of tabbed docks.  When the window's
constructor moves docks between groups before the window is first laid out (the
Timeline's strip taking its place above the log: `timeline_strip.place`), Qt can keep
an earlier group's tab bar shown where that group was: at 1280x720 a second "Log |
Event log" bar lay over the Timeline's buttons.  A tab bar in use sits right under
the dock it shows (the tabs are at the bottom of each group); one that does not is
stale and is hidden, once the window is shown and after each move of the strip
(tests/app/test_dock_tabs.py: none left, the groups' own bars still there).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QTabBar

SLACK_PX = 3  # a tab bar's distance from its dock's edge


def _in_use(window: QMainWindow, bar: QTabBar) -> bool:
    i = bar.currentIndex()
    if i < 0:
        return False
    title = bar.tabText(i)
    g = bar.geometry()
    for dock in window.findChildren(QDockWidget, options=Qt.FindChildOption.FindDirectChildrenOnly):
        if dock.windowTitle() != title or dock.isFloating() or not dock.isVisible():
            continue
        d = dock.geometry()
        # The window's dock tabs are at the bottom of each group (Qt's default, South).
        if abs(g.left() - d.left()) <= SLACK_PX and abs(g.top() - d.bottom() - 1) <= SLACK_PX:
            return True
    return False


def hide_stale(window: QMainWindow) -> list[QTabBar]:
    """Hide the shown tab bars of `window` that no dock group uses; the ones hidden."""
    hidden = []
    for bar in window.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly):
        if bar.isVisible() and not _in_use(window, bar):
            bar.hide()
            hidden.append(bar)
    return hidden
