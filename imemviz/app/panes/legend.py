"""The legend: every colour of the map, with its pattern, its name; hover for the meaning."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPainter, QPixmap
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from imemviz.app.palette import LEGEND, LegendEntry, Pattern
from imemviz.app.panes.map_overlays import ink_for, pattern_tile
from imemviz.model.raster import Code

GROUP_ORDER = ("Private", "Shared", "TDX S-EPT", "Address space")


def swatch(entry: LegendEntry, size: int = 14, scale: float = 1.0) -> QPixmap:
    """The state's colour with its pattern, as the map draws it, framed in grey."""
    pm = QPixmap(round(size * 1.5), size)
    pm.fill(QColor(*entry.rgb))
    p = QPainter(pm)
    if entry.pattern != Pattern.NONE:
        p.fillRect(pm.rect(), pattern_tile(entry.pattern, ink_for(entry.code), scale))
    p.setPen(QColor(110, 110, 110))
    p.drawRect(pm.rect().adjusted(0, 0, -1, -1))
    p.end()
    return pm


class LegendPane(QWidget):
    """Swatches in groups, two columns; OUTSIDE is not listed (it is the background)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("legend")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(6)
        self.grid.setVerticalSpacing(1)
        outer.addLayout(self.grid)
        outer.addStretch(1)
        self._swatches: list[tuple[QLabel, LegendEntry]] = []
        self._scale = 1.0
        self.groups_per_row = 2
        self._fill()
        self.setToolTip("What the colours of the map mean (hover an entry for details)")

    def set_groups_per_row(self, n: int) -> None:
        """2: two columns of groups (the side dock); 1: one column (narrow, as
        presentation mode shows it next to the map); 4: every group side by side."""
        if n != self.groups_per_row:
            self.groups_per_row = n
            self._fill()

    def _fill(self) -> None:
        grid = self.grid
        while grid.count():
            item = grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.hide()
                widget.deleteLater()
        self._swatches = []
        row = 0
        n = self.groups_per_row
        for c in range(8):
            grid.setColumnStretch(c, 1 if c % 2 and c // 2 < n else 0)
        for gi, group in enumerate(GROUP_ORDER):
            entries = [e for e in LEGEND if e.group == group and e.code != Code.OUTSIDE]
            col = (gi % n) * 2
            if gi % n == 0 and gi:
                row = grid.rowCount()
            r = row
            head = QLabel(f"<b>{group}</b>")
            grid.addWidget(head, r, col, 1, 2)
            for e in entries:
                r += 1
                sw = QLabel()
                sw.setPixmap(swatch(e, round(14 * self._scale), self._scale))
                self._swatches.append((sw, e))
                sw.setObjectName(f"legend_{e.code.name}")
                name = QLabel(e.name)
                tip = f"<b>{e.name}</b>: {e.description}"
                if e.pattern != Pattern.NONE:
                    tip += f" (drawn with {e.pattern.value})"
                sw.setToolTip(tip)
                name.setToolTip(tip)
                grid.addWidget(
                    sw, r, col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                )
                grid.addWidget(name, r, col + 1)

    def set_scale(self, scale: float) -> None:
        """Swatches `scale` times their size (presentation mode)."""
        self._scale = scale
        for sw, e in self._swatches:
            sw.setPixmap(swatch(e, round(14 * scale), scale))
