"""Where the files of the top-level ``resources/`` folder are (scenes, ...).

In a source checkout they are read from ``resources/`` next to the
``imemviz`` package; an installed wheel carries the same folder as the
package ``imemviz._resources`` (see pyproject.toml).
"""

from __future__ import annotations

import importlib.resources
import re
from functools import cache
from pathlib import Path

import imemviz

SCENE_SUFFIX = ".jsonl"
# A scene name is a file name in resources/scenes/, never a path.
_SCENE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@cache
def resources_dir() -> Path | None:
    """The resources folder, or None when neither location has one."""
    checkout = Path(imemviz.__file__).resolve().parent.parent
    # In site-packages the package's parent is shared with every other
    # distribution, whose own resources/ folder would not be ours.
    if checkout.name not in ("site-packages", "dist-packages"):
        candidate = checkout / "resources"
        if candidate.is_dir():
            return candidate
    try:
        packaged = importlib.resources.files("imemviz._resources")
    except ModuleNotFoundError:
        return None
    # Only a real folder will do: callers open the files by path.
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return None


def resource_path(*parts: str) -> Path:
    """The path of a file under the resources folder (it may not exist).

    Raises FileNotFoundError when this installation has no resources at all.
    """
    root = resources_dir()
    if root is None:
        raise FileNotFoundError("imemviz resources folder not found (broken installation?)")
    return root.joinpath(*parts)


def scene_names() -> list[str]:
    """The names of the built-in scenes, sorted."""
    root = resources_dir()
    if root is None:
        return []
    folder = root / "scenes"
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(SCENE_SUFFIX)] for p in folder.glob(f"*{SCENE_SUFFIX}"))


def scene_path(name: str) -> Path | None:
    """The recording of the built-in scene `name`, or None if there is none."""
    if not _SCENE_NAME.match(name):
        return None
    try:
        path = resource_path("scenes", name + SCENE_SUFFIX)
    except FileNotFoundError:
        return None
    return path if path.is_file() else None
