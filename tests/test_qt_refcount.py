"""Regression test for the PySide6 6.12.0 / Python 3.11 crash.

PySide6 6.12.0 on Python 3.11 drops one reference to ``None`` on every call of
a Qt method that returns void. ``None`` is not immortal before Python 3.12, so
after a few thousand calls its count reaches zero and the process aborts with
``Fatal Python error: none_dealloc``. pyproject.toml therefore pins
``PySide6-Essentials<6.12`` on Python < 3.12.

The calls are made in batches and the count is checked after each batch, so a
leaking PySide6 fails here with a message instead of killing the test run.
"""

from __future__ import annotations

import sys
from importlib.metadata import version

import pytest
from PySide6 import QtWidgets

pytestmark = pytest.mark.qt

TOTAL_ITERATIONS = 10_000  # three void calls each
BATCH = 100  # 300 calls: a leak shows long before None's count runs out
TOLERANCE = 10


def test_void_qt_calls_keep_none_refcount(qapp) -> None:
    widget = QtWidgets.QWidget()
    label = QtWidgets.QLabel(widget)
    texts = [f"label {i}" for i in range(16)]
    tips = [f"tip {i}" for i in range(16)]

    # Warm up: first calls may create caches that hold None.
    for i in range(BATCH):
        widget.update()
        label.setText(texts[i % 16])
        widget.setToolTip(tips[i % 16])

    before = sys.getrefcount(None)
    for start in range(0, TOTAL_ITERATIONS, BATCH):
        for i in range(start, start + BATCH):
            widget.update()
            label.setText(texts[i % 16])
            widget.setToolTip(tips[i % 16])
        now = sys.getrefcount(None)
        assert now >= before - TOLERANCE, (
            f"refcount of None fell from {before} to {now} after {3 * (start + BATCH)} void "
            f"Qt calls: PySide6 {version('PySide6-Essentials')} leaks None references "
            f"on Python {sys.version.split()[0]} (see pyproject.toml's pin)"
        )

    assert label.text() == texts[(TOTAL_ITERATIONS - 1) % 16]
    widget.deleteLater()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the pin applies to Python < 3.12 only")
def test_pyside6_pin_on_python_311() -> None:
    installed = version("PySide6-Essentials")
    major, minor = (int(part) for part in installed.split(".")[:2])
    assert (major, minor) != (6, 12), (
        f"PySide6-Essentials {installed} crashes on Python 3.11 (none_dealloc); "
        "pyproject.toml pins <6.12 there"
    )
