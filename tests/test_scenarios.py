"""The kernel's own KVM selftests, replayed as contract-level scenario scripts.

Every ``tests/scenarios/*.jsonl`` is a script in the public format (contract
section 2): comment lines naming the selftest it reproduces, the header, then
ops.  After an op line, a comment

    # expect {"ok": false, "errno": "EINVAL"}

gives the expected result of the op just above it, as a SUBSET of the
contract's result line: every key of the expectation must be present and equal
in the actual line; objects are compared recursively as subsets, lists and
scalars exactly (``true`` is not ``1``).

A scenario may also name a value the kernel does not fix but a later op needs
(the host pfn behind a gfn, for ``memory_failure``):

    # capture pfn0 = ret.pfn

binds ``pfn0`` to that field of the result of the op just above; a later op
writes ``"$pfn0"`` as a whole field value.  The engine is deterministic, so the
harness runs the script up to that op, reads the value, substitutes it and runs
again.  Scripts that use ``$names`` are only runnable through this harness.

The scenarios are run through the command line exactly as a user would:
``main(["run", script, "--results-out", results])``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SCENARIO_DIR = Path(__file__).parent / "scenarios"
SCENARIOS = sorted(SCENARIO_DIR.glob("*.jsonl"))

# "# expect {...}"; "expectation" or "expected" in prose do not match.
EXPECT_RE = re.compile(r"^\s*#\s*expect\b(?P<rest>.*)$")
CAPTURE_RE = re.compile(r"^\s*#\s*capture\b(?P<rest>.*)$")
CAPTURE_BODY_RE = re.compile(
    r"^\s+(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<path>[A-Za-z_]\w*(?:\.\w+)*)\s*$"
)
VAR_RE = re.compile(r"^\$(?P<name>[A-Za-z_]\w*)$")
RESULT_KEYS = {"index", "op", "ok", "errno", "ret"}


class ScenarioError(Exception):
    """The scenario file itself is wrong (not the engine)."""


@dataclass
class Op:
    index: int
    line: int  # physical, 1-based
    text: str
    data: dict[str, Any]


@dataclass
class Expectation:
    op_index: int
    line: int
    expected: dict[str, Any]


@dataclass
class Capture:
    op_index: int
    line: int
    name: str
    path: list[str]


@dataclass
class Scenario:
    path: Path
    lines: list[str]
    header_line: int
    ops: list[Op] = field(default_factory=list)
    expectations: list[Expectation] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)


def parse_scenario(path: Path) -> Scenario:
    """Read a scenario; raise ScenarioError naming the physical line of any defect."""
    name = path.name
    lines = path.read_text(encoding="utf-8").split("\n")
    header_line = 0
    ops: list[Op] = []
    expectations: list[Expectation] = []
    captures: list[Capture] = []
    for lineno, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            m = EXPECT_RE.match(raw)
            c = CAPTURE_RE.match(raw)
            if m or c:
                what = "expectation" if m else "capture"
                if not header_line:
                    raise ScenarioError(f"{name}:{lineno}: {what} before the header")
                if not ops:
                    raise ScenarioError(
                        f"{name}:{lineno}: {what} after the header but before any op"
                    )
            if m:
                try:
                    expected = json.loads(m.group("rest"))
                except json.JSONDecodeError as e:
                    raise ScenarioError(f"{name}:{lineno}: expectation is not JSON: {e}") from None
                if not isinstance(expected, dict):
                    raise ScenarioError(f"{name}:{lineno}: expectation must be a JSON object")
                unknown = set(expected) - RESULT_KEYS
                if unknown:
                    raise ScenarioError(
                        f"{name}:{lineno}: expectation has keys {sorted(unknown)} that no result line has"
                    )
                expectations.append(Expectation(ops[-1].index, lineno, expected))
            elif c:
                body = CAPTURE_BODY_RE.match(c.group("rest"))
                if not body:
                    raise ScenarioError(
                        f"{name}:{lineno}: capture must read '# capture NAME = path.to.field'"
                    )
                captures.append(
                    Capture(
                        ops[-1].index, lineno, body.group("name"), body.group("path").split(".")
                    )
                )
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ScenarioError(f"{name}:{lineno}: not JSON: {e}") from None
        if not header_line:
            if not (
                isinstance(data, dict)
                and data.get("format") == "imemviz-recording"
                and data.get("version") == 1
                and isinstance(data.get("start"), dict)
            ):
                raise ScenarioError(
                    f"{name}:{lineno}: the first non-comment line must be the header"
                )
            header_line = lineno
            continue
        if not isinstance(data, dict) or not isinstance(data.get("op"), str):
            raise ScenarioError(f"{name}:{lineno}: an op line must be an object with a string 'op'")
        ops.append(Op(len(ops), lineno, raw, data))
    if not header_line:
        raise ScenarioError(f"{name}: no header line")
    if not expectations:
        raise ScenarioError(f"{name}: no '# expect' line: a scenario must check something")
    names = [c.name for c in captures]
    if len(names) != len(set(names)):
        raise ScenarioError(f"{name}: a capture name is bound twice")
    return Scenario(path, lines, header_line, ops, expectations, captures)


# ---------------------------------------------------------------- comparison


def _same_scalar(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return expected == actual
    return type(expected) is type(actual) and expected == actual


def _exactly_equal(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_exactly_equal(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_exactly_equal(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(actual, (dict, list)):
        return False
    return _same_scalar(expected, actual)


def subset_mismatch(expected: Any, actual: Any, where: str = "") -> str | None:
    """None if `expected` is a subset of `actual`, else where and how they differ.

    Objects: every key of `expected` must be in `actual` with a matching value
    (recursively).  Lists and scalars: exactly equal, booleans distinct from numbers.
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where or '.'}: expected an object, got {json.dumps(actual)}"
        for key, value in expected.items():
            if key not in actual:
                return f"{where}.{key}: missing (present: {sorted(actual)})"
            problem = subset_mismatch(value, actual[key], f"{where}.{key}")
            if problem:
                return problem
        return None
    if not _exactly_equal(expected, actual):
        return f"{where or '.'}: expected {json.dumps(expected)}, got {json.dumps(actual)}"
    return None


# ------------------------------------------------------------------ running


def _substitute(value: Any, bound: dict[str, Any], where: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, bound, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, bound, where) for v in value]
    if isinstance(value, str):
        m = VAR_RE.match(value)
        if m:
            if m.group("name") not in bound:
                raise ScenarioError(f"{where}: ${m.group('name')} is used before it is captured")
            return bound[m.group("name")]
    return value


def _render(sc: Scenario, bound: dict[str, Any], upto_line: int | None = None) -> str:
    """The script with $names replaced, keeping every physical line number."""
    out = list(sc.lines)
    for op in sc.ops:
        if upto_line is not None and op.line > upto_line:
            break
        new = _substitute(op.data, bound, f"{sc.path.name}:{op.line}")
        if new != op.data:
            out[op.line - 1] = json.dumps(new)
    if upto_line is not None:
        out = out[:upto_line]
    return "\n".join(out) + "\n"


def _run(script_text: str, workdir: Path, stem: str) -> tuple[int, list[dict[str, Any]], Path]:
    from imemviz.cli import main

    script = workdir / f"{stem}.jsonl"
    results = workdir / f"{stem}.results.jsonl"
    script.write_text(script_text, encoding="utf-8")
    try:
        rc = main(["run", str(script), "--results-out", str(results)])
    except SystemExit as e:  # a main() that exits instead of returning
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    lines: list[dict[str, Any]] = []
    if rc == 0 and results.exists():
        for n, raw in enumerate(results.read_text(encoding="utf-8").splitlines(), 1):
            if raw.strip():
                try:
                    lines.append(json.loads(raw))
                except json.JSONDecodeError as e:
                    pytest.fail(
                        f"{stem}: result line {n} is not JSON ({e}): {raw!r}", pytrace=False
                    )
    return (rc if rc is not None else 0), lines, script


def _lookup(result: dict[str, Any], path: list[str], where: str) -> Any:
    value: Any = result
    for part in path:
        if not isinstance(value, dict) or part not in value:
            pytest.fail(
                f"{where}: the result has no {'.'.join(path)}: {json.dumps(result)}", pytrace=False
            )
        value = value[part]
    return value


def _check_results(sc: Scenario, results: list[dict[str, Any]]) -> list[str]:
    name = sc.path.name
    if len(results) != len(sc.ops):
        return [f"{name}: {len(sc.ops)} ops but {len(results)} result lines"]
    problems: list[str] = []
    for op, res in zip(sc.ops, results, strict=True):
        if res.get("index") != op.index or res.get("op") != op.data["op"]:
            problems.append(
                f"{name}:{op.line}: result line {op.index} is {json.dumps(res)[:200]}, "
                f"expected index {op.index} op {op.data['op']!r}"
            )
    for exp in sc.expectations:
        op = sc.ops[exp.op_index]
        actual = results[exp.op_index]
        problem = subset_mismatch(exp.expected, actual)
        if problem:
            problems.append(
                f"{name}: op #{op.index} at line {op.line} (expectation at line {exp.line}) differs at {problem}\n"
                f"    op:       {op.text.strip()}\n"
                f"    expected: {json.dumps(exp.expected)}\n"
                f"    actual:   {json.dumps(actual)}"
            )
    return problems


# -------------------------------------------------------------------- tests


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_file_is_well_formed(path: Path) -> None:
    """Every scenario parses, names its source, and checks at least one result."""
    try:
        sc = parse_scenario(path)
    except ScenarioError as e:
        pytest.fail(str(e), pytrace=False)
    first = next(line for line in sc.lines if line.strip())
    assert first.lstrip().startswith("#"), f"{path.name}: start with comments naming the selftest"
    assert sc.ops, f"{path.name}: no ops"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        sc = parse_scenario(path)
    except ScenarioError as e:
        pytest.fail(str(e), pytrace=False)

    bound: dict[str, Any] = {}
    try:
        for i, cap in enumerate(sc.captures):
            op = sc.ops[cap.op_index]
            text = _render(sc, bound, upto_line=op.line)
            rc, results, _script = _run(text, tmp_path, f"{path.stem}.prefix{i}")
            if rc != 0:
                err = capsys.readouterr().err.strip()
                pytest.fail(
                    f"{path.name}: `imemviz run` of the prefix up to line {op.line} "
                    f"exited {rc}: {err}",
                    pytrace=False,
                )
            if len(results) != cap.op_index + 1:
                pytest.fail(
                    f"{path.name}: prefix up to line {op.line} gave {len(results)} result lines, "
                    f"expected {cap.op_index + 1}",
                    pytrace=False,
                )
            bound[cap.name] = _lookup(results[cap.op_index], cap.path, f"{path.name}:{cap.line}")
        text = _render(sc, bound)
    except ScenarioError as e:
        pytest.fail(str(e), pytrace=False)

    rc, results, _script = _run(text, tmp_path, path.stem)
    if rc != 0:
        err = capsys.readouterr().err.strip()
        pytest.fail(f"{path.name}: `imemviz run` exited {rc} (expected 0): {err}", pytrace=False)
    problems = _check_results(sc, results)
    if problems:
        pytest.fail(
            f"{len(problems)} mismatch(es) in {path.name}:\n" + "\n".join(problems), pytrace=False
        )


# ------------------------------------------------- the harness checks itself


def test_subset_semantics() -> None:
    actual = {
        "index": 3,
        "op": "guest_access",
        "ok": False,
        "errno": "EFAULT",
        "ret": {
            "exit": {"reason": "KVM_EXIT_MEMORY_FAULT", "gpa": 4096, "size": 4096, "flags": 8},
            "extra": [1, 2],
        },
    }
    assert subset_mismatch({"ok": False}, actual) is None
    assert subset_mismatch({"ret": {"exit": {"flags": 8}}}, actual) is None
    assert subset_mismatch({"ret": {"extra": [1, 2]}}, actual) is None
    assert subset_mismatch({"ret": {"extra": [1]}}, actual)  # lists compare exactly
    assert subset_mismatch({"ok": 0}, actual)  # false is not 0
    assert subset_mismatch({"ret": {"exit": {"flags": True}}}, {"ret": {"exit": {"flags": 1}}})
    assert subset_mismatch({"errno": None}, actual)
    assert subset_mismatch({"ret": {"vm_dead": True}}, actual)  # missing key
    assert subset_mismatch({"ret": {"folio": None}}, {"ret": {"folio": {"order": 0}}})
    assert subset_mismatch({"ret": {"folio": {"order": 0}}}, {"ret": {"folio": None}})
    assert (
        subset_mismatch(
            {"ret": {"folio": {"order": 0}}}, {"ret": {"folio": {"order": 0, "pfn": 7}}}
        )
        is None
    )
    assert subset_mismatch({"ret": {"l": [{"a": 1}]}}, {"ret": {"l": [{"a": 1, "b": 2}]}})


def test_parser_rejects_bad_scenarios(tmp_path: Path) -> None:
    header = '{"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "default"}}}'
    op = '{"op": "stats"}'
    cases = {
        "before_header": f'# expect {{"ok": true}}\n{header}\n{op}\n',
        "before_op": f'{header}\n# expect {{"ok": true}}\n{op}\n',
        "none": f"# nothing checked\n{header}\n{op}\n",
        "bad_json": f"{header}\n{op}\n# expect {{ok: true}}\n",
        "bad_key": f'{header}\n{op}\n# expect {{"errrno": "EINVAL"}}\n',
        "bad_capture": f"{header}\n{op}\n# capture x ret.pfn\n",
    }
    for stem, text in cases.items():
        p = tmp_path / f"{stem}.jsonl"
        p.write_text(text)
        with pytest.raises(ScenarioError):
            parse_scenario(p)
    good = tmp_path / "good.jsonl"
    good.write_text(
        f'# a comment\n\n{header}\n{op}\n# expect {{"ok": true}}\n'
        f'{op}\n# capture seq = ret.mmu_invalidate_seq\n{op}\n  # expect {{"ret": {{}}}}\n'
    )
    sc = parse_scenario(good)
    assert [(e.op_index, e.line) for e in sc.expectations] == [(0, 5), (2, 9)]
    assert [(c.op_index, c.name, c.path) for c in sc.captures] == [
        (1, "seq", ["ret", "mmu_invalidate_seq"])
    ]
    assert [o.line for o in sc.ops] == [4, 6, 8]
