"""Regenerate the replay screenshots and the demo GIF of docs/app.md.

    .venv/bin/python scripts/make_replay_media.py

docs/screenshots/replay-*.png: the app replaying built-in scenes, stopped at
captions worth showing; docs/media/mixed-2m.gif: a whole scene exported with
`imemviz export-video` (kept under 3 MB: small size, 2 fps, one palette).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"
MEDIA = ROOT / "docs" / "media"
SIZE = (1600, 1000)
# (file name, scene, caption to stop after: the position after the first note containing it)
SHOTS_AT = (
    ("replay-td-boot", "td-boot", "td_state RUNNABLE"),
    ("replay-qemu-conversion", "qemu-conversion", "never punched"),
    ("replay-mixed-2m", "mixed-2m", "Every fault in the MIXED range"),
    ("replay-gmem-order-9", "gmem-order-9", "Private leaves"),
)
GIF = ("mixed-2m", (1280, 800), 2)


def main() -> int:
    from PySide6.QtCore import QSettings

    from imemviz import resources
    from imemviz.app.main import _app, wait_until
    from imemviz.app.video import export_video
    from imemviz.app.window import MainWindow
    from imemviz.app.worker import Engine
    from imemviz.io.replay import Timeline

    app = _app(sys.argv[:1])
    SHOTS.mkdir(parents=True, exist_ok=True)
    MEDIA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = QSettings(os.path.join(tmp, "imemviz.ini"), QSettings.IniFormat)
        engine = Engine()
        engine.start()
        window = MainWindow(engine, settings)
        try:
            window.resize(*SIZE)
            window.show()
            for name, scene, caption in SHOTS_AT:
                tl = Timeline.load(resources.scene_path(scene))
                k = next(i for i, op in enumerate(tl.ops) if caption in getattr(op, "text", ""))
                window.presenter.replay.load(tl)
                # Read and applied on the engine thread: seek once the timeline is there.
                wait_until(
                    app,
                    lambda tl=tl: window.presenter.replay.timeline is tl and window.wait_drawn(),
                    60,
                )
                window.presenter.replay.seek(k + 1)
                wait_until(app, window.wait_drawn, 60)
                wait_until(app, lambda: False, 0.3)  # let the overlay and axes settle
                path = SHOTS / f"{name}.png"
                window.grab().save(str(path))
                print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KiB")
        finally:
            window.close()
            engine.stop()
    scene, size, fps = GIF
    out = MEDIA / f"{scene}.gif"
    n = export_video(resources.scene_path(scene), out, fps=fps, size=size)
    print(f"{out.relative_to(ROOT)}: {n} frames, {out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
