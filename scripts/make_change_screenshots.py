"""Screenshots of what an action changed, a step drawn mid-protocol, and a severe outcome,
for docs/app.md (offscreen, at 1920x1080 and 1280x720).

    .venv/bin/python scripts/make_change_screenshots.py [OUTDIR]   # default docs/screenshots

On the default scene:
  change-convert-WxH.png   four pages converted to shared (with discard): the dashed marks
                           on the map (a ring: four pages are less than a pixel here), in
                           the event log, and the action's line in the status bar and log
  step-block-WxH.png       F8 after that conversion, at the BLOCK step: the S-EPT leaves
                           drawn BLOCKED (purple) on the map and in the entries, the
                           invalidation in progress dotted
  banner-kill-WxH.png      a private access to a page the TD never accepted: the banner
                           and the glyph where the TD died
The marks are held at full strength for the picture (they fade after 2.5 s in use).
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qt_wait import pump as _pump
from qt_wait import wait as _wait

SIZES = ((1920, 1080), (1280, 720))


def _window(app, size):
    from PySide6.QtCore import QSettings, Qt

    from imemviz.app.window import MainWindow
    from imemviz.app.worker import Engine

    tmp = tempfile.mkdtemp(prefix="imemviz-shots-")
    os.environ["IMEMVIZ_CONFIG_DIR"] = tmp
    engine = Engine()
    engine.start()
    w = MainWindow(engine, QSettings(os.path.join(tmp, "s.ini"), QSettings.IniFormat))
    w.resize(*size)
    w.show()
    engine.load_scene("default")
    _wait(app, w.wait_drawn)
    # Room for the event log and the entries under the map.
    w.resizeDocks([w.docks["log"]], [int(size[1] * 0.26)], Qt.Vertical)
    return w, engine


def _ready(app, w) -> None:
    _wait(app, lambda: w.wait_drawn() and w.engine.idle)
    _pump(app, 0.5)
    w.marks.hold(True)
    _pump(app, 0.2)


def one_size(app, size: tuple[int, int], out: str) -> list[str]:
    from imemviz.io import plans

    tag = f"{size[0]}x{size[1]}"
    written = []
    w, engine = _window(app, size)
    try:
        for g in range(0x810, 0x818):
            engine.submit(lambda vm, g=g: plans.accept_and_touch(vm, g))
        _wait(app, lambda: engine.idle)
        w.docks["event_log"].raise_()
        engine.submit(lambda vm: plans.convert(vm, 0x810, 0x814, private=False, discard=True))
        _ready(app, w)
        path = os.path.join(out, f"change-convert-{tag}.png")
        w.grab().save(path)
        written.append(path)

        w.map.show_range(0x800, 0x840)
        w.docks["entries"].raise_()
        w.panes2.feed.set_wanted(leaves=True)
        _wait(app, lambda: engine.idle)
        w.panes2.step_action.trigger()
        w.docks["entries"].raise_()
        st = w.panes2.stepper
        st.go([s.name for s in st.steps].index("TDH.MEM.RANGE.BLOCK"))
        _wait(app, lambda: w.step_view.shown is not None and w.step_view.shown.op is not None)
        _ready(app, w)
        path = os.path.join(out, f"step-block-{tag}.png")
        w.grab().save(path)
        written.append(path)
        st.presentRequested.emit()
        _wait(app, lambda: w.step_view.shown is None or w.step_view.shown.op is None)

        w.map.zoom_all()
        w.docks["log"].raise_()
        engine.submit(plans.touch_without_accept(0x20000))
        _ready(app, w)
        path = os.path.join(out, f"banner-kill-{tag}.png")
        w.grab().save(path)
        written.append(path)
    finally:
        w.close()
        engine.stop()
    return written


def shots(out: str) -> list[str]:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    written = []
    for size in SIZES:
        written += one_size(app, size, out)
    return written


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join("docs", "screenshots")
    for p in shots(folder):
        print(p)
