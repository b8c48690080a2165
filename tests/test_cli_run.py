"""The command line: `run` end to end, its exit codes and outputs, and the dispatch of the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import imemviz
from imemviz import cli
from imemviz.io import script as script_mod
from imemviz.model.config import VMConfig
from imemviz.model.result import Result
from imemviz.model.vm import VM

HEADER = '{"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "sw_protected"}}}'
OPS = [
    '{"op": "create_guest_memfd", "size": "2M"}',
    '{"op": "close", "fd": 99, "t": 1.5}',
    '{"op": "note", "text": "done"}',
]
SCRIPT = "# demo\n" + HEADER + "\n\n" + "\n".join(OPS) + "\n"
# The contract's answers: the first descriptor is 3, an fd that is not open is EBADF.
EXPECTED = [
    {"index": 0, "op": "create_guest_memfd", "ok": True, "errno": None, "ret": {"fd": 3}},
    {"index": 1, "op": "close", "ok": False, "errno": "EBADF", "ret": {}},
    {"index": 2, "op": "note", "ok": True, "errno": None, "ret": {}},
]
BAD_LINE = '{"op": "close", "fd": "three"}'


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    path = tmp_path / "demo.jsonl"
    path.write_text(SCRIPT)
    return path


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A script whose last line is malformed (line 7)."""
    path = tmp_path / "broken.jsonl"
    path.write_text(SCRIPT + BAD_LINE + "\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def results(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    parsed = [json.loads(line) for line in lines]
    # Compact JSON, one object per line.
    assert lines == [json.dumps(p, separators=(",", ":")) for p in parsed]
    return parsed


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.rstrip("\n")


# ------------------------------------------------------------------ run


def test_run_to_stdout(capsys: pytest.CaptureFixture[str], demo: Path) -> None:
    code, out, err = run(capsys, "run", demo)
    assert (code, err) == (0, "")
    got = results(out)
    for g, e in zip(got, EXPECTED, strict=True):
        assert {k: g[k] for k in ("index", "op", "ok", "errno")} == {
            k: e[k] for k in ("index", "op", "ok", "errno")
        }
    assert got[0]["ret"]["fd"] == 3
    assert got[1]["errno"] == "EBADF"
    assert list(got[0]) == ["index", "op", "ok", "errno", "ret"]


def test_results_file_with_options_before_or_after(
    capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path
) -> None:
    _, expected, _ = run(capsys, "run", demo)
    for i, argv in enumerate(
        (
            ["run", demo, "--results-out", tmp_path / "r0.jsonl"],
            ["run", "--results-out", tmp_path / "r1.jsonl", demo],
            ["run", f"--results-out={tmp_path / 'r2.jsonl'}", demo],
        )
    ):
        code, out, err = run(capsys, *argv)
        assert (code, out, err) == (0, "", "")
        assert (tmp_path / f"r{i}.jsonl").read_text() == expected
    assert run(capsys, "run", demo, "--results-out", "-")[1] == expected


def test_results_file_gets_normal_permissions(
    capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path
) -> None:
    umask = os.umask(0o022)
    try:
        assert run(capsys, "run", demo, "--results-out", tmp_path / "new.jsonl")[0] == 0
        assert (tmp_path / "new.jsonl").stat().st_mode & 0o777 == 0o644
        old = tmp_path / "old.jsonl"
        old.write_text("old\n")
        old.chmod(0o664)
        assert run(capsys, "run", demo, "--results-out", old)[0] == 0
        assert old.stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(umask)


def test_malformed_line_exits_2_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], broken: Path, tmp_path: Path
) -> None:
    new = tmp_path / "new.jsonl"
    old = tmp_path / "old.jsonl"
    old.write_text("previous results\n")
    before = sorted(os.listdir(tmp_path))
    for argv in (
        ["run", broken],
        ["run", broken, "--results-out", new],
        ["run", "--results-out", old, broken],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2
        assert out == ""  # not even the results of the good lines before it
        line = one_line(err)
        assert line.startswith(f"{broken}:7: close.fd: ")
        assert "three" in line
    assert not new.exists()
    assert old.read_text() == "previous results\n"
    assert sorted(os.listdir(tmp_path)) == before  # no temp file left behind


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("", ":1:", "no header"),
        ('{"op": "stats"}\n', ":1:", "header"),
        (
            '{"format": "imemviz-recording", "version": 2, "start": {"vm": {}}}\n',
            ":1:",
            "version 2",
        ),
        (
            '{"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "x"}}}\n',
            ":1:",
            "header.start.vm.type",
        ),
        (
            '{"format": "imemviz-recording", "version": 1, "start": {"scene": "no-such"}}\n',
            ":1:",
            'unknown scene "no-such"',
        ),
        (HEADER + "\n{oops}\n", ":2:", "invalid JSON"),
        (HEADER.encode() + b'\n{"op": "note", "text": "\xc3"}\n', ":2:", "invalid UTF-8"),
        (HEADER + '\n{"op": "fly"}\n', ":2:", 'unknown op "fly"'),
        (HEADER + '\n{"op": "guest_access", "gpa": 0, "write": true}\n', ":2:", "value"),
    ],
)
def test_unusable_scripts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str | bytes, where: str, words: str
) -> None:
    path = tmp_path / "s.jsonl"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    code, out, err = run(capsys, "run", path, "--results-out", tmp_path / "r.jsonl")
    assert (code, out) == (2, "")
    line = one_line(err)
    assert line.startswith(f"{path}{where} ") and words in line
    assert sorted(os.listdir(tmp_path)) == ["s.jsonl"]


def test_unusable_files_and_folders(
    capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path
) -> None:
    cases = [
        (["run", tmp_path / "missing.jsonl"], "missing.jsonl: cannot open"),
        (["run", demo, "--results-out", tmp_path / "no" / "r.jsonl"], "r.jsonl: cannot write"),
        (["run", demo, "--state-out", tmp_path / "no" / "s.json"], "s.json: cannot write"),
        (["run", demo, "--results-out", tmp_path], "is a folder"),
    ]
    for argv, words in cases:
        code, out, err = run(capsys, *argv)
        assert (code, out) == (2, "")
        assert words in one_line(err)
    assert sorted(os.listdir(tmp_path)) == ["demo.jsonl"]


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],
        ["run", "a.jsonl", "b.jsonl"],
        ["run", "a.jsonl", "--bogus"],
        ["run", "a.jsonl", "--results-out"],
        ["--bogus"],
        ["a", "b"],
        ["--screenshot"],
    ],
)
def test_argument_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert "error:" in one_line(err)


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == (0, f"imemviz {imemviz.__version__}\n", "")
    code, out, err = run(capsys, "run", "--help")
    assert code == 0 and "--state-out" in out and "--results-out" in out and err == ""
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "run" in out and "--screenshot" in out


# --------------------------------------------------- state in and state out


def fake_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in imemviz.io.state: a state file here is just the VM config."""

    class StateError(ValueError):
        def __init__(self, path: str, message: str) -> None:
            super().__init__(f"{path}: {message}")

    def encode_state(vm: VM, name: str) -> bytes:
        return json.dumps({"format": "imemviz-state", "vm": "sw_protected"}).encode()

    def load_state(path: str | Path) -> VM:
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != "imemviz-state":
            raise StateError("format", "not a state file")
        return VM(VMConfig.from_dict({"type": doc["vm"]}))

    module = types.ModuleType("imemviz.io.state")
    for obj in (StateError, encode_state, load_state):
        setattr(module, obj.__name__, obj)
    monkeypatch.setitem(sys.modules, "imemviz.io.state", module)


def test_state_out_only_on_success(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    demo: Path,
    broken: Path,
    tmp_path: Path,
) -> None:
    fake_state(monkeypatch)
    state = tmp_path / "final.json.gz"  # the extension survives the temp name
    assert run(capsys, "run", demo, "--state-out", state)[0] == 0
    assert json.loads(state.read_text())["format"] == "imemviz-state"
    state.write_text("old state")
    code, _, err = run(capsys, "run", "--state-out", state, broken)
    assert code == 2 and one_line(err).startswith(f"{broken}:7:")
    assert state.read_text() == "old state"
    assert not (tmp_path / "other.json").exists()
    assert run(capsys, "run", broken, "--state-out", tmp_path / "other.json")[0] == 2
    assert not (tmp_path / "other.json").exists()


def test_from_state(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    demo: Path,
    tmp_path: Path,
) -> None:
    fake_state(monkeypatch)
    good = tmp_path / "good.json"
    good.write_text('{"format": "imemviz-state", "vm": "sw_protected"}')
    code, out, _ = run(capsys, "run", demo, "--from-state", good)
    assert code == 0 and len(results(out)) == 3
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "nope"}')
    code, out, err = run(capsys, "run", "--from-state", bad, demo)
    assert (code, out) == (2, "")
    assert one_line(err) == f"{bad}: format: not a state file"
    code, out, err = run(capsys, "run", demo, "--from-state", tmp_path / "none.json")
    assert (code, out) == (2, "")
    assert "none.json: cannot read" in one_line(err)


def test_real_state_round_trip(
    capsys: pytest.CaptureFixture[str], demo: Path, tmp_path: Path
) -> None:
    pytest.importorskip("imemviz.io.state")
    state = tmp_path / "s.json"
    assert run(capsys, "run", demo, "--state-out", state)[0] == 0
    # fd 3 is still open in the saved state: the same script now gets fd 4.
    code, out, err = run(capsys, "run", demo, "--from-state", state)
    assert (code, err) == (0, "")
    assert results(out)[0]["ret"]["fd"] == 4


def test_engine_crash_keeps_traceback_and_cleans_up(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    demo: Path,
    tmp_path: Path,
) -> None:
    class Crashing:
        def __init__(self) -> None:
            self.n = 0

        def apply(self, op: Any) -> Result:
            self.n += 1
            if self.n == 2:
                raise RuntimeError("engine bug")
            return Result.success()

    monkeypatch.setattr(script_mod, "start_vm", lambda *a, **k: Crashing())
    with pytest.raises(RuntimeError, match="engine bug") as info:
        cli.main(["run", str(demo), "--results-out", str(tmp_path / "r.jsonl")])
    assert f"while applying op 1 at {demo}:5" in info.value.__notes__
    assert sorted(os.listdir(tmp_path)) == ["demo.jsonl"]


# ---------------------------------------------------------- other commands


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **funcs: Any) -> None:
    module = types.ModuleType(name)
    for key, value in funcs.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.parametrize(
    ("command", "module", "func"),
    [
        ("check", "imemviz.io.check", "main_check"),
        ("diff", "imemviz.io.diff", "main_diff"),
        ("export-video", "imemviz.app.video", "main_export"),
    ],
)
def test_delegated_commands(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    module: str,
    func: str,
) -> None:
    calls: list[list[str]] = []
    fake_module(monkeypatch, module, **{func: lambda argv: calls.append(argv) or 1})
    assert run(capsys, command, "a", "--json", "b")[0] == 1
    assert calls == [["a", "--json", "b"]]
    monkeypatch.setitem(sys.modules, module, None)  # not installed
    code, out, err = run(capsys, command, "a")
    assert (code, out) == (2, "")
    assert one_line(err).startswith(f"imemviz {command}: ")


def test_app_forms(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, demo: Path
) -> None:
    calls: list[tuple[str | None, str | None]] = []
    fake_module(monkeypatch, "imemviz.app.main", run_app=lambda f, s: calls.append((f, s)) or 0)
    assert (
        run(
            capsys,
        )[0]
        == 0
    )
    assert run(capsys, demo)[0] == 0
    assert run(capsys, "--screenshot", "x.png")[0] == 0
    assert run(capsys, "--screenshot", "x.png", demo)[0] == 0
    assert run(capsys, demo, "--screenshot=y.png")[0] == 0
    assert calls == [
        (None, None),
        (str(demo), None),
        (None, "x.png"),
        (str(demo), "x.png"),
        (str(demo), "y.png"),
    ]
    # A missing FILE is most likely a mistyped command: no app for it.
    code, out, err = run(capsys, "rnu", demo)
    assert code == 2
    code, out, err = run(capsys, "rnu")
    assert (code, out) == (2, "")
    assert (
        one_line(err)
        == "imemviz: rnu: no such file (commands: run, check, diff, import, export-video)"
    )
    assert len(calls) == 5


def test_app_missing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imemviz.app.main", None)
    code, out, err = run(capsys)
    assert (code, out) == (2, "")
    assert "desktop app is not available" in one_line(err)


# --------------------------------------------------------- in a subprocess

BLOCK_QT = (
    "import sys; sys.modules.update({m: None for m in ('PySide6', 'pyqtgraph', 'shiboken6')}); "
    "from imemviz.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_run_never_imports_qt(demo: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_QT, "run", str(demo), "--results-out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert [r["op"] for r in results((tmp_path / "r").read_text())] == [
        "create_guest_memfd",
        "close",
        "note",
    ]


def test_python_m_imemviz_exit_2_without_traceback(broken: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "imemviz", "run", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert one_line(proc.stderr).startswith(f"{broken}:7: close.fd:")


def test_full_disk_is_one_line_and_leaves_nothing(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    demo: Path,
    tmp_path: Path,
) -> None:
    class FullDisk:
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    from imemviz.io.atomic import AtomicFile

    monkeypatch.setattr(AtomicFile, "open", lambda self, mode="wb": FullDisk())
    code, out, err = run(capsys, "run", demo, "--results-out", tmp_path / "r.jsonl")
    assert (code, out) == (2, "")
    assert one_line(err) == f"{tmp_path / 'r.jsonl'}: cannot write: No space left on device"
    assert sorted(os.listdir(tmp_path)) == ["demo.jsonl"]
