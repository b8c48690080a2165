"""The caption over the map: the text of the last `note` op, sized for a conference room.

A translucent label anchored to the top of the map (white on navy, bold,
about 1/42 of the map's width, 15 to 30 px), clear of the memslot gutter on
the right.  It never hides what just happened: when the last op changed
pages drawn under it, it moves to the bottom of the map for a while.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QEvent, QObject, QRect, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics
from PySide6.QtWidgets import QLabel, QWidget

from imemviz.app.panes.gpa_map import GUTTER_PX

CAPTION_BG = QColor(16, 24, 40, 215)
PAD_X, PAD_Y = 18, 10
MARGIN_TOP = 12
MARGIN_BOTTOM = 48  # above the bottom axis and its label
SLACK_PX = 8


class CaptionOverlay(QLabel):
    """A caption over the top of the map: white on translucent navy, big, word-wrapped.

    It never hides what just happened: when the last op changed pages drawn under
    it (`avoid`), it moves to the bottom of the map, and back to the top with the
    next op elsewhere.  `locate(gfn)` gives a gfn's y in the host's coordinates.
    """

    def __init__(self, host: QWidget, locate: Callable[[int], int] | None = None) -> None:
        super().__init__(host)
        self.setObjectName("caption_overlay")
        self.host = host
        self.locate = locate
        self.at_bottom = False
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignCenter)
        self.setTextFormat(Qt.PlainText)
        self.setAttribute(Qt.WA_TransparentForMouseEvents, True)
        # Padding as contents margins (not style-sheet padding) so the height we compute
        # from the font metrics is exactly what the label needs.
        self.setContentsMargins(PAD_X, PAD_Y, PAD_X, PAD_Y)
        c = CAPTION_BG
        self.setStyleSheet(
            f"QLabel {{ color: white; border-radius: 10px;"
            f" background: rgba({c.red()}, {c.green()}, {c.blue()}, {c.alpha()}); }}"
        )
        self.enabled = True
        host.installEventFilter(self)
        self.hide()

    def set_caption(self, text: str | None) -> None:
        self.setText(text or "")
        self._place()

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if obj is self.host and ev.type() == QEvent.Resize:
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
        # Over the rows, not the gutter on the right: the memslot labels stay readable.
        width = max(200, w - 2 * 24 - GUTTER_PX)
        fm = QFontMetrics(f)
        text_rect = fm.boundingRect(
            QRect(0, 0, width - 2 * PAD_X, 10_000), int(Qt.AlignCenter | Qt.TextWordWrap), text
        )
        self.setFixedSize(width, text_rect.height() + 2 * PAD_Y)
        self.move(max(0, (w - GUTTER_PX - width) // 2), self._y(self.at_bottom))
        self.show()
        self.raise_()

    def _y(self, bottom: bool) -> int:
        if bottom:
            return max(MARGIN_TOP, self.host.height() - self.height() - MARGIN_BOTTOM)
        return MARGIN_TOP

    def avoid(self, changed: Sequence[tuple[int, int]] | None) -> None:
        """Move to the end of the map (top or bottom) that `changed` gfn ranges leave free."""
        if not changed or self.locate is None or not self.text():
            return

        def hides(bottom: bool) -> bool:
            top = self._y(bottom)
            end = top + self.height()
            for a, b in changed:
                ya, yb = self.locate(a), self.locate(max(a, b - 1))
                if yb - ya > self.host.height() // 2:
                    continue  # a change of half the map is not one spot to keep in view
                # gfn_pos is a cell's centre: a few px of slack cover the rest of its row.
                if ya <= end + SLACK_PX and yb >= top - SLACK_PX:
                    return True
            return False

        # The top is home; the bottom only while the top would hide the latest change.
        want = hides(False) and not hides(True)
        if want != self.at_bottom:
            self.at_bottom = want
            self._place()
