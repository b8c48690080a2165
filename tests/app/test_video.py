"""Video export: a tiny recording replayed offscreen, encoded, decoded again and checked."""

from __future__ import annotations

import json
import threading
import time

import pytest
from PySide6.QtGui import QAction

from imemviz.app.video import ExportError, export_video, main_export, parse_size
from imemviz.io.replay import Timeline

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

pytestmark = pytest.mark.qt

SIZE = (320, 200)
FPS = 2
HEADER = {"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "sw_protected"}}}
OPS = [
    {"op": "create_guest_memfd", "size": "8M", "t": 0.0},
    {
        "op": "set_user_memory_region2",
        "slot": 0,
        "flags": ["GUEST_MEMFD"],
        "guest_phys_addr": 0,
        "memory_size": "8M",
        "userspace_addr": "0x7f0000000000",
        "guest_memfd": 3,
        "t": 0.5,
    },
    {"op": "note", "text": "All private", "t": 1.0},
    {"op": "set_memory_attributes", "address": 0, "size": "8M", "attributes": 8, "t": 2.0},
    {"op": "guest_access", "gpa": "0x400000", "write": True, "value": 1, "t": 2.5},
]


@pytest.fixture
def recording(tmp_path):
    p = tmp_path / "tiny.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in [HEADER, *OPS]) + "\n")
    return p


def decode(path):
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    frames = list(gen)
    return meta, frames


@pytest.mark.parametrize("ext", ["mp4", "gif"])
def test_export_decodes_with_the_expected_frames(qapp, recording, tmp_path, ext):
    out = tmp_path / f"tiny.{ext}"
    seen = []
    n = export_video(recording, out, fps=FPS, size=SIZE, progress=lambda d, t: seen.append((d, t)))
    expected = sum(Timeline.load(recording).frame_counts(FPS))
    assert n == expected and seen[-1] == (expected, expected)
    meta, frames = decode(out)
    assert tuple(meta["size"]) == SIZE
    assert len(frames) == expected
    assert frames[0] != frames[-1]  # the map changed: it is not a still
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]

    # ffmpeg's log readers end with their process; no engine thread is left either.
    # (_DummyThread entries stand for Qt's own threads that touched `threading`;
    # Python never removes them, so they are not "left running".)
    def python_threads() -> list[threading.Thread]:
        return [
            t
            for t in threading.enumerate()
            if t is not threading.main_thread() and not isinstance(t, threading._DummyThread)
        ]

    deadline = time.monotonic() + 5
    while python_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not python_threads(), threading.enumerate()


def test_cli_exit_codes_leave_no_output(qapp, recording, tmp_path, capsys):
    out = tmp_path / "x.mp4"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(HEADER) + '\n{"op": "nope"}\n')
    assert main_export([str(bad), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.jsonl:2" in err[0]
    assert main_export([str(recording), str(tmp_path / "x.avi")]) == 2
    assert main_export([str(recording), str(out), "--size", "12x"]) == 2
    assert main_export([str(recording)]) == 2
    assert list(tmp_path.glob("x.*")) == []
    assert main_export([str(recording), str(out), "--fps", "1", "--size", "160x100"]) == 0
    assert out.stat().st_size > 0


def test_parse_size():
    assert parse_size("1280x800") == (1280, 800)
    for bad in ("1280", "axb", "1281x800", "10x10", "99999x10"):
        with pytest.raises(ExportError):
            parse_size(bad)


def test_export_from_the_file_menu_path(make_window, qtbot, recording, tmp_path):
    w = make_window()
    out = tmp_path / "menu.gif"
    assert w.presenter.export_video(str(recording), str(out), fps=1, size=(160, 100))
    assert out.stat().st_size > 0 and "menu.gif" in w.message.text()
    assert w.findChild(QAction, "act_export_video") is not None
