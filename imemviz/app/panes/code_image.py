"""`CodeImage`: a pyqtgraph ImageItem for uint8 code rasters that paints fast.

pyqtgraph's fast path (uint8 codes, a 256-entry lookup table, fixed levels) turns the
raster into an Indexed8 QImage with the table as its colour table.  Qt's raster
engine cannot blend Indexed8 directly: every paint converts the whole image to 32
bits again (8-12 ms for a 1400 x 1000 map on the project's 2-core machine, on each
of the several paints an op causes).  `CodeImage` converts it once, when the image or
the table changes, to premultiplied ARGB32, the format the raster engine draws
straight from (about 1 ms a paint).  The data path stays pyqtgraph's: uint8 image,
lookup table, fixed levels, no autoDownsample.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QImage

FAST = QImage.Format.Format_ARGB32_Premultiplied


class CodeImage(pg.ImageItem):
    """An ImageItem whose rendered QImage is kept in the raster engine's own format."""

    def render(self) -> None:
        super().render()
        q: QImage | None = getattr(self, "qimage", None)  # pyqtgraph is untyped
        if q is not None and not q.isNull() and q.format() != FAST:
            # convertToFormat copies: the new image owns its pixels (pyqtgraph's buffer
            # may be reused or freed with the next setImage).
            self.qimage = q.convertToFormat(FAST)
