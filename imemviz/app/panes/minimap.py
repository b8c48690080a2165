"""The overview beside the GPA map: the whole guest, unfolded, with the map's viewport.

A strip of `WIDTH` pixels: the guest's address space top to bottom in rows, each row
split into the strip's columns, one pixel the most significant state of its pages (the
engine thread rasterises it like the map, with the same colours).  Boxes outline what
the map shows (one per stretch of rows between fold bands).  Click or drag to centre
the map there (the zoom stays); the wheel scrolls the map.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from imemviz.app.palette import lut
from imemviz.app.panes.map_frame import View
from imemviz.app.panes.map_layout import fmt_gpa
from imemviz.app.records import RasterAnswer, RasterRequest, Snapshot

if TYPE_CHECKING:
    from imemviz.app.panes.gpa_map import GpaMapPane

KEY = "minimap"
WIDTH = 40
MARGIN = 7  # as the map's MARGIN_PX: the strip lines up with the map's rows
MIN_BOX_PX = 3.0


class Minimap(QWidget):
    navigated = Signal(object)  # gfn the map was centred on

    def __init__(self, pane: GpaMapPane, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("minimap")
        self.pane = pane
        self.engine = pane.engine
        self.dark = False
        self._lut = lut()
        self._image: QImage | None = None
        self._codes: np.ndarray | None = None
        self._req: RasterRequest | None = None
        self._extent = 1
        self._dragging = False
        self.setFixedWidth(WIDTH)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(
            "The whole guest (not folded), with what the map shows outlined: "
            "click or drag to go there; the wheel scrolls the map"
        )
        self.engine.snapshotReady.connect(self._on_snapshot)
        self.engine.rasterReady.connect(self._on_raster)
        pane.viewChanged.connect(lambda _t: self.update())
        from imemviz.app import plot_theme

        plot_theme.hub().changed.connect(self._on_theme)  # a bound method: dropped with us
        self.set_dark(plot_theme.current().dark)

    def sizeHint(self) -> QSize:
        return QSize(WIDTH, 200)

    def _on_theme(self, theme) -> None:
        self.set_dark(theme.dark)

    def set_dark(self, dark: bool) -> None:
        self.dark = dark
        self._lut = lut(dark)
        self._rebuild_image()
        self.update()

    # ------------------------------------------------------------------ data
    def strip_rect(self) -> QRectF:
        return QRectF(1, MARGIN, self.width() - 2, max(self.height() - 2 * MARGIN, 1))

    def _request(self) -> None:
        snap = self.engine.snapshot
        if snap is None:
            return
        rect = self.strip_rect()
        rows = max(1, int(rect.height()))
        cols = max(1, int(rect.width()))
        self._extent = max(snap.extent, 1)
        row_gfns = max(cols, -(-self._extent // rows))
        req = RasterRequest(KEY, 0, row_gfns, rows, cols, urgent=False)
        if req != self._req:
            self._req = req
            self.engine.request_raster(req)

    def _on_snapshot(self, snap: Snapshot) -> None:
        if self._req is None or snap.extent != self._extent:
            self._request()

    def _on_raster(self, ans: RasterAnswer) -> None:
        if ans.request.key != KEY or ans.request != self._req:
            return
        self._codes = ans.codes
        self._rebuild_image()
        self.update()

    def _rebuild_image(self) -> None:
        if self._codes is None:
            self._image = None
            return
        rgba = self._lut[self._codes]  # (rows, cols, 4) uint8
        h, w = rgba.shape[:2]
        buf = np.ascontiguousarray(rgba)
        # Premultiplied ARGB32: the format Qt paints without converting it each time.
        self._image = QImage(buf.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).convertToFormat(
            QImage.Format.Format_ARGB32_Premultiplied
        )

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._request()

    # ------------------------------------------------------------------ geometry
    def y_of(self, gfn: float) -> float:
        """The strip's y (widget pixels) of a gfn."""
        rect = self.strip_rect()
        req = self._req
        if req is None:
            return rect.top()
        return rect.top() + gfn / (req.row_gfns * req.rows) * rect.height()

    def gfn_at(self, y: float) -> int:
        rect = self.strip_rect()
        req = self._req
        if req is None:
            return 0
        frac = (y - rect.top()) / max(rect.height(), 1)
        return int(min(max(frac, 0.0), 1.0) * min(req.row_gfns * req.rows, self._extent - 1))

    def viewport_boxes(self) -> list[QRectF]:
        """Where the map's view is, in the strip: a box per stretch of rows it shows."""
        lay = self.pane.layout_
        rect = self.strip_rect()
        boxes = []
        r = lay.row_gfns
        for g, n, fill in lay.raster_pieces():
            if fill >= 0:
                continue
            y0, y1 = self.y_of(g), self.y_of(min(g + n * r, self._extent))
            if y1 - y0 < MIN_BOX_PX:
                mid = (y0 + y1) / 2
                y0, y1 = mid - MIN_BOX_PX / 2, mid + MIN_BOX_PX / 2
            boxes.append(QRectF(rect.left(), y0, rect.width() - 1, y1 - y0))
        return boxes

    # ------------------------------------------------------------------ paint
    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        rect = self.strip_rect()
        p.fillRect(self.rect(), QColor(32, 33, 36) if self.dark else QColor(255, 255, 255))
        if self._image is not None:
            p.drawImage(rect, self._image)
        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(rect.adjusted(0, 0, -1, -1))
        halo = QPen(QColor(255, 255, 255), 4)
        ink = QPen(QColor(20, 20, 20), 2)
        for box in self.viewport_boxes():
            p.setPen(halo)
            p.drawRect(box)
            p.setPen(ink)
            p.drawRect(box)
        p.end()

    # ------------------------------------------------------------------ mouse
    def _go(self, y: float, record: bool) -> None:
        gfn = self.gfn_at(y)
        lay = self.pane.layout_
        self.pane.go_to(View(lay.row_gfns, float(gfn)), animate=False, record=record)
        self.navigated.emit(gfn)

    def mousePressEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            self._dragging = True
            self._go(ev.position().y(), record=True)
            ev.accept()

    def mouseMoveEvent(self, ev) -> None:
        if self._dragging:
            self._go(ev.position().y(), record=False)
        else:
            g = self.gfn_at(ev.position().y())
            QToolTip.showText(
                ev.globalPosition().toPoint(), f"gpa {fmt_gpa(g * 4096)}: click to go there", self
            )

    def mouseReleaseEvent(self, ev) -> None:
        self._dragging = False

    def wheelEvent(self, ev) -> None:
        lay = self.pane.layout_
        lay.scroll_rows(-ev.angleDelta().y() / 120 * 60 / lay.row_px())
        self.pane.refresh()
        ev.accept()
