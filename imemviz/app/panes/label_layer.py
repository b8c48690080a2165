"""A cached, transparent image of the map's cell labels, redrawn row by row.

Why: at the deepest zooms every tile carries a label (its address and state) and a
grid; drawing them costs about 2 ms of Python and QPainter calls per paint (~300
texts, ~200 lines at 1920x1080), and every op brings a new raster, so a full paint.
An op changes the codes of a row or two: the layer keeps the picture it drew for the
previous codes and redraws only the rows whose codes changed; a paint is one blit of
the image (~0.1 ms).  Scrolling or zooming changes the key: the layer is drawn anew.

Exactness: a changed row's band is cleared and every primitive that can touch it (the
lines and texts of that row and of its two neighbours) is drawn again, in the order of
a full draw and under the band's clip, so the image equals one drawn from scratch bit
for bit (tests/app/test_label_layer.py).  The image's origin sits on a whole device
pixel and carries the painter's device pixel ratio, so its pixels land where direct
drawing would put them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QImage, QPainter

# Draws the rows [a, b) of the layer (grid, then texts) with a painter in view pixels.
Draw = Callable[[QPainter, int, int], None]

# More changed rows than this: one full redraw is cheaper than many clipped ones.
MAX_ROWS_UPDATED = 8
# Pixels around a row's band that its texts or lines may reach.
BAND_MARGIN = 3


class LabelLayer:
    """One image of the labels of the rows in view, valid for one key (the geometry)."""

    def __init__(self) -> None:
        self._image: QImage | None = None
        self._key: Hashable = None
        self._codes: np.ndarray | None = None
        self.full_draws = 0  # how often it drew everything (tests, benchmarks)
        self.row_draws = 0  # how many rows it redrew alone

    def invalidate(self) -> None:
        self._image, self._key, self._codes = None, None, None

    def paint(
        self,
        painter: QPainter,
        key: Hashable,
        bounds: QRectF,
        y0: int,
        codes: np.ndarray,
        band: Callable[[int], tuple[float, float]],
        draw: Draw,
        defer: bool = False,
    ) -> bool:
        """Blit the labels of rows [y0, y0 + len(codes)) onto `painter` (in view pixels:
        an identity world transform), drawing first what `key` or `codes` changed.

        `bounds`: where the labels may draw, in view pixels; `band(y)`: the top and
        bottom of row y in view pixels; `codes`: what the labels of each row depend on
        besides `key` (a row whose codes are unchanged keeps its pixels).  `defer`: when
        everything would have to be drawn anew, draw nothing and return False (the
        caller paints again in a later turn).
        """
        dev = painter.device()
        dpr = dev.devicePixelRatioF() if dev is not None else 1.0
        left, top = math.floor(bounds.left() * dpr), math.floor(bounds.top() * dpr)
        wpx = max(1, math.ceil(bounds.right() * dpr) - left)
        hpx = max(1, math.ceil(bounds.bottom() * dpr) - top)
        origin = QPointF(left / dpr, top / dpr)
        full_key = (key, dpr, left, top, wpx, hpx, y0, codes.shape)
        n = codes.shape[0]
        if self._image is None or self._key != full_key or self._codes is None:
            if defer:
                return False
            self._redraw_all(painter, full_key, dpr, origin, wpx, hpx, y0, n, draw)
        else:
            changed = np.flatnonzero((self._codes != codes).any(axis=1))
            if len(changed) > MAX_ROWS_UPDATED:
                if defer:
                    return False
                self._redraw_all(painter, full_key, dpr, origin, wpx, hpx, y0, n, draw)
            elif len(changed):
                p = self._begin(painter, origin)
                try:
                    for i in changed.tolist():
                        ya, yb = band(y0 + i)
                        clip = QRectF(
                            origin.x(),
                            math.floor(ya) - BAND_MARGIN,
                            wpx / dpr,
                            math.ceil(yb) - math.floor(ya) + 2 * BAND_MARGIN,
                        )
                        p.setClipRect(clip)
                        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
                        p.fillRect(clip, Qt.GlobalColor.transparent)
                        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
                        draw(p, max(y0, y0 + i - 1), min(y0 + n, y0 + i + 2))
                        self.row_draws += 1
                finally:
                    p.end()
        self._codes = codes.copy()
        assert self._image is not None
        painter.drawImage(origin, self._image)
        return True

    def _redraw_all(
        self,
        painter: QPainter,
        key: Hashable,
        dpr: float,
        origin: QPointF,
        wpx: int,
        hpx: int,
        y0: int,
        n: int,
        draw: Draw,
    ) -> None:
        img = self._image
        if img is None or img.width() != wpx or img.height() != hpx:
            img = QImage(wpx, hpx, QImage.Format.Format_ARGB32_Premultiplied)
        img.setDevicePixelRatio(dpr)
        img.fill(Qt.GlobalColor.transparent)
        self._image, self._key = img, key
        p = self._begin(painter, origin)
        try:
            draw(p, y0, y0 + n)
        finally:
            p.end()
        self.full_draws += 1

    def _begin(self, painter: QPainter, origin: QPointF) -> QPainter:
        """A painter on the image in view pixels, with the view painter's hints."""
        assert self._image is not None
        p = QPainter(self._image)
        p.setRenderHints(painter.renderHints())
        p.translate(-origin.x(), -origin.y())
        return p
