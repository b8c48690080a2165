"""Questions to the engine thread are typed commands answered with their key (issue 14:
no app code runs on the engine thread through engine.call in production)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from imemviz.app import messages as M

from .conftest import WAIT_MS, td_session

pytestmark = pytest.mark.qt
APP = Path(__file__).resolve().parents[2] / "imemviz" / "app"


def test_no_production_code_calls_engine_call() -> None:
    calls = []
    for path in APP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            f = node.func if isinstance(node, ast.Call) else None
            if isinstance(f, ast.Attribute) and f.attr == "call":
                base = f.value
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if name == "engine":
                    calls.append(f"{path.name}:{node.lineno}")
    assert calls == []


def test_queries_are_answered_with_their_key(qtbot, engine) -> None:
    engine.post(M.SetSession(td_session()))
    answers: list[M.Answer] = []
    engine.answered.connect(answers.append)
    engine.post(M.OpLine("mine", 0, "# first op"))
    engine.post(M.ResolvePfn("pfn", 1 << 40))  # past the host: an error, not a crash
    qtbot.waitUntil(lambda: len(answers) == 2, timeout=WAIT_MS)
    line, pfn = answers
    assert line.key == "mine" and line.error is None
    text, message = line.value
    assert text.startswith("# first op\n{") and "op #0" in message
    assert pfn.key == "pfn" and pfn.error and pfn.value is None
