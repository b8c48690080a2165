"""Per-user settings: the JSON store, recent files, the log file and light/dark."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
from pathlib import Path

import pytest
from PySide6.QtGui import QAction, QPalette
from PySide6.QtWidgets import QMenu

from imemviz.app import settings as S
from imemviz.model import ops as O

from .conftest import td_session, wait_idle

pytestmark = pytest.mark.qt


def test_tests_never_use_the_real_home() -> None:
    # tests/conftest.py points both folders at a temp dir before anything runs.
    real = Path.home()
    for d in (S.config_dir(), S.log_dir()):
        assert not d.resolve().is_relative_to(real.resolve() / ".config"), d
        assert os.environ["IMEMVIZ_CONFIG_DIR"] in str(S.config_dir())


def test_env_overrides_and_platform_defaults(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("IMEMVIZ_CONFIG_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("IMEMVIZ_LOG_DIR", str(tmp_path / "l"))
    assert S.config_dir() == tmp_path / "c"
    assert S.log_path() == tmp_path / "l" / "imemviz.log"
    monkeypatch.delenv("IMEMVIZ_CONFIG_DIR")
    assert S.config_dir().name == "imemviz"  # platformdirs' user_config_dir("imemviz")


def test_settings_round_trip(tmp_path) -> None:
    path = tmp_path / "sub" / "settings.json"
    s = S.UserSettings(path)
    assert s.theme == "system" and s.recent_files() == []
    s.set("theme", "dark")
    s.set("something_new", {"a": 1})
    again = S.UserSettings(path)
    assert again.theme == "dark"
    assert again.get("something_new") == {"a": 1}
    assert json.loads(path.read_text())["theme"] == "dark"
    # Nothing but the file is left behind (the write is atomic via a temp file).
    assert [p.name for p in path.parent.iterdir()] == ["settings.json"]


def test_a_corrupt_or_odd_settings_file_means_defaults(tmp_path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    assert S.UserSettings(path).theme == "system"
    path.write_text('["a list"]')
    assert S.UserSettings(path).recent_files() == []
    path.write_text('{"theme": "purple", "recent_files": [3, null]}')
    s = S.UserSettings(path)
    assert s.theme == "system" and s.recent_files() == []


def test_recent_files_order_dedupe_limit_and_missing(tmp_path) -> None:
    s = S.UserSettings(tmp_path / "settings.json")
    files = []
    for i in range(S.MAX_RECENT + 3):
        f = tmp_path / f"f{i}.jsonl"
        f.write_text("")
        files.append(str(f))
        s.add_recent(str(f))
    assert s.recent_files() == files[::-1][: S.MAX_RECENT]
    s.add_recent(files[5])  # again: moves to the top, no duplicate
    assert s.recent_files()[0] == files[5]
    assert len(s.recent_files()) == S.MAX_RECENT
    os.unlink(files[5])
    assert files[5] not in s.recent_files()
    assert files[5] in s.recent_files(existing_only=False)
    s.clear_recent()
    assert S.UserSettings(s.path).recent_files() == []


def test_recent_files_menu_follows_opens(window, qtbot, tmp_path) -> None:
    menu = window.recent.menu
    assert menu.objectName() == "menu_recent"
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    assert menu.menuAction() in file_menu.actions()
    window.user_settings.clear_recent()
    window.recent.rebuild()
    assert not menu.menuAction().isEnabled()

    rec = tmp_path / "rec.jsonl"
    s = td_session()
    s.apply(O.GuestAccess(0, write=True, value=1))
    s.save_recording(rec)
    window.open_file(str(rec))
    wait_idle(qtbot, window.engine)
    qtbot.waitUntil(lambda: window.user_settings.recent_files() == [str(rec)])
    window.recent.rebuild()
    act = menu.findChild(type(menu.menuAction()), "act_recent_0")
    assert act is not None and act.toolTip() == str(rec)
    assert menu.menuAction().isEnabled()
    # Reopening from the menu: a new session from the same file.
    before = window.engine.worker._session_no
    act.trigger()
    wait_idle(qtbot, window.engine)
    assert window.engine.worker._session_no == before + 1
    # The list survives a restart of the app (a new store reads the same file).
    assert S.UserSettings().recent_files()[0] == str(rec)


def test_log_file_gets_ops_and_errors(window, qtbot, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("IMEMVIZ_LOG_DIR", str(tmp_path / "logs"))
    root = logging.getLogger("imemviz")
    level = root.level
    path = S.setup_logging()
    try:
        assert path == tmp_path / "logs" / "imemviz.log"
        assert S.setup_logging() == path  # idempotent: one handler
        handlers = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
        assert len(handlers) == 1
        window.engine.apply_ops([O.Note("hello")])
        window.engine.apply_ops([O.Fallocate(3, 0, 0, 4096)])  # refused: EOPNOTSUPP
        window.engine.open(str(tmp_path / "missing.jsonl"))  # fails
        wait_idle(qtbot, window.engine)
        handlers[0].flush()
        text = path.read_text()
        assert "started" in text
        assert "note ok" in text
        assert "command note" in text  # the submitted command, before its ops
        assert "fallocate refused EOPNOTSUPP" in text
        assert "ERROR imemviz.engine" in text and "missing.jsonl" in text
    finally:
        for h in list(root.handlers):
            if isinstance(h, logging.handlers.RotatingFileHandler):
                root.removeHandler(h)
                h.close()
        root.setLevel(level)


def test_light_and_dark_palettes_and_the_theme_menu(qapp, window) -> None:
    before = qapp.palette()
    try:
        assert S.apply_theme(qapp, "dark")
        assert qapp.palette().color(QPalette.Window).lightness() < 100
        assert S.apply_theme(qapp, "light") is False
        assert qapp.palette().color(QPalette.Window).lightness() > 150
        # "system" follows the platform: offscreen reports no dark scheme.
        assert S.is_dark(qapp, "system") in (True, False)
        S.follow_system_theme(qapp, window.user_settings, window)
        menu = window.findChild(QMenu, "menu_theme")
        assert menu is not None and menu.menuAction() in _menu(window, "&View").actions()
        assert window.findChild(QAction, "act_theme_system").isChecked()
        window.findChild(QAction, "act_theme_dark").trigger()
        assert qapp.palette().color(QPalette.Window).lightness() < 100
        assert S.UserSettings().theme == "dark"  # saved
        assert window.findChild(QAction, "act_theme_dark").isChecked()
        assert not window.findChild(QAction, "act_theme_system").isChecked()
        window.findChild(QAction, "act_theme_light").trigger()
        assert qapp.palette().color(QPalette.Window).lightness() > 150
    finally:
        window.user_settings.set("theme", "system")
        qapp.setPalette(before)


def _menu(window, title: str):
    return next(a.menu() for a in window.menuBar().actions() if a.text() == title)


def test_layout_lives_in_the_config_dir_and_app_identity(qapp, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("IMEMVIZ_CONFIG_DIR", str(tmp_path))
    qs = S.layout_qsettings()
    qs.setValue("window/state", b"x")
    qs.sync()
    assert (tmp_path / S.LAYOUT_FILE).is_file()
    icon, name = qapp.windowIcon(), qapp.desktopFileName()
    try:
        S.set_app_identity(qapp)
        assert not qapp.windowIcon().isNull()
        assert qapp.desktopFileName() == "imemviz"
        assert not qapp.windowIcon().pixmap(16, 16).isNull()
    finally:
        qapp.setWindowIcon(icon)
        qapp.setDesktopFileName(name)


def test_only_files_opened_for_the_user_are_recent(window, qtbot, tmp_path) -> None:
    """A session set by code (video export, tests) does not enter the list."""
    from imemviz.io.session import Session

    rec = tmp_path / "quiet.jsonl"
    td_session().save_recording(rec)
    window.user_settings.clear_recent()
    window.engine.set_session(Session.open(rec))
    wait_idle(qtbot, window.engine)
    assert window.engine.snapshot.source == str(rec)
    assert window.user_settings.recent_files() == []
    window.engine.open(str(tmp_path / "missing.jsonl"))  # fails: not listed either
    wait_idle(qtbot, window.engine)
    assert window.user_settings.recent_files() == []
