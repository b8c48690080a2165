"""Per-user settings, recent files, the log file and the light/dark palette.

Settings live in one JSON file, ``settings.json`` in
``platformdirs.user_config_dir("imemviz")`` (``~/.config/imemviz`` on Linux);
the dock layout and window geometry stay in Qt's own format next to it
(``layout.ini``, see `layout_qsettings`) because they are opaque QByteArrays.
The log goes to ``platformdirs.user_log_dir("imemviz")/imemviz.log``, rotated.

``IMEMVIZ_CONFIG_DIR`` and ``IMEMVIZ_LOG_DIR`` move both folders (tests set
them so that nothing ever lands in the real home).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import platformdirs

from imemviz.io.atomic import write_text

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication, QMenu

    from imemviz.app.window import MainWindow

APP_NAME = "imemviz"
SETTINGS_FILE = "settings.json"
LAYOUT_FILE = "layout.ini"
LOG_FILE = "imemviz.log"
MAX_RECENT = 10
LOG_BYTES = 1 << 20  # rotate at 1 MiB, keep 3 old files: a bug report stays small
LOG_BACKUPS = 3
THEMES = ("system", "light", "dark")

log = logging.getLogger("imemviz.app")
# Without setup_logging (tests, embedding) records go nowhere rather than to stderr.
logging.getLogger("imemviz").addHandler(logging.NullHandler())


# ------------------------------------------------------------------ folders
def config_dir() -> Path:
    """Where settings live: $IMEMVIZ_CONFIG_DIR, else the platform's user config dir."""
    override = os.environ.get("IMEMVIZ_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME))


def log_dir() -> Path:
    """Where the log lives: $IMEMVIZ_LOG_DIR, else the platform's user log dir."""
    override = os.environ.get("IMEMVIZ_LOG_DIR")
    return Path(override) if override else Path(platformdirs.user_log_dir(APP_NAME))


def log_path() -> Path:
    return log_dir() / LOG_FILE


def layout_qsettings() -> QSettings:
    """The QSettings holding the window geometry and dock layout (an ini in config_dir).

    A layout saved by an older imemviz in Qt's default place
    (``~/.config/imemviz/imemviz.conf``) is carried over once.
    """
    from PySide6.QtCore import QSettings

    path = config_dir() / LAYOUT_FILE
    fresh = not path.exists()
    qs = QSettings(str(path), QSettings.Format.IniFormat)
    if fresh and not os.environ.get("IMEMVIZ_CONFIG_DIR"):
        old = QSettings(APP_NAME, APP_NAME)
        for key in old.allKeys():
            if key.startswith("window/"):
                qs.setValue(key, old.value(key))
        qs.sync()
    return qs


# ------------------------------------------------------------------ the JSON store
class UserSettings:
    """A small JSON document of user preferences; every `set` writes it (atomically).

    Unknown keys are kept, and a missing or corrupt file means defaults: a
    settings file must never stop the app from starting.
    """

    DEFAULTS: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {"recent_files": (), "theme": "system"}
    )

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else config_dir() / SETTINGS_FILE
        self.data: dict[str, Any] = {}
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self.data = loaded
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable settings %s: %s", self.path, e)

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.data:
            return self.data[key]
        return self.DEFAULTS.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    def save(self) -> None:
        """Write the file atomically (a crash mid-write keeps the old one)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        except OSError as e:  # a read-only home: the app works, it just forgets
            log.warning("cannot save settings to %s: %s", self.path, e)

    # ------------------------------------------------------------ recent files
    def recent_files(self, existing_only: bool = True) -> list[str]:
        """Most recent first; files that have since disappeared are left out."""
        items = [p for p in self.get("recent_files") or [] if isinstance(p, str)]
        return [p for p in items if os.path.exists(p)] if existing_only else items

    def add_recent(self, path: str) -> None:
        path = os.path.abspath(path)
        items = [p for p in self.recent_files(existing_only=False) if p != path]
        self.set("recent_files", [path, *items][:MAX_RECENT])

    def clear_recent(self) -> None:
        self.set("recent_files", [])

    @property
    def theme(self) -> str:
        t = self.get("theme")
        return t if t in THEMES else "system"


# ------------------------------------------------------------------ logging
def setup_logging(level: int = logging.INFO) -> Path | None:
    """Send the ``imemviz`` loggers to a rotating file; returns its path (None if unwritable).

    Idempotent: a second call (a second window, a test) adds no second handler.
    """
    root = logging.getLogger("imemviz")
    path = log_path()
    for h in root.handlers:
        if isinstance(h, logging.handlers.RotatingFileHandler) and Path(h.baseFilename) == path:
            return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
    except OSError:
        return None
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    root.addHandler(handler)
    root.setLevel(min(root.level or level, level))
    import imemviz

    log.info("imemviz %s started (pid %d)", imemviz.__version__, os.getpid())
    return path


def log_engine(window: MainWindow) -> None:
    """Log every command submitted to the engine, every op it applies (with its
    result) and every failure."""
    from PySide6.QtCore import QObject, Slot

    engine_log = logging.getLogger("imemviz.engine")

    class _CommandLog(QObject):
        # A receiver living on the GUI thread, so the log call is queued there:
        # logging on the engine's QThread would make `threading` register it as
        # a dummy Python thread that never goes away.
        @Slot(str)
        def started(self, label: str) -> None:
            engine_log.info("command %s", label)

    receiver = _CommandLog(window)
    window.engine.worker.commandStarted.connect(receiver.started)

    def on_op(rec) -> None:
        line = rec.line
        if rec.ok:
            engine_log.info("op %d %s ok ret=%s", rec.index, rec.op.NAME, line.get("ret"))
        else:
            engine_log.info("op %d %s refused %s", rec.index, rec.op.NAME, line.get("errno"))

    window.engine.opApplied.connect(on_op)
    window.engine.failed.connect(lambda m: engine_log.error("engine: %s", m))


# ------------------------------------------------------------------ recent files menu
class RecentFilesMenu:
    """File > Open recent: filled from `UserSettings`, updated on every open.

    Only files the user opens count (File > Open, this menu, the command
    line: `expect`), not what headless uses of the window (screenshots, video
    export) load; and a file counts once the engine publishes a snapshot whose
    source it is, so a file that failed to open never enters the list.
    """

    def __init__(self, window: MainWindow, store: UserSettings) -> None:
        from PySide6.QtWidgets import QMenu

        self.window = window
        self.store = store
        self.menu = QMenu("Open &recent", window)
        self.menu.setObjectName("menu_recent")
        self.menu.setToolTipsVisible(True)
        self.menu.aboutToShow.connect(self.rebuild)
        self._expected: set[str] = set()
        _insert_after(window, "&File", "act_open", self.menu)
        window.engine.snapshotReady.connect(self._on_snapshot)
        self.rebuild()

    def expect(self, path: str) -> None:
        """`path` is being opened for the user: list it once it has opened."""
        self._expected.add(os.path.abspath(path))

    def _on_snapshot(self, snap) -> None:
        source = os.path.abspath(snap.source) if snap.source else None
        if source in self._expected:
            self._expected.discard(source)
            self.store.add_recent(source)
            log.info("opened %s", source)
            self.rebuild()

    def rebuild(self) -> None:
        m = self.menu
        m.clear()
        files = self.store.recent_files()
        for i, path in enumerate(files):
            act = m.addAction(f"&{(i + 1) % 10} {os.path.basename(path)}")
            act.setObjectName(f"act_recent_{i}")
            act.setToolTip(path)
            act.triggered.connect(lambda _c=False, p=path: self.window.open_file(p))
        if files:
            m.addSeparator()
        clear = m.addAction("&Clear the list")
        clear.setObjectName("act_recent_clear")
        clear.setEnabled(bool(files))
        clear.triggered.connect(self._clear)
        m.menuAction().setEnabled(bool(files))

    def _clear(self) -> None:
        self.store.clear_recent()
        self.rebuild()


def _find_menu(window: MainWindow, title: str) -> QMenu | None:
    from imemviz.app.menus import menu_of

    for act in window.menuBar().actions():
        menu = menu_of(act)
        if act.text() == title and menu is not None:
            return menu
    return None


def _insert_after(window: MainWindow, title: str, after: str, menu: QMenu) -> None:
    """Put `menu` into the menu-bar menu `title` right after the action named `after`."""
    parent = _find_menu(window, title)
    if parent is None:  # no such menu (yet): keep it reachable at least
        window.menuBar().addMenu(menu)
        return
    acts = parent.actions()
    names = [a.objectName() for a in acts]
    before = acts[names.index(after) + 1] if after in names[:-1] else None
    if before is None:
        parent.addMenu(menu)
    else:
        parent.insertMenu(before, menu)


def add_menu_action(window: MainWindow, title: str, action) -> None:
    """Append `action` to the menu-bar menu `title` (created if missing)."""
    parent = _find_menu(window, title)
    if parent is None:
        parent = window.menuBar().addMenu(title)
    parent.addAction(action)


# ------------------------------------------------------------------ light / dark
def is_dark(app: QApplication, theme: str = "system") -> bool:
    """Whether to draw dark: the setting, or the system's colour scheme (Qt >= 6.5)."""
    if theme in ("light", "dark"):
        return theme == "dark"
    from PySide6.QtCore import Qt

    hints = app.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    return scheme is not None and scheme() == Qt.ColorScheme.Dark


def apply_theme(app: QApplication, theme: str = "system") -> bool:
    """A Fusion palette matching light/dark; returns True when dark.

    The widgets follow the palette; the plots (map, overview, host folios,
    counters), the map's outlines and labels and the log's colours follow
    `plot_theme` (the states' own colours stay: they carry the legend's meanings).
    """
    from PySide6.QtGui import QColor, QPalette

    dark = is_dark(app, theme)
    if dark:
        p = QPalette()
        base, window_bg, text = QColor(30, 30, 30), QColor(45, 45, 45), QColor(220, 220, 220)
        for role, color in (
            (QPalette.ColorRole.Window, window_bg),
            (QPalette.ColorRole.WindowText, text),
            (QPalette.ColorRole.Base, base),
            (QPalette.ColorRole.AlternateBase, window_bg),
            (QPalette.ColorRole.ToolTipBase, window_bg),
            (QPalette.ColorRole.ToolTipText, text),
            (QPalette.ColorRole.Text, text),
            (QPalette.ColorRole.Button, window_bg),
            (QPalette.ColorRole.ButtonText, text),
            (QPalette.ColorRole.Highlight, QColor(42, 130, 218)),
            (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
            (QPalette.ColorRole.Link, QColor(100, 170, 255)),
            (QPalette.ColorRole.PlaceholderText, QColor(140, 140, 140)),
        ):
            p.setColor(role, color)
        for role in (
            QPalette.ColorRole.Text,
            QPalette.ColorRole.ButtonText,
            QPalette.ColorRole.WindowText,
        ):
            p.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 120))
    else:
        p = app.style().standardPalette()
    app.setPalette(p)
    from imemviz.app import plot_theme

    plot_theme.set_dark(dark)  # the plots, the map's outlines and the log's colours
    return dark


def follow_system_theme(app: QApplication, store: UserSettings, window: MainWindow) -> None:
    """Apply the theme now and whenever the system switches; View > Theme picks one."""
    from PySide6.QtGui import QAction, QActionGroup
    from PySide6.QtWidgets import QMenu

    def apply() -> None:
        apply_theme(app, store.theme)

    def choose(theme: str) -> None:
        store.set("theme", theme)
        apply()

    menu = QMenu("&Theme", window)
    menu.setObjectName("menu_theme")
    group = QActionGroup(menu)
    for key, text in (("system", "Follow the &system"), ("light", "&Light"), ("dark", "&Dark")):
        act = QAction(text, menu, checkable=True)
        act.setObjectName(f"act_theme_{key}")
        act.setChecked(store.theme == key)
        act.triggered.connect(lambda _c=False, k=key: choose(k))
        group.addAction(act)
        menu.addAction(act)
    view = _find_menu(window, "&View")
    if view is not None:
        view.addMenu(menu)
    apply()
    hints = app.styleHints()
    if hasattr(hints, "colorSchemeChanged"):
        hints.colorSchemeChanged.connect(lambda *_: apply())


def set_app_identity(app: QApplication) -> None:
    """The window icon (resources/icons/imemviz.svg) and the desktop file name.

    The desktop file name lets Wayland compositors and docks match the window
    to packaging/imemviz.desktop (and so to its hicolor icon).
    """
    from PySide6.QtGui import QIcon

    from imemviz import resources

    app.setDesktopFileName("imemviz")
    try:
        svg = resources.resource_path("icons", "imemviz.svg")
    except FileNotFoundError:
        return
    icon = QIcon(str(svg)) if svg.is_file() else QIcon()
    hicolor = svg.parent / "hicolor"
    for png in sorted(hicolor.glob("*/apps/imemviz.png")):
        icon.addFile(str(png))
    if not icon.isNull():
        app.setWindowIcon(icon)
