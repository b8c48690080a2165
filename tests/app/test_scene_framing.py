"""The framing of shipped scenes at their key op (docs/app.md's gallery): the map fills
the view with what matters, at 1920x1080 and 1280x720.

A small or sparse guest, folded, used to take a strip at the top of the map (the zoom of
16 px cells, rows at most 40 px tall): qemu-conversion at 1920x1080 left the lower 62%
of the map empty, virtio-gpu-blob-6.16 94%.  Now the widest zoom starts from cells up to
80 px wide, rows of wide cells shrink to fit, and folds keep rows of their runs beside
their bands while the view has room (`map_layout.MapLayout.fit_row_gfns`, `row_px`,
`_with_context`).
"""

from __future__ import annotations

import os
import sys

import pytest

from imemviz import resources
from imemviz.app.panes.map_frame import on_screen
from imemviz.app.screenshot_at import show_replay_at

pytestmark = pytest.mark.qt

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from make_scene_gallery import KEY_OPS  # noqa: E402


def filled(lay) -> float:
    """The fraction of the map's height drawn with the guest (rows and fold bands)."""
    return min(lay.rows_total() - lay.top, lay.rows_visible()) * lay.row_px() / lay.height


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720)])
@pytest.mark.parametrize(
    "scene", ["qemu-conversion", "fault-race", "virtio-gpu-blob-6.16", "touch-before-accept"]
)
def test_a_scene_at_its_key_op_fills_the_map(make_window, qtbot, qapp, scene, size) -> None:
    w = make_window(fold=True, size=size)
    failures: list[str] = []
    path = str(resources.scene_path(scene))
    assert show_replay_at(qapp, w, path, KEY_OPS[scene][0] + 1, failures, 60.0), failures
    lay = w.map.layout_
    assert filled(lay) >= 0.9, (scene, size, filled(lay), lay.row_gfns, lay.rows_total())
    changed = w.marks.ranges()
    assert changed and on_screen(lay, changed)
    assert any(lay.is_legible(a, b) for a, b in changed)
