"""Starting the desktop app: `run_app(file, screenshot)` (what `imemviz [FILE]` calls).

Without FILE the app opens the built-in default scene (a 4 GiB TDX TD); if
that scene is not installed it builds an equivalent TD from the new-VM
layout.  With `screenshot` no window is shown (the offscreen platform is used
unless QT_QPA_PLATFORM says otherwise): the app waits until the engine has
loaded and the map has drawn, saves the whole main window as a PNG, exits 0.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any

from imemviz.io.plans import qemu_layout

SCREENSHOT_SIZE = (1600, 1000)
SCREENSHOT_TIMEOUT_S = 120.0
FALLBACK_CONFIG = {"type": "tdx", "host_memory": "16G"}


# Harmless notes of the offscreen platform plugin: not worth a line on stderr.
_QUIET = (
    "does not support propagateSizeHints",
    "does not support raise()",
    "does not support setParent",
)


# How long the engine thread may hold the GIL while the GUI thread waits for it.  Every
# Python call the GUI makes (a slot, an event filter, a paint) takes the GIL back, each
# up to this long while the engine runs: with 2 ms, a recording's loading kept the GUI's
# 5 ms heartbeat waiting 20-23 ms on a quiet machine; with 0.5 ms, 10-11 ms
# (docs/benchmarks.md, "sixth pass").  The GUI idle, nobody asks: no cost to the engine.
SWITCH_INTERVAL_S = 0.0005


def _message_handler(mode, context, message: str) -> None:
    if any(q in message for q in _QUIET):
        return
    sys.stderr.write(message + "\n")


def _app(argv: list[str]):
    from PySide6.QtCore import qInstallMessageHandler
    from PySide6.QtWidgets import QApplication

    qInstallMessageHandler(_message_handler)
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv)
        app.setApplicationName("imemviz")
        app.setOrganizationName("imemviz")
        app.setStyle("Fusion")
    return app


def load_initial(window, file: str | None) -> None:
    """Open FILE, or the default scene (falling back to a built-in 4 GiB TD)."""
    from imemviz import resources

    engine = window.engine
    if file:
        engine.open(os.path.abspath(file))
    elif resources.scene_path("default") is not None:
        engine.load_scene("default")
    else:
        engine.new_vm(FALLBACK_CONFIG, tuple(qemu_layout("tdx", 4 << 30)))
        window.show_message("The default scene is not installed: showing a fresh 4 GiB TD.")


def exec_until_interrupted(app, window) -> int:
    """Run the event loop; Ctrl+C in the terminal closes the window as File > Quit does
    (layout saved, engine stopped by the caller) and the app exits 130.

    Python runs signal handlers only when the main thread executes bytecode, which Qt's
    event loop never does on its own: a timer wakes it up every 200 ms.  The handler
    then runs inside whatever Python slot was running (a pane's, mid-way through a
    batch of queued events), so it only asks for the quit: the window is closed from
    the event loop, with Qt's quit-on-last-window-closed off.  That one posts a Quit
    event, which the same batch could deliver after `exit(130)` and turn the exit code
    into 0 (the race behind tests/test_launch.py's flaky failures); 130 is returned for
    an interrupt whatever exec() says."""
    import signal

    from PySide6.QtCore import QTimer

    interrupted: list[bool] = []

    def quit_now() -> None:
        app.setQuitOnLastWindowClosed(False)
        window.close()
        app.exit(130)

    def handler(signum, frame) -> None:
        if not interrupted:
            interrupted.append(True)
            QTimer.singleShot(0, quit_now)

    old = signal.signal(signal.SIGINT, handler)
    timer = QTimer(window)
    timer.setInterval(200)
    timer.timeout.connect(lambda: None)  # lets the interpreter run pending handlers
    timer.start()
    try:
        rc = int(app.exec())
    finally:
        timer.stop()
        signal.signal(signal.SIGINT, old)
    if not interrupted:
        return rc
    if window.isVisible():  # the loop ended before the queued close ran
        window.close()
    return 130


def wait_until(app, pred, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.processEvents()
        if pred():
            return True
        time.sleep(0.005)
    return pred()


def save_screenshot(app: Any, window: Any, path: str, drawn: bool, failures: list[str]) -> int:
    """The end of `--screenshot`: exit 2 for an error the app reported, 1 when it did not
    finish drawing or the PNG cannot be written, else grab `window` to `path` and 0."""
    if failures:
        print(f"imemviz: {failures[0].splitlines()[0]}", file=sys.stderr)
        return 2
    if not drawn:
        print("imemviz: the app did not finish drawing in time", file=sys.stderr)
        return 1
    # Let the last paint and the axes settle.
    wait_until(app, lambda: False, 0.2)
    if not window.grab().save(path):
        print(f"imemviz: {path}: cannot write the PNG", file=sys.stderr)
        return 1
    return 0


def run_app(
    file: str | None = None,
    screenshot: str | None = None,
    *,
    size: tuple[int, int] | None = None,
    at: int | None = None,
) -> int:
    """Run the app on FILE (or the default scene); with `screenshot`, save a PNG and exit:
    of a window of `size`, and with `at` (FILE a recording) as replay shows it right
    after its first `at` ops (imemviz.app.screenshot_at)."""
    if screenshot and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    # The engine thread holds the GIL in short bursts; switch often so the GUI stays smooth.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    app = _app(sys.argv[:1])
    from imemviz.io.trace.timeline import is_observed

    if file and is_observed(file):  # what a real host traced (imemviz import)
        from imemviz.app.observed import run_observed

        return run_observed(app, file, screenshot, size=size, at=at)
    from PySide6.QtCore import QSettings

    from imemviz.app import crash
    from imemviz.app import settings as user_settings
    from imemviz.app.window import MainWindow
    from imemviz.app.worker import Engine

    tmp = None
    config_env = os.environ.get("IMEMVIZ_CONFIG_DIR")
    if screenshot:
        # A screenshot never reads or writes the user's saved layout or recent files.
        tmp = tempfile.TemporaryDirectory(prefix="imemviz-settings-")
        os.environ["IMEMVIZ_CONFIG_DIR"] = tmp.name
        settings = QSettings(os.path.join(tmp.name, "imemviz.ini"), QSettings.Format.IniFormat)
    else:
        settings = user_settings.layout_qsettings()
    user_settings.setup_logging()
    engine = Engine()
    engine.start()
    window = MainWindow(engine, settings)
    user_settings.set_app_identity(app)
    user_settings.follow_system_theme(app, window.user_settings, window)
    # From here on an unexpected exception shows a dialog instead of ending the app.
    crash.install_hooks(window.crash_reporter)
    failures: list[str] = []
    engine.failed.connect(failures.append)
    try:
        if file and not screenshot:
            window.recent.expect(os.path.abspath(file))
        if at is None:
            load_initial(window, file)
        if not screenshot:
            window.show()
            return exec_until_interrupted(app, window)
        window.resize(*(size or SCREENSHOT_SIZE))
        window.show()
        if at is not None:
            from imemviz.app.screenshot_at import show_replay_at

            assert file is not None
            ok = show_replay_at(app, window, file, at, failures, SCREENSHOT_TIMEOUT_S)
        else:
            ok = wait_until(
                app, lambda: window.wait_drawn() or bool(failures), SCREENSHOT_TIMEOUT_S
            )
        return save_screenshot(app, window, screenshot, ok, failures)
    finally:
        crash.uninstall_hooks()
        window.close()
        engine.stop()
        if tmp is not None:
            tmp.cleanup()
            if config_env is None:
                os.environ.pop("IMEMVIZ_CONFIG_DIR", None)
            else:
                os.environ["IMEMVIZ_CONFIG_DIR"] = config_env
