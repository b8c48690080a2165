"""The legend: every colour of the map with its name; hover for the kernel meaning."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPixmap
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from imemviz.app.palette import LEGEND
from imemviz.model.raster import Code

GROUP_ORDER = ("Private", "Shared", "TDX S-EPT", "Address space")


def swatch(rgb: tuple[int, int, int], size: int = 14) -> QPixmap:
    pm = QPixmap(size, size)
    pm.fill(QColor(*rgb))
    return pm


class LegendPane(QWidget):
    """Swatches in groups, two columns; OUTSIDE is not listed (it is the background)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("legend")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        grid = QGridLayout()
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(1)
        outer.addLayout(grid)
        outer.addStretch(1)
        row = 0
        for gi, group in enumerate(GROUP_ORDER):
            entries = [e for e in LEGEND if e.group == group and e.code != Code.OUTSIDE]
            col = (gi % 2) * 2
            if gi % 2 == 0 and gi:
                row = grid.rowCount()
            r = row
            head = QLabel(f"<b>{group}</b>")
            grid.addWidget(head, r, col, 1, 2)
            for e in entries:
                r += 1
                sw = QLabel()
                sw.setPixmap(swatch(e.rgb))
                sw.setObjectName(f"legend_{e.code.name}")
                name = QLabel(e.name)
                tip = f"<b>{e.name}</b>: {e.description}"
                sw.setToolTip(tip)
                name.setToolTip(tip)
                grid.addWidget(sw, r, col, Qt.AlignRight | Qt.AlignVCenter)
                grid.addWidget(name, r, col + 1)
        self.setToolTip("What the colours of the map mean (hover an entry for details)")
