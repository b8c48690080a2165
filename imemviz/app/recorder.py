"""Recording in the app: every op the user performs, appended to a recording file as it happens.

The recorder writes on the engine thread, from the worker's own signals
(direct connections), so the file has exactly the ops the session applied,
in order, and each line is flushed before the next op runs: a crash loses
nothing already applied.  The header's START is the state the session had
when recording began (the session's start when it had applied nothing yet,
else the whole state embedded with ``{"state": ...}``), so the recording
replays from exactly there.  ``t`` counts seconds since recording started.

Undo while recording rewrites the file without the undone ops (a script has
no "undo" op); undoing past where recording began, or loading another VM,
stops the recording.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QInputDialog, QLabel

from imemviz.io.recording import RecordingWriter
from imemviz.io.session import Session
from imemviz.model.ops import Note, Op

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow
    from imemviz.app.worker import OpRecord

REPLACING_COMMANDS = frozenset({"open", "scene", "new", "session"})
TITLE_SUFFIX = " — ● REC"


def default_directory() -> Path:
    """Where recordings go when the user does not pick a file: the user data folder."""
    import platformdirs

    return platformdirs.user_data_path("imemviz") / "recordings"


class Recorder(QObject):
    """The record toggle, the caption action's backend and the status indicator."""

    started = Signal(str)  # path
    stopped = Signal(str, int)  # path, ops written
    _failed = Signal(str)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.engine = window.engine
        self.directory: Path = default_directory()
        self.path: str | None = None
        self._lock = threading.Lock()
        # Engine-thread state (touched only there once recording runs).
        self._writer: RecordingWriter | None = None
        self._start: dict[str, Any] | None = None
        self._base = 0  # session op count when recording began
        self._ops: list[tuple[Op, float]] = []
        self._t0 = 0.0
        self._gui_t0 = 0.0
        self.ops_written = 0
        w = self.engine.worker
        w.opApplied.connect(self._on_op, Qt.DirectConnection)
        w.commandFinished.connect(self._on_command, Qt.DirectConnection)
        self._failed.connect(self._on_failed)
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
        self.engine.call(lambda s, p=self.path: self._open(s, p))
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
        if self.engine.thread.isRunning():
            self.engine.call(lambda _s: self._close())
        else:
            self._close()
        self.window.show_message(f"Recording saved to {path}")
        self.stopped.emit(path or "", self.ops_written)

    def add_caption(self, text: str | None = None) -> None:
        """Apply a `note` op (recorded like any op, shown as the caption); asks when no text."""
        if text is None:
            dlg = QInputDialog(self.window)
            dlg.setObjectName("caption_dialog")
            dlg.setWindowTitle("Add caption")
            dlg.setLabelText("Caption (a note op: shown over the map while the recording replays)")
            dlg.setInputMode(QInputDialog.TextInput)
            dlg.resize(560, dlg.sizeHint().height())
            dlg.textValueSelected.connect(lambda t: self.add_caption(t) if t.strip() else None)
            self.window._show("caption", dlg)
            return
        self.engine.apply_ops([Note(text.strip())], "caption")

    def _on_failed(self, message: str) -> None:
        if self.recording:
            path, self.path = self.path, None
            self._tick.stop()
            self._update_indicator()
            self._fix_title(self.window.windowTitle())
            self.stopped.emit(path or "", self.ops_written)
        self.window.show_message(message, error=True)

    # ------------------------------------------------------------------ engine thread
    def _open(self, session: Session, path: str) -> None:
        self._base = len(session.ops)
        if session.ops:
            from imemviz.io.state import state_document

            self._start = {"state": state_document(session.vm)}
        else:
            self._start = dict(session.start)
        self._ops = []
        self._t0 = time.monotonic()
        self.ops_written = 0
        try:
            self._writer = RecordingWriter(path, self._start, clock=None)
        except OSError as e:
            self._writer = None
            self._failed.emit(f"Cannot record to {path}: {e.strerror or e}")

    def _close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def _on_op(self, rec: OpRecord) -> None:
        # Under the lock: the window may close the file from the GUI thread at exit.
        with self._lock:
            writer = self._writer
            if writer is None:
                return
            t = time.monotonic() - self._t0
            self._ops.append((rec.op, t))
            try:
                writer.write(rec.op, t)
                self.ops_written += 1
                return
            except (OSError, ValueError) as e:
                writer.close()
                self._writer = None
                error = f"Recording stopped: cannot write {writer.path}: {e}"
        self._failed.emit(error)

    def _on_command(self, label: str) -> None:
        if self._writer is None:
            return
        if label in REPLACING_COMMANDS:
            self._close()
            self._failed.emit("Recording stopped: another VM was loaded")
        elif label == "undo":
            self._rewrite()

    def _rewrite(self) -> None:
        """After an undo: the file again, without the undone ops (atomically replaced)."""
        session = self.engine.worker.session
        if session is None or self._writer is None or self._start is None:
            return
        keep = len(session.ops) - self._base
        if keep < 0:
            self._close()
            self._failed.emit("Recording stopped: undo went past where the recording began")
            return
        del self._ops[keep:]
        path = self._writer.path
        self._writer.close()
        self._writer = None
        try:
            # The atomic writer replaces the file: the old one or the new one, never a mix.
            self._writer = RecordingWriter(path, self._start, clock=None, ops=self._ops)
        except OSError as e:
            self._failed.emit(f"Recording stopped: cannot write {path}: {e.strerror or e}")
            return
        self.ops_written = len(self._ops)

    def shutdown(self) -> None:
        """The window closes: the file is complete already; close it."""
        self.path = None
        self._tick.stop()
        with contextlib.suppress(Exception):
            self._close()
