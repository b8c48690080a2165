"""The Replay pane: play/pause, step, step back, seek (slider, op list), speed.

The list shows every op of the recording, captions in bold on yellow; the
controls drive a `ReplayController` (imemviz/app/replay.py).
"""

from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QSlider,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from imemviz.app.panes.log import op_text
from imemviz.app.replay import ReplayController
from imemviz.io.replay import SPEEDS, Timeline, recording_title
from imemviz.model.ops import Note


class ReplayPane(QWidget):
    """Play/pause, step, step back, speed, a slider and the list of ops with captions."""

    def __init__(self, controller: ReplayController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("replay")
        self.setToolTip("Replay a recording: play, step, seek; captions show over the map")
        self.c = controller
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        self.title = QLabel("No recording loaded (File > Replay recording…, or Scenarios)")
        self.title.setObjectName("replay_title")
        # A long scene title is clipped rather than widening the dock.
        self.title.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.title.setStyleSheet("font-weight: bold")

        style = self.style()

        def button(name: str, icon: str, tip: str, slot) -> QToolButton:
            b = QToolButton()
            b.setObjectName(name)
            # Standard media icons: glyphs like ⏮ are missing from many fonts.
            b.setIcon(style.standardIcon(getattr(QStyle.StandardPixmap, icon)))
            b.setToolTip(tip)
            b.clicked.connect(slot)
            row.addWidget(b)
            return b

        self.start_btn = button(
            "replay_start", "SP_MediaSkipBackward", "Back to the start", lambda: self.c.seek(0)
        )
        self.back_btn = button(
            "replay_back", "SP_MediaSeekBackward", "Step back one op (F6)", self.c.step_back
        )
        self.play_btn = button("replay_play", "SP_MediaPlay", "Play / pause (F5)", self.c.toggle)
        self.step_btn = button(
            "replay_step", "SP_MediaSeekForward", "Step one op (F7)", self.c.step
        )
        self.end_btn = button(
            "replay_end", "SP_MediaSkipForward", "Jump to the end", lambda: self.c.seek(1 << 60)
        )
        self.speed = QComboBox()
        self.speed.setObjectName("replay_speed")
        for s in SPEEDS:
            self.speed.addItem(f"{s:g}×", s)
        self.speed.setCurrentIndex(SPEEDS.index(1.0))
        self.speed.setToolTip("Replay speed")
        self.speed.currentIndexChanged.connect(self._on_speed)
        row.addWidget(self.speed)
        self.recorded = QCheckBox("as recorded")
        self.recorded.setObjectName("replay_as_recorded")
        self.recorded.setToolTip(
            "Pace by the recording's t stamps; off (or without t): 0.5 s per op, captions 2.5 s"
        )
        self.recorded.toggled.connect(self._on_speed)
        row.addWidget(self.recorded)
        self.pos_label = QLabel("")
        self.pos_label.setObjectName("replay_position")
        row.addWidget(self.pos_label)
        row.addStretch(1)
        lay.addWidget(self.title)  # its own line: scene titles are long
        lay.addLayout(row)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setObjectName("replay_slider")
        self.slider.setToolTip("Seek: the state after this many ops")
        self.slider.valueChanged.connect(self._on_slider)
        lay.addWidget(self.slider)
        self.list = QListWidget()
        self.list.setObjectName("replay_ops")
        self.list.setToolTip("The recording's ops; captions in bold. Click one to seek to it")
        self.list.itemActivated.connect(self._on_item)
        self.list.itemClicked.connect(self._on_item)
        lay.addWidget(self.list, 1)
        controller.loaded.connect(self._on_loaded)
        controller.positionChanged.connect(self._on_position)
        controller.playingChanged.connect(self._on_playing)
        self._on_loaded(None)

    def _on_playing(self, playing: bool) -> None:
        icon = (
            QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        )
        self.play_btn.setIcon(self.style().standardIcon(icon))

    def _on_loaded(self, tl: Timeline | None) -> None:
        self.list.clear()
        for b in (self.start_btn, self.back_btn, self.play_btn, self.step_btn, self.end_btn):
            b.setEnabled(tl is not None)
        self.slider.setEnabled(tl is not None)
        if tl is None:
            self.title.setText("No recording loaded (File > Replay recording…, or Scenarios)")
            self.pos_label.setText("")
            return
        name = os.path.basename(tl.source)
        title = recording_title(tl.source)
        self.title.setText(f"{title} ({name})" if title else name)
        self.title.setToolTip(tl.source)
        self.recorded.blockSignals(True)
        self.recorded.setEnabled(tl.has_times)
        self.recorded.setChecked(tl.has_times)
        self.recorded.blockSignals(False)
        from imemviz.app import plot_theme

        theme = plot_theme.current()
        bold = QFont(self.list.font())
        bold.setBold(True)
        self.list.addItem(QListWidgetItem("(start)"))
        for i, op in enumerate(tl.ops):
            if isinstance(op, Note):
                item = QListWidgetItem(f"#{i}  “{op.text}”")
                item.setFont(bold)
                item.setBackground(QBrush(QColor(theme.caption_row)))
                item.setForeground(QBrush(QColor(theme.caption_row_text)))
            else:
                item = QListWidgetItem(f"#{i}  {op_text(op)}")
            self.list.addItem(item)
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(tl))
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self._on_position(self.c.position)

    def _on_position(self, k: int) -> None:
        tl = self.c.timeline
        if tl is None:
            return
        self.pos_label.setText(f"op {k} / {len(tl)}")
        self.slider.blockSignals(True)
        self.slider.setValue(k)
        self.slider.blockSignals(False)
        # Row k is "(start)" for k = 0, else the op just applied.
        self.list.setCurrentRow(k)

    def _on_slider(self, k: int) -> None:
        self.c.pause()
        self.c.seek(k)

    def _on_item(self, item: QListWidgetItem) -> None:
        self.c.pause()
        self.c.seek(self.list.row(item))

    def _on_speed(self, *_args) -> None:
        self.c.set_speed(float(self.speed.currentData()), self.recorded.isChecked())
