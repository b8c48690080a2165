"""The main window: the GPA map in the centre, dockable panes, one action registry.

Panes are added with `add_pane` and connect to the shared `selection` and to
the `engine`'s published results; the dock layout is saved in QSettings and
restored at the next start.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSpinBox,
    QToolBar,
    QWidget,
)

import imemviz
from imemviz.app import dock_tabs
from imemviz.app.actions import ActionRegistry
from imemviz.app.crash import CrashReporter
from imemviz.app.dialogs import NewVmDialog, OpDialog
from imemviz.app.help import HelpDialog
from imemviz.app.panes.gpa_map import GpaMapPane
from imemviz.app.panes.inspector import InspectorPane
from imemviz.app.panes.legend import LegendPane
from imemviz.app.panes.log import LogPane
from imemviz.app.present import install as install_presenter
from imemviz.app.race import RaceDialog
from imemviz.app.records import OpRecord, Snapshot
from imemviz.app.selection import SelectionModel
from imemviz.app.settings import RecentFilesMenu, UserSettings, layout_qsettings, log_engine
from imemviz.app.worker import Engine
from imemviz.model.ops import OPS, Op, SetUserMemoryRegion2

if TYPE_CHECKING:
    from imemviz.app.banner import SevereBanner
    from imemviz.app.messages import ActionRecord
    from imemviz.app.navigate import GotoBox
    from imemviz.app.panes.host_marks import FolioMarks
    from imemviz.app.panes.map_marks import MapMarks
    from imemviz.app.panes.minimap import Minimap
    from imemviz.app.presentation import Presentation
    from imemviz.app.row_marks import EntriesMarks, EventLogMarks
    from imemviz.app.step_view import StepView

LAYOUT_VERSION = 1
DEFAULT_SIZE = (1600, 1000)


class MainWindow(QMainWindow):
    # Declared here for the type checker: modules that import this one (actions.py)
    # are checked before __init__'s assignments are.
    engine: Engine
    selection: SelectionModel
    map: GpaMapPane
    # Set by the install() of the module named (marks.py, navigate.py) during __init__.
    map_marks: MapMarks
    folio_marks: FolioMarks
    entries_marks: EntriesMarks
    event_marks: EventLogMarks
    step_view: StepView
    banner: SevereBanner
    minimap: Minimap
    goto_box: GotoBox
    presentation: Presentation

    def __init__(self, engine: Engine, settings: QSettings | None = None) -> None:
        super().__init__()
        self.setObjectName("main_window")
        self.setWindowTitle("imemviz")
        self.engine = engine
        self.settings = settings if settings is not None else layout_qsettings()
        self.selection = SelectionModel(self)
        self.docks: dict[str, QDockWidget] = {}
        self._dialogs: dict[str, QWidget] = {}
        self.last_record: OpRecord | None = None
        self.last_action: ActionRecord | None = None  # what F8 steps through

        self.map = GpaMapPane(engine, self.selection)
        self.setCentralWidget(self.map)
        self.inspector = InspectorPane(engine, self.selection)
        self.legend = LegendPane()
        self.log = LogPane(engine)
        self.add_pane(self.inspector, "Inspector", Qt.DockWidgetArea.RightDockWidgetArea)
        self.add_pane(self.legend, "Legend", Qt.DockWidgetArea.RightDockWidgetArea)
        self.add_pane(self.log, "Log", Qt.DockWidgetArea.BottomDockWidgetArea)

        self.registry = ActionRegistry(self)
        self.registry.build_menus(self.menuBar())
        self.toolbar = QToolBar("Actions")
        self.toolbar.setObjectName("toolbar")
        self.value = QSpinBox()
        self.value.setObjectName("write_value")
        self.value.setRange(0, 255)
        self.value.setDisplayIntegerBase(16)
        self.value.setPrefix("0x")
        self.value.setValue(0xAA)
        self.value.setToolTip("The byte guest and host writes store in the page")
        self.registry.build_toolbar(self.toolbar, {"write": self.value})
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.toolbar)
        self._build_status()
        # Part 2 panes: host folios, entries, event log, counters, step-through (panes2.py).
        from imemviz.app.panes2 import install as install_panes2

        self.panes2 = install_panes2(self)
        # The SEV-SNP RMP pane, tabbed beside the entries (imemviz/app/panes/rmp.py).
        from imemviz.app.panes.rmp import install as install_rmp

        self.rmp = install_rmp(self)
        from imemviz.app.step_rmp import install as install_step_rmp

        self.step_rmp = install_step_rmp(self)  # the RMP's part in a stepped protocol
        # Recording, replay, captions, scenarios and exports (imemviz/app/present.py).
        self.presenter = install_presenter(self)
        # State summary, File > Compare with..., copy as text (imemviz/app/report_tools.py).
        from imemviz.app.report_tools import install as install_report_tools

        self.report = install_report_tools(self)
        # Change marks in every pane, the severe-outcome banner, the action's status line.
        from imemviz.app.marks import install as install_marks

        self.marks = install_marks(self)
        # Follow changes, Go to, Back/Forward, the overview (imemviz/app/navigate.py).
        from imemviz.app.navigate import install as install_navigation

        self.navigator = install_navigation(self)

        self.map.clicked.connect(self._on_map_click)
        self.map.contextMenuRequested.connect(self._on_context_menu)
        self.map.viewChanged.connect(self.zoom_label.setText)
        self.selection.changed.connect(lambda *_: self.registry.update_state())
        engine.snapshotReady.connect(self._on_snapshot)
        engine.opApplied.connect(self._on_op)
        engine.busyChanged.connect(self._on_busy)
        engine.progress.connect(self._on_progress)
        engine.failed.connect(lambda m: self.show_message(m.splitlines()[0], error=True))
        engine.message.connect(self.show_message)
        self.registry.update_state()
        self.resize(*DEFAULT_SIZE)
        self._default_state = self.saveState(LAYOUT_VERSION)
        self._sized = self.restore_layout()
        # Recent files, the log of ops and errors, the error dialog and bug-report
        # bundles (imemviz/app/settings.py and crash.py).
        self.user_settings = UserSettings()
        self.recent = RecentFilesMenu(self, self.user_settings)
        self.crash_reporter = CrashReporter(self)
        log_engine(self)

    # ------------------------------------------------------------------ panes
    def add_pane(
        self, widget: QWidget, title: str, area=Qt.DockWidgetArea.RightDockWidgetArea
    ) -> QDockWidget:
        """Dock a pane; its dock is named `dock_<widget objectName>` for the saved layout."""
        dock = QDockWidget(title, self)
        name = widget.objectName() or title.lower()
        dock.setObjectName(f"dock_{name}")
        dock.setWidget(widget)
        dock.setToolTip(widget.toolTip())
        self.addDockWidget(area, dock)
        self.docks[name] = dock
        return dock

    def restore_layout(self) -> bool:
        """The saved geometry and dock layout; False when there is none."""
        geo = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if isinstance(geo, QByteArray | bytes):
            self.restoreGeometry(geo)
        if isinstance(state, QByteArray | bytes):
            return bool(self.restoreState(state, LAYOUT_VERSION))
        return False

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        # Once laid out: tab bars Qt left shown from the docks' moves (dock_tabs.py).
        QTimer.singleShot(0, self, lambda: dock_tabs.hide_stale(self))
        if not self._sized:
            # Dock sizes apply once the window has its size: default proportions.
            self._sized = True
            self.resizeDocks([self.docks["inspector"]], [330], Qt.Orientation.Horizontal)
            self.resizeDocks(
                [self.docks["inspector"], self.docks["legend"]], [430, 260], Qt.Orientation.Vertical
            )
            # The log and its tabs, under the Timeline's strip (timeline_strip.py).
            bottom = max(120, min(200, self.height() * 18 // 100))
            self.resizeDocks([self.docks["log"]], [bottom], Qt.Orientation.Vertical)
            if "replay" in self.docks:
                from imemviz.app import timeline_strip

                timeline_strip.default_sizes(self, self.docks["replay"], bottom)
            self._default_state = self.saveState(LAYOUT_VERSION)

    def save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState(LAYOUT_VERSION))
        self.settings.sync()

    def reset_layout(self) -> None:
        self.restoreState(self._default_state, LAYOUT_VERSION)
        for dock in self.docks.values():
            dock.show()

    def closeEvent(self, ev) -> None:
        self.save_layout()
        for d in list(self._dialogs.values()):
            if shiboken6.isValid(d):
                d.close()
        self._dialogs.clear()
        super().closeEvent(ev)

    # ------------------------------------------------------------------ status
    def _build_status(self) -> None:
        sb = self.statusBar()
        self.message = QLabel("")
        self.message.setObjectName("status_message")
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.message.setToolTip(
            "The last result; refused ops say which kernel rule refused them (full text in the log)"
        )
        self.message.setMinimumWidth(200)
        sb.addWidget(self.message, 1)
        self.busy = QProgressBar()
        self.busy.setObjectName("busy")
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(160)
        self.busy.setToolTip("The engine is working; the window stays usable")
        self.busy.hide()
        sb.addPermanentWidget(self.busy)
        self.zoom_label = QLabel("")
        self.zoom_label.setToolTip("Zoom: bytes per row of the map")
        self.zoom_label.setContentsMargins(8, 0, 8, 0)
        sb.addPermanentWidget(self.zoom_label)
        self.vm_label = QLabel("no VM")
        self.vm_label.setObjectName("vm_label")
        self.vm_label.setToolTip("VM type, TD state and counters (mmu_invalidate_seq)")
        self.vm_label.setContentsMargins(8, 0, 4, 0)
        sb.addPermanentWidget(self.vm_label)

    def show_message(self, text: str, error: bool = False) -> None:
        from imemviz.app import plot_theme

        self.message.setStyleSheet(f"color: {plot_theme.current().error}" if error else "")
        self.message.setText(text)
        self.message.setToolTip(text)
        self._said = (text, error)

    def _on_busy(self, busy: bool, label: str) -> None:
        self.busy.setVisible(busy)
        if busy:
            self.busy.setRange(0, 0)
            said = getattr(self, "_said", ("", False))
            self.show_message(f"Working: {label}…")
            self._said, self._working = said, self.message.text()
        elif self.message.text() == getattr(self, "_working", None):
            # Done, and nothing was said since: the line gives back what was said last
            # (the scene's last caption at launch), never a stale "Working: …".
            self.show_message(*self._said)

    def _on_progress(self, done: int, total: int) -> None:
        self.busy.setRange(0, max(total, 1))
        self.busy.setValue(done)

    def _on_snapshot(self, snap: Snapshot) -> None:
        st = snap.stats
        parts = [snap.config.type, f"kernel {snap.config.kernel}"]
        if st.get("td_state"):
            parts.append(st["td_state"])
        if st.get("vm_dead"):
            parts.append("DEAD")
        parts.append(f"seq {st.get('mmu_invalidate_seq')}")
        parts.append(f"{len(snap.slots)} memslots")
        parts.append(f"host free {human_size(st.get('host_free_bytes', 0))}")
        self.vm_label.setText(" · ".join(parts))
        style = "color: #b71c1c; font-weight: bold" if st.get("vm_dead") else ""
        if self.vm_label.styleSheet() != style:  # setting a style sheet re-polishes: ~1 ms
            self.vm_label.setStyleSheet(style)
        name = os.path.basename(snap.source) if snap.source else "untitled"
        title = f"imemviz – {name} ({snap.config.type}, {snap.op_count} ops)"
        if self.windowTitle() != title:
            self.setWindowTitle(title)
        self.registry.update_state()

    def _on_op(self, rec: OpRecord) -> None:
        # The status bar names the user's action and its outcome once it is done
        # (imemviz/app/marks.py); an op alone is the log's business.
        self.last_record = rec

    # ------------------------------------------------------------------ map
    def _on_map_click(self, gfn: int) -> None:
        self.registry["act"].trigger()

    def _on_context_menu(self, gfn: int, pos) -> None:
        self.registry.update_state()
        menu = self.registry.context_menu()
        self._dialogs["context_menu"] = menu
        menu.popup(pos)

    def write_value(self) -> int:
        return self.value.value()

    # ------------------------------------------------------------------ files
    def open_file(self, path: str) -> None:
        self.show_message(f"Opening {path}…")
        self.recent.expect(path)  # File > Open recent, once it has opened
        self.engine.open(path)

    def load_default_scene(self) -> None:
        self.engine.load_scene("default")

    def ask_open_path(self) -> str:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open state or recording",
            "",
            "imemviz files (*.json *.json.gz *.json.zst *.jsonl);;All files (*)",
        )
        return path

    def ask_save_path(self, title: str, filters: str, suffix: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self, title, "", filters)
        if path and not any(path.endswith(s) for s in (".json", ".json.gz", ".json.zst", ".jsonl")):
            path += suffix
        return path

    # ------------------------------------------------------------------ dialogs
    def _show(self, key: str, dlg: QWidget) -> QWidget:
        old = self._dialogs.pop(key, None)
        if old is not None and shiboken6.isValid(old):
            old.close()
            old.deleteLater()
        self._dialogs[key] = dlg
        dlg.show()
        dlg.raise_()
        return dlg

    def run_op_dialog(
        self, name: str, *, values=None, title: str = "", intro: str = "", check=None
    ) -> OpDialog:
        """A non-modal op form; accepting it applies the op as one undo step."""
        dlg = OpDialog(name, values, title=title, intro=intro, check=check, parent=self)

        def done() -> None:
            if dlg.op is not None:
                self.engine.apply_ops([dlg.op], title or name)

        dlg.accepted.connect(done)
        self._show(f"op_{name}", dlg)
        return dlg

    def new_vm_dialog(self) -> NewVmDialog:
        dlg = NewVmDialog(self)

        def done() -> None:
            if dlg.config is not None:
                self.engine.new_vm(dlg.config, dlg.ops)

        dlg.accepted.connect(done)
        self._show("new_vm", dlg)
        return dlg

    def memslot_dialog(self) -> OpDialog:
        snap = self.engine.snapshot
        assert snap is not None
        used = {s.id for s in snap.slots}
        slot = next(i for i in range(32764) if i not in used)
        end = max((s.end_gfn for s in snap.slots), default=0)
        start = (
            self.selection.gfn
            if self.selection.gfn is not None and snap.slot_at(self.selection.gfn) is None
            else -(-end // 262144) * 262144
        )
        hva = max((s.userspace_addr + s.npages * 4096 for s in snap.slots), default=0x7F0000000000)
        private = snap.config.has_private_mem
        values = {
            "slot": slot,
            "guest_phys_addr": start << 12,
            "memory_size": 1 << 30,
            "userspace_addr": -(-hva // (1 << 30)) * (1 << 30),
            "flags": ["GUEST_MEMFD"] if private and snap.fds else [],
            "guest_memfd": snap.fds[0] if snap.fds else 0,
        }

        def check(op: Op) -> str | None:
            if isinstance(op, SetUserMemoryRegion2) and op.memory_size == 0:
                return "memory_size: 0 deletes a memslot; use VM > Delete memslot"
            return None

        return self.run_op_dialog(
            "set_user_memory_region2",
            values=values,
            title="Create memslot",
            check=check,
            intro="KVM_SET_USER_MEMORY_REGION2 for a new slot. With "
            "GUEST_MEMFD the slot's private memory comes from the "
            "guest_memfd at the given offset.",
        )

    def memslot_delete_dialog(self) -> OpDialog:
        snap = self.engine.snapshot
        assert snap is not None
        g = self.selection.gfn
        slot = snap.slot_at(g) if g is not None else None
        slot = slot or (snap.slots[0] if snap.slots else None)
        values = {
            "slot": slot.id if slot else 0,
            "memory_size": 0,
            "guest_phys_addr": (slot.base_gfn << 12) if slot else 0,
        }
        return self.run_op_dialog(
            "set_user_memory_region2",
            values=values,
            title="Delete memslot",
            intro="KVM_SET_USER_MEMORY_REGION2 with memory_size 0 "
            "deletes the slot: its leaves are zapped and its "
            "guest_memfd binding dropped.",
        )

    def gmem_close_dialog(self) -> OpDialog:
        snap = self.engine.snapshot
        fd = snap.fds[0] if snap is not None and snap.fds else 3
        return self.run_op_dialog("close", values={"fd": fd}, title="Close guest_memfd")

    def memory_failure_dialog(self) -> OpDialog:
        pfn = 0
        info = self.inspector.info
        if info is not None:
            m = info.get("private_mapping") or info.get("shared_mapping")
            f = info.get("folio")
            if m is not None:
                pfn = m["pfn"]
            elif f is not None:
                pfn = f["pfn"]
        return self.run_op_dialog("memory_failure", values={"pfn": pfn}, title="Memory failure")

    def init_mem_region_dialog(self) -> OpDialog:
        span = self.selection.span() or (0, 1)
        return self.run_op_dialog(
            "tdx_init_mem_region",
            values={"gpa": span[0] << 12, "nr_pages": span[1] - span[0]},
            title="Add initial TD pages",
        )

    def any_op_dialog(self) -> OpDialog:
        from PySide6.QtWidgets import QInputDialog

        names = sorted(n for n in OPS if n not in ("inspect", "stats"))
        name, ok = QInputDialog.getItem(self, "Apply an op", "op", names, 0, False)
        if not ok:
            return None  # type: ignore[return-value]
        g = self.selection.gfn
        values = {"gpa": g << 12} if g is not None else {}
        return self.run_op_dialog(name, values=values, title=name)

    def race_dialog(self) -> RaceDialog:
        dlg = RaceDialog(self.engine, self.selection, note=self.log.note, parent=self)
        self._show("race", dlg)
        return dlg

    def help_dialog(self) -> HelpDialog:
        return self._show("help", HelpDialog(self))  # type: ignore[return-value]

    def about(self) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Information,
            "About imemviz",
            f"imemviz {imemviz.__version__}\n\nA visualizer and simulator of KVM "
            "private memory: guest_memfd, memory attributes, the TDP MMU and "
            "TDX Secure EPT.",
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.setModal(False)
        self._show("about", box)

    # ------------------------------------------------------------------ testing aids
    def wait_drawn(self) -> bool:
        """Engine idle and the map showing the current state (for tests and screenshots)."""
        return (
            self.engine.idle
            and self.engine.snapshot is not None
            and self.map.is_drawn()
            and not self.map.animator.running
        )


def human_size(n: int) -> str:
    """Bytes for a person: 15.9G, 512M, 4K (binary units)."""
    for suffix, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.1f}{suffix}" if v < 100 and v != int(v) else f"{v:.0f}{suffix}"
    return f"{n}B"
