"""One repaint of the GPA map per op: hold its paints from the action to the raster.

The engine thread announces an action (`Engine.actionDone`, which carries the change
marks) *before* it rasterises the rows the action changed; the snapshot and the new
raster follow a few ms later.  Without a hold, the GUI paints the map twice for one
op: once with the new marks over the old image, and again when the image arrives
(each paint is the whole image, the fold bands, labels and axes: several ms).
`PaintHold` turns the map's viewport updates off when an action is announced and
back on when the map has drawn the raster of the new state (`GpaMapPane.drawn`),
so the marks and the raster land in one paint.  A timer lets go after `LIMIT_MS`
whatever happens (an action that changed nothing visible, a refused one, a view
that is being framed), so the map never stays frozen.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QTimer

LIMIT_MS = 150  # the longest the map waits for the raster before painting anyway


class PaintHold(QObject):
    """Holds the map's repaints between an announced action and its raster drawn."""

    def __init__(self, pane: Any) -> None:
        super().__init__(pane)
        self.pane = pane
        self.holds = 0  # actions held so far (tests)
        self._held = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(LIMIT_MS)
        self._timer.timeout.connect(self.release)
        done = getattr(pane.engine, "actionDone", None)  # the observed engine has none
        if done is not None:
            done.connect(self.hold)
        # Connected now, before any other slot of `drawn` (the window's, benchmarks'),
        # so whoever reacts to the raster drawn finds the map free to paint.
        pane.drawn.connect(self.release)

    @property
    def held(self) -> bool:
        return self._held

    def hold(self, *_args: object) -> None:
        vp = self.pane.view.viewport()
        if not vp.isVisible():
            return
        self.holds += 1
        self._held = True
        vp.setUpdatesEnabled(False)
        self._timer.start()

    def release(self) -> None:
        # A flag, not the timer's state: a single-shot timer is no longer active when its
        # timeout runs this.
        if not self._held:
            return
        self._held = False
        self._timer.stop()
        self.pane.view.viewport().setUpdatesEnabled(True)  # schedules the one repaint
