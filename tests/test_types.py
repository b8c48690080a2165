"""The type check: mypy over the package, with the configuration in pyproject.toml.

Everything outside `imemviz.app` (the model, io, the CLI) is checked with
`strict = true` and must have no error at all. The app is checked without the
strict flags, and its error count is held by a ratchet: the number recorded in
`tests/mypy_app_errors.txt` may only go down. mypy runs once per test session,
with its cache in a temp folder (a clean clone needs nothing else); cold, it
takes about a minute on two cores.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.typecheck

ROOT = Path(__file__).resolve().parent.parent
RATCHET = Path(__file__).with_name("mypy_app_errors.txt")
ERROR = re.compile(r"^(?P<path>[^:\s]+\.py):(?P<line>\d+): error: (?P<msg>.*)$")


def _read_ratchet() -> int:
    for line in RATCHET.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return int(line)
    raise AssertionError(f"{RATCHET.name} holds no number")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy's errors, grouped by area: "app" (imemviz/app) and "strict" (the rest)."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--no-error-summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode not in (0, 1):  # 2: mypy itself failed (bad config, crash)
        pytest.fail(f"mypy failed to run (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    groups: dict[str, list[str]] = {"app": [], "strict": []}
    for line in proc.stdout.splitlines():
        m = ERROR.match(line)
        if m is None:
            continue
        path = m["path"].replace("\\", "/")
        groups["app" if path.startswith("imemviz/app/") else "strict"].append(line)
    if proc.returncode == 1 and not any(groups.values()):
        pytest.fail(f"mypy exited 1 without a parsable error:\n{proc.stdout}{proc.stderr}")
    return groups


def test_mypy_configuration_is_strict() -> None:
    """The strict check is what pyproject.toml says: strict, and relaxed only for the app."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert conf["strict"] is True
    assert conf["files"] == ["imemviz"]
    for override in conf.get("overrides", []):
        modules = override["module"]
        modules = [modules] if isinstance(modules, str) else modules
        relaxes = {k for k, v in override.items() if k != "module" and v is False}
        if relaxes:
            assert all(m == "imemviz.app" or m.startswith("imemviz.app.") for m in modules), (
                f"only the app may relax strict mode: {modules} relaxes {sorted(relaxes)}"
            )
        for m in modules:
            assert not m.startswith(("imemviz.model", "imemviz.io")), m


def test_model_io_and_cli_are_strict_clean(mypy_errors: dict[str, list[str]]) -> None:
    """imemviz.model, imemviz.io and the CLI pass `mypy --strict` with no error."""
    errors = mypy_errors["strict"]
    if errors:
        shown = "\n".join(errors[:40])
        more = f"\n... and {len(errors) - 40} more" if len(errors) > 40 else ""
        pytest.fail(
            f"mypy --strict found {len(errors)} error(s) outside imemviz/app "
            f"(run: .venv/bin/mypy):\n{shown}{more}",
            pytrace=False,
        )


def test_app_error_count_only_goes_down(mypy_errors: dict[str, list[str]]) -> None:
    """The app's mypy error count may not exceed the recorded one; lower the record when it drops."""
    recorded = _read_ratchet()
    errors = mypy_errors["app"]
    found = len(errors)
    if found > recorded:
        per_file = Counter(e.split(":", 1)[0] for e in errors)
        worst = ", ".join(f"{p} {n}" for p, n in per_file.most_common(8))
        pytest.fail(
            f"imemviz/app has {found} mypy errors, more than the {recorded} recorded in "
            f"tests/{RATCHET.name}: fix the new ones (run: .venv/bin/mypy). Most: {worst}",
            pytrace=False,
        )
    if found < recorded:
        pytest.fail(
            f"imemviz/app has {found} mypy errors, fewer than the {recorded} recorded: "
            f"write {found} into tests/{RATCHET.name} so the ratchet holds the gain",
            pytrace=False,
        )
