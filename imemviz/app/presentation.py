"""Presentation mode (View > Presentation mode, F11): the app as a room sees it.

On: the window goes full screen, every font and the map's lines, labels and patterns
grow by `SCALE`, the panes a room does not read (the log and its tabs, the inspector
and its step-through tab) are hidden so the map gets the space, the legend stays on
the right in one narrow column, and the Replay pane (while a replay is loaded) stays
low under the map.  The map's tiles
carry labels from a smaller zoom on: at 1280x720 the deepest zooms label every page.
Off: everything comes back as it was (fonts, dock layout, window state).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction, QFont, QKeySequence
from PySide6.QtWidgets import QApplication

from imemviz.app import timeline_strip
from imemviz.app.menus import bar_menus

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow

SCALE = 1.35
KEEP_DOCKS = ("legend", "replay")  # visible in presentation mode (replay: when loaded)
CORNERS = (
    Qt.Corner.TopLeftCorner,
    Qt.Corner.TopRightCorner,
    Qt.Corner.BottomLeftCorner,
    Qt.Corner.BottomRightCorner,
)


class Presentation(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.on = False
        self._saved: tuple | None = None
        self._back: tuple | None = None  # the layout to restore once more, settled
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(0)
        self._settle.timeout.connect(self._settled)
        act = QAction("&Presentation mode", window)
        act.setObjectName("act_presentation")
        act.setCheckable(True)
        act.setShortcut(QKeySequence("F11"))
        tip = "Full screen, bigger text and lines, only the map, the legend and the replay (F11)"
        act.setToolTip(tip)
        act.setStatusTip(tip)
        act.toggled.connect(lambda on: self.set_on(on))
        window.addAction(act)
        self.action = act
        bar = window.menuBar()
        menus = bar_menus(bar)
        view = menus.get("&View")
        if view is not None:
            view.addAction(act)

    def set_on(self, on: bool, fullscreen: bool = True) -> None:
        """Enter or leave presentation mode (`fullscreen` False: keep the window's size,
        for screenshots at a given size)."""
        if on == self.on:
            return
        w = self.window
        stepper = w.panes2.stepper
        if on:
            font = QApplication.font()  # the application's font: static in Qt
            # The layout as it is, the step panel's lengthened column included: its
            # corners (saveState keeps none), and the layout the panel gives back when
            # it goes: kept here (hiding the panel now must not give it back), handed
            # back to the panel when presentation mode ends.
            self._saved = (
                w.saveState(),
                w.isFullScreen(),
                font,
                {k: d.isVisible() for k, d in w.docks.items()},
                {c: w.corner(c) for c in CORNERS},
                stepper.take_hold(),
            )
            big = QApplication.font()
            if big.pointSizeF() > 0:
                big.setPointSizeF(big.pointSizeF() * SCALE)
            else:
                big.setPixelSize(round(big.pixelSize() * SCALE))
            QApplication.setFont(big)
            for name, dock in w.docks.items():
                if name not in KEEP_DOCKS:
                    dock.hide()
            self.on = True
            w.map.set_ui_scale(SCALE)
            w.legend.set_scale(SCALE)
            # The legend in one narrow column on the right, the Replay pane (when one
            # is loaded) low under the map: the map keeps most of the window.
            legend = w.docks.get("legend")
            if legend is not None:
                # The right column takes the bottom-right corner: the Replay pane stays
                # under the map only, and the column has the window's height.
                w.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
                w.legend.set_groups_per_row(1)
                right = Qt.DockWidgetArea.RightDockWidgetArea
                if legend.isFloating() or w.dockWidgetArea(legend) != right:
                    # (Re-adding a dock that is there already leaves its tab group's
                    # tab bar drawn over it.)
                    w.addDockWidget(right, legend)
                legend.show()
                legend.raise_()
                # The Replay pane keeps its controls; its op list would take the map's
                # height (the caption band above the map says what happens).
                w.presenter.pane.set_list_allowed(False)
                replay = w.docks.get("replay")
                if replay is not None and replay.isVisible():
                    # Its one line of buttons, slider and title at the big font.
                    h = timeline_strip.height(replay)
                    w.resizeDocks([replay], [h], Qt.Orientation.Vertical)
            # The status line is for the action's outcome: the zoom figures step aside.
            w.zoom_label.hide()
            self._fit_legend()
            if fullscreen:
                w.showFullScreen()
        else:
            assert self._saved is not None
            state, was_full, font, visible, corners, hold = self._saved
            QApplication.setFont(font)
            w.map.set_ui_scale(1.0)
            w.legend.set_scale(1.0)
            w.legend.set_groups_per_row(2)
            w.presenter.pane.set_list_allowed(True)
            w.zoom_label.show()
            w.legend.setFont(QFont())
            for corner, area in corners.items():
                w.setCorner(corner, area)
            if not was_full and w.isFullScreen():
                w.showNormal()
            # What the step panel changed during presentation mode is undone by the
            # restore; what it had changed before is its to give back when it goes.
            stepper.take_hold()
            stepper.hold = hold
            self._give_back(state, visible)
            # Once more when the normal font has reached the menu bar, the toolbar and
            # the docks' minimums (events still queued now): the sizes restored above
            # were fitted to the big font's taller bars, a pixel or two off once they
            # shrink.
            self._back = (state, visible)
            self._settle.start()
            self.on = False
        if self.action.isChecked() != on:
            self.action.blockSignals(True)
            self.action.setChecked(on)
            self.action.blockSignals(False)
        w.map.zoom_all()

    def _give_back(self, state, visible: dict[str, bool]) -> None:
        w = self.window
        w.restoreState(state)
        for name, dock in w.docks.items():
            dock.setVisible(visible.get(name, dock.isVisible()))

    def _settled(self) -> None:
        back, self._back = self._back, None
        if back is not None and not self.on:
            self._give_back(*back)

    def _fit_legend(self) -> None:
        """The legend's one column fits the window's height (at 1280x720 the full scale
        would make it taller than the window): its text shrinks until it does."""
        w = self.window
        legend = w.legend
        room = w.height() - w.menuBar().sizeHint().height() - w.statusBar().sizeHint().height()
        room -= w.toolbar.sizeHint().height() + 40  # the dock's title bar and margins
        font = QFont(QApplication.font())
        base = font.pointSizeF()
        legend.setFont(font)
        lay = legend.layout()
        assert lay is not None  # the legend sets its layout in __init__
        for k in range(12):
            lay.activate()
            if legend.minimumSizeHint().height() <= room or base <= 0:
                break
            font.setPointSizeF(base * (1.0 - 0.04 * (k + 1)))
            legend.setFont(font)


def install(window: MainWindow) -> Presentation:
    return Presentation(window)
