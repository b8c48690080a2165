"""imemviz.model and imemviz.io never import Qt: they must work on a machine without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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


# The app's Qt-free modules: geometry and colour logic tested headless.
QT_FREE_APP = (
    "imemviz.app.palette",
    "imemviz.app.colour_vision",
    "imemviz.app.panes.map_fold",
    "imemviz.app.panes.map_layout",
    "imemviz.app.panes.map_frame",
    "imemviz.app.goto",
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
