"""Packaging: the desktop entry, AppStream metainfo, MIME types, icons, the wheel's resources."""

from __future__ import annotations

import configparser
import os
import shutil
import struct
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "packaging"
RES = ROOT / "resources"
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"
TYPES = {"application/x-imemviz-state", "application/x-imemviz-recording"}
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def desktop_entry() -> configparser.SectionProxy:
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # keys are case-sensitive
    cp.read(PKG / "imemviz.desktop", encoding="utf-8")
    return cp["Desktop Entry"]


def _list(value: str) -> list[str]:
    assert value.endswith(";"), f"desktop lists end with ';': {value!r}"
    return value[:-1].split(";")


def test_desktop_entry() -> None:
    e = desktop_entry()
    assert e["Type"] == "Application"
    assert e["Name"] == "imemviz"
    assert e["Exec"] == "imemviz %f"
    assert e["Icon"] == "imemviz"
    assert e["Terminal"] == "false"
    assert set(_list(e["MimeType"])) == TYPES
    assert "Development" in _list(e["Categories"])


@pytest.mark.skipif(
    shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed"
)
def test_desktop_entry_validates() -> None:
    r = subprocess.run(
        ["desktop-file-validate", str(PKG / "imemviz.desktop")], capture_output=True, text=True
    )
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_metainfo_references_the_desktop_entry_icon_and_types() -> None:
    root = ET.parse(PKG / "io.github.imemviz.metainfo.xml").getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == "io.github.imemviz"
    assert root.findtext("launchable") == "imemviz.desktop"
    assert root.findtext("icon") == "imemviz"
    assert root.findtext("provides/binary") == "imemviz"
    assert {m.text for m in root.findall("provides/mediatype")} == TYPES
    assert root.findtext("summary") and root.find("description/p") is not None
    assert root.find("releases/release").get("version") == _version()


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstreamcli not installed")
def test_metainfo_validates() -> None:
    r = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(PKG / "io.github.imemviz.metainfo.xml")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_mime_xml_declares_both_types_with_the_contract_extensions() -> None:
    root = ET.parse(PKG / "imemviz-mime.xml").getroot()
    types = {t.get("type"): t for t in root.findall(f"{MIME_NS}mime-type")}
    assert set(types) == TYPES
    globs = {
        name: {g.get("pattern") for g in t.findall(f"{MIME_NS}glob")} for name, t in types.items()
    }
    assert globs["application/x-imemviz-state"] == {"*.json.gz", "*.json.zst"}
    assert globs["application/x-imemviz-recording"] == {"*.jsonl"}
    for t in types.values():
        assert t.find(f"{MIME_NS}magic") is not None  # recognised by the format tag too


def test_qt_mime_database_names_our_files(tmp_path) -> None:
    """With the MIME XML installed for the user, files get our types (weights work)."""
    pytest.importorskip("PySide6")
    (tmp_path / "mime" / "packages").mkdir(parents=True)
    shutil.copy(PKG / "imemviz-mime.xml", tmp_path / "mime" / "packages")
    rec = tmp_path / "header-only.txt"
    rec.write_text('{"format": "imemviz-recording", "version": 1, "start": {"scene": "default"}}\n')
    code = (
        "import sys\n"
        "from PySide6.QtCore import QMimeDatabase\n"
        "db = QMimeDatabase()\n"
        "if not db.mimeTypeForName('application/x-imemviz-state').isValid():\n"
        "    sys.exit(77)\n"
        "for f in sys.argv[1:]:\n"
        "    print(db.mimeTypeForFile(f).name())\n"
    )
    files = ["a.json.zst", "a.json.gz", "a.jsonl", "a.gz", "a.zst"]
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-c", code, *(str(tmp_path / f) for f in files)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    if r.returncode == 77:
        pytest.skip("this Qt does not read user MIME packages (no system MIME database?)")
    assert r.returncode == 0, r.stderr
    got = dict(zip(files, r.stdout.split(), strict=True))
    assert got["a.json.zst"] == got["a.json.gz"] == "application/x-imemviz-state"
    assert got["a.jsonl"] == "application/x-imemviz-recording"
    # Only the longer patterns are ours: other compressed files keep their types.
    assert got["a.gz"] != "application/x-imemviz-state"
    assert got["a.zst"] != "application/x-imemviz-state"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_application_icon_svg_and_hicolor_pngs() -> None:
    svg = ET.parse(RES / "icons" / "imemviz.svg").getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    for n in ICON_SIZES:
        png = RES / "icons" / "hicolor" / f"{n}x{n}" / "apps" / "imemviz.png"
        assert _png_size(png) == (n, n)


def test_pyinstaller_recipe_and_scripts() -> None:
    spec = (PKG / "imemviz.spec").read_text()
    compile(spec, "imemviz.spec", "exec")  # valid Python
    assert 'collect_submodules("imemviz")' in spec  # cli.py imports by name
    assert 'collect_data_files("imemviz._resources"' in spec
    assert (PKG / "imemviz-entry.py").is_file()
    for script in ("build-bundle.sh", "test-bundle.sh", "check-wheel.sh"):
        path = PKG / script
        assert os.access(path, os.X_OK), f"{script} is not executable"
        assert path.read_text().startswith("#!/usr/bin/env bash\n")


def _version() -> str:
    import imemviz

    return imemviz.__version__


def test_resources_are_mapped_into_the_package() -> None:
    """Statically: resources/ ships as imemviz._resources, every file of it."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert meta["package-dir"]["imemviz._resources"] == "resources"
    assert meta["package-data"]["imemviz._resources"] == ["**/*"]
    assert (RES / "__init__.py").is_file()
    assert "imemviz._resources" in (ROOT / "setup.py").read_text()


@pytest.mark.slow
def test_the_wheel_holds_every_resource(tmp_path) -> None:
    """Build the wheel (from a clean copy: a stale build/lib must not help) and list it."""
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", "build", "dist", ".git", "*.egg-info", "__pycache__", ".hypothesis"
        ),
    )
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0 and "No matching distribution" in r.stderr:
        pytest.skip("no package index to fetch the build backend from")
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("imemviz-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {
        "imemviz/_resources/" + p.relative_to(RES).as_posix()
        for p in RES.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert want - names == set()
    assert "imemviz/_resources/icons/imemviz.svg" in names
    assert any(n.startswith("imemviz/_resources/scenes/") for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)
