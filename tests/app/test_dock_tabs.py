"""No stale dock tab bar on screen (app/dock_tabs.py): at 1280x720 a second "Log |
Event log" bar, left by the Timeline strip's move above the log, lay over the strip's
buttons.  It shows in a fresh process built as `run_app` builds the window (not in
pytest's long-lived application, where Qt reuses its tab bars): the check runs in one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.qt

CHILD = r"""
import json, sys, time
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QTabBar
from imemviz.app import dock_tabs
from imemviz.app.window import MainWindow
from imemviz.app.worker import Engine
from imemviz.io import plans
from imemviz.io.session import Session

app = QApplication([])
engine = Engine()
engine.start()
w = MainWindow(engine, QSettings(sys.argv[1], QSettings.Format.IniFormat))
s = Session.new({"type": "tdx", "host_memory": "1G"})
s.apply_group(plans.qemu_layout("tdx", 64 << 20), "layout")
engine.set_session(s)
w.resize(int(sys.argv[2]), int(sys.argv[3]))
w.show()
end = time.monotonic() + 30
while time.monotonic() < end and not (w.wait_drawn() and engine.idle):
    app.processEvents()
    time.sleep(0.005)
end = time.monotonic() + 0.3
while time.monotonic() < end:
    app.processEvents()
    time.sleep(0.005)
bars = [b for b in w.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly)
        if b.isVisible()]
texts = lambda b: [b.tabText(i) for i in range(b.count())]
print(json.dumps({"stale": [texts(b) for b in bars if not dock_tabs._in_use(w, b)],
                  "shown": [texts(b) for b in bars]}))
w.close()
engine.stop()
"""


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_every_shown_dock_tab_bar_sits_under_the_dock_it_shows(tmp_path, size) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "IMEMVIZ_CONFIG_DIR": str(tmp_path)}
    ini = str(tmp_path / "imemviz.ini")
    r = subprocess.run(
        [sys.executable, "-c", CHILD, ini, *map(str, size)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert not got["stale"], got
    # The groups' own bars are there: the log's, with every bottom pane's tab.
    assert any(t[:2] == ["Log", "Event log"] and len(t) >= 5 for t in got["shown"]), got
