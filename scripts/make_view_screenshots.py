"""Regenerate the screenshots of docs/app.md's "What you see" (offscreen).

    .venv/bin/python scripts/make_view_screenshots.py [OUTDIR] [--cvd DIR]

At 1920x1080 and 1280x720 each:
  launch-WxH.png        the default scene as `imemviz` opens it
  state-WxH.png         a state file (tests/data/state-v1-tdx.json.gz, a bug-report state)
  mixed-2m-WxH.png      the mixed-2m scene at its key op (--at 8: the 4K conversion)
  conversion-WxH.png    qemu-conversion at its key op (--at 528: converted without discard)
  presentation-WxH.png  presentation mode, replaying mixed-2m at op 8, at the deepest zoom
and dark-1600x1000.png (the launch in the dark theme).  With --cvd DIR, every PNG is
also written as protanopia, deuteranopia and tritanopia simulations (Machado et al.
2009, imemviz.app.colour_vision) to look at the palette as those viewers do.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qt_wait import pump as _settle
from qt_wait import wait as _wait

SIZES = ((1920, 1080), (1280, 720))
STATE = os.path.join("tests", "data", "state-v1-tdx.json.gz")


def cli(out: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "imemviz", "--screenshot", out, *args], check=True)


def in_process(out: str) -> None:
    """Presentation mode and the dark theme need the window itself."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from imemviz import resources
    from imemviz.app import settings as S
    from imemviz.app.panes.map_frame import View
    from imemviz.app.screenshot_at import show_replay_at
    from imemviz.app.window import MainWindow
    from imemviz.app.worker import Engine

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    tmp = tempfile.mkdtemp(prefix="imemviz-shots-")
    os.environ["IMEMVIZ_CONFIG_DIR"] = tmp
    for w_, h_ in SIZES:
        engine = Engine()
        engine.start()
        w = MainWindow(engine, QSettings(os.path.join(tmp, f"{w_}.ini"), QSettings.IniFormat))
        try:
            w.resize(w_, h_)
            w.show()
            w.presentation.set_on(True, fullscreen=False)
            scene = str(resources.scene_path("mixed-2m"))
            assert show_replay_at(app, w, scene, 8, [], 60.0)
            w.map.go_to(View(8, 0x810 + 16.0))  # the deepest zoom: every tile labelled
            _wait(app, w.wait_drawn)
            _settle(app)
            w.grab().save(os.path.join(out, f"presentation-{w_}x{h_}.png"))
        finally:
            # Back to the normal font: it is the application's, the next window's too.
            w.presentation.set_on(False, fullscreen=False)
            w.close()
            engine.stop()
    engine = Engine()
    engine.start()
    w = MainWindow(engine, QSettings(os.path.join(tmp, "dark.ini"), QSettings.IniFormat))
    try:
        w.resize(1600, 1000)
        w.show()
        S.apply_theme(app, "dark")
        engine.load_scene("default")
        _wait(app, w.wait_drawn)
        _settle(app)
        w.grab().save(os.path.join(out, "dark-1600x1000.png"))
    finally:
        S.apply_theme(app, "light")
        w.close()
        engine.stop()


def simulate_png(path: str, out_dir: str) -> None:
    """Protanopia, deuteranopia and tritanopia versions of a PNG (numpy, linear RGB)."""
    import numpy as np
    from PySide6.QtGui import QImage

    from imemviz.app.colour_vision import MACHADO

    img = QImage(path).convertToFormat(QImage.Format_RGB888)
    w, h = img.width(), img.height()
    buf = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes()).reshape(h, -1)
    rgb = buf[:, : 3 * w].reshape(h, w, 3).astype(np.float64) / 255
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    base = os.path.splitext(os.path.basename(path))[0]
    for kind, m in MACHADO.items():
        sim = np.clip(lin @ np.asarray(m).T, 0, 1)
        srgb = np.where(sim <= 0.0031308, 12.92 * sim, 1.055 * sim ** (1 / 2.4) - 0.055)
        data = np.ascontiguousarray((srgb * 255 + 0.5).astype(np.uint8))
        QImage(data.data, w, h, 3 * w, QImage.Format_RGB888).save(
            os.path.join(out_dir, f"{base}-{kind}.png")
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default="docs/screenshots")
    ap.add_argument("--cvd", metavar="DIR", help="also write CVD simulations of every PNG here")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    from imemviz import resources

    made = []
    for w_, h_ in SIZES:
        size = f"{w_}x{h_}"
        for name, args in (
            ("launch", ()),
            ("state", (STATE,)),
            ("mixed-2m", (str(resources.scene_path("mixed-2m")), "--at", "8")),
            ("conversion", (str(resources.scene_path("qemu-conversion")), "--at", "528")),
        ):
            path = os.path.join(a.out, f"{name}-{size}.png")
            cli(path, *args, "--size", size)
            made.append(path)
    in_process(a.out)
    made += [os.path.join(a.out, f"presentation-{w}x{h}.png") for w, h in SIZES]
    made.append(os.path.join(a.out, "dark-1600x1000.png"))
    if a.cvd:
        os.makedirs(a.cvd, exist_ok=True)
        for path in made:
            simulate_png(path, a.cvd)
    print("\n".join(made))


if __name__ == "__main__":
    main()
