"""When things go wrong: an error dialog instead of a dead app, and bug-report bundles.

`install_hooks` replaces ``sys.excepthook`` and ``threading.excepthook``: an
exception that escapes a Qt slot, an event handler or a Python thread is
logged and shown in a non-modal dialog with the traceback in its details,
and the app keeps running (the engine thread owns the state, so nothing the
user did is lost).  The engine's own "internal error" failures (it catches
them to stay alive) get the same dialog.

A bug-report bundle is one ``.zip`` holding everything needed to reproduce:
the current state (``state.json.zst``), the recording of the session so far
(``recording.jsonl``), the versions of imemviz, Python, Qt and friends
(``versions.json``), the log files and the traceback(s) that led there.
It is written on the engine thread, in order after the commands already
queued, so the state in it is the state on screen.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import traceback
import zipfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QMessageBox

import imemviz
from imemviz.app import settings as user_settings
from imemviz.app.messages import WriteBundle
from imemviz.io.atomic import AtomicFile

if TYPE_CHECKING:
    from types import TracebackType

    from imemviz.app.window import MainWindow
    from imemviz.io.session import Session

log = logging.getLogger("imemviz.crash")

STATE_NAME = "state.json.zst"
RECORDING_NAME = "recording.jsonl"
VERSIONS_NAME = "versions.json"
CHECK_NAME = "check.txt"
MAX_TRACEBACKS = 20  # kept for the bundle; a loop raising forever must not eat memory


def versions() -> dict[str, str]:
    """What a bug report needs to know about this installation."""
    out = {
        "imemviz": imemviz.__version__,
        "python": sys.version.replace("\n", " "),
        "platform": platform.platform(),
        "frozen": str(bool(getattr(sys, "frozen", False))),
    }
    for dist in ("PySide6-Essentials", "PySide6", "shiboken6", "pyqtgraph", "numpy", "attrs"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    with contextlib.suppress(ImportError):
        from PySide6 import QtCore

        out["Qt"] = QtCore.qVersion()
    return out


def _write_check(session: Session, path: Path) -> None:
    """What `imemviz check` prints for the state: its summary and every invariant."""
    from imemviz.io.check import MAX_SHOWN, report, summary
    from imemviz.model.invariants import count_violations

    violations, total = count_violations(session.vm, MAX_SHOWN)
    text = summary(session.vm, STATE_NAME) + "\n" + report(violations, total) + "\n"
    path.write_text(text, encoding="utf-8")


def write_bundle(
    path: str | os.PathLike[str],
    session: Session | None,
    tracebacks: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """Write the bug-report zip at `path`; returns the problems met (empty: complete).

    Each part is written on its own: a state that cannot be saved (the very bug
    being reported, maybe) still leaves the recording, versions and log in the zip.
    Runs on the engine thread when `session` is the live one.
    """
    problems: list[str] = []
    target = Path(path)
    with tempfile.TemporaryDirectory(prefix="imemviz-bug-") as tmp:
        parts: list[tuple[Path, str]] = []
        if session is not None:
            for name, save in (
                (STATE_NAME, session.save_state),
                (RECORDING_NAME, session.save_recording),
                (CHECK_NAME, lambda p: _write_check(session, p)),
            ):
                p = Path(tmp) / name
                try:
                    save(p)
                    parts.append((p, name))
                except Exception as e:  # the report must be written anyway
                    problems.append(f"{name}: {e!r}")
        else:
            problems.append("no VM was loaded: no state or recording")
        for logfile in sorted(user_settings.log_dir().glob(user_settings.LOG_FILE + "*")):
            parts.append((logfile, f"log/{logfile.name}"))
        info: dict[str, Any] = {
            "versions": versions(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "problems": problems,
            "ops": len(session.ops) if session is not None else 0,
        }
        out = AtomicFile(target)
        try:
            with zipfile.ZipFile(out.open("wb"), "w", zipfile.ZIP_DEFLATED) as z:
                for src, name in parts:
                    z.write(src, name)
                z.writestr(VERSIONS_NAME, json.dumps(info, indent=2) + "\n")
                if tracebacks:
                    z.writestr("traceback.txt", "\n\n".join(tracebacks))
                z.writestr("README.txt", _README)
            out.commit()
        except BaseException:
            out.discard()
            raise
    # No logging here: on the engine's QThread a log record would make `threading`
    # register a dummy Python thread for good. CrashReporter logs on the GUI thread.
    return problems


_README = """\
imemviz bug report
==================
state.json.zst    the state when the report was made:  imemviz state.json.zst
                  (or imemviz check state.json.zst)
recording.jsonl   the start and every op of the session: imemviz run recording.jsonl
                  replays to the same state
check.txt         what `imemviz check state.json.zst` prints: a summary and the invariants
versions.json     imemviz, Python, Qt, pyqtgraph, numpy and the platform
traceback.txt     the unexpected error(s), when there was one
log/              the app's log (ops applied, errors)
"""


def default_bundle_name() -> str:
    return _dt.datetime.now().strftime("imemviz-bug-%Y%m%d-%H%M%S.zip")


class CrashReporter(QObject):
    """The window's error dialog and its Help > Save bug-report bundle… action.

    `raised` may be emitted from any thread (the hooks run where the exception
    was): the queued connection brings it to the GUI thread.
    """

    raised = Signal(str)
    bundleWritten = Signal(str, list)  # path, problems (from the engine thread)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.tracebacks: list[str] = []
        self.dialog: QMessageBox | None = None
        self.raised.connect(self._show, Qt.ConnectionType.QueuedConnection)
        self.bundleWritten.connect(self._written, Qt.ConnectionType.QueuedConnection)
        self.action = QAction("Save &bug-report bundle…", window)
        self.action.setObjectName("act_bug_report")
        tip = (
            "Save the current state, the recording of this session, version "
            "information and the log as one .zip to attach to a bug report"
        )
        self.action.setToolTip(tip)
        self.action.setStatusTip(tip)
        self.action.triggered.connect(lambda: self.ask_and_save())
        user_settings.add_menu_action(window, "&Help", self.action)
        window.engine.failed.connect(self._on_engine_failed)

    # ------------------------------------------------------------ reporting
    def report(self, text: str) -> None:
        """Thread-safe: record a traceback and (re)show the dialog."""
        self.raised.emit(text)

    def _on_engine_failed(self, message: str) -> None:
        # File errors are the user's business (status bar); engine bugs are ours.
        if "internal error" in message:
            self.report(message)

    def _show(self, text: str) -> None:
        self.tracebacks = [*self.tracebacks, text][-MAX_TRACEBACKS:]
        try:
            self._show_dialog()
        except Exception:
            # Never through the hook again: a failing dialog would report itself forever.
            log.exception("cannot show the error dialog")
            sys.stderr.write(text)

    def _show_dialog(self) -> None:
        if self.dialog is not None and self.dialog.isVisible():
            # One dialog at a time: a storm of errors only grows its details.
            self.dialog.setDetailedText("\n\n".join(self.tracebacks))
            self.dialog.setInformativeText(self._informative())
            return
        box = QMessageBox(self.window)
        box.setObjectName("crash_dialog")
        box.setIcon(QMessageBox.Icon.Critical)
        box.setWindowTitle("imemviz: unexpected error")
        box.setText(
            "imemviz hit an unexpected error (a bug). The app is still running and "
            "nothing you did is lost: the engine keeps your state."
        )
        box.setInformativeText(self._informative())
        box.setDetailedText("\n\n".join(self.tracebacks))
        save = box.addButton("Save bug-report bundle…", QMessageBox.ButtonRole.ActionRole)
        save.setObjectName("crash_save")
        save.clicked.connect(lambda: self.ask_and_save())
        box.addButton(QMessageBox.StandardButton.Close)
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r: setattr(self, "dialog", None))
        self.dialog = box
        box.show()

    def _informative(self) -> str:
        last = self.tracebacks[-1].strip().splitlines()[-1] if self.tracebacks else ""
        n = len(self.tracebacks)
        more = f" ({n} errors so far)" if n > 1 else ""
        return f"{last}{more}\n\nPlease save a bug-report bundle and attach it to an issue."

    # ------------------------------------------------------------ bundles
    def ask_path(self) -> str:
        """The file to write (a dialog; tests replace it)."""
        path, _ = QFileDialog.getSaveFileName(
            self.window,
            "Save bug-report bundle",
            str(Path.home() / default_bundle_name()),
            "Zip archives (*.zip)",
        )
        if path and not path.endswith(".zip"):
            path += ".zip"
        return path

    def ask_and_save(self) -> concurrent.futures.Future | None:
        path = self.ask_path()
        return self.save_bundle(path) if path else None

    def save_bundle(self, path: str) -> concurrent.futures.Future:
        """Write the bundle on the engine thread; the future holds the problems list."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        tracebacks = tuple(self.tracebacks)
        engine = self.window.engine

        def done(f: concurrent.futures.Future) -> None:
            e = f.exception()
            self.bundleWritten.emit(path, [f"cannot write {path}: {e}"] if e else f.result())

        fut.add_done_callback(done)
        if engine.engine_thread.isRunning() and engine.snapshot is not None:
            engine.post(WriteBundle(path, tracebacks, fut))
        else:  # no engine or no VM: versions and log are still worth having
            try:
                fut.set_result(write_bundle(path, None, list(tracebacks)))
            except BaseException as e:
                fut.set_exception(e)
        return fut

    def _written(self, path: str, problems: list) -> None:
        log.info("bug-report bundle %s: %s", path, "; ".join(problems) or "complete")
        if problems and problems[0].startswith("cannot write"):
            self.window.show_message(problems[0], error=True)
        elif problems:
            self.window.show_message(f"Bug-report bundle saved to {path} ({problems[0]})")
        else:
            self.window.show_message(f"Bug-report bundle saved to {path}")


# ------------------------------------------------------------------ process hooks
_installed: dict[str, Any] = {}


def install_hooks(reporter: CrashReporter) -> None:
    """Route uncaught exceptions (any thread) to `reporter` instead of ending the app."""

    def excepthook(
        etype: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(etype, KeyboardInterrupt):
            _installed["sys"](etype, value, tb)
            return
        text = "".join(traceback.format_exception(etype, value, tb))
        log.error("uncaught exception:\n%s", text)
        try:
            reporter.report(text)
        except RuntimeError:  # the reporter's window is gone (shutting down)
            _installed["sys"](etype, value, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        text = f"in thread {name}:\n" + "".join(
            traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
        )
        log.error("uncaught exception %s", text)
        try:
            reporter.report(text)
        except RuntimeError:
            _installed["threading"](args)

    _installed.setdefault("sys", sys.excepthook)
    _installed.setdefault("threading", threading.excepthook)
    sys.excepthook = excepthook
    threading.excepthook = thread_hook


def uninstall_hooks() -> None:
    """Put back the hooks that were there before `install_hooks`."""
    if "sys" in _installed:
        sys.excepthook = _installed.pop("sys")
    if "threading" in _installed:
        threading.excepthook = _installed.pop("threading")
