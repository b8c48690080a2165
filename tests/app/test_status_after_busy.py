"""The status line says "Working: …" while the engine is busy, and what was said last
once it is done: never a stale "Working: scene…" after the scene has loaded."""

from __future__ import annotations

import threading

import pytest

from .conftest import wait_idle

pytestmark = pytest.mark.qt


def busy_until(window, qtbot, go: threading.Event) -> None:
    """An engine command that holds the engine until `go`, shown busy (not timed: it
    waits for the window to say so)."""
    window.engine.call(lambda session: go.wait(30))
    qtbot.waitUntil(window.busy.isVisible, timeout=10_000)
    assert window.message.text().startswith("Working")


def test_the_message_from_before_comes_back_after_busy(window, qtbot) -> None:
    window.show_message("The TD is up")
    go = threading.Event()
    busy_until(window, qtbot, go)
    go.set()
    wait_idle(qtbot, window.engine)
    assert not window.busy.isVisible()
    assert window.message.text() == "The TD is up"


def test_a_message_said_while_busy_stays(window, qtbot) -> None:
    window.show_message("before", error=True)
    go = threading.Event()
    busy_until(window, qtbot, go)
    window.show_message("Opened scene default")
    go.set()
    wait_idle(qtbot, window.engine)
    assert window.message.text() == "Opened scene default"
    assert window.message.styleSheet() == ""
