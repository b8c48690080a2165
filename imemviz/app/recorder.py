"""Recording in the app: the record toggle, the status indicator and the caption action.

The file itself is written on the engine thread by a Qt-free observer of the
session (`imemviz.io.session_recorder.SessionRecorder`), which the worker
keeps in step with the session after every command: new ops are appended and
flushed one line each (a crash loses nothing already applied), an undo or a
seek back rewrites the file without the undone ops, going back past where
recording began or loading another VM stops it.  This GUI half only posts
`StartRecording` / `StopRecording` and follows the worker's `RecordingStatus`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QInputDialog, QLabel

from imemviz.app.messages import RecordingStatus, StartRecording, StopRecording
from imemviz.model.ops import Note

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow

TITLE_SUFFIX = " — ● REC"


def default_directory() -> Path:
    """Where recordings go when the user does not pick a file: the user data folder."""
    import platformdirs

    return platformdirs.user_data_path("imemviz") / "recordings"


class Recorder(QObject):
    """The record toggle, the caption action's backend and the status indicator."""

    started = Signal(str)  # path
    stopped = Signal(str, int)  # path, ops written

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.engine = window.engine
        self.directory: Path = default_directory()
        self.path: str | None = None
        self._gui_t0 = 0.0
        self.ops_written = 0
        self.engine.recordingStatus.connect(self._on_status)
        self._build_indicator()

    # ------------------------------------------------------------------ GUI
    def _build_indicator(self) -> None:
        self.label = QLabel("")
        self.label.setObjectName("recording_indicator")
        self.label.setStyleSheet("color: #c62828; font-weight: bold")
        self.label.setToolTip("Recording: every op goes to the file (flushed per op)")
        self.label.setContentsMargins(8, 0, 8, 0)
        self.label.hide()
        self.window.statusBar().addPermanentWidget(self.label)
        self._tick = QTimer(self)
        self._tick.setInterval(500)
        self._tick.timeout.connect(self._update_indicator)
        self.window.windowTitleChanged.connect(self._fix_title)

    @property
    def recording(self) -> bool:
        return self.path is not None

    def _update_indicator(self) -> None:
        if not self.recording:
            self.label.hide()
            return
        s = int(time.monotonic() - self._gui_t0)
        self.label.setText(f"● REC {s // 60:02d}:{s % 60:02d}")
        self.label.setToolTip(f"Recording to {self.path} (flushed per op)")
        self.label.show()

    def _fix_title(self, title: str) -> None:
        # The window sets its title after each snapshot; keep the suffix on it.
        want = title.removesuffix(TITLE_SUFFIX) + (TITLE_SUFFIX if self.recording else "")
        if want != title:
            self.window.setWindowTitle(want)

    # ------------------------------------------------------------------ control
    def toggle(self) -> None:
        if self.recording:
            self.stop()
        else:
            self.start()

    def start(self, path: str | os.PathLike[str] | None = None) -> str | None:
        """Start recording into `path` (default: a new timestamped file in `directory`)."""
        if self.recording or self.engine.snapshot is None:
            return None
        if path is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = self.directory / f"recording-{stamp}.jsonl"
        self.path = os.fspath(path)
        self._gui_t0 = time.monotonic()
        self.ops_written = 0
        self.engine.post(StartRecording(self.path))
        self._tick.start()
        self._update_indicator()
        self._fix_title(self.window.windowTitle())
        self.window.show_message(f"Recording to {self.path}")
        self.started.emit(self.path)
        return self.path

    def stop(self) -> None:
        """Stop after every op already submitted has been written."""
        if not self.recording:
            return
        path = self.path
        self.path = None
        self._tick.stop()
        self._update_indicator()
        self._fix_title(self.window.windowTitle())
        if self.engine.engine_thread.isRunning():
            self.engine.post(StopRecording())
        else:
            self.engine.worker.close_recording()
        self.window.show_message(f"Recording saved to {path}")
        self.stopped.emit(path or "", self.ops_written)

    def add_caption(self, text: str | None = None) -> None:
        """Apply a `note` op (recorded like any op, shown as the caption); asks when no text."""
        if text is None:
            dlg = QInputDialog(self.window)
            dlg.setObjectName("caption_dialog")
            dlg.setWindowTitle("Add caption")
            dlg.setLabelText("Caption (a note op: shown over the map while the recording replays)")
            dlg.setInputMode(QInputDialog.InputMode.TextInput)
            dlg.resize(560, dlg.sizeHint().height())
            dlg.textValueSelected.connect(lambda t: self.add_caption(t) if t.strip() else None)
            self.window._show("caption", dlg)
            return
        self.engine.apply_ops([Note(text.strip())], "caption")

    def _on_status(self, st: RecordingStatus) -> None:
        """What the engine thread's recorder did after a command."""
        self.ops_written = st.ops_written
        if st.path is None and st.error:
            if self.recording:
                path, self.path = self.path, None
                self._tick.stop()
                self._update_indicator()
                self._fix_title(self.window.windowTitle())
                self.stopped.emit(path or "", self.ops_written)
            self.window.show_message(st.error, error=True)

    def shutdown(self) -> None:
        """The window closes: the file is complete already; close it."""
        self.path = None
        self._tick.stop()
        if self.engine.engine_thread.isRunning():
            self.engine.post(StopRecording())
        else:
            self.engine.worker.close_recording()
