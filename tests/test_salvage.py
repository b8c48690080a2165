"""A recording cut mid-line (a crash, kill -9) is not lost whole.

Before: a cut last line made `run` print nothing and the app refuse the file,
although every earlier line was intact.  Now `run` says which line is cut and
that `--salvage` replays the complete ones; `run --salvage` and the app's
open do so, with a warning.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from imemviz import cli
from imemviz.io.session import Session

HEADER = '{"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "sw_protected"}}}'
OPS = [
    '{"op": "create_guest_memfd", "size": "2M"}',
    '{"op": "note", "text": "half way"}',
    '{"op": "close", "fd": 3}',
]


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cut(tmp_path: Path) -> Path:
    """A recording whose last line stops half way, as a killed recorder leaves it."""
    path = tmp_path / "cut.jsonl"
    path.write_text(HEADER + "\n" + "\n".join(OPS) + '\n{"op": "guest_access", "gp')
    return path


def test_a_cut_recording_is_exit_2_naming_the_line_and_the_salvage_option(
    capsys: pytest.CaptureFixture[str], cut: Path
) -> None:
    code, out, err = run(capsys, "run", cut)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith(f"{cut}:5: invalid JSON: ")
    assert "the last line is cut short" in err and "imemviz run --salvage" in err


def test_run_salvage_replays_every_complete_line_with_a_warning(
    capsys: pytest.CaptureFixture[str], cut: Path, tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    code, out, err = run(capsys, "run", "--salvage", cut, "--state-out", state)
    assert code == 0
    assert [json.loads(x)["op"] for x in out.splitlines()] == [
        "create_guest_memfd",
        "note",
        "close",
    ]
    assert err == (
        f"imemviz run: {cut}:5: warning: the last line is cut short (invalid JSON: "
        "Unterminated string starting at (column 24)); replayed the 3 complete op lines "
        "before it\n"
    )
    assert state.exists()


def test_salvage_changes_nothing_for_a_complete_recording_or_a_bad_middle_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    whole = tmp_path / "whole.jsonl"
    whole.write_text(HEADER + "\n" + "\n".join(OPS))  # no final line break: still complete
    code, out, err = run(capsys, "run", "--salvage", whole)
    assert (code, err, len(out.splitlines())) == (0, "", 3)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(HEADER + '\n{"op": "clo\n' + "\n".join(OPS) + "\n")
    code, _out, err = run(capsys, "run", "--salvage", bad)
    assert code == 2 and err.startswith(f"{bad}:2: invalid JSON") and "cut short" not in err


def test_the_app_opens_a_cut_recording_up_to_its_last_complete_line(cut: Path) -> None:
    session = Session.open(cut)
    assert [op.NAME for op in session.ops] == ["create_guest_memfd", "note", "close"]
    assert session.warning is not None and "cut short" in session.warning
    assert Session.open(cut.with_name("cut.jsonl")).vm.op_index == 3


RECORDER = """
import sys, time
from imemviz.io.recording import RecordingWriter
from imemviz.model.ops import Note
w = RecordingWriter(sys.argv[1], {"vm": {"type": "sw_protected"}})
i = 0
while True:
    w.write(Note("x" * 5000 + str(i)))
    i += 1
"""


def test_a_recording_killed_with_sigkill_replays_with_salvage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", RECORDER, str(path)])
    try:
        while not path.exists() or path.stat().st_size < 200_000:
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    data = path.read_bytes()
    if data.endswith(b"\n"):  # killed between two lines: cut one by hand, as a crash may
        path.write_bytes(data[:-2000])
    code, out, err = run(capsys, "run", "--salvage", path)
    complete = path.read_bytes().count(b"\n") - 1  # lines after the header
    assert code == 0 and len(out.splitlines()) == complete and "cut short" in err
