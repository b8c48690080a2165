"""Smooth moves of the GPA map: a QVariantAnimation steps the view from one framing to
another (`map_frame.interpolate`: the zoom in powers of two on a log scale, the centre
address eased), redrawing at each step.  A user's own scroll or zoom stops it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QVariantAnimation, Signal

from imemviz.app.panes.map_frame import View, interpolate

if TYPE_CHECKING:
    from imemviz.app.panes.gpa_map import GpaMapPane

DURATION_MS = 420
STEP_FPS = 30


class MapAnimator(QObject):
    finished = Signal()

    def __init__(self, pane: GpaMapPane) -> None:
        super().__init__(pane)
        self.pane = pane
        self.duration_ms = DURATION_MS
        self._from: View | None = None
        self._to: View | None = None
        self._last_ms = 0  # the animation's time at the last frame drawn
        self._anim = QVariantAnimation(self)
        self._anim.setStartValue(0.0)
        self._anim.setEndValue(1.0)
        self._anim.valueChanged.connect(self._step)
        self._anim.finished.connect(self._done)

    @property
    def running(self) -> bool:
        return self._to is not None

    @property
    def target(self) -> View | None:
        return self._to

    def start(self, a: View, b: View) -> None:
        self._anim.stop()
        self._from, self._to = a, b
        if self.duration_ms <= 0 or a == b:
            self._done()
            return
        self._anim.setDuration(self.duration_ms)
        self._last_ms = -(10**9)
        self._set_moving(True)
        self._anim.start()

    def _set_moving(self, on: bool) -> None:
        # The fold bands' labels are not read in motion, and each frame's zoom makes new
        # ones (their sizes and ranges): they come back with the last frame.
        bands = getattr(self.pane, "fold_bands", None)
        if bands is not None and bands.moving != on:
            bands.moving = on
            bands.update()

    def stop(self) -> None:
        """Stop where it is (the user took over)."""
        if self._to is None:
            return
        self._anim.stop()
        self._from = self._to = None
        self._set_moving(False)
        self.finished.emit()

    def finish(self) -> None:
        """Jump to the end now (tests, screenshots)."""
        if self._to is not None:
            self._anim.stop()
            self._done()

    def _step(self, t) -> None:
        if self._from is None or self._to is None:
            return
        # At most STEP_FPS frames a second: each frame is a new zoom (fold map, raster,
        # paint), and at the animation's own 60 a second the GUI thread did nothing else.
        now = self._anim.currentTime()
        if now - self._last_ms < 1000 / STEP_FPS and float(t) < 1.0:
            return
        self._last_ms = now
        interpolate(self._from, self._to, float(t)).apply(self.pane.layout_)
        self.pane.refresh()

    def _done(self) -> None:
        to = self._to
        self._from = self._to = None
        self._set_moving(False)
        if to is not None:
            to.apply(self.pane.layout_)
            self.pane.refresh()
        self.finished.emit()
