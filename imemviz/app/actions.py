"""The one registry of user actions: menus, toolbar, map context menu, shortcuts, tooltips.

Every action is an `ActionSpec`; its handler issues contract ops through a
plan (`imemviz.io.plans`) that the engine thread applies as one undo step.
QActions are named `act_<id>` so tests find and trigger them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import QMenu, QStyle, QToolBar, QWidget

from imemviz.app import messages as M
from imemviz.io import plans
from imemviz.model import ops as O

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow

Handler = Callable[["MainWindow"], object]  # what it returns is not used


@attrs.frozen
class ActionSpec:
    id: str
    text: str
    tip: str
    menu: str
    handler: Handler
    icon: str = ""  # resources/icons/<icon>.svg, or "SP_..." for a QStyle standard icon
    shortcut: str | tuple[str, ...] = ""
    toolbar: bool = False
    context: bool = False  # in the map's right-click menu
    checkable: bool = False
    checked: bool = False
    needs: str = ""  # "page", "vm", "tdx", "td_building", "undo", "redo"
    group: str = ""  # actions in the same menu with different groups get a separator


# ------------------------------------------------------------------ handlers
def _page(w: MainWindow) -> int | None:
    g = w.selection.gfn
    if g is None:
        w.show_message("Select a page on the map first (click it).")
    return g


def _span(w: MainWindow) -> tuple[int, int] | None:
    s = w.selection.span()
    if s is None:
        w.show_message("Select a page or drag a range on the map first.")
    return s


def _on_page(fn: Callable[[MainWindow, int], None]) -> Handler:
    def h(w: MainWindow) -> None:
        g = _page(w)
        if g is not None:
            fn(w, g)

    return h


def _on_span(fn: Callable[[MainWindow, int, int], None]) -> Handler:
    def h(w: MainWindow) -> None:
        s = _span(w)
        if s is not None:
            fn(w, *s)

    return h


def _default(w: MainWindow, g: int) -> None:
    w.engine.submit(lambda vm: plans.default_click(vm, g), "default action")


def _read(private: bool | None) -> Handler:
    return _on_page(lambda w, g: w.engine.submit(plans.guest_access(g, private=private)))


def _write(private: bool | None) -> Handler:
    return _on_page(
        lambda w, g: w.engine.submit(
            plans.guest_access(g, write=True, value=w.write_value(), private=private)
        )
    )


def _convert(private: bool) -> Handler:
    def h(w: MainWindow, a: int, b: int) -> None:
        discard = w.registry.checked("discard")
        w.engine.submit(lambda vm: plans.convert(vm, a, b, private, discard))

    return _on_span(h)


def _op_dialog(name: str, **kw) -> Handler:
    def h(w: MainWindow) -> None:
        w.run_op_dialog(name, **kw)

    return h


def _save_state(w: MainWindow) -> None:
    path = w.ask_save_path("Save state", "State files (*.json.zst *.json.gz *.json)", ".json.zst")
    if path:
        w.engine.save_state(path)


def _save_recording(w: MainWindow) -> None:
    path = w.ask_save_path("Save recording", "Recordings (*.jsonl)", ".jsonl")
    if path:
        w.engine.save_recording(path)


def _open(w: MainWindow) -> None:
    path = w.ask_open_path()
    if path:
        w.open_file(path)


def _import_trace(w: MainWindow) -> None:
    from imemviz.app.observed import import_dialog

    dialog = import_dialog(w)
    if dialog is not None:  # None: the file chooser was cancelled (closeEvent closes these)
        w._dialogs["import_trace"] = dialog


def _export_perfetto(w: MainWindow) -> None:
    from PySide6.QtWidgets import QFileDialog

    path, _ = QFileDialog.getSaveFileName(
        w, "Export session as Perfetto trace", "", "Perfetto (*.pftrace)"
    )
    if not path:
        return
    if not path.endswith(".pftrace"):
        path += ".pftrace"
    w.engine.post(M.ExportPerfetto(path))


def _select_all(w: MainWindow) -> None:
    snap = w.engine.snapshot
    if snap is not None:
        w.selection.set_range(0, snap.extent)


SPECS: tuple[ActionSpec, ...] = (
    # File
    ActionSpec(
        "new_vm",
        "&New VM…",
        "Start over with a new VM (type, host memory, guest_memfd "
        "folio size, shared page size, TDX level, seed, RAM layout)",
        "&File",
        lambda w: w.new_vm_dialog(),
        "new_vm",
        "Ctrl+N",
        toolbar=True,
    ),
    ActionSpec(
        "open",
        "&Open…",
        "Open a state file (.json, .json.gz, .json.zst) or a recording (.jsonl)",
        "&File",
        _open,
        "SP_DialogOpenButton",
        "Ctrl+O",
        toolbar=True,
    ),
    ActionSpec(
        "save_state",
        "&Save state…",
        "Save the whole state as a state file (continue exactly here later)",
        "&File",
        _save_state,
        "SP_DialogSaveButton",
        "Ctrl+S",
        toolbar=True,
        needs="vm",
    ),
    ActionSpec(
        "save_recording",
        "Save &recording…",
        "Save the start and every op since as a "
        "recording: a script that `imemviz run` replays to this state",
        "&File",
        _save_recording,
        "",
        "Ctrl+Shift+S",
        needs="vm",
    ),
    ActionSpec(
        "import_trace",
        "&Import trace…",
        "Read what a real host traced (ftrace, trace-cmd, perf, QEMU) into an observed "
        "timeline and open it in its own window",
        "&File",
        _import_trace,
        "",
        "Ctrl+I",
        group="scene",
    ),
    ActionSpec(
        "export_perfetto",
        "Export session as &Perfetto trace…",
        "The session's events as a host would trace them, as a .pftrace for ui.perfetto.dev",
        "&File",
        _export_perfetto,
        "",
        "",
        needs="vm",
        group="scene",
    ),
    ActionSpec(
        "load_default",
        "Open the &default scene",
        "The built-in 4 GiB TDX TD",
        "&File",
        lambda w: w.load_default_scene(),
        "",
        "",
        group="scene",
    ),
    ActionSpec(
        "quit",
        "&Quit",
        "Close imemviz (the pane layout is saved)",
        "&File",
        lambda w: w.close(),
        "SP_DialogCloseButton",
        "Ctrl+Q",
        group="quit",
    ),
    # Edit
    ActionSpec(
        "undo",
        "&Undo",
        "Undo the last action (the state is rebuilt by replay)",
        "&Edit",
        lambda w: w.engine.undo(),
        "undo",
        "Ctrl+Z",
        toolbar=True,
        needs="undo",
    ),
    ActionSpec(
        "redo",
        "&Redo",
        "Redo the last undone action",
        "&Edit",
        lambda w: w.engine.redo(),
        "redo",
        ("Ctrl+Shift+Z", "Ctrl+Y"),
        toolbar=True,
        needs="redo",
    ),
    ActionSpec(
        "select_all",
        "Select the whole guest",
        "Select every page of the map",
        "&Edit",
        _select_all,
        "",
        "Ctrl+A",
        group="sel",
    ),
    ActionSpec(
        "clear_selection",
        "Clear the selection",
        "Select nothing: no page, no range",
        "&Edit",
        lambda w: w.selection.clear(),
        "",
        "Esc",
        group="sel",
    ),
    # View
    ActionSpec(
        "zoom_in",
        "Zoom &in",
        "Fewer pages per row (Ctrl+wheel on the map)",
        "&View",
        lambda w: w.map.zoom(1),
        "zoom_in",
        ("+", "="),
        toolbar=True,
    ),
    ActionSpec(
        "zoom_out",
        "Zoom &out",
        "More pages per row",
        "&View",
        lambda w: w.map.zoom(-1),
        "zoom_out",
        "-",
        toolbar=True,
    ),
    ActionSpec(
        "zoom_all",
        "Show the &whole guest",
        "Zoom out until every memslot is visible",
        "&View",
        lambda w: w.map.zoom_all(animate=True),
        "zoom_all",
        "0",
        toolbar=True,
    ),
    ActionSpec(
        "zoom_selection",
        "Zoom to the &selection",
        "Fit the selected range",
        "&View",
        _on_span(lambda w, a, b: w.map.show_range(a, b, animate=True)),
        "",
        "Z",
    ),
    ActionSpec(
        "reset_layout",
        "Reset pane layout",
        "Put every pane back where it started",
        "&View",
        lambda w: w.reset_layout(),
        "",
        "",
        group="layout",
    ),
    # Guest
    ActionSpec(
        "act",
        "Default action on the selection",
        "What a click does: accept and touch a TDX private page, a guest read elsewhere",
        "&Guest",
        _on_page(_default),
        "",
        ("Return", "Enter"),
        context=True,
        needs="page",
    ),
    ActionSpec(
        "read",
        "Guest &read",
        "The guest reads the page; the access type follows its attribute",
        "&Guest",
        _read(None),
        "touch",
        "R",
        toolbar=True,
        context=True,
        needs="page",
        group="access",
    ),
    ActionSpec(
        "write",
        "Guest &write",
        "The guest writes the toolbar's value to the page (access type follows the attribute)",
        "&Guest",
        _write(None),
        "write",
        "W",
        toolbar=True,
        context=True,
        needs="page",
        group="access",
    ),
    ActionSpec(
        "read_private",
        "Guest read as private",
        "A private access whatever the attribute: a mismatch exits with KVM_EXIT_MEMORY_FAULT",
        "&Guest",
        _read(True),
        "",
        "",
        context=True,
        needs="page",
        group="access",
    ),
    ActionSpec(
        "read_shared",
        "Guest read as shared",
        "A shared access whatever the attribute (TDX: the GPA with the shared bit)",
        "&Guest",
        _read(False),
        "",
        "",
        context=True,
        needs="page",
        group="access",
    ),
    ActionSpec(
        "write_private",
        "Guest write as private",
        "A private write of the toolbar's value whatever the attribute",
        "&Guest",
        _write(True),
        "",
        "",
        needs="page",
        group="access",
    ),
    ActionSpec(
        "write_shared",
        "Guest write as shared",
        "A shared write of the toolbar's value whatever the attribute",
        "&Guest",
        _write(False),
        "",
        "",
        needs="page",
        group="access",
    ),
    ActionSpec(
        "accept_touch",
        "&Accept and touch",
        "TDX: TDG.MEM.PAGE.ACCEPT, then access the page (what a well-behaved TD does)",
        "&Guest",
        _on_page(lambda w, g: w.engine.submit(lambda vm: plans.accept_and_touch(vm, g))),
        "accept_touch",
        "T",
        toolbar=True,
        context=True,
        needs="tdx",
        group="tdx",
    ),
    ActionSpec(
        "accept",
        "Accept",
        "TDX: TDG.MEM.PAGE.ACCEPT at 4K (AUG + accept on a page "
        "with no S-EPT leaf, PENDING -> MAPPED otherwise)",
        "&Guest",
        _on_page(lambda w, g: w.engine.submit(plans.accept(g))),
        "accept",
        "A",
        context=True,
        needs="tdx",
        group="tdx",
    ),
    ActionSpec(
        "touch_no_accept",
        "Touch without accept",
        "TDX: a private access to a page "
        "never accepted: AUG leaves it PENDING and the TD is killed",
        "&Guest",
        _on_page(lambda w, g: w.engine.submit(plans.touch_without_accept(g))),
        "touch_no_accept",
        "K",
        context=True,
        needs="tdx",
        group="tdx",
    ),
    ActionSpec(
        "init_mem_region",
        "Add initial TD pages…",
        "KVM_TDX_INIT_MEM_REGION: TDH.MEM.PAGE.ADD measured pages before the TD is finalized",
        "&Guest",
        lambda w: w.init_mem_region_dialog(),
        "",
        "",
        needs="td_building",
        group="tdx2",
    ),
    ActionSpec(
        "finalize",
        "Finalize the TD",
        "KVM_TDX_FINALIZE_VM (TDH.MR.FINALIZE): the TD can run",
        "&Guest",
        lambda w: w.engine.submit(plans.Plan("finalize", (O.TdxFinalizeVm(),))),
        "finalize",
        "",
        needs="td_building",
        group="tdx2",
    ),
    # Memory (VMM)
    ActionSpec(
        "to_private",
        "Convert to &private",
        "KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) on the "
        "selection (with 'discard', madvise DONTNEED on the shared memory as QEMU does)",
        "&Memory",
        _convert(True),
        "to_private",
        "P",
        toolbar=True,
        context=True,
        needs="page",
    ),
    ActionSpec(
        "to_shared",
        "Convert to &shared",
        "KVM_SET_MEMORY_ATTRIBUTES(0) on the "
        "selection (with 'discard', PUNCH_HOLE the guest_memfd range as QEMU does)",
        "&Memory",
        _convert(False),
        "to_shared",
        "S",
        toolbar=True,
        context=True,
        needs="page",
    ),
    ActionSpec(
        "discard",
        "Discard the old backing on conversion",
        "As QEMU does: punch the "
        "guest_memfd pages when going shared, drop the shared pages when going private. "
        "Off: the old memory stays allocated (held twice)",
        "&Memory",
        lambda w: None,
        "",
        "",
        checkable=True,
        checked=True,
    ),
    ActionSpec(
        "punch_hole",
        "Punch &hole",
        "fallocate(PUNCH_HOLE|KEEP_SIZE) on the guest_memfd "
        "range behind the selection: folios freed, private leaves zapped",
        "&Memory",
        _on_span(lambda w, a, b: w.engine.submit(lambda vm: plans.punch_hole(vm, a, b))),
        "punch_hole",
        "H",
        toolbar=True,
        context=True,
        needs="page",
        group="backing",
    ),
    ActionSpec(
        "fallocate",
        "Allocate guest_memfd",
        "fallocate(KEEP_SIZE): allocate the folios behind the selection without mapping them",
        "&Memory",
        _on_span(lambda w, a, b: w.engine.submit(lambda vm: plans.allocate(vm, a, b))),
        "fallocate",
        "",
        context=True,
        needs="page",
        group="backing",
    ),
    ActionSpec(
        "dontneed",
        "madvise &DONTNEED",
        "madvise(MADV_DONTNEED) on the VMM memory behind "
        "the selection: host pages dropped, shared leaves zapped (mmu notifier)",
        "&Memory",
        _on_span(lambda w, a, b: w.engine.submit(lambda vm: plans.dontneed(vm, a, b))),
        "dontneed",
        "D",
        context=True,
        needs="page",
        group="backing",
    ),
    ActionSpec(
        "memory_failure",
        "&Memory failure on this page",
        "A memory error on the host page behind the selected page (memory_failure(pfn))",
        "&Memory",
        _on_page(lambda w, g: w.engine.submit(lambda vm: plans.memory_failure(vm, g))),
        "memory_failure",
        "M",
        context=True,
        needs="page",
        group="fail",
    ),
    ActionSpec(
        "memory_failure_pfn",
        "Memory failure on a pfn…",
        "memory_failure on any host pfn",
        "&Memory",
        lambda w: w.memory_failure_dialog(),
        "",
        "",
        needs="vm",
        group="fail",
    ),
    ActionSpec(
        "race",
        "Fault vs invalidation &race…",
        "Guided: hold a fault on the selected "
        "page, invalidate it, resume: see mmu_invalidate_seq force a retry",
        "&Memory",
        lambda w: w.race_dialog(),
        "race",
        "F9",
        toolbar=True,
        context=True,
        needs="page",
        group="race",
    ),
    # VM
    ActionSpec(
        "memslot_create",
        "Create &memslot…",
        "KVM_SET_USER_MEMORY_REGION2 with a new slot (optionally bound to a guest_memfd)",
        "V&M",
        lambda w: w.memslot_dialog(),
        "memslot_new",
        "",
        needs="vm",
    ),
    ActionSpec(
        "memslot_delete",
        "&Delete memslot…",
        "KVM_SET_USER_MEMORY_REGION2 with memory_size 0",
        "V&M",
        lambda w: w.memslot_delete_dialog(),
        "memslot_delete",
        "",
        needs="vm",
    ),
    ActionSpec(
        "gmem_create",
        "Create &guest_memfd…",
        "KVM_CREATE_GUEST_MEMFD",
        "V&M",
        _op_dialog("create_guest_memfd", values={"size": "1G"}, title="Create guest_memfd"),
        "gmem_new",
        "",
        needs="vm",
        group="gmem",
    ),
    ActionSpec(
        "gmem_close",
        "&Close guest_memfd…",
        "close(fd): the last reference unbinds the file, zaps what it mapped and frees its folios",
        "V&M",
        lambda w: w.gmem_close_dialog(),
        "gmem_close",
        "",
        needs="vm",
        group="gmem",
    ),
    ActionSpec(
        "any_op",
        "Apply any &op…",
        "A form for any op of the contract",
        "V&M",
        lambda w: w.any_op_dialog(),
        "",
        "Ctrl+E",
        needs="vm",
        group="any",
    ),
    # Help
    ActionSpec(
        "help",
        "&What am I looking at?",
        "The panes, the colours, the mouse and keys",
        "&Help",
        lambda w: w.help_dialog(),
        "SP_DialogHelpButton",
        "F1",
    ),
    ActionSpec("about", "&About imemviz", "Version and what this is", "&Help", lambda w: w.about()),
)

MENUS = ("&File", "&Edit", "&View", "&Guest", "&Memory", "V&M", "&Help")


class ActionRegistry:
    """QActions for SPECS, owned by the window; menus, toolbar and context menu from it."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.specs = {s.id: s for s in SPECS}
        self.actions: dict[str, QAction] = {}
        for spec in SPECS:
            self.actions[spec.id] = self._make(spec)

    def _make(self, spec: ActionSpec) -> QAction:
        w = self.window
        act = QAction(spec.text, w)
        act.setObjectName(f"act_{spec.id}")
        keys = (spec.shortcut,) if isinstance(spec.shortcut, str) else spec.shortcut
        keys = tuple(k for k in keys if k)
        if keys:
            act.setShortcuts([QKeySequence(k) for k in keys])
        tip = spec.tip + (f" ({keys[0]})" if keys else "")
        act.setToolTip(tip)
        act.setStatusTip(spec.tip)
        icon = _icon(w, spec.icon)
        if icon is not None:
            act.setIcon(icon)
        if spec.checkable:
            act.setCheckable(True)
            act.setChecked(spec.checked)
        else:
            act.triggered.connect(lambda _checked=False, s=spec: s.handler(self.window))
        w.addAction(act)  # shortcuts work wherever the focus is in the window
        return act

    def __getitem__(self, key: str) -> QAction:
        return self.actions[key]

    def checked(self, key: str) -> bool:
        return self.actions[key].isChecked()

    def build_menus(self, menubar) -> None:
        menus = {name: menubar.addMenu(name) for name in MENUS}
        last_group: dict[str, str] = {}
        for spec in SPECS:
            m = menus[spec.menu]
            if spec.menu in last_group and last_group[spec.menu] != spec.group:
                m.addSeparator()
            last_group[spec.menu] = spec.group
            m.addAction(self.actions[spec.id])
        for m in menus.values():
            m.setToolTipsVisible(True)

    def build_toolbar(
        self, toolbar: QToolBar, extra_after: dict[str, QWidget] | None = None
    ) -> None:
        last_menu = None
        for spec in SPECS:
            if not spec.toolbar:
                continue
            if last_menu is not None and spec.menu != last_menu:
                toolbar.addSeparator()
            last_menu = spec.menu
            toolbar.addAction(self.actions[spec.id])
            if extra_after and spec.id in extra_after:
                toolbar.addWidget(extra_after[spec.id])

    def context_menu(self) -> QMenu:
        menu = QMenu(self.window)
        menu.setObjectName("map_context_menu")
        menu.setToolTipsVisible(True)
        last = None
        for spec in SPECS:
            if not spec.context or not self.actions[spec.id].isEnabled():
                continue
            if last is not None and (spec.menu, spec.group) != last:
                menu.addSeparator()
            last = (spec.menu, spec.group)
            menu.addAction(self.actions[spec.id])
        return menu

    def update_state(self) -> None:
        """Enable what makes sense for the current VM and selection; name undo/redo."""
        w = self.window
        snap = w.engine.snapshot
        has_vm = snap is not None
        has_page = w.selection.gfn is not None
        is_tdx = building = can_undo = can_redo = False
        if snap is not None:
            is_tdx = snap.config.is_tdx
            # The TD's build actions follow the TD's state, not the selection: both are
            # KVM_TDX ioctls that KVM accepts only before KVM_TDX_FINALIZE_VM.
            building = (
                is_tdx
                and snap.stats.get("td_state") == "BUILDING"
                and not snap.stats.get("vm_dead")
            )
            can_undo, can_redo = snap.can_undo, snap.can_redo
        for spec in SPECS:
            ok = {
                "": True,
                "vm": has_vm,
                "page": has_vm and has_page,
                "tdx": is_tdx and has_page,
                "td_building": building,
                "undo": can_undo,
                "redo": can_redo,
            }[spec.needs]
            self.actions[spec.id].setEnabled(ok)
        if snap is not None:
            self.actions["undo"].setText(f"&Undo {snap.undo_label}" if snap.can_undo else "&Undo")
            self.actions["redo"].setText(f"&Redo {snap.redo_label}" if snap.can_redo else "&Redo")


def _icon(w, name: str) -> QIcon | None:
    if not name:
        return None
    if name.startswith("SP_"):
        return w.style().standardIcon(getattr(QStyle.StandardPixmap, name))
    from imemviz import resources

    try:
        path = resources.resource_path("icons", name + ".svg")
    except FileNotFoundError:
        return None
    return QIcon(str(path)) if path.is_file() else None
