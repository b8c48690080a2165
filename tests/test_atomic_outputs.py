"""Outputs never destroy anything: the one atomic writer (imemviz.io.atomic) and its users.

Each test is a reproducer of issue 13's fault-injection run: before the
writer, `--results-out /dev/null` (as root) replaced the device node with a
regular file, FIFOs and symlinks were replaced, `--results-out` naming the
script destroyed it, a full disk or stdout on /dev/full ended in a
traceback, and kill -9 left temp files nothing cleaned.  CI runs as root,
which is what makes /dev/null replaceable: these tests run as whoever runs
them and assert the same outcome either way.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from imemviz import cli
from imemviz.io import atomic
from imemviz.io.atomic import AtomicFile, OutputError, clean_stale, write_text

HEADER = '{"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "sw_protected"}}}'
SCRIPT = HEADER + '\n{"op": "create_guest_memfd", "size": "2M"}\n{"op": "close", "fd": 3}\n'
ROOT = os.geteuid() == 0


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    path = tmp_path / "demo.jsonl"
    path.write_text(SCRIPT)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.rstrip("\n")


def temp_files(folder: Path) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(".imemviz")]


def imemviz(*argv: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imemviz", *map(str, argv)],
        capture_output=kw.pop("capture_output", True),
        text=True,
        timeout=120,
        **kw,
    )


# ------------------------------------------------------- not regular files


def test_dev_null_as_results_and_state_out_stays_a_char_device(
    capsys: pytest.CaptureFixture[str], demo: Path
) -> None:
    before = os.stat("/dev/null")
    code, out, err = run(
        capsys, "run", demo, "--results-out", "/dev/null", "--state-out", "/dev/null"
    )
    assert (code, out, err) == (0, "", "")
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_dev_stdout_as_results_out_writes_stdout_and_keeps_the_link(demo: Path) -> None:
    link = os.readlink("/dev/stdout")
    proc = imemviz("run", demo, "--results-out", "/dev/stdout")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert [json.loads(x)["op"] for x in proc.stdout.splitlines()] == [
        "create_guest_memfd",
        "close",
    ]
    assert os.path.islink("/dev/stdout") and os.readlink("/dev/stdout") == link


def test_dev_stdout_redirected_to_a_file_appends_in_place(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        f.write("before\n")
        f.flush()
        proc = imemviz("run", demo, "--results-out", "/dev/stdout", stdout=f, capture_output=False)
    assert proc.returncode == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "before" and len(lines) == 3


def test_fifo_as_results_out_stays_a_fifo_and_gets_the_results(
    capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    try:
        code, _out, err = run(capsys, "run", demo, "--results-out", fifo)
    finally:
        if reader.is_alive():  # unblock the reader if the run never opened the FIFO
            with open(fifo, "wb"):
                pass
        reader.join(30)
    assert (code, err) == (0, "")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert len(got[0].splitlines()) == 2
    assert temp_files(tmp_path) == []


def test_symlink_to_a_device_is_written_through_and_kept(
    capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path
) -> None:
    link = tmp_path / "sink"
    link.symlink_to("/dev/null")
    assert run(capsys, "run", demo, "--results-out", link, "--state-out", link)[0] == 0
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_symlink_to_a_file_keeps_the_link_and_replaces_the_file_it_names(
    capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path
) -> None:
    target = tmp_path / "real" / "results.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "results.jsonl"
    link.symlink_to(target)
    assert run(capsys, "run", demo, "--results-out", link)[0] == 0
    assert link.is_symlink() and link.resolve() == target
    assert len(target.read_text().splitlines()) == 2
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert temp_files(tmp_path) == [] and temp_files(target.parent) == []


def test_replaced_file_keeps_mode_and_owner(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_text("old")
    path.chmod(0o604)
    if ROOT:
        os.chown(path, 1234, 4321)
    write_text(path, "new")
    st = path.stat()
    assert (path.read_text(), stat.S_IMODE(st.st_mode)) == ("new", 0o604)
    if ROOT:
        assert (st.st_uid, st.st_gid) == (1234, 4321)


def test_new_file_gets_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "new.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640


def test_a_folder_as_output_is_one_line(capsys: pytest.CaptureFixture[str], demo: Path) -> None:
    code, out, err = run(capsys, "run", demo, "--results-out", demo.parent)
    assert (code, out) == (2, "")
    assert one_line(err) == f"{demo.parent}: cannot write: it is a folder, not a file"


# ------------------------------------------------------- inputs are safe


def test_results_out_naming_the_script_is_refused_and_the_script_kept(
    capsys: pytest.CaptureFixture[str], demo: Path
) -> None:
    code, out, err = run(capsys, "run", demo, "--results-out", demo)
    assert (code, out) == (2, "")
    assert "an input of this command" in one_line(err)
    assert demo.read_text() == SCRIPT


def test_an_output_naming_an_input_through_a_link_is_refused(
    capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    assert run(capsys, "run", demo, "--state-out", state)[0] == 0
    saved = state.read_bytes()
    alias = tmp_path / "alias.json"
    alias.symlink_to(state)
    ops = tmp_path / "ops.jsonl"
    ops.write_text('{"op": "note", "text": "x"}\n')
    code, out, err = run(capsys, "run", ops, "--from-state", state, "--state-out", alias)
    assert (code, out) == (2, "") and "an input of this command" in one_line(err)
    assert state.read_bytes() == saved
    hard = tmp_path / "hard.jsonl"
    os.link(ops, hard)
    code, _out, err = run(capsys, "run", ops, "--from-state", state, "--results-out", hard)
    assert code == 2 and "an input" in one_line(err)


def test_results_and_state_out_naming_one_file_are_refused(
    capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path
) -> None:
    both = tmp_path / "both.out"
    code, _out, err = run(capsys, "run", demo, "--results-out", both, "--state-out", both)
    assert code == 2 and "two outputs cannot share one file" in one_line(err)
    assert not both.exists() and temp_files(tmp_path) == []
    both.write_text("keep")
    code, _out, err = run(capsys, "run", demo, "--results-out", both, "--state-out", both)
    assert code == 2 and "two outputs cannot share one file" in one_line(err)
    assert both.read_text() == "keep"


# ------------------------------------------------------ write errors


def test_disk_full_on_results_out_is_exit_2_and_removes_the_temp_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    demo: Path,
    tmp_path: Path,
) -> None:
    real_open = AtomicFile.open

    def full(self: AtomicFile, mode: str = "wb", **kw: Any) -> Any:
        f = real_open(self, mode, **kw)

        class Full:
            closed = False
            mode = f.mode

            def write(self, data: Any) -> int:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            def flush(self) -> None:
                pass

            def close(self) -> None:
                f.close()

        return Full()

    monkeypatch.setattr(AtomicFile, "open", full)
    results = tmp_path / "r.jsonl"
    results.write_text("old results")
    code, out, err = run(capsys, "run", demo, "--results-out", results)
    assert (code, out) == (2, "")
    assert one_line(err) == f"{results}: cannot write: No space left on device"
    assert results.read_text() == "old results"
    assert temp_files(tmp_path) == []
    code, out, err = run(capsys, "run", demo, "--state-out", tmp_path / "s.json.zst")
    assert (code, out) == (2, "")
    assert one_line(err).endswith("s.json.zst: cannot write: No space left on device")
    assert sorted(os.listdir(tmp_path)) == ["demo.jsonl", "r.jsonl"]


def test_disk_full_at_the_final_flush_is_exit_2_and_removes_the_temp_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    demo: Path,
    tmp_path: Path,
) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".imemviz-tmp."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    code, out, err = run(capsys, "run", demo, "--results-out", tmp_path / "r.jsonl")
    assert (code, out) == (2, "")
    assert one_line(err).endswith("r.jsonl: cannot write: No space left on device")
    assert sorted(os.listdir(tmp_path)) == ["demo.jsonl"]


def test_stdout_on_dev_full_is_exit_2_in_one_line(demo: Path) -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "imemviz", "run", str(demo)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2
    assert one_line(proc.stderr) == "stdout: cannot write: No space left on device"


# ------------------------------------------------------ killed runs


KILLED_WRITER = """
import os, signal, sys
from imemviz.io.atomic import AtomicFile
out = AtomicFile(sys.argv[1])
out.write(b"x" * 100000)
out._file.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_temp_file_of_a_run_killed_with_sigkill_is_removed_by_the_next_write(
    tmp_path: Path,
) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "out.json")])
    assert proc.returncode == -signal.SIGKILL
    left = temp_files(tmp_path)
    assert len(left) == 1 and (tmp_path / left[0]).stat().st_size == 100000
    write_text(tmp_path / "other.txt", "next run")
    assert temp_files(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["other.txt"]


def test_stale_cleaning_spares_live_writers_and_files_that_are_not_ours(tmp_path: Path) -> None:
    mine = AtomicFile(tmp_path / "a.json")  # this process is alive: its temp file stays
    lookalikes = [
        ".imemviz-tmp.notours",
        ".imemviz-tmp.0000000.1.2.3.x",
        ".imemviz-old-temp-name.json",
        "imemviz-tmp.x",
    ]
    for name in lookalikes:
        (tmp_path / name).write_text("keep")
    # Same boot, our pid but another start time: an earlier process whose pid we reuse.
    boot = re.match(r"\.imemviz-tmp\.([0-9a-f]{8})\.", os.path.basename(mine.tmp))
    assert boot is not None
    reused = f".imemviz-tmp.{boot.group(1)}.{os.getpid()}.1.deadbeef.b.json"
    gone = f".imemviz-tmp.{boot.group(1)}.999999999.1.deadbeef.d.json"
    other_boot = ".imemviz-tmp.ffffffff.1.1.deadbeef.c.json"
    for name in (reused, gone, other_boot):
        (tmp_path / name).write_text("stale")
    assert sorted(clean_stale(str(tmp_path))) == sorted([reused, gone, other_boot])
    assert os.path.exists(mine.tmp)
    for name in lookalikes:
        assert (tmp_path / name).read_text() == "keep"
    mine.discard()
    assert not os.path.exists(mine.tmp)


def test_temp_names_keep_the_final_extension_and_fit_the_name_limit() -> None:
    name = atomic.tmp_name("x" * 300 + ".json.zst")
    assert name.endswith(".json.zst") and len(name) <= 255
    assert atomic.tmp_name("video.mp4").endswith(".video.mp4")


# ------------------------------------------------------ one writer


WRITES = re.compile(r"os\.replace\(|os\.rename\(|mkstemp\(|NamedTemporaryFile\(")


def test_every_file_the_project_writes_goes_through_the_one_atomic_writer() -> None:
    """No second atomic-write routine: rename and temp-file calls live in io/atomic.py only."""
    package = Path(cli.__file__).parent
    offenders = [
        f"{p.relative_to(package)}:{i}"
        for p in sorted(package.rglob("*.py"))
        if p.name != "atomic.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if WRITES.search(line)
    ]
    assert offenders == []


def test_output_error_is_one_line_with_the_reason_apart() -> None:
    e = OutputError("/x/y.json", "No space left on device", errno.ENOSPC)
    assert str(e) == "/x/y.json: cannot write: No space left on device"
    assert e.strerror == "No space left on device" and isinstance(e, OSError)
