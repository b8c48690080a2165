"""The caption above the map: the text of the last `note` op, sized for a conference room.

A band across the top of the map pane (white on navy, bold, about 1/42 of the map's
width, 15 to 30 px), laid out *above* the plot rather than over it: the map's rows,
its axes and whatever just changed are never under the caption.  While a caption is
shown the map is that much shorter; the band keeps the height of two lines at least,
so captions of one or two lines do not make the map jump.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QEvent, QObject, QRect, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics
from PySide6.QtWidgets import QBoxLayout, QLabel, QSizePolicy, QWidget

CAPTION_BG = QColor(16, 24, 40, 235)
PAD_X, PAD_Y = 18, 8
MIN_LINES = 2


class CaptionOverlay(QLabel):
    """The caption band.  `host` is the map pane (its layout gets the band right under
    the header) or any widget with a layout; `locate` is kept for callers that pass it."""

    def __init__(self, host: QWidget, locate: Callable[[int], int] | None = None) -> None:
        super().__init__(host)
        self.setObjectName("caption_overlay")
        self.host = host
        self.locate = locate
        self.at_bottom = False  # the band never moves: nothing is ever under it
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        # Padding as contents margins (not style-sheet padding) so the height we compute
        # from the font metrics is exactly what the label needs.
        self.setContentsMargins(PAD_X, PAD_Y, PAD_X, PAD_Y)
        c = CAPTION_BG
        self.setStyleSheet(
            f"QLabel {{ color: white; border-radius: 8px;"
            f" background: rgba({c.red()}, {c.green()}, {c.blue()}, {c.alpha()}); }}"
        )
        self.enabled = True
        layout = host.layout()
        if isinstance(layout, QBoxLayout):  # the map pane's column
            layout.insertWidget(min(1, layout.count()), self)
        host.installEventFilter(self)
        self.hide()

    def set_caption(self, text: str | None) -> None:
        self.setText(text or "")
        self._place()

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if obj is self.host and ev.type() == QEvent.Type.Resize:
            self._place()
        return False

    def _place(self) -> None:
        text = self.text()
        if not text or not self.enabled:
            self.hide()
            return
        w = self.host.width()
        # Big enough for a projector: ~1/42 of the width, between 15 and 30 px.
        px = max(15, min(30, w // 42))
        f = QFont(self.font())
        f.setPixelSize(px)
        f.setBold(True)
        self.setFont(f)
        fm = QFontMetrics(f)
        inner = max(100, w - 2 * PAD_X - 8)
        text_rect = fm.boundingRect(
            QRect(0, 0, inner, 10_000),
            int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap),
            text,
        )
        lines = max(MIN_LINES * fm.lineSpacing(), text_rect.height())
        height = lines + 2 * PAD_Y
        if self.height() != height or not self.isVisible():
            self.setFixedHeight(height)
        self.show()

    def avoid(self, changed: Sequence[tuple[int, int]] | None) -> None:
        """Nothing to avoid: the band is above the map, never over it."""
