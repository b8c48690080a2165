"""The Timeline dock as a thin strip across the whole window, between the map and the
bottom panes (the log and its tabs).

Beside the log (the layout before), it halved the bottom panes' width: at 1280x720
the entries table lost columns.  As a strip it costs one line of height: its title
bar runs down its left side (a dock's vertical title bar) and its pane shows the
controls, the slider and the title in one row, its list of steps only when the
strip is dragged taller (`ReplayPane._fit_list`).  It is there for a live session
too, so opening or replaying a recording moves no dock.  A layout saved by an
older version (the Timeline beside the log, or tabbed with it) restores as saved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QDockWidget

from imemviz.app import dock_tabs

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow

BOTTOM = Qt.DockWidgetArea.BottomDockWidgetArea


def setup(dock: QDockWidget) -> None:
    """The strip's own look: the title bar on its left (it saves a line of height), with
    only the close button (the float button stacked under it made the title bar, so the
    strip, half as tall again as its line of controls); it can still be dragged to
    another side of the window."""
    F = QDockWidget.DockWidgetFeature
    dock.setFeatures(F.DockWidgetClosable | F.DockWidgetMovable | F.DockWidgetVerticalTitleBar)


def height(dock: QDockWidget) -> int:
    """The strip's height: its pane's line of controls and the dock's frame."""
    pane = dock.widget()
    inner = pane.strip_height() if hasattr(pane, "strip_height") else 40
    frame = dock.style().pixelMetric(dock.style().PixelMetric.PM_DockWidgetFrameWidth, None, dock)
    return inner + 2 * frame


def log_group(window: MainWindow) -> list[QDockWidget]:
    """The log and the docks tabbed with it (closed ones too), in their tabs' order
    (tabifiedDockWidgets keeps it: the RMP's tab right after the entries')."""
    log = window.docks.get("log")
    if log is None:
        return []
    return [log, *window.tabifiedDockWidgets(log)]


def place(window: MainWindow, dock: QDockWidget) -> bool:
    """Put `dock` across the bottom area, above the log and its tabs (which keep their
    tab order, the tab in front and which of them are closed); False when the log is
    not docked at the bottom (a user's own layout: left as it is)."""
    group = [d for d in log_group(window) if d is not dock]
    if not group or group[0].isFloating() or window.dockWidgetArea(group[0]) != BOTTOM:
        return False
    front = next((d for d in group if d.isVisible() and not d.visibleRegion().isEmpty()), None)
    closed = {d for d in (*group, dock) if d.isHidden()}  # closed by the user (or an RMP tab)
    for d in (*group, dock):
        window.removeDockWidget(d)
    window.addDockWidget(BOTTOM, dock)
    log = group[0]
    window.addDockWidget(BOTTOM, log, Qt.Orientation.Vertical)  # under the strip
    for d in (*group, dock):
        d.show()  # (a closed dock is tabbed in, then closed again)
    for d in group[1:]:
        window.tabifyDockWidget(log, d)
    (front or log).raise_()
    for d in closed:  # after the raise: raising drops a closed dock from its tab group
        d.hide()
    QTimer.singleShot(0, window, lambda: dock_tabs.hide_stale(window))  # old tab bars
    return True


def default_sizes(window: MainWindow, dock: QDockWidget, bottom: int) -> None:
    """The strip at its height, the bottom panes under it at `bottom` pixels."""
    log = window.docks.get("log")
    if log is None or window.dockWidgetArea(dock) != BOTTOM:
        return
    window.resizeDocks([dock, log], [height(dock), bottom], Qt.Orientation.Vertical)
