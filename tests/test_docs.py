"""The project stands alone: docs/scripts.md is generated from the op table and current,
its examples run, every errno the engine returns is documented, and the README lists
every command without pointing outside the clone.

Reproducer of issue 13: the README sent readers to a shared/contract.md that a clone
does not have, so nothing in the project documented the script format and the ops.
"""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from model.strategies import scenarios

from imemviz import cli
from imemviz.io.scripts_doc import example_ops, render
from imemviz.model import VM, VMConfig
from imemviz.model.kernels import PROFILES
from imemviz.model.op_docs import CONFIG_DOCS, EXAMPLE_SCRIPT, OP_DOCS
from imemviz.model.ops import OPS, op_fields, parse_op

ROOT = Path(__file__).resolve().parent.parent


def test_scripts_md_is_what_the_op_table_generates() -> None:
    on_disk = (ROOT / "docs" / "scripts.md").read_text(encoding="utf-8")
    assert on_disk == render(), (
        "docs/scripts.md is stale: run .venv/bin/python scripts/make_docs.py"
    )


def test_every_op_field_and_config_field_is_described() -> None:
    assert set(OP_DOCS) == set(OPS)
    for name, doc in OP_DOCS.items():
        assert set(doc.fields) == {f.name for f in op_fields(name)}, name
        assert all(doc.fields.values()) and doc.summary and doc.ret and doc.kernel
    assert {a.name for a in attrs.fields(VMConfig)} <= set(CONFIG_DOCS)


def test_every_example_parses_and_the_first_script_runs(tmp_path: Path) -> None:
    for d in example_ops():
        assert d["op"] == parse_op(d).NAME
    path = tmp_path / "td.jsonl"
    path.write_text(EXAMPLE_SCRIPT)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["run", str(path)])
    assert (code, err.getvalue()) == (0, "")
    results = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(r["ok"] for r in results)
    doc = (ROOT / "docs" / "scripts.md").read_text()
    for line in out.getvalue().splitlines()[:2]:
        assert line in doc  # the results the page shows are what run prints


@pytest.mark.slow
@pytest.mark.parametrize("kernel", PROFILES)
def test_every_errno_the_engine_returns_is_documented_for_its_op(
    kernel: str, slow_scale: int
) -> None:
    """Per kernel profile: errnos only older kernels return (ENOTTY for an ioctl upm-v8 lacks,
    EINVAL for an overlapping binding up to 7.1, EFAULT for PFNMAP before 6.13, ...) must be
    on the page too, so every profile runs, not just the ones a random draw picks."""
    documented = {name: {e for e, _w in doc.errnos} for name, doc in OP_DOCS.items()}
    seen: dict[str, set[str]] = {}

    @settings(max_examples=30 * slow_scale)
    @given(scenarios(kernel=kernel))
    def prop(case) -> None:
        cfg, ops = case
        vm = VM(VMConfig.from_dict(cfg))
        for d in ops:
            op = parse_op(d)
            r = vm.apply(op)
            if r.errno is not None:
                seen.setdefault(op.NAME, set()).add(r.errno)
                assert r.errno in documented[op.NAME], (kernel, op.NAME, r.errno)

    prop()
    assert seen  # the runs did meet refusals


def test_readme_lists_every_command_and_stays_inside_the_clone() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "shared/" not in readme and "contract.md" not in readme
    table = readme[readme.index("| command |") :].split("\n\n")[0]
    for command in ["run", *cli.DELEGATED]:
        assert re.search(rf"`imemviz {re.escape(command)}\b", table), command
    for form in ("`imemviz`", "`imemviz FILE`", "`imemviz --screenshot", "`imemviz --version`"):
        assert form in table, form
    # The README's commands put imemviz on PATH or say how.
    assert "source .venv/bin/activate" in readme
    assert "docs/scripts.md" in readme


def test_the_readme_example_prints_what_the_readme_says(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("$ cat hello.jsonl") :].split("```")[0].splitlines()
    run_at = block.index("$ imemviz run hello.jsonl")
    (tmp_path / "hello.jsonl").write_text("\n".join(block[1:run_at]) + "\n")
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["run", str(tmp_path / "hello.jsonl")]) == 0
    assert out.getvalue().splitlines() == [x for x in block[run_at + 1 :] if x]


def test_dev_tools_are_pinned_exactly() -> None:
    """A new ruff (new rules) must not turn CI red with no change to the code."""
    import tomllib

    test_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["test"]
    for tool in ("ruff", "pytest", "pytest-qt", "hypothesis"):
        (spec,) = [d for d in test_extra if re.match(rf"{tool}\b(?!-)", d)]
        assert re.fullmatch(rf"{tool}==\d+(\.\d+)+", spec), spec
