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
    QSlider,
    QStyle,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from imemviz.app import plot_theme
from imemviz.app.elided_label import ElidedLabel
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
LIST_MIN_ROWS = 2  # fewer rows fit under the controls: the list is hidden


def start_text(snap) -> str:
    """What a live session's start holds: the ops a scene or a file ran before it."""
    if snap is None:
        return ""
    if not snap.op_base:
        return "an empty VM"
    what = os.path.basename(snap.source) if snap.source else "the scene"
    return f"{snap.op_base} ops of {what}"


class TimelineModel(QAbstractListModel):
    """Row 0 is the start; row k the k-th step (a live action, or a recording's op)."""

    def __init__(self, controller: ReplayController, parent: Any = None) -> None:
        super().__init__(parent)
        self.c = controller
        self.info: TimelineInfo | None = None
        self._firsts: tuple[int, ...] = (0,)
        self.start_text = ""  # what the start holds (a live session: start_text())
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
                return f"(start: {self.start_text})" if self.start_text else "(start)"
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
        # One line of controls, slider and title: the pane is a thin strip across the
        # window (timeline_strip.py); its list of steps shows when it is given the room.
        self.title = ElidedLabel("")
        self.title.setObjectName("replay_title")
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
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("replay_slider")
        self.slider.setToolTip(
            "Seek: the state after this many steps (like undo, keeping redo); drag the "
            "strip taller for the list of steps"
        )
        self.slider.setMinimumWidth(120)
        self.slider.valueChanged.connect(self._on_slider)
        row.addWidget(self.slider, 1)
        row.addWidget(self.title, 1)
        lay.addLayout(row)
        self.controls = row
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
        self.list_allowed = True  # presentation mode keeps the strip to its controls
        # Caption and current rows take the theme's colours: repaint on a switch.
        plot_theme.hub().changed.connect(self._on_theme)
        controller.timelineChanged.connect(self._on_timeline)
        controller.positionChanged.connect(self._on_position)
        controller.playingChanged.connect(self._on_playing)
        self._on_timeline(None)

    def strip_height(self) -> int:
        """The pane's height as a strip: its margins and the line of controls."""
        lay = self.layout()
        assert lay is not None  # set in __init__
        m = lay.contentsMargins()
        self.controls.activate()
        return self.controls.sizeHint().height() + m.top() + m.bottom()

    def set_list_allowed(self, allowed: bool) -> None:
        self.list_allowed = allowed
        self._fit_list()

    def _fit_list(self) -> None:
        """The list of steps when at least LIST_MIN_ROWS fit under the controls; else the
        strip is the controls and the slider alone (a scrubber line)."""
        vh = self.list.verticalHeader()
        need = LIST_MIN_ROWS * vh.defaultSectionSize() + 2 * self.list.frameWidth()
        lay = self.layout()
        spacing = max(0, lay.spacing()) if lay is not None else 0
        room = self.height() - self.strip_height() - spacing
        show = self.list_allowed and room >= need
        if self.list.isVisibleTo(self) != show:
            self.list.setVisible(show)

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._fit_list()

    def _on_theme(self, _theme) -> None:
        self.list.viewport().update()

    def _on_playing(self, playing: bool) -> None:
        icon = (
            QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        )
        self.play_btn.setIcon(self.style().standardIcon(icon))

    def _on_timeline(self, info: TimelineInfo | None) -> None:
        self.model.start_text = ""
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
            start = start_text(self.c.window.engine.snapshot)
            self.model.start_text = start
            # What the start holds is said: the default scene's ops ran before the
            # session (they are its start, not undoable actions), so "0 actions" alone
            # read as if nothing had run.
            self.title.setText(f"This session: {len(info)} actions, {n_ops} ops · start: {start}")
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
