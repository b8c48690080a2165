"""Regenerate the screenshots of docs/app.md (offscreen, 1600x1000).

    .venv/bin/python scripts/make_screenshots.py [OUTDIR]   # default docs/screenshots

default.png  the default scene as `imemviz` opens it (the whole 4 GiB TD)
pages.png    the same TD zoomed in on a few pages after some actions: accepted
             pages, a conversion with and without discarding the private
             folio, a shared page the guest wrote, a poisoned page
race.png     the guided fault-vs-invalidation race after its three steps
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qt_wait import pump as _settle
from qt_wait import wait as _wait

SIZE = (1600, 1000)


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"
    os.makedirs(out, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "imemviz", "--screenshot", os.path.join(out, "default.png")],
        check=True,
    )

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from imemviz.app.window import MainWindow
    from imemviz.app.worker import Engine
    from imemviz.io import plans
    from imemviz.io.session import Session

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    engine = Engine()
    engine.start()
    w = MainWindow(
        engine, QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.IniFormat)
    )
    w.resize(*SIZE)
    w.show()
    try:
        s = Session.scene("default")
        base = 0x810  # gfn of 0x810000, right after the firmware's TempMem and TD HOB
        for g in range(base, base + 6):
            s.apply_group(plans.accept_and_touch(s.vm, g).ops)
        s.apply_group(plans.accept_and_touch(s.vm, base + 8, write=True, value=0x42).ops)
        s.apply_group(plans.convert(s.vm, base + 16, base + 20, private=False, discard=True).ops)
        s.apply_group(plans.guest_access(base + 17, write=True, value=0x17).ops)
        s.apply_group(plans.guest_access(base + 18, write=True, value=0x18).ops)
        s.apply_group(plans.accept_and_touch(s.vm, base + 22).ops)
        s.apply_group(plans.convert(s.vm, base + 22, base + 24, private=False, discard=False).ops)
        s.apply_group(plans.allocate(s.vm, base + 26, base + 30).ops)
        s.apply_group(plans.accept_and_touch(s.vm, base + 34).ops)
        s.apply_group(plans.memory_failure(s.vm, base + 34).ops)
        engine.set_session(s)
        _wait(app, w.wait_drawn)
        w.map.show_range(0x800, 0x800 + 16 * 4)
        w.selection.set_range(base + 16, base + 20, cursor=base + 17)
        _wait(app, w.wait_drawn)
        _settle(app)
        w.grab().save(os.path.join(out, "pages.png"))

        gfn = 0x900  # private, never touched: the fault has work to do
        w.map.show_range(gfn - 32, gfn + 32)
        w.selection.set_gfn(gfn)
        _wait(app, w.wait_drawn)
        race = w.race_dialog()
        for _ in range(3):
            _wait(app, lambda: race.next.isEnabled() or race.step >= 3)
            race.run_next()
            _wait(app, lambda: engine.idle and race._active is None)
        _settle(app)
        race.grab().save(os.path.join(out, "race.png"))
    finally:
        w.close()
        engine.stop()
    print(f"screenshots written to {out}")


if __name__ == "__main__":
    main()
