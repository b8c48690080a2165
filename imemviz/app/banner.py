"""The banner over the map for a severe outcome: the TD killed, EHWPOISON, a memory-fault exit.

Not modal, not a dialog: a strip above the map saying what happened, where
(the map marks the gfn with a glyph, `panes/map_marks.py`) and what it means
(the kernel rule), with buttons to show the place, undo the action, or dismiss
the banner.  It goes by itself when the op behind it is undone or another VM
is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton

from imemviz.app.messages import ActionRecord
from imemviz.model.changes import Severe

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow

# (background, border) per kind: red for a dead guest, amber for an exit the VMM handles.
STYLE = {
    "td_killed": ("#fde7e9", "#b00020"),
    "vm_dead": ("#fde7e9", "#b00020"),
    "hwpoison": ("#fde7e9", "#b00020"),
    "memory_fault": ("#fff4d6", "#8a5a00"),
}
WHAT = {
    "td_killed": "The TD was killed",
    "vm_dead": "The VM is dead",
    "hwpoison": "Memory error",
    "memory_fault": "Exit to the VMM",
}


class SevereBanner(QFrame):
    """Shows the latest severe outcome until dismissed or undone."""

    dismissed = Signal()
    severeChanged = Signal(object)  # Severe or None

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.setObjectName("severe_banner")
        self.window_ = window
        self.severe: Severe | None = None
        self.record: ActionRecord | None = None
        self._session: int | None = None
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        self.icon = QLabel("⚠")
        self.icon.setStyleSheet("font-size: 22px; font-weight: bold")
        self.text = QLabel("")
        self.text.setObjectName("severe_banner_text")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.show_btn = QPushButton("Show on map")
        self.show_btn.setObjectName("severe_banner_show")
        self.show_btn.setToolTip("Scroll the map to where it happened")
        self.show_btn.clicked.connect(self.show_place)
        self.undo_btn = QPushButton("Undo")
        self.undo_btn.setObjectName("severe_banner_undo")
        self.undo_btn.setToolTip("Undo the action that led here (Ctrl+Z)")
        self.undo_btn.clicked.connect(window.engine.undo)
        self.close_btn = QToolButton()
        self.close_btn.setObjectName("severe_banner_close")
        self.close_btn.setText("✕")
        self.close_btn.setToolTip("Dismiss (the state stays as it is)")
        self.close_btn.clicked.connect(self.dismiss)
        lay.addWidget(self.icon)
        lay.addWidget(self.text, 1)
        for b in (self.show_btn, self.undo_btn, self.close_btn):
            lay.addWidget(b, 0, Qt.AlignmentFlag.AlignTop)
        window.engine.snapshotReady.connect(self._on_snapshot)
        self.hide()

    def show_severe(self, severe: Severe, record: ActionRecord | None = None) -> None:
        self.severe, self.record = severe, record
        bg, border = STYLE.get(severe.kind, STYLE["td_killed"])
        self.setStyleSheet(
            f"#severe_banner {{ background: {bg}; border: 2px solid {border};"
            f" border-radius: 6px; }} #severe_banner QLabel {{ color: #1a1a1a; }}"
        )
        self.icon.setStyleSheet(f"font-size: 22px; font-weight: bold; color: {border}")
        where = f" at gfn {severe.gfn:#x} (gpa {severe.gfn << 12:#x})" if severe.gfn else ""
        op = f"op #{severe.op}: " if severe.op >= 0 else ""
        rule = record.rule if record is not None else ""
        detail = severe.detail.removeprefix(f"{severe.title}: ")
        body = f"<b>{WHAT.get(severe.kind, severe.title)}{where}</b> — {op}{_esc(detail)}"
        if rule and rule not in severe.detail:
            body += f"<br><small>{_esc(rule)}</small>"
        self.text.setText(body)
        self.show_btn.setEnabled(severe.gfn is not None)
        self.show()
        self.severeChanged.emit(severe)

    def dismiss(self) -> None:
        if self.severe is None:
            return
        self.severe = self.record = None
        self.hide()
        self.severeChanged.emit(None)
        self.dismissed.emit()

    def show_place(self) -> None:
        if self.severe is None or self.severe.gfn is None:
            return
        g = self.severe.gfn
        pane = self.window_.map
        lay = pane.layout_
        a, b = lay.visible_gfns()
        if not a <= g < b:
            lay.ensure_visible(g)
            pane.refresh()

    def _on_snapshot(self, snap) -> None:
        new_session = self._session is not None and snap.session != self._session
        self._session = snap.session
        s = self.severe
        if s is None:
            return
        if new_session or (s.op >= 0 and snap.op_count <= s.op):
            self.dismiss()  # another VM, or the op behind it was undone


def _esc(text: str) -> str:
    import html

    return html.escape(text)
