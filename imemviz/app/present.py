"""Record, replay and present: installs the recorder, the replay pane, captions and exports.

`install(window)` is called once by the main window.  It keeps everything
in this package's own modules (recorder.py, replay.py, video.py) and only
adds to the window: the Timeline dock (the session's steps; a replay's ops), a caption
overlay on the map, actions in File/View, a Replay and a Scenarios menu, a
record button in the toolbar and the recording indicator in the status bar.
Actions are named ``act_<id>`` like the registry's, and kept in
`Presenter.actions`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QPoint, QRectF, QSize, Qt
from PySide6.QtGui import QAction, QIcon, QKeySequence, QPainter
from PySide6.QtWidgets import QFileDialog, QMenu, QProgressDialog, QWidget

from imemviz import resources
from imemviz.app import timeline_strip
from imemviz.app.caption import CaptionOverlay
from imemviz.app.menus import bar_menus
from imemviz.app.recorder import Recorder
from imemviz.app.replay import ReplayController
from imemviz.app.replay_pane import ReplayPane
from imemviz.io.replay import recording_title

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow


def scene_title(name: str) -> str:
    """A scene's title for the Scenarios menu: its first-line comment, else its name."""
    path = resources.scene_path(name)
    return (recording_title(path) if path is not None else None) or name


def export_widget(widget: QWidget, path: str | os.PathLike[str]) -> bool:
    """Save what `widget` shows as PNG (a grab) or SVG (vector render) by the extension."""
    p = os.fspath(path)
    if p.lower().endswith(".svg"):
        from PySide6.QtSvg import QSvgGenerator

        gen = QSvgGenerator()
        gen.setFileName(p)
        size = widget.size()
        gen.setSize(size)
        gen.setViewBox(QRectF(0, 0, size.width(), size.height()))
        gen.setTitle(widget.windowTitle() or widget.objectName())
        painter = QPainter()
        if not painter.begin(gen):
            return False
        try:
            widget.render(painter, QPoint(0, 0))
        finally:
            painter.end()
        return os.path.isfile(p)
    return bool(widget.grab().save(p))


class Presenter:
    """Everything this feature adds to one main window."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.overlay = CaptionOverlay(window.map)
        self.replay = ReplayController(window, self.overlay)
        self.pane = ReplayPane(self.replay)
        # A small explicit minimum (a docked pane must not raise the window's minimum
        # size): its one line of controls.
        self.pane.setMinimumSize(120, self.pane.strip_height())
        # A thin strip across the window above the log and its tabs (timeline_strip.py),
        # shown for a live session too: opening a recording then changes its contents
        # only, not the window's layout (a relayout repaints every pane: the open's stall).
        self.dock = window.add_pane(self.pane, "Timeline", Qt.DockWidgetArea.BottomDockWidgetArea)
        timeline_strip.setup(self.dock)
        timeline_strip.place(window, self.dock)
        self.recorder = Recorder(window)
        self.actions: dict[str, QAction] = {}
        self._build_actions()
        self.replay.loaded.connect(self._on_loaded)
        self.replay.playingChanged.connect(self._on_playing)
        self.recorder.started.connect(lambda _p: self._sync_record())
        self.recorder.stopped.connect(lambda _p, _n: self._sync_record())
        self.filter = _CloseFilter(self)

    # ------------------------------------------------------------------ actions
    def _action(self, id_: str, text: str, tip: str, slot, shortcut: str = "", *, checkable=False):
        w = self.window
        act = QAction(text, w)
        act.setObjectName(f"act_{id_}")
        if shortcut:
            act.setShortcut(QKeySequence(shortcut))
            tip += f" ({shortcut})"
        act.setToolTip(tip)
        act.setStatusTip(tip)
        act.setCheckable(checkable)
        if checkable:
            act.toggled.connect(slot)
        else:
            act.triggered.connect(lambda _c=False: slot())
        w.addAction(act)  # the shortcut works wherever the focus is
        self.actions[id_] = act
        return act

    def _build_actions(self) -> None:
        w = self.window
        rec = self._action(
            "record",
            "&Record",
            "Record every op you perform (with its time) to a recording file, flushed per op",
            self._on_record_toggled,
            "Ctrl+R",
            checkable=True,
        )
        rec.setIcon(_record_icon())
        self.recorder_action = rec
        self._action(
            "caption",
            "Add &caption…",
            "Insert a note op: a caption shown over the map when the recording replays",
            lambda: self.recorder.add_caption(),
            "Ctrl+Shift+C",
        )
        self._action(
            "replay_open",
            "Re&play recording…",
            "Load a recording's start and play its ops step by step, with its captions",
            self.ask_replay,
            "Ctrl+Shift+O",
        )
        self._action(
            "export_video",
            "Export &video…",
            "Replay a recording offscreen into an .mp4, .webm or .gif",
            self.ask_export_video,
        )
        self._action(
            "replay_play", "&Play / pause", "Play or pause the replay", self.replay.toggle, "F5"
        )
        self._action(
            "replay_back",
            "Step &back",
            "One step back on the timeline (the redo history stays)",
            self.replay.step_back,
            "F6",
        )
        self._action(
            "replay_step",
            "&Step",
            "One step forwards on the timeline: the recording's next op, or a redo",
            self.replay.step,
            "F7",
        )
        self._action("replay_close", "&Close the replay", "Stop replaying", self.replay.close)
        cap = self._action(
            "show_captions",
            "Show &captions",
            "Show note captions over the map",
            self._on_show_captions,
            checkable=True,
        )
        cap.setChecked(True)

        bar = w.menuBar()
        menus = bar_menus(bar)
        file_menu = menus.get("&File")
        if file_menu is not None:
            quit_act = w.findChild(QAction, "act_quit")
            before = quit_act if quit_act in file_menu.actions() else None
            for id_ in (None, "record", "caption", "replay_open", "export_video", None):
                if id_ is None:
                    file_menu.insertSeparator(before) if before else file_menu.addSeparator()
                else:
                    # before None appends (Qt takes nullptr; PySide6's stub omits None)
                    file_menu.insertAction(before, self.actions[id_])  # type: ignore[arg-type]
        replay_menu = QMenu("Re&play", w)
        replay_menu.setObjectName("menu_replay")
        for id_ in ("replay_open", "replay_play", "replay_back", "replay_step", "replay_close"):
            replay_menu.addAction(self.actions[id_])
        replay_menu.addSeparator()
        replay_menu.addAction(self.actions["record"])
        replay_menu.addAction(self.actions["caption"])
        self.scenes_menu = QMenu("S&cenarios", w)
        self.scenes_menu.setObjectName("menu_scenarios")
        self.scenes_menu.setToolTipsVisible(True)
        for name in resources.scene_names():
            act = self.scenes_menu.addAction(scene_title(name))
            act.setObjectName(f"act_scene_{name}")
            act.setToolTip(f"Replay the built-in scene {name!r} with its captions")
            act.triggered.connect(lambda _c=False, n=name: self.replay_scene(n))
        help_menu = menus.get("&Help")
        for m in (replay_menu, self.scenes_menu):
            if help_menu is not None:
                bar.insertMenu(help_menu.menuAction(), m)
            else:
                bar.addMenu(m)
        view = menus.get("&View")
        if view is not None:
            view.addSeparator()
            view.addAction(self.actions["show_captions"])
            self.export_menu = view.addMenu("Export pane &image")
            self.export_menu.setObjectName("menu_export_pane")
            self.export_menu.aboutToShow.connect(self._fill_export_menu)
        tb = getattr(w, "toolbar", None)
        if tb is not None:
            tb.addSeparator()
            tb.addAction(rec)

    def _fill_export_menu(self) -> None:
        # Built when shown: panes other modules add later are listed too.
        m = self.export_menu
        m.clear()
        panes: list[tuple[str, QWidget]] = [("Map", self.window.map)]
        panes += [(d.windowTitle(), d.widget()) for d in self.window.docks.values() if d.widget()]
        for title, widget in panes:
            act = m.addAction(f"{title}…")
            act.triggered.connect(lambda _c=False, t=title, wd=widget: self.ask_export_pane(t, wd))

    # ------------------------------------------------------------------ slots
    def _on_record_toggled(self, on: bool) -> None:
        if on and not self.recorder.recording:
            if self.recorder.start() is None:
                self.recorder_action.setChecked(False)
        elif not on and self.recorder.recording:
            self.recorder.stop()

    def _sync_record(self) -> None:
        act = self.recorder_action
        if act.isChecked() != self.recorder.recording:
            act.blockSignals(True)
            act.setChecked(self.recorder.recording)
            act.blockSignals(False)

    def _on_show_captions(self, on: bool) -> None:
        self.overlay.enabled = on
        self.overlay.set_caption(self.overlay.text())

    def _on_loaded(self, timeline) -> None:
        if timeline is None:
            return
        # A replay starts: its pane in front.  The default layout has it as a strip above
        # the log already (nothing moves).  A layout saved by an older version may have
        # it tabbed with the log, hidden behind the log's tab while a replay runs: it
        # becomes the strip (once; the layout saved then keeps it).
        w = self.window
        log_dock = w.docks.get("log")
        if (
            log_dock is not None
            and not self.dock.isFloating()
            and not getattr(getattr(w, "presentation", None), "on", False)
            and log_dock.toggleViewAction().isChecked()  # open (maybe behind a tab)
            and self.dock in w.tabifiedDockWidgets(log_dock)
            and timeline_strip.place(w, self.dock)
        ):
            timeline_strip.default_sizes(w, self.dock, max(log_dock.height(), 120))
        self.dock.show()
        self.dock.raise_()

    def _on_playing(self, playing: bool) -> None:
        self.actions["replay_play"].setText("&Pause" if playing else "&Play")

    def replay_scene(self, name: str) -> bool:
        path = resources.scene_path(name)
        return path is not None and self.replay.load(str(path), autoplay=True)

    def ask_replay(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Replay recording", "", "Recordings (*.jsonl);;All files (*)"
        )
        if path:
            self.replay.load(path, autoplay=True)

    def ask_export_pane(self, title: str, widget: QWidget) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self.window, f"Export {title}", f"{title.lower()}.png", "PNG (*.png);;SVG (*.svg)"
        )
        if not path:
            return
        if not path.lower().endswith((".png", ".svg")):
            path += ".png"
        ok = export_widget(widget, path)
        self.window.show_message(
            f"{title} saved to {path}" if ok else f"Cannot write {path}", error=not ok
        )

    def ask_export_video(self) -> None:
        tl = self.replay.timeline
        src = tl.source if tl is not None else ""
        if not src:
            src, _ = QFileDialog.getOpenFileName(
                self.window, "Recording to export", "", "Recordings (*.jsonl)"
            )
            if not src:
                return
        base = os.path.splitext(os.path.basename(src))[0]
        out, _ = QFileDialog.getSaveFileName(
            self.window, "Export video", f"{base}.mp4", "MP4 (*.mp4);;WebM (*.webm);;GIF (*.gif)"
        )
        if out:
            self.export_video(src, out)

    def export_video(self, recording: str, out: str, **kw) -> bool:
        """Export with a progress dialog (cancellable); the message says how it went."""
        from imemviz.app.video import ExportCancelled, ExportError, export_video
        from imemviz.io.script import ScriptError

        dlg = QProgressDialog("Exporting video…", "Cancel", 0, 100, self.window)
        dlg.setObjectName("export_progress")
        dlg.setWindowTitle("Export video")
        dlg.setMinimumDuration(0)
        dlg.setWindowModality(Qt.WindowModality.WindowModal)

        def progress(done: int, total: int) -> bool:
            dlg.setMaximum(max(total, 1))
            dlg.setValue(done)
            return not dlg.wasCanceled()

        try:
            n = export_video(recording, out, progress=progress, **kw)
        except ExportCancelled:
            self.window.show_message("Video export cancelled")
            return False
        except (ExportError, ScriptError, OSError) as e:
            self.window.show_message(f"Video export failed: {e}", error=True)
            return False
        finally:
            dlg.close()
            dlg.deleteLater()
        self.window.show_message(f"Video saved to {out} ({n} frames)")
        return True

    def shutdown(self) -> None:
        self.replay.pause()
        self.recorder.shutdown()


class _CloseFilter(QObject):
    """Stops playback and closes the recording when the window closes."""

    def __init__(self, presenter: Presenter) -> None:
        super().__init__(presenter.window)
        self.presenter = presenter

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if obj is self.presenter.window and ev.type() == QEvent.Type.Close:
            self.presenter.shutdown()
        return False


def _record_icon() -> QIcon:
    """A red dot: the universal record symbol (drawn, so no icon file is needed)."""
    from PySide6.QtGui import QColor, QPixmap

    pm = QPixmap(QSize(32, 32))
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor("#d32f2f"))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawEllipse(5, 5, 22, 22)
    p.end()
    return QIcon(pm)


def install(window: MainWindow) -> Presenter:
    """Add recording, replay, captions, scenarios and exports to `window`."""
    presenter = Presenter(window)
    window.installEventFilter(presenter.filter)
    return presenter
