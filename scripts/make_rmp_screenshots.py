"""Screenshots of the RMP pane for docs/app.md (offscreen).

    .venv/bin/python scripts/make_rmp_screenshots.py [OUTDIR]   # default docs/screenshots

On the snp-psmash scene (a 2M RMP entry split by a 4K hole punch):
  rmp-psmash-WxH.png       the window at 1920x1080 and 1280x720, stepping through the hole
                           punch at its PSMASH step: the RMP pane shows the 512 4K entries
  rmp-pane-2m.png          the pane alone one step before: one 2M entry of 512 pages
  rmp-pane-psmash.png      the pane alone at the PSMASH step
  rmp-pane-marks.png       the pane alone after the guest rescinds one page (PVALIDATE):
                           that run guest-invalid, outlined by the change mark
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

sys.path.insert(0, os.path.dirname(__file__))
from make_change_screenshots import _pump, _wait

SIZES = ((1920, 1080), (1280, 720))


def one_size(app, size: tuple[int, int], out: str, panes: bool) -> list[str]:
    import tempfile

    from PySide6.QtCore import QSettings, Qt

    from imemviz import resources
    from imemviz.app.window import MainWindow
    from imemviz.app.worker import Engine
    from imemviz.model.ops import parse_op

    tmp = tempfile.mkdtemp(prefix="imemviz-shots-")
    os.environ["IMEMVIZ_CONFIG_DIR"] = tmp
    engine = Engine()
    engine.start()
    w = MainWindow(engine, QSettings(os.path.join(tmp, "s.ini"), QSettings.IniFormat))
    w.resize(*size)
    w.show()
    written = []
    try:
        engine.open(str(resources.scene_path("snp-psmash")))
        _wait(app, lambda: w.wait_drawn() and len(w.rmp.model.rows) > 0)
        w.resizeDocks([w.docks["rmp"]], [int(size[1] * 0.24)], Qt.Vertical)
        s = engine.worker.session
        op = max(i for i, o in enumerate(s.ops) if o.NAME == "fallocate")
        w.panes2.step_op(op)
        w.docks["rmp"].raise_()  # step_op brings the event log forward
        st = w.panes2.stepper
        k = [x.name for x in st.steps].index("psmash")
        pane = w.rmp

        def at(step: int) -> None:
            st.go(step)

            def shown() -> bool:
                sh = w.step_view.shown
                return sh is not None and sh.step == step and pane.model.rows.step == sh.title

            _wait(app, shown)
            _wait(app, lambda: w.wait_drawn() and engine.idle)
            w.docks["rmp"].raise_()
            _pump(app, 0.5)

        tag = f"{size[0]}x{size[1]}"
        if panes:
            at(k - 1)
            path = os.path.join(out, "rmp-pane-2m.png")
            pane.grab().save(path)
            written.append(path)
        at(k)
        if panes:
            path = os.path.join(out, "rmp-pane-psmash.png")
            pane.grab().save(path)
            written.append(path)
        path = os.path.join(out, f"rmp-psmash-{tag}.png")
        w.grab().save(path)
        written.append(path)
        if panes:
            st.presentRequested.emit()
            _wait(app, lambda: not pane.model.rows.step)
            gpa = "0x205000"
            op = {"op": "guest_pvalidate", "gpa": gpa, "level": "4K", "validate": False}
            engine.apply_ops([parse_op(op)], "PVALIDATE rescind")
            _wait(app, lambda: engine.idle and pane.model.marked.any())
            w.marks.hold(True)
            w.docks["rmp"].raise_()
            _pump(app, 0.5)
            path = os.path.join(out, "rmp-pane-marks.png")
            pane.grab().save(path)
            written.append(path)
    finally:
        w.close()
        engine.stop()
    return written


def shots(out: str) -> list[str]:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    written = []
    for i, size in enumerate(SIZES):
        written += one_size(app, size, out, panes=i == 0)
    return written


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join("docs", "screenshots")
    for p in shots(folder):
        print(p)
