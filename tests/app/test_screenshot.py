"""`imemviz --screenshot PNG [FILE]`: a PNG of the whole window, exit 0, no window shown."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PySide6.QtGui import QImage

from imemviz import resources

from .conftest import td_session

pytestmark = pytest.mark.qt


def _run(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )
    return subprocess.run(
        [sys.executable, "-m", "imemviz", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _check_png(path) -> QImage:
    img = QImage(str(path))
    assert not img.isNull()
    assert (img.width(), img.height()) == (1600, 1000)
    colours = {img.pixel(x, y) for x in range(0, 1600, 37) for y in range(0, 1000, 23)}
    assert len(colours) > 10  # a drawn window, not a blank
    return img


def test_screenshot_of_a_recording(tmp_path) -> None:
    s = td_session()
    from imemviz.io import plans

    s.apply_group(plans.accept_and_touch(s.vm, 0x10).ops)
    rec = tmp_path / "r.jsonl"
    s.save_recording(rec)
    out = tmp_path / "shot.png"
    proc = _run("--screenshot", str(out), str(rec), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _check_png(out)
    assert not (tmp_path / "config" / "imemviz").exists()  # the user's layout is untouched


def test_screenshot_of_the_default_scene(tmp_path) -> None:
    if resources.scene_path("default") is None:
        pytest.skip("the default scene is not installed")
    out = tmp_path / "default.png"
    proc = _run("--screenshot", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _check_png(out)


def test_screenshot_of_a_broken_file_exits_2(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "imemviz-recording", "version": 1, "start": {"vm": {}}}\n')
    out = tmp_path / "x.png"
    proc = _run("--screenshot", str(out), str(bad), tmp_path=tmp_path)
    assert proc.returncode == 2
    assert "bad.jsonl:1" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
