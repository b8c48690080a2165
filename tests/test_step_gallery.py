"""The step gallery (scripts/make_step_gallery.py, docs/app.md) lists every step of its
protocols as imemviz/model/protocols.py groups them: a step added, removed or renamed
fails here until the gallery is regenerated and its table rewritten."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def _gallery():
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(
            "make_step_gallery", SCRIPTS / "make_step_gallery.py"
        )
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # its dataclasses look their module up there
        spec.loader.exec_module(mod)  # it puts scripts/ on sys.path too (qt_wait, ...)
        return mod
    finally:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p) != str(SCRIPTS)]


def test_the_gallery_lists_each_protocol_step_by_step_as_the_engine_groups_it() -> None:
    g = _gallery()
    got = g.headless_steps()  # the actions replayed without Qt, steps() on the op's events
    for p in g.protocols():
        assert list(p.steps) == got[p.slug], (
            f"{p.slug}: protocols.steps() gives {got[p.slug]}; update PROTOCOLS in "
            "scripts/make_step_gallery.py, run it, and rewrite docs/app.md's step gallery"
        )
    slugs = [p.slug for p in g.protocols()]
    assert len(set(slugs)) == len(slugs)
    # The protocols the issue names are all there: a zap, a fault, a punch, a DEMOTE, PSMASH.
    names = {n for p in g.protocols() for n in p.steps}
    for want in (
        "TDH.MEM.RANGE.BLOCK",
        "TDH.MEM.TRACK",
        "TDH.MEM.PAGE.REMOVE",
        "TDH.PHYMEM.PAGE.WBINVD",
        "kvm_mmu_invalidate_begin",
        "kvm_mmu_invalidate_end",
        "TDH.MEM.PAGE.AUG",
        "TDG.MEM.PAGE.ACCEPT",
        "kvm_gmem_folios_free",
        "TDH.MEM.PAGE.DEMOTE",
        "psmash",
    ):
        assert want in names, want


def test_docs_show_every_step_at_both_sizes_and_the_files_exist() -> None:
    g = _gallery()
    doc = (ROOT / "docs" / "app.md").read_text()
    shots = ROOT / "docs" / "screenshots" / "steps"
    wanted = set()
    for p in g.protocols():
        for k in range(len(p.steps)):
            for size in g.SIZES:
                name = g.file_name(p, k, size)
                wanted.add(name)
                assert f"(screenshots/steps/{name})" in doc, f"docs/app.md: no link to {name}"
                assert (shots / name).is_file(), f"{name}: run scripts/make_step_gallery.py"
    linked = set(re.findall(r"\(screenshots/steps/([^)]+\.png)\)", doc))
    stale = sorted(linked - wanted)
    assert not stale, f"docs/app.md links pictures the gallery no longer makes: {stale}"
    extra = sorted(p.name for p in shots.glob("*.png") if p.name not in wanted)
    assert not extra, f"docs/screenshots/steps holds pictures no step makes: {extra}"


@pytest.mark.qt
def test_palette_png_keeps_a_small_swatch_among_many_specks(qapp) -> None:
    """A legend swatch of a few hundred pixels keeps its colour when the grab has more
    colours than a palette holds (frequency alone turned pink into grey)."""
    import numpy as np
    from PySide6.QtGui import QColor, QImage

    sys.path.insert(0, str(SCRIPTS))
    try:
        import png_palette
    finally:
        sys.path.remove(str(SCRIPTS))
    img = QImage(200, 200, QImage.Format.Format_RGB32)
    img.fill(QColor(240, 240, 240))
    rng = np.random.default_rng(1)
    for k in range(2000):  # anti-aliasing-like specks, 2 px each, many colours
        c = QColor(*(int(v) for v in rng.integers(100, 140, 3)))
        img.setPixelColor(k % 200, 100 + (k // 200) * 2, c)
        img.setPixelColor(k % 200, 101 + (k // 200) * 2, c)
    for x in range(10, 30):
        for y in range(10, 30):
            img.setPixelColor(x, y, QColor(217, 163, 196))  # the pink swatch, 400 px
    out = png_palette.palette_image(img)
    assert out.format() == QImage.Format.Format_Indexed8
    assert out.pixelColor(20, 20) == QColor(217, 163, 196)
    assert out.pixelColor(150, 50) == QColor(240, 240, 240)
