"""The layers: imemviz.model <- imemviz.io <- imemviz.app, and only the app imports Qt.

model and io must work on a machine without Qt (checked by importing them with Qt
blocked), and the contracts model -> (no io, no app), io -> (no app), nothing
outside app -> Qt hold for every import statement (checked statically).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

QT_MODULES = ("PySide6", "pyqtgraph", "shiboken6")


@pytest.mark.parametrize("package", ["imemviz.model", "imemviz.io"])
def test_package_imports_without_qt(package: str) -> None:
    """The package and every module in it import with Qt blocked, and load no Qt."""
    code = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        for name in {QT_MODULES!r}:
            sys.modules[name] = None  # importing it now raises ImportError
        pkg = importlib.import_module({package!r})
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            importlib.import_module(info.name)
        loaded = sorted(
            m for m in sys.modules
            if m.split(".")[0] in {QT_MODULES!r} and sys.modules[m] is not None
        )
        assert not loaded, loaded
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-4:])
        pytest.fail(f"{package} does not import with Qt blocked:\n{tail}", pytrace=False)


# The app's Qt-free modules: geometry, colour, the engine thread's records and logic,
# tested headless.
QT_FREE_APP = (
    "imemviz.app.palette",
    "imemviz.app.colour_vision",
    "imemviz.app.panes.map_fold",
    "imemviz.app.panes.map_layout",
    "imemviz.app.panes.map_frame",
    "imemviz.app.goto",
    "imemviz.app.messages",
    "imemviz.app.records",
    "imemviz.app.outcomes",
    "imemviz.app.raster_codes",
)


@pytest.mark.parametrize("module", QT_FREE_APP)
def test_app_logic_modules_import_without_qt(module: str) -> None:
    code = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {QT_MODULES!r}:
            sys.modules[name] = None
        importlib.import_module({module!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-4:])
        pytest.fail(f"{module} does not import with Qt blocked:\n{tail}", pytrace=False)


# ------------------------------------------------------------- import contracts
# The layers: model <- io <- app. Checked statically over every import statement
# of every module file (lazy imports inside functions and TYPE_CHECKING blocks
# included), so a contract breaks even where no test imports the module.

PKG = Path(__file__).resolve().parent.parent / "imemviz"

# layer -> the imemviz packages it must not import
FORBIDDEN_LAYERS = {
    "imemviz.model": ("imemviz.io", "imemviz.app"),
    "imemviz.io": ("imemviz.app",),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the file, relative ones resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            # `from imemviz import app` names the package in the alias
            out.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return out


def _files() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_import_contracts_model_io_app() -> None:
    """model imports neither io nor app; io does not import app; only app imports Qt."""
    broken = []
    for path in _files():
        mod = _module_name(path)
        in_app = _within(mod, "imemviz.app")
        forbidden = next((f for layer, f in FORBIDDEN_LAYERS.items() if _within(mod, layer)), ())
        for line, target in _imports(path):
            rel = f"{path.relative_to(PKG.parent)}:{line}"
            if any(_within(target, f) for f in forbidden):
                broken.append(f"{rel}: {mod} imports {target}")
            if not in_app and any(_within(target, q) for q in QT_MODULES):
                broken.append(f"{rel}: {mod} imports {target} (only imemviz.app may import Qt)")
    assert not broken, "import contracts broken:\n" + "\n".join(broken)


def test_import_contract_checker_sees_violations(tmp_path: Path) -> None:
    """The checker resolves relative and lazy imports: a planted violation is found."""
    global PKG
    fake = tmp_path / "imemviz"
    (fake / "model").mkdir(parents=True)
    (fake / "model" / "__init__.py").write_text("")
    (fake / "model" / "bad.py").write_text("def f():\n    from ..io import state\n")
    (fake / "model" / "worse.py").write_text("from imemviz import app\nimport pyqtgraph as pg\n")
    saved, PKG = PKG, fake
    try:
        with pytest.raises(AssertionError) as info:
            test_import_contracts_model_io_app()
    finally:
        PKG = saved
    text = str(info.value)
    assert "model/bad.py:2: imemviz.model.bad imports imemviz.io" in text
    assert "imemviz.model.worse imports imemviz.app" in text
    assert "imemviz.model.worse imports pyqtgraph" in text
