"""Saving screenshots small: a window grab as an 8-bit palette PNG.

A screenshot of the app holds a few hundred colours, most of them the
anti-aliased edges of text.  The palette takes the most frequent colours, then
the colours farthest from those (a legend swatch of a few hundred pixels must
keep its colour: frequency alone turned pink into grey), and every other
colour is drawn with its nearest entry.  The picture looks the
same at first glance and the file is about a third of the 32-bit one (the step
gallery is a hundred pictures).  Qt writes the palette PNG; numpy picks the
palette.  Used by scripts/make_step_gallery.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_COLOURS = 256
FREQUENT = 128  # entries given to the most frequent colours; the rest by distance
MIN_AREA = 8  # a colour of fewer pixels is anti-aliasing: it need not be kept


def _rgb(c: np.ndarray) -> np.ndarray:
    return np.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255], axis=1).astype(np.int32)


def _nearest(src: np.ndarray, pal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each colour's nearest palette entry and its squared RGB distance (in chunks)."""
    idx = np.empty(len(src), dtype=np.int64)
    dist = np.empty(len(src), dtype=np.int64)
    for a in range(0, len(src), 4096):
        d = ((src[a : a + 4096, None, :] - pal[None, :, :]) ** 2).sum(axis=2)
        idx[a : a + 4096] = d.argmin(axis=1)
        dist[a : a + 4096] = d.min(axis=1)
    return idx, dist


def _quantise(
    colours: np.ndarray, counts: np.ndarray, inverse: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The palette: the most frequent colours, then, one at a time, the colour of at least
    MIN_AREA pixels farthest from every entry so far, so that a small swatch (a legend
    entry, a lone tile) keeps its colour instead of taking a frequent neighbour's."""
    src = _rgb(colours)
    order = np.argsort(counts)[::-1]
    keep = list(order[:FREQUENT])
    _, dist = _nearest(src, src[keep])
    dist[counts < MIN_AREA] = 0  # anti-aliased specks: whatever entry is nearest
    dist[keep] = 0
    while len(keep) < MAX_COLOURS and dist.max() > 0:
        k = int(dist.argmax())
        keep.append(k)
        d = ((src - src[k]) ** 2).sum(axis=1)
        np.minimum(dist, d, out=dist)
    keep.sort()
    palette = colours[keep]
    nearest, _ = _nearest(src, src[keep])
    return palette, nearest[inverse]


def palette_image(img: Any) -> Any:
    """`img` (a QImage) as a Format_Indexed8 QImage of its most frequent colours."""
    from PySide6.QtGui import QImage

    rgb = img.convertToFormat(QImage.Format.Format_RGB32)
    w, h = rgb.width(), rgb.height()
    stride = rgb.bytesPerLine() // 4
    px = np.frombuffer(rgb.constBits(), dtype=np.uint32, count=stride * h)
    px = px.reshape(h, stride)[:, :w] & 0xFFFFFF
    colours, inverse, counts = np.unique(px.ravel(), return_inverse=True, return_counts=True)
    if len(colours) <= MAX_COLOURS:
        palette, index = colours, inverse
    else:
        palette, index = _quantise(colours, counts, inverse)
    data = np.ascontiguousarray(index.reshape(h, w).astype(np.uint8))
    out = QImage(data.data, w, h, w, QImage.Format.Format_Indexed8)
    out.setColorTable([0xFF000000 | int(c) for c in palette])
    return out.copy()  # owns its pixels (data is freed when this returns)


def save(img: Any, path: str) -> None:
    """Write `img` (a QImage or QPixmap) to `path` as a palette PNG, best zlib level."""
    from PySide6.QtGui import QPixmap

    if isinstance(img, QPixmap):
        img = img.toImage()
    if not palette_image(img).save(path, "PNG", 0):
        raise OSError(f"{path}: cannot write the PNG")
