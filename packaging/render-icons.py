"""Render resources/icons/imemviz.svg into the hicolor PNG sizes (16..512) with QSvgRenderer.

Run after changing the SVG (the PNGs are committed; nothing renders them at
build time):  QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/render-icons.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "imemviz.svg"
OUT = ROOT / "resources" / "icons" / "hicolor"


def render(svg: Path = SVG, out: Path = OUT, sizes: tuple[int, ...] = SIZES) -> list[Path]:
    """Write out/NxN/apps/imemviz.png for every size; returns the paths."""
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    written = []
    for n in sizes:
        img = QImage(n, n, QImage.Format_ARGB32_Premultiplied)
        img.fill(Qt.transparent)
        p = QPainter(img)
        p.setRenderHint(QPainter.Antialiasing)
        p.setRenderHint(QPainter.SmoothPixmapTransform)
        renderer.render(p)
        p.end()
        dest = out / f"{n}x{n}" / "apps" / "imemviz.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not img.save(str(dest)):
            raise SystemExit(f"{dest}: cannot write")
        written.append(dest)
    return written


if __name__ == "__main__":
    app = QGuiApplication(sys.argv[:1])
    for path in render():
        print(path.relative_to(ROOT))
