"""Starting and stopping the app from a terminal: Ctrl+C quits cleanly, and scripts/launch
cleans its virtual display even when killed.

Reproducers of issue 13: the GUI ignored Ctrl+C; a killed launch left
/tmp/xvfb-run.* behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "scripts" / "launch"


def wait_for(pred, timeout: float = 60.0) -> bool:
    """Poll until pred() (a process or file appearing: not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.mark.qt
def test_ctrl_c_quits_the_app_cleanly(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "IMEMVIZ_CONFIG_DIR": str(tmp_path / "config"),
        "IMEMVIZ_LOG_DIR": str(tmp_path / "log"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "imemviz"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "log" / "imemviz.log"
    try:
        # The command log is written from the GUI thread's event loop: the app is up.
        assert wait_for(lambda: log.exists() and "command scene" in log.read_text())
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert (tmp_path / "config" / "layout.ini").exists()  # closed as File > Quit closes


INTERRUPTED = """
import os, signal, sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
from imemviz.app.main import exec_until_interrupted

app = QApplication(sys.argv[:1])
window = QMainWindow()
window.show()

def interrupt_then_qt_quits() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # the handler runs before the next line
    app.exit(0)  # Qt's own quit (the last window closed) landing after it

QTimer.singleShot(50, interrupt_then_qt_quits)
QTimer.singleShot(30_000, lambda: app.exit(99))  # a hang shows as 99
rc = exec_until_interrupted(app, window)
print(rc, window.isVisible())
"""


@pytest.mark.qt
def test_an_interrupt_exits_130_whatever_quits_the_loop() -> None:
    """The race behind the flaky Ctrl+C test: closing the window posts Qt's quit (exit
    code 0), which could be delivered after the handler's exit(130).  An interrupt is
    130 however the loop ends, and the window is closed from the event loop."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, "-c", INTERRUPTED], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["130", "False"], out.stdout + out.stderr


FAKE_APP = """#!/usr/bin/env bash
echo "app on $DISPLAY" > "$1"
exec sleep 60
"""

needs_xvfb = pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb not installed")


def _launch(tmp_path: Path, marker: Path) -> subprocess.Popen[bytes]:
    app = tmp_path / "fake-imemviz"
    app.write_text(FAKE_APP)
    app.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(
        TMPDIR=str(tmp_path / "tmp"),
        IMEMVIZ_LAUNCH_NO_BOOTSTRAP="1",
        IMEMVIZ_LAUNCH_APP=str(app),
    )
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen(
        ["bash", str(LAUNCH), str(marker)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _xvfb_pid(tmp_path: Path) -> int:
    (folder,) = (tmp_path / "tmp").glob("imemviz-xvfb.*")
    return int((folder / "xvfb.pid").read_text())


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "Xvfb"
    except OSError:
        return False


@needs_xvfb
def test_launch_cleans_its_virtual_display_when_terminated(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    proc = _launch(tmp_path, marker)
    try:
        assert wait_for(marker.exists)
        assert marker.read_text().startswith("app on :")
        xvfb = _xvfb_pid(tmp_path)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert wait_for(lambda: not _alive(xvfb), 10)


@needs_xvfb
def test_a_launch_killed_with_sigkill_is_cleaned_by_the_next_launch(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    first = _launch(tmp_path, marker)
    assert wait_for(marker.exists)
    xvfb = _xvfb_pid(tmp_path)
    os.kill(first.pid, signal.SIGKILL)  # the script only: its Xvfb and app stay behind
    first.wait()
    assert _alive(xvfb) and len(list((tmp_path / "tmp").iterdir())) == 1
    marker.unlink()
    second = _launch(tmp_path, marker)
    try:
        assert wait_for(marker.exists)
        assert wait_for(lambda: not _alive(xvfb), 10)
        assert len(list((tmp_path / "tmp").iterdir())) == 1  # the second launch's own
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    finally:
        for p in (first, second):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
    assert list((tmp_path / "tmp").iterdir()) == []
