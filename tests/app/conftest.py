"""Fixtures of the app tests: an engine thread always stopped, settings in a temp dir."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings

from imemviz.app import worker as worker_mod
from imemviz.app.window import MainWindow
from imemviz.io import plans
from imemviz.io.session import Session

MB = 1 << 20
WAIT_MS = 20_000


@pytest.fixture(autouse=True)
def _no_engine_left_running(monkeypatch):
    """Every Engine started in a test is stopped at its end, pass or fail."""
    started: list[worker_mod.Engine] = []
    orig = worker_mod.Engine.start

    def start(self):
        started.append(self)
        orig(self)

    monkeypatch.setattr(worker_mod.Engine, "start", start)
    yield
    running = [e for e in started if e.engine_thread.isRunning()]
    for e in running:
        e.stop()
    assert not running, "a test left the engine thread running"


@pytest.fixture
def settings(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "imemviz.ini"), QSettings.IniFormat)


@pytest.fixture
def engine(qapp):
    e = worker_mod.Engine()
    e.start()
    try:
        yield e
    finally:
        assert e.stop(), "the engine thread did not stop"


def td_session(ram: int = 64 * MB, **cfg) -> Session:
    """A small TDX TD laid out as QEMU does (one memslot of `ram` at 0, all private)."""
    s = Session.new({"type": "tdx", "host_memory": "1G", **cfg})
    s.apply_group(plans.qemu_layout("tdx", ram), "layout")
    return s


def sw_session(ram: int = 64 * MB) -> Session:
    s = Session.new({"type": "sw_protected", "host_memory": "1G"})
    s.apply_group(plans.qemu_layout("sw_protected", ram), "layout")
    return s


def wait_drawn(qtbot, window: MainWindow, timeout: int = WAIT_MS) -> None:
    qtbot.waitUntil(window.wait_drawn, timeout=timeout)


def wait_idle(qtbot, engine, timeout: int = WAIT_MS) -> None:
    qtbot.waitUntil(lambda: engine.idle, timeout=timeout)


@pytest.fixture
def make_window(qtbot, engine, settings):
    """make_window(session) -> a shown MainWindow on that session, fully drawn."""
    windows: list[MainWindow] = []

    def make(session: Session | None = None, size=(1280, 860), fold: bool = False) -> MainWindow:
        """fold: the map folds long empty runs (the app's default); the tests written
        for the linear map, which click any page of a fresh guest, keep it off."""
        w = MainWindow(engine, settings)
        windows.append(w)
        w.navigator.actions["fold"].setChecked(fold)
        w.map.animator.duration_ms = 0  # framings land at once (test_framing.py animates)
        w.resize(*size)
        w.show()
        qtbot.waitExposed(w)
        engine.set_session(session if session is not None else td_session())
        wait_drawn(qtbot, w)
        return w

    yield make
    for w in windows:
        w.close()
        w.deleteLater()


@pytest.fixture
def window(make_window) -> MainWindow:
    return make_window()
