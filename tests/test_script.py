"""The script/recording reader, the VM a header starts, and the recording writer."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imemviz import resources
from imemviz.io.recording import RecordingWriter, header_line, op_line
from imemviz.io.script import (
    Header,
    ScriptError,
    ScriptReader,
    iter_ops,
    open_script,
    read_header,
    read_script,
    start_vm,
)
from imemviz.model.config import VMConfig
from imemviz.model.ops import (
    Close,
    CreateGuestMemfd,
    GuestAccess,
    Inspect,
    Note,
    SetMemoryAttributes,
    Stats,
)
from imemviz.model.vm import VM

VM_START = {"vm": {"type": "sw_protected"}}
HEADER = json.dumps({"format": "imemviz-recording", "version": 1, "start": VM_START})


def write(tmp_path: Path, text: str | bytes, name: str = "demo.jsonl") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def error_of(path: Path) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        read_script(path)
    return info.value


# ------------------------------------------------------------------ lines


def test_comments_blank_lines_and_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# a recording\n"
        "\n"
        "   \t\n"
        f"{HEADER}\n"
        '{"op": "create_guest_memfd", "size": "2M"}\n'
        "  # indented comment\n"
        "\r\n"
        '  {"op": "close", "fd": 3, "t": 2}\r\n'
        '{"op": "note", "text": "# not a comment"}',  # no final newline
    )
    s = read_script(path)
    assert s.source == str(path)
    assert s.header == Header(1, VM_START, 4)
    assert s.header.kind == "vm"
    assert s.ops == [
        (5, CreateGuestMemfd(size=2 << 20), None),
        (8, Close(fd=3), 2.0),
        (9, Note(text="# not a comment"), None),
    ]
    assert isinstance(s.ops[1][2], float)


def test_header_only_script_has_no_ops(tmp_path: Path) -> None:
    assert read_script(write(tmp_path, HEADER + "\n# the end\n")).ops == []


def test_utf8_bom_and_non_ascii(tmp_path: Path) -> None:
    text = HEADER + '\n{"op": "note", "text": "ünïcode ✓"}\n'
    s = read_script(write(tmp_path, b"\xef\xbb\xbf" + text.encode()))
    assert s.ops == [(2, Note("ünïcode ✓"), None)]


def test_the_contracts_error_example(tmp_path: Path) -> None:
    lines = [
        "# demo",
        HEADER,
        '{"op": "create_guest_memfd", "size": "1G"}',
        "",
        "# convert",
        '{"op": "stats"}',
        '{"op": "set_memory_attributes", "address": 0, "size": [1], "attributes": 8}',
    ]
    e = error_of(write(tmp_path, "\n".join(lines) + "\n"))
    assert (
        str(e)
        == f"{tmp_path / 'demo.jsonl'}:7: set_memory_attributes.size: expected an integer, got a list"
    )
    assert (e.line, e.message) == (7, "set_memory_attributes.size: expected an integer, got a list")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"op": "stats"', "invalid JSON: Expecting ',' delimiter (column 15)"),
        (b"not json", "invalid JSON: Expecting value (column 1)"),
        (b'{"op": "note", "text": "\xff"}', "invalid UTF-8 (byte 25 of the line)"),
        (b'["op", "stats"]', 'expected a JSON object like {"op": ...}, got a list'),
        (b"42", 'expected a JSON object like {"op": ...}, got the integer 42'),
        (b'{"gpa": 0}', 'missing field "op"'),
        (b'{"op": "frobnicate"}', 'unknown op "frobnicate"'),
        (b'{"op": "inspect", "gpa": 0, "size": 1}', "inspect.size: unknown field"),
        (b'{"op": "inspect"}', "inspect.gpa: missing required field"),
        (b'{"op": "stats", "t": -1}', "t: expected a non-negative number of seconds, got -1"),
        (b'{"op": "stats", "t": "1s"}', "t: expected a non-negative number of seconds"),
        (b'{"op": "stats", "t": true}', "t: expected a non-negative number of seconds"),
        (b'{"op": "stats", "t": NaN}', "t: expected a non-negative number of seconds"),
        (b'{"op": "stats", "t": null}', "t: expected a non-negative number of seconds"),
    ],
)
def test_bad_op_lines(tmp_path: Path, line: bytes, message: str) -> None:
    path = write(tmp_path, HEADER.encode() + b"\n\n# c\n" + line + b"\n{}\n")
    e = error_of(path)
    assert e.line == 4
    assert e.message.startswith(message), e.message
    text = str(e)
    assert "\n" not in text
    assert text.startswith(f"{path}:4: ")


def test_errors_come_lazily_while_streaming() -> None:
    """The reader pulls one line at a time: ops before a bad line come out first."""
    pulled: list[int] = []

    def lines() -> Iterator[bytes]:
        yield HEADER.encode() + b"\n"
        for i in range(3):
            pulled.append(i)
            yield b'{"op": "inspect", "gpa": %d}\n' % i
        pulled.append(99)
        yield b'{"op": "bad"}\n'
        raise AssertionError("read past the bad line")

    reader = ScriptReader(lines(), "mem")
    assert reader.header.line == 1
    assert pulled == []
    it = iter(reader)
    assert next(it) == (2, Inspect(0), None)
    assert pulled == [0]
    assert [op for _, op, _ in (next(it), next(it))] == [Inspect(1), Inspect(2)]
    with pytest.raises(ScriptError, match=r"^mem:5: unknown op"):
        next(it)


def test_iter_ops_and_read_header(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\n" + '{"op": "stats"}\n' * 3)
    assert read_header(path).start == VM_START
    assert [line for line, _, _ in iter_ops(path)] == [2, 3, 4]
    with open_script(path) as reader:
        assert reader.header.line == 1
        assert list(reader)[-1] == (4, Stats(), None)


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    e = error_of(missing)
    assert str(e) == f"{missing}: cannot open: No such file or directory"
    e = error_of(tmp_path)  # a folder
    assert str(e).startswith(f"{tmp_path}") and "\n" not in str(e)


# ----------------------------------------------------------------- header


def header(**fields: Any) -> str:
    return json.dumps(fields)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "no header: the script is empty"),
        ("# only\n\n# comments\n", 3, "no header: the script is empty"),
        ('{"op": "stats"}\n', 1, "the first line must be the header"),
        ("[1]\n", 1, "the header must be a JSON object"),
        ('{"version": 1}\n', 1, 'header: missing "format"'),
        (
            header(format="imemviz-state", version=1) + "\n",
            1,
            'header.format: expected "imemviz-recording", got "imemviz-state"; this is a state file',
        ),
        (
            header(format="x", version=1, start=VM_START),
            1,
            'header.format: expected "imemviz-recording"',
        ),
        (
            header(format="imemviz-recording", start=VM_START),
            1,
            "header.version: expected an integer",
        ),
        (
            header(format="imemviz-recording", version="1", start=VM_START),
            1,
            "header.version: expected an integer",
        ),
        (
            header(format="imemviz-recording", version=0, start=VM_START),
            1,
            "header.version: must be 1",
        ),
        (header(format="imemviz-recording", version=1), 1, 'header: missing "start"'),
        (
            header(format="imemviz-recording", version=1, start=VM_START, author="me"),
            1,
            "header.author: unknown field",
        ),
        (
            header(format="imemviz-recording", version=1, start={}),
            1,
            'header.start: expected an object with exactly one of "vm", "scene", "state", got an empty object',
        ),
        (
            header(format="imemviz-recording", version=1, start={"vm": {}, "scene": "default"}),
            1,
            'header.start: expected an object with exactly one of "vm", "scene", "state", got "vm", "scene"',
        ),
        (
            header(format="imemviz-recording", version=1, start={"snapshot": 1}),
            1,
            'got "snapshot"',
        ),
        (header(format="imemviz-recording", version=1, start="default"), 1, 'got "default"'),
    ],
)
def test_bad_headers(tmp_path: Path, text: str, line: int, message: str) -> None:
    e = error_of(write(tmp_path, text))
    assert e.line == line
    assert message in e.message


def test_future_version_names_both_versions(tmp_path: Path) -> None:
    text = "# from the future\n" + header(format="imemviz-recording", version=3, start={"new": 1})
    e = error_of(write(tmp_path, text))
    assert e.line == 2
    assert "version 3" in e.message and "version 1" in e.message


def test_header_after_comments_counts_physical_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "\n# c\n\n" + HEADER + "\n" + '{"op": "stat"}\n')
    e = error_of(path)
    assert e.line == 5 and 'did you mean "stats"' in e.message


# ------------------------------------------------------------ start_vm


def test_start_vm_from_config() -> None:
    vm = start_vm({"vm": {"type": "tdx", "gmem_max_order": 9}})
    assert isinstance(vm, VM)
    assert vm.apply(CreateGuestMemfd(size=2 << 20)).ret == {"fd": 3}


def test_start_vm_bad_config_names_the_field() -> None:
    with pytest.raises(ScriptError) as info:
        start_vm({"vm": {}}, "demo.jsonl", 3)
    assert str(info.value) == "demo.jsonl:3: header.start.vm.type: missing required field"
    with pytest.raises(ScriptError, match=r"^x:1: header\.start\.vm\.gpaw: must be 48 or 52"):
        start_vm({"vm": {"type": "tdx", "gpaw": 50}}, "x")


@pytest.fixture
def scenes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A resources folder of our own, with two scenes."""
    folder = tmp_path / "res" / "scenes"
    folder.mkdir(parents=True)
    (folder / "one-fd.jsonl").write_text(
        "# a scene\n" + HEADER + '\n{"op": "create_guest_memfd", "size": "2M"}\n'
    )
    nested = {"format": "imemviz-recording", "version": 1, "start": {"scene": "one-fd"}}
    (folder / "two-fds.jsonl").write_text(
        json.dumps(nested) + '\n{"op": "create_guest_memfd", "size": "4K"}\n'
    )
    monkeypatch.setattr(resources, "resources_dir", lambda: tmp_path / "res")
    return folder


def test_start_from_scene_replays_it(scenes: Path, tmp_path: Path) -> None:
    assert resources.scene_names() == ["one-fd", "two-fds"]
    # Descriptors 3 (and 4) are taken by the scene, so the script's next one is 4 (5).
    vm = start_vm({"scene": "one-fd"})
    assert vm.apply(CreateGuestMemfd(size=4096)).ret == {"fd": 4}
    vm = start_vm({"scene": "two-fds"})
    assert vm.apply(CreateGuestMemfd(size=4096)).ret == {"fd": 5}


def test_unknown_scene_lists_the_available_ones(scenes: Path) -> None:
    for name in ("nope", "../scenes/one-fd", ".hidden", ""):
        with pytest.raises(ScriptError) as info:
            start_vm({"scene": name}, "demo.jsonl", 2)
        assert str(info.value) == f'demo.jsonl:2: unknown scene "{name}" (scenes: one-fd, two-fds)'
    with pytest.raises(ScriptError, match=r"header\.start\.scene: expected a name"):
        start_vm({"scene": 7})


def test_broken_scene_says_where(scenes: Path) -> None:
    (scenes / "broken.jsonl").write_text(HEADER + '\n{"op": "stats", "x": 1}\n')
    with pytest.raises(ScriptError) as info:
        start_vm({"scene": "broken"}, "demo.jsonl", 1)
    text = str(info.value)
    assert text.startswith('demo.jsonl:1: scene "broken": ')
    assert text.endswith("broken.jsonl:2: stats.x: unknown field (this op takes none)")
    assert "\n" not in text


def test_scene_cycle_is_an_error(scenes: Path) -> None:
    loop = {"format": "imemviz-recording", "version": 1, "start": {"scene": "loop"}}
    (scenes / "loop.jsonl").write_text(json.dumps(loop) + "\n")
    with pytest.raises(ScriptError, match="too deeply"):
        start_vm({"scene": "loop"})


def test_shipped_scenes_replay_cleanly() -> None:
    """Every scene in resources/scenes parses and starts a VM."""
    for name in resources.scene_names():
        assert isinstance(start_vm({"scene": name}), VM)


def fake_state_module(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """A stand-in for imemviz.io.state that records the documents it is given."""
    seen: list[Any] = []

    class StateError(ValueError):
        def __init__(self, path: str, message: str) -> None:
            super().__init__(f"{path}: {message}")

    def vm_from_document(doc: Any) -> VM:
        seen.append(doc)
        if doc.get("format") != "imemviz-state":
            raise StateError("format", 'expected "imemviz-state"')
        return VM(VMConfig.from_dict(doc["vm"]))

    module = types.ModuleType("imemviz.io.state")
    module.StateError = StateError  # type: ignore[attr-defined]
    module.vm_from_document = vm_from_document  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imemviz.io.state", module)
    return seen


def test_start_from_embedded_state(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = fake_state_module(monkeypatch)
    doc = {"format": "imemviz-state", "version": 1, "vm": {"type": "default"}}
    assert isinstance(start_vm({"state": doc}), VM)
    assert seen == [doc]
    with pytest.raises(ScriptError) as info:
        start_vm({"state": {"format": "nope"}}, "bug.jsonl", 4)
    assert str(info.value) == 'bug.jsonl:4: header.start.state: format: expected "imemviz-state"'


def test_start_from_a_real_saved_state(tmp_path: Path) -> None:
    state = pytest.importorskip("imemviz.io.state")
    vm = VM(VMConfig.from_dict({"type": "sw_protected"}))
    assert vm.apply(CreateGuestMemfd(size=2 << 20)).ok
    state.save_state(vm, tmp_path / "s.json")
    doc = json.loads((tmp_path / "s.json").read_text())
    again = start_vm({"state": doc})
    # fd 3 is still open in the loaded state.
    assert again.apply(CreateGuestMemfd(size=4096)).ret == {"fd": 4}


# -------------------------------------------------------------- recording


def test_recording_writer_flushes_each_line(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    times = iter([10.0, 10.25, 11.0004, 12.5])
    ops = [
        CreateGuestMemfd(size=1 << 30, flags=1),
        SetMemoryAttributes(address=0x100000, size=0x200000, attributes=8),
        GuestAccess(gpa=0x1000, write=True, value=0xAB, private=True),
    ]
    with RecordingWriter(path, VM_START, clock=lambda: next(times)) as rec:
        assert read_header(path).start == VM_START  # the header is on disk at once
        rec.write(ops[0])
        rec.write(ops[1])
        # Nothing is buffered: a crash here would keep both ops.
        assert [op for _, op, _ in iter_ops(path)] == ops[:2]
        rec.write(ops[2], t=99.0)
    assert rec.closed
    s = read_script(path)
    assert [op for _, op, _ in s.ops] == ops
    assert [t for _, _, t in s.ops] == [0.25, 1.0, 99.0]
    lines = path.read_text().splitlines()
    assert json.loads(lines[1]) == {
        "op": "create_guest_memfd",
        "size": "1G",
        "flags": ["MMAP"],
        "t": 0.25,
    }
    with pytest.raises(ValueError, match="closed"):
        rec.write(Stats())


def test_recording_without_clock_and_with_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    with RecordingWriter(path, {"scene": "default"}, clock=None) as rec:
        rec.write(Note("ünïcode"))
    assert path.read_text(encoding="utf-8").splitlines()[1] == '{"op": "note", "text": "ünïcode"}'
    with pytest.raises(ValueError):
        RecordingWriter(tmp_path / "bad.jsonl", {"vm": {}, "scene": "x"})
    assert not (tmp_path / "bad.jsonl").exists()
    with pytest.raises(ValueError):
        op_line(Stats(), t=-1.0)
    assert json.loads(header_line({"state": {"a": 1}}))["start"] == {"state": {"a": 1}}


def test_resources_dir_is_the_checkout_folder() -> None:
    root = resources.resources_dir()
    assert root is not None and (root / "scenes").is_dir()
    assert resources.scene_path("no-such-scene") is None
