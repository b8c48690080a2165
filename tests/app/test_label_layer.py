"""The map's cell labels kept as an image: an op redraws only its rows, and the image is
the one a full draw makes, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen

from imemviz.app.panes.label_layer import LabelLayer
from imemviz.io import plans

from .conftest import wait_drawn

pytestmark = pytest.mark.qt

ROW_PX, COLS, CELL_PX = 30.0, 6, 70.0


def _draw_rows(codes: np.ndarray, y0: int):
    """A draw callback like CellLabels': grid lines, then a text per cell, some of them
    running past their cell and below their row, so neighbours overlap."""
    font = QFont()
    font.setPixelSize(13)

    def draw(p: QPainter, a: int, b: int) -> None:
        p.setFont(font)
        p.setPen(QPen(QColor(255, 255, 255, 170), 1))
        for y in range(a, b + 1):
            p.drawLine(QPointF(10, 5 + y * ROW_PX), QPointF(10 + COLS * CELL_PX, 5 + y * ROW_PX))
        for y in range(a, b):
            for c in range(COLS):
                p.setPen(QColor(20, 20, 20) if codes[y - y0, c] % 2 else QColor(200, 40, 40))
                p.drawText(
                    QPointF(13 + c * CELL_PX, 5 + y * ROW_PX + 31), f"0x{codes[y - y0, c]:x}000"
                )

    return draw


def _paint(layer: LabelLayer, codes: np.ndarray, y0: int = 3) -> QImage:
    target = QImage(600, 400, QImage.Format.Format_RGB32)
    target.fill(QColor(250, 200, 140))
    p = QPainter(target)
    try:
        n = codes.shape[0]
        bounds = QRectF(6.5, 5 + y0 * ROW_PX - 4, COLS * CELL_PX + 80, n * ROW_PX + 8)
        layer.paint(
            p,
            ("key",),
            bounds,
            y0,
            codes,
            lambda y: (5 + y * ROW_PX, 5 + (y + 1) * ROW_PX),
            _draw_rows(codes, y0),
        )
    finally:
        p.end()
    return target


def test_a_changed_row_is_redrawn_alone_and_the_image_is_a_full_draws(qapp) -> None:
    codes = np.arange(8 * COLS, dtype=np.uint8).reshape(8, COLS) + 0x40
    layer = LabelLayer()
    _paint(layer, codes)
    assert (layer.full_draws, layer.row_draws) == (1, 0)
    changed = codes.copy()
    changed[4, 2] = 0xEE  # one cell of one row, its text longer than the old one
    changed[7, 5] = 0x11  # and the last row
    shown = _paint(layer, changed)
    assert (layer.full_draws, layer.row_draws) == (1, 2)
    assert layer._image is not None
    kept = layer._image.copy()
    fresh = LabelLayer()
    expected = _paint(fresh, changed)
    assert fresh._image is not None
    assert kept == fresh._image  # the layer, bit for bit
    assert shown == expected  # and what the view shows
    # And the new text is really there: the old picture differs.
    assert _paint(LabelLayer(), codes) != expected
    # Unchanged codes: nothing redrawn, the same picture.
    assert _paint(layer, changed) == expected
    assert (layer.full_draws, layer.row_draws) == (1, 2)


def test_a_new_key_or_many_changed_rows_draw_everything(qapp) -> None:
    codes = np.zeros((12, COLS), np.uint8)
    layer = LabelLayer()
    _paint(layer, codes)
    _paint(layer, codes + 1)  # every row changed: one full draw instead of 12 clipped
    assert (layer.full_draws, layer.row_draws) == (2, 0)
    _paint(layer, codes + 1, y0=4)  # scrolled
    assert layer.full_draws == 3
    layer.invalidate()
    _paint(layer, codes + 1, y0=4)
    assert layer.full_draws == 4


def test_the_layer_keeps_the_device_pixel_ratio(qapp) -> None:
    codes = np.arange(4 * COLS, dtype=np.uint8).reshape(4, COLS)
    target = QImage(1200, 800, QImage.Format.Format_RGB32)
    target.setDevicePixelRatio(2.0)
    target.fill(Qt.GlobalColor.white)
    layer = LabelLayer()
    p = QPainter(target)
    try:
        layer.paint(
            p,
            ("k",),
            QRectF(6.25, 90.25, 500, 130),
            3,
            codes,
            lambda y: (5 + y * ROW_PX, 5 + (y + 1) * ROW_PX),
            _draw_rows(codes, 3),
        )
    finally:
        p.end()
    img = layer._image
    assert img is not None and img.devicePixelRatio() == 2.0
    assert img.width() >= 1000  # device pixels: text drawn at full resolution


def test_an_op_at_the_pages_zoom_redraws_only_its_rows(make_window, qtbot) -> None:
    w = make_window(size=(1280, 720))
    pane = w.map
    pane.show_range(0x800, 0x810)
    wait_drawn(qtbot, w)
    cells = pane.cells
    assert cells.tier() == 2
    pane.view.grab()  # the layer drawn for this view
    layer = cells._layer
    full, rows = layer.full_draws, layer.row_draws
    w.engine.submit(lambda vm: plans.convert(vm, 0x804, 0x805, private=False, discard=False))
    wait_drawn(qtbot, w)
    pane.view.grab()
    assert layer.full_draws == full and layer.row_draws > rows  # incremental
    assert layer._image is not None
    kept = layer._image.copy()
    layer.invalidate()
    pane.view.grab()
    assert layer.full_draws == full + 1
    assert kept == layer._image  # the incremental image is the full draw's
