"""docs/model.md's layout table names every module of the imemviz package."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "model.md"
HEADING = re.compile(r"^### `(imemviz/[\w/]*)`")
ROW = re.compile(r"^\| `([\w.]+\.py)` \|")


def _named() -> dict[str, set[str]]:
    """Package folder (imemviz/io/, ...) -> the module files its table names."""
    text = DOC.read_text()
    layout = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    named: dict[str, set[str]] = {}
    package = None
    for line in layout.splitlines():
        if m := HEADING.match(line):
            package = m[1].rstrip("/") + "/"
            named.setdefault(package, set())
        elif (m := ROW.match(line)) and package is not None:
            named[package].add(m[1])
    return named


def test_layout_names_every_module() -> None:
    named = _named()
    missing = []
    for path in sorted((ROOT / "imemviz").rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(ROOT)
        package = rel.parent.as_posix() + "/"
        if path.name == "__init__.py":
            if package not in named:
                missing.append(f"{package} (no ### `{package}` heading)")
        elif path.name not in named.get(package, set()):
            missing.append(rel.as_posix())
    assert not missing, "docs/model.md's layout does not name: " + ", ".join(missing)


def test_layout_names_no_module_that_is_gone() -> None:
    stale = [
        f"{package}{name}"
        for package, names in _named().items()
        for name in names
        if not (ROOT / package / name).is_file()
    ]
    assert not stale, "docs/model.md's layout names modules that do not exist: " + ", ".join(stale)


def test_every_row_says_what_its_module_holds_once() -> None:
    """A row with an empty `holds` cell, or a module named twice, is no layout."""
    text = DOC.read_text()
    layout = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    seen: set[tuple[str, str]] = set()
    bad = []
    package = None
    for line in layout.splitlines():
        if m := HEADING.match(line):
            package = m[1]
        elif ROW.match(line) and package is not None:
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            key = (package, cells[0])
            if len(cells) < 2 or not cells[1] or key in seen:
                bad.append(f"{package}{cells[0].strip('`')}")
            seen.add(key)
    assert not bad, "docs/model.md's layout rows without a description or named twice: " + (
        ", ".join(bad)
    )
