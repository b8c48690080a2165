"""No traceback for any input: exit 0/1/2 and, for 2, one line naming the file and line.

Reproducers of issue 13 (JSON integers over 4,300 digits, huge hex strings in
range errors, the note of an engine error naming the previous op's line, wrong
file kinds) and the property test that feeds mutated scripts and states to
`run`, `check`, `diff` and the app's open path (tests/fuzzkit.py; the long run
is scripts/fuzz_inputs.py).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import fuzzkit
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imemviz import cli
from imemviz.io.state import save_state
from imemviz.model.vm import VM

HEADER = '{"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "sw_protected"}}}'


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.rstrip("\n")


def script(tmp_path: Path, *lines: str, name: str = "s.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------ reproducers


def test_a_json_integer_of_5000_digits_is_exit_2_on_its_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = script(
        tmp_path,
        "# a comment",
        HEADER,
        '{"op": "create_guest_memfd", "size": "2M"}',
        '{"op": "create_guest_memfd", "size": ' + "9" * 5000 + "}",
    )
    code, out, err = run(capsys, "run", path)
    assert (code, out) == (2, "")
    assert one_line(err) == f"{path}:4: invalid JSON: an integer with more than 4,300 digits"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"0x' + "f" * 5000 + '"', "out of range for a u64 (0..0xffffffffffffffff, "),
        ('"-0x' + "f" * 5000 + '"', "out of range for a u64"),
        ('"' + "9" * 5000 + 'K"', "integer with 5,000 digits is far too large"),
    ],
)
def test_a_huge_hex_or_size_string_is_one_line_naming_its_size(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str, message: str
) -> None:
    path = script(tmp_path, HEADER, '{"op": "create_guest_memfd", "size": ' + value + "}")
    code, out, err = run(capsys, "run", path)
    assert (code, out) == (2, "")
    line = one_line(err)
    assert line.startswith(f"{path}:2: create_guest_memfd.size: ") and message in line
    assert len(line) < 300


def test_a_huge_integer_in_a_state_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from statecases import case_vm

    vm = case_vm("sw")
    path = tmp_path / "s.json"
    save_state(vm, path)
    doc = json.loads(path.read_text())
    doc["memslots"][0]["base_gfn"] = "0x" + "f" * 5000
    path.write_text(json.dumps(doc))
    code, out, err = run(capsys, "check", path)
    assert (code, out) == (2, "")
    assert one_line(err).endswith(
        "base_gfn: base_gfn a 20000-bit number is beyond the guest "
        "physical address space (gfns end at 0x10000000000000)"
    )
    path.write_text(path.read_text().replace('"0x' + "f" * 5000 + '"', "9" * 5000))
    code, _out, err = run(capsys, "diff", path, path)
    assert code == 2 and one_line(err) == (
        f"{path}: invalid JSON: an integer with more than 4,300 digits"
    )


def test_invalid_utf8_is_exit_2_naming_line_and_byte(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(HEADER.encode() + b'\n{"op": "note", "text": "caf\xe9"}\n')
    code, _out, err = run(capsys, "run", path)
    assert code == 2 and one_line(err) == f"{path}:2: invalid UTF-8 (byte 28 of the line)"


def test_an_engine_error_names_the_failing_ops_own_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The note named line 0 (first op) or the previous op's line; an engine bug keeps its
    traceback (that is what a bug report needs), with the right op and line."""
    path = script(
        tmp_path,
        HEADER,
        "",
        '{"op": "note", "text": "a"}',
        "# between",
        '{"op": "create_guest_memfd", "size": "2M"}',
    )
    real = VM.apply

    def apply(self: VM, op: Any) -> Any:
        if op.NAME == "create_guest_memfd":
            raise RuntimeError("engine bug")
        return real(self, op)

    monkeypatch.setattr(VM, "apply", apply)
    with pytest.raises(RuntimeError) as info:
        cli.run_script(str(path))
    assert info.value.__notes__ == [f"while applying op 1 at {path}:5"]


def test_run_on_a_state_file_says_what_it_is(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from statecases import case_vm

    for name in ("s.json.zst", "s.json.gz", "s.json"):
        path = tmp_path / name
        save_state(case_vm("default"), path)
        code, _out, err = run(capsys, "run", path)
        assert code == 2
        assert (
            "this is a state file, not a script: open it with `imemviz FILE`, or continue "
            "from it with `imemviz run SCRIPT --from-state FILE`" in one_line(err)
        )


def test_check_and_diff_on_a_recording_say_what_it_is(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rec = script(tmp_path, "# made by hand", HEADER, '{"op": "stats"}')
    ops = script(tmp_path, '{"op": "stats"}', name="ops.jsonl")
    # check takes a state only; diff runs recordings (headers), but an ops-only script has
    # no VM to start from.
    for argv, path in ((["check", rec], rec), (["check", ops], ops), (["diff", ops, ops], ops)):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (2, "")
        assert one_line(err) == (
            f"{path}: this is a recording (a script), not a state file: run it with "
            "`imemviz run FILE` (add --state-out STATE to save its final state) or open it "
            "with `imemviz FILE`"
        )
    code, out, err = run(capsys, "diff", rec, rec)
    assert (code, err) == (0, "") and "same" in out


def test_from_state_takes_an_ops_only_script(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from statecases import case_vm

    state = tmp_path / "s.json.zst"
    save_state(case_vm("tdx"), state)
    ops = script(tmp_path, "# no header", '{"op": "close", "fd": 1}', '{"op": "close", "fd": 1}')
    code, out, err = run(capsys, "run", ops, "--from-state", state)
    assert (code, err) == (0, "")
    assert [json.loads(x)["errno"] for x in out.splitlines()] == [None, "EBADF"]
    # Without --from-state the header is still required, and says so.
    code, _out, err = run(capsys, "run", ops)
    assert code == 2 and "the first line must be the header" in one_line(err)


def test_a_flag_name_as_a_string_says_to_use_a_list(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = script(
        tmp_path,
        HEADER,
        '{"op": "create_guest_memfd", "size": "2M"}',
        '{"op": "fallocate", "fd": 3, "mode": "KEEP_SIZE", "offset": 0, "len": "4K"}',
    )
    code, _out, err = run(capsys, "run", path)
    assert code == 2 and one_line(err) == (
        f'{path}:3: fallocate.mode: flag names go in a list: ["KEEP_SIZE"] (or the integer 1)'
    )


# ------------------------------------------------------------ properties

_DOCS = fuzzkit.base_docs()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from statecases import case_vm

    from imemviz.io.state import encode, state_document

    d = tmp_path_factory.mktemp("fuzz")
    probe = d / "probe.jsonl"
    probe.write_text(fuzzkit.PROBE + "\n")
    base = d / "base.json"
    base.write_bytes(encode(state_document(case_vm("sw"))))
    return {"dir": d, "probe": probe, "base": base}


@pytest.mark.slow
def test_mutated_scripts_end_with_exit_0_1_or_2_and_one_line(
    work: dict[str, Path], slow_scale: int
) -> None:
    @settings(max_examples=80 * slow_scale, suppress_health_check=[HealthCheck.too_slow])
    @given(rng=st.randoms(use_true_random=False))
    def prop(rng: random.Random) -> None:
        path = work["dir"] / "case.jsonl"
        path.write_bytes(fuzzkit.mutated_script(rng))
        for command in ("run", "salvage", "open"):
            fuzzkit.outcome(command, path, work["probe"])

    prop()


@pytest.mark.slow
def test_mutated_states_end_with_exit_0_1_or_2_and_one_line(
    work: dict[str, Path], slow_scale: int
) -> None:
    """check, diff, run --from-state (a probe of ops over whatever loaded) and the open path."""

    @settings(max_examples=80 * slow_scale, suppress_health_check=[HealthCheck.too_slow])
    @given(rng=st.randoms(use_true_random=False), suffix=st.sampled_from([".json", ".gz", ".zst"]))
    def prop(rng: random.Random, suffix: str) -> None:
        path = work["dir"] / f"case.json{'' if suffix == '.json' else suffix}"
        path.write_bytes(fuzzkit.mutated_state(rng, _DOCS))
        fuzzkit.outcome("check", path, work["probe"])
        fuzzkit.outcome("diff", path, work["base"])
        fuzzkit.outcome("from-state", path, work["probe"])
        fuzzkit.outcome("open", path, work["probe"])

    prop()


def test_diff_of_a_deeply_nested_state_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """diff sniffs whether its inputs are recordings: a first line nested past the JSON
    decoder's recursion limit is a bad state file, not a traceback (found by the fuzz run)."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    for argv in (["diff", deep, deep], ["diff", deep, "--kernels", "6.12,mainline"]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == ""
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
