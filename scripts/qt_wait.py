"""Waiting in the screenshot scripts: let the app run until something holds, or a while.

The scripts drive a real window offscreen; these two loops are what they share.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def pump(app: Any, s: float = 0.4) -> None:
    """Run the event loop for `s` seconds (animations settle, fades end)."""
    end = time.monotonic() + s
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def wait(app: Any, pred: Callable[[], object], timeout: float = 60.0) -> None:
    """Run the event loop until `pred()` holds; TimeoutError after `timeout` seconds."""
    end = time.monotonic() + timeout
    while not pred():
        app.processEvents()
        time.sleep(0.003)
        if time.monotonic() > end:
            raise TimeoutError
