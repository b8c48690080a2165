"""The Timeline pane: the session's steps with play/pause, step, step back, seek and speed.

One pane for a live session and for a recording being replayed.  A live
session lists its actions (each one undo step, with its op numbers); a
replay lists the recording's ops, captions in bold on yellow.  What lies past
the position (undone, or not replayed yet) is grey.  The list is a virtual
model over the engine's `TimelineInfo` (a row is formatted when it is shown),
so a 20,000-op recording costs nothing to list.  The controls drive a
`ReplayController` (imemviz/app/replay.py), which seeks on the engine thread.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QSlider,
    QStyle,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from imemviz.app import plot_theme
from imemviz.app.messages import TimelineInfo
from imemviz.app.panes.log import op_text
from imemviz.app.replay import ReplayController
from imemviz.io.replay import SPEEDS, Timeline, recording_title
from imemviz.model.ops import Note

_Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()
FUTURE_FG = QColor("#8a8a8a")
# The row of the current position, light and dark (the caption rows' colours are the
# plot theme's: imemviz/app/plot_theme.py).
HERE_BG = {False: QColor("#cfe3ff"), True: QColor("#1f3f66")}


class TimelineModel(QAbstractListModel):
    """Row 0 is the start; row k the k-th step (a live action, or a recording's op)."""

    def __init__(self, controller: ReplayController, parent: Any = None) -> None:
        super().__init__(parent)
        self.c = controller
        self.info: TimelineInfo | None = None
        self._firsts: tuple[int, ...] = (0,)
        self._bold = QFont()
        self._bold.setBold(True)
        self._italic = QFont()
        self._italic.setItalic(True)

    def set_info(self, info: TimelineInfo | None) -> None:
        self.beginResetModel()
        self.info = info
        self._firsts = info.firsts if info is not None else (0,)  # engine thread's
        self.endResetModel()

    def rowCount(self, parent: _Index = _ROOT) -> int:
        if parent.isValid() or self.info is None:
            return 0
        return len(self.info) + 1

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        info = self.info
        if info is None or not index.isValid():
            return None
        k = index.row()
        future = k > self.c.position
        theme = plot_theme.current()
        if k == 0:
            if role == Qt.ItemDataRole.DisplayRole:
                return "(start)"
            if role == Qt.ItemDataRole.BackgroundRole and self.c.position == 0:
                return QBrush(HERE_BG[theme.dark])
            return None
        first, end = self._firsts[k - 1], self._firsts[k]
        op = info.ops[first] if first < len(info.ops) else None
        note = isinstance(op, Note) and end - first == 1
        if role == Qt.ItemDataRole.DisplayRole:
            if info.replay:
                if isinstance(op, Note) and note:
                    return f"#{first}  “{op.text}”"
                return f"#{first}  {op_text(op)}" if op is not None else f"#{first}"
            ops = f"#{first}" if end - first == 1 else f"#{first}–#{end - 1}"
            label = info.labels[k - 1] or (op.NAME if op is not None else "")
            return f"{ops}  {label[:1].upper() + label[1:]}"
        if role == Qt.ItemDataRole.ToolTipRole:
            if op is None:
                return None
            lines = [op_text(o) for o in info.ops[first : min(end, first + 8)]]
            more = end - first - len(lines)
            tip = "\n".join(lines) + (f"\n… {more} more" if more > 0 else "")
            return tip + ("\n(undone / not applied yet: click to go there)" if future else "")
        if role == Qt.ItemDataRole.FontRole:
            return self._bold if note else (self._italic if future else None)
        if role == Qt.ItemDataRole.BackgroundRole and k == self.c.position:
            return QBrush(HERE_BG[theme.dark])
        if role == Qt.ItemDataRole.BackgroundRole and note:
            return QBrush(QColor(theme.caption_row))
        if role == Qt.ItemDataRole.ForegroundRole and future:
            return QBrush(FUTURE_FG)
        if role == Qt.ItemDataRole.ForegroundRole and note:
            return QBrush(QColor(theme.caption_row_text))
        return None

    def current_row(self) -> int:
        return self.c.position


class ReplayPane(QWidget):
    """Play/pause, step, step back, speed, a slider and the list of the timeline's steps."""

    def __init__(self, controller: ReplayController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("replay")
        self.setToolTip(
            "The session's timeline: go back and forth (like undo, keeping redo); "
            "replay a recording with its captions"
        )
        self.c = controller
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        self.title = QLabel("")
        self.title.setObjectName("replay_title")
        # A long scene title is clipped rather than widening the dock.
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
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
            "replay_back", "SP_MediaSeekBackward", "Step back (F6)", self.c.step_back
        )
        self.play_btn = button("replay_play", "SP_MediaPlay", "Play / pause (F5)", self.c.toggle)
        self.step_btn = button("replay_step", "SP_MediaSeekForward", "Step (F7)", self.c.step)
        self.end_btn = button(
            "replay_end", "SP_MediaSkipForward", "Jump to the end", lambda: self.c.seek(1 << 60)
        )
        self.speed = QComboBox()
        self.speed.setObjectName("replay_speed")
        for s in SPEEDS:
            self.speed.addItem(f"{s:g}×", s)
        self.speed.setCurrentIndex(SPEEDS.index(1.0))
        self.speed.setToolTip("Play speed")
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
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("replay_slider")
        self.slider.setToolTip("Seek: the state after this many steps")
        self.slider.valueChanged.connect(self._on_slider)
        lay.addWidget(self.slider)
        self.model = TimelineModel(controller, self)
        # A one-column table with fixed row heights: like the event log, it lays out only
        # the rows on screen (a QListView lays out every row: 100 ms for 20,000 ops).
        self.list = QTableView()
        self.list.setObjectName("replay_ops")
        self.list.setModel(self.model)
        self.list.horizontalHeader().hide()
        self.list.horizontalHeader().setStretchLastSection(True)
        vh = self.list.verticalHeader()
        vh.hide()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vh.setDefaultSectionSize(20)
        self.list.setShowGrid(False)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.list.setToolTip("Every step; captions in bold. Click one to go there")
        self.list.clicked.connect(self._on_item)
        self.list.activated.connect(self._on_item)
        lay.addWidget(self.list, 1)
        # Caption and current rows take the theme's colours: repaint on a switch.
        plot_theme.hub().changed.connect(self._on_theme)
        controller.timelineChanged.connect(self._on_timeline)
        controller.positionChanged.connect(self._on_position)
        controller.playingChanged.connect(self._on_playing)
        self._on_timeline(None)

    def _on_theme(self, _theme) -> None:
        self.list.viewport().update()

    def _on_playing(self, playing: bool) -> None:
        icon = (
            QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        )
        self.play_btn.setIcon(self.style().standardIcon(icon))

    def _on_timeline(self, info: TimelineInfo | None) -> None:
        self.model.set_info(info)
        for b in (self.start_btn, self.back_btn, self.play_btn, self.step_btn, self.end_btn):
            b.setEnabled(info is not None)
        self.slider.setEnabled(info is not None)
        tl: Timeline | None = info.timeline if info is not None else None
        self.recorded.blockSignals(True)
        self.recorded.setEnabled(tl is not None and tl.has_times)
        self.recorded.setChecked(tl is not None and tl.has_times)
        self.recorded.blockSignals(False)
        if info is None:
            self.title.setText("No VM loaded")
        elif tl is not None:
            name = os.path.basename(tl.source)
            title = recording_title(tl.source)
            self.title.setText(f"Replaying {title} ({name})" if title else f"Replaying {name}")
            self.title.setToolTip(tl.source)
        else:
            n_ops = len(info.ops)
            self.title.setText(
                f"This session: {len(info)} actions, {n_ops} ops — drag or click to go back "
                "and forth (like undo, keeping redo)"
            )
            self.title.setToolTip("Every action of the session, undone ones included (grey)")
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(info) if info is not None else 0)
        self.slider.setValue(self.c.position)
        self.slider.blockSignals(False)
        self._on_position(self.c.position)

    def _on_position(self, k: int) -> None:
        info = self.model.info
        if info is None:
            self.pos_label.setText("")
            return
        unit = "op" if info.replay else "step"
        self.pos_label.setText(f"{unit} {k} / {len(info)}")
        self.slider.blockSignals(True)
        self.slider.setValue(k)
        self.slider.blockSignals(False)
        # Rows are formatted when painted: a repaint shows the new position and the grey
        # future (a dataChanged over a long timeline would cost the view tens of ms).
        self.list.viewport().update()
        # Row k is "(start)" for k = 0, else the step just applied; it is drawn highlighted
        # by the model (a current index would cost the selection machinery tens of ms on a
        # long timeline).
        idx = self.model.index(min(k, self.model.rowCount() - 1))
        self.list.scrollTo(idx)

    def _on_slider(self, k: int) -> None:
        self.c.pause()
        self.c.seek(k)

    def _on_item(self, index: QModelIndex) -> None:
        self.c.pause()
        self.c.seek(index.row())

    def _on_speed(self, *_args) -> None:
        self.c.set_speed(float(self.speed.currentData()), self.recorded.isChecked())
