"""Finding your way on the GPA map: follow changes, Go to, Back/Forward, the overview.

`install(window)` adds to the main window:

- **Follow changes** (View menu, on by default): after every command the map looks at
  the gfn ranges it changed: the `ActionRecord.changes` of the action, undo, redo or
  timeline move (`imemviz.model.changes`, the same ranges the change marks outline).  During a replay it frames them
  when they are off the screen or drawn smaller than `LEGIBLE_PX` both ways; in live
  use, when the change is off the screen, or is small and not where you pointed (the
  selection).  Framing is a smooth pan/zoom (`map_animator`) to the view
  `map_frame.frame_target` picks, recorded for **Back** (Alt+Left) / **Forward**
  (Alt+Right), like Zoom to selection (Z), Go to and the overview.
- **Fold empty memory** (View menu, on): long runs of empty memory fold into bands.
- **Go to** (toolbar box, Ctrl+G): a gpa, gfn, hva, host pfn or memslot (`goto.py`);
  framed, selected, or one red line saying what is wrong.
- **the overview** (`panes/minimap.py`) between the map and its scroll bar.

The changed ranges also stay unfolded (the map's `focus`) until the next change.  When
an op refolds the map (a 2M folio fills the empty rows around a lone page), the page the
user looks at (the selection, else the first changed page on screen) keeps its place on
the screen (`MapLayout.hold`): the rows open around it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from imemviz.app import messages as M
from imemviz.app.goto import USAGE, GotoError, Target, parse_goto
from imemviz.app.menus import bar_menus
from imemviz.app.panes.map_frame import clip, frame_target, needs_frame, on_screen, visible_part
from imemviz.app.panes.minimap import Minimap
from imemviz.model.raster import merge_ranges

GOTO_KEY = "go to pfn"  # the engine's answers to Go to (messages.Answer.key)

if TYPE_CHECKING:
    from imemviz.app.messages import ActionRecord
    from imemviz.app.records import Snapshot
    from imemviz.app.window import MainWindow

FOCUS_MAX_GFNS = 1 << 22  # changes up to 16 GiB stay unfolded; bigger ones show as bands


class Navigator(QObject):
    """Follows changes and answers Go to for one main window."""

    framed = Signal(object)  # the gfn ranges the map moved to show
    resolved = Signal(object)  # Target or GotoError, from the engine thread

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.pane = window.map
        self.follow = True
        self._pending: list[tuple[int, int]] = []
        self._session: int | None = None
        self.last_framed: tuple[tuple[int, int], ...] = ()
        self.actions: dict[str, QAction] = {}  # View menu actions, filled by install()
        # The record of a command comes just before its snapshot (worker._flush_action).
        window.engine.actionDone.connect(self._on_action)
        window.engine.snapshotReady.connect(self._on_snapshot)
        self.resolved.connect(self._on_resolved, Qt.ConnectionType.QueuedConnection)
        window.engine.answered.connect(self._on_answer)

    # ------------------------------------------------------------------ follow
    def replaying(self) -> bool:
        presenter = getattr(self.window, "presenter", None)
        return bool(presenter is not None and presenter.replay.active)

    def _on_action(self, rec: ActionRecord) -> None:
        """What an action, an undo, a redo or a seek changed: the marks' ranges.  An op
        that may have changed anything (a memslot moved, a zap of everything) is not one
        place to frame."""
        changes = rec.changes
        if not changes.everything:
            if not self._pending:
                self._hold(changes.gfns)
            self._pending.extend(changes.gfns)

    def _hold(self, ranges) -> None:
        """Before the op's refold (its snapshot comes next): keep the page the user looks
        at where it is on the screen, so that rows the op unfolds around it (a 2M folio
        filling the empty rows beside a lone page) open below and above it, not push it
        off the screen.  That page: the selection when the op changed it, else the first
        changed page on screen, else the selection."""
        lay = self.pane.layout_
        g = self.window.selection.gfn
        ranges = clip(ranges, lay.extent)
        if g is None or not any(a <= g < b for a, b in ranges):
            shown = (visible_part(lay, a, b) for a, b in ranges)
            g = next((p[0] for p in shown if p is not None), g)
        lay.hold(g)

    def _on_snapshot(self, snap: Snapshot) -> None:
        ranges = merge_ranges(self._pending)
        self._pending = []
        try:
            if snap.session != self._session:
                self._session = snap.session
                self.last_framed = ()
            if ranges:
                self.frame_change(ranges)
        finally:
            self.pane.layout_.hold(None)

    def frame_change(
        self, ranges: list[tuple[int, int]], force: bool = False, legible: bool = False
    ) -> bool:
        """What an op changed: keep it unfolded, and frame it if it cannot be seen.
        `force`: frame even with Follow changes off; `legible`: frame what is too small
        to see as a replay does (a step-through), wherever the selection is.
        Returns whether the map moved."""
        pane = self.pane
        lay = pane.layout_
        total = sum(b - a for a, b in ranges)
        before = lay.foldmap().key()
        pane.focus = tuple(ranges[:64]) if total <= FOCUS_MAX_GFNS else ()
        pane._update_pins()
        if lay.foldmap().key() != before:
            pane.refresh()
        if not (self.follow or force):
            return False
        if self.replaying() or force or legible:
            move = needs_frame(lay, ranges)
        else:
            # Live: what you pointed at, you see; follow what happened elsewhere.
            span = self.window.selection.span()
            pointed = span is not None and any(a < span[1] and span[0] < b for a, b in ranges)
            move = not on_screen(lay, ranges) if pointed else needs_frame(lay, ranges)
        if not move:
            return False
        target = frame_target(lay, ranges)
        if target is None:
            return False
        self.last_framed = tuple(ranges)
        pane.go_to(target, animate=True)
        self.framed.emit(tuple(ranges))
        return True

    # ------------------------------------------------------------------ go to
    def go_to_text(self, text: str) -> Target | None:
        """Parse and go; a pfn is resolved on the engine thread (answered later).
        Raises GotoError for input it cannot use."""
        snap = self.window.engine.snapshot
        if snap is None:
            raise GotoError("no VM is loaded")
        shared_bit = None
        if snap.config.is_tdx:
            shared_bit = 1 << (snap.config.gpaw - 1)
        target = parse_goto(text, snap.slots, snap.extent, shared_bit)
        if target.pfn is not None:  # not resolved yet: the engine thread knows the pfn
            self.window.engine.post(M.ResolvePfn(GOTO_KEY, target.pfn))
            return target
        self.show_target(target)
        return target

    def _on_answer(self, a: M.Answer) -> None:
        if a.key == GOTO_KEY:
            self.resolved.emit(a.value if a.error is None else GotoError(a.error))

    def _on_resolved(self, answer) -> None:
        box = getattr(self.window, "goto_box", None)
        if isinstance(answer, GotoError):
            if box is not None:
                box.show_error(str(answer))
            return
        self.show_target(answer)
        if box is not None:
            box.show_ok(answer.label)

    def show_target(self, target: Target) -> None:
        a, b = target.gfns
        extent = self.pane.layout_.extent
        b = min(b, extent)
        if b <= a:
            return
        sel = self.window.selection
        if b - a == 1:
            sel.set_gfn(a)
        else:
            sel.set_range(a, b, cursor=a)
        pane = self.pane
        pane.focus = ((a, b),) if b - a <= FOCUS_MAX_GFNS else ((a, a + 1),)
        pane._update_pins()
        view = frame_target(pane.layout_, [(a, b)])
        if view is not None:
            pane.go_to(view, animate=True)
        self.window.show_message(f"Go to {target.label}")


class _Edit(QLineEdit):
    """A line edit that keeps Return/Enter (the map's default action is bound to them
    window-wide) and Escape to itself while it has the focus."""

    def event(self, ev) -> bool:
        if ev.type() == QEvent.Type.ShortcutOverride and ev.key() in (
            Qt.Key.Key_Return,
            Qt.Key.Key_Enter,
            Qt.Key.Key_Escape,
        ):
            ev.accept()
            return True
        return super().event(ev)

    def keyPressEvent(self, ev) -> None:
        if ev.key() == Qt.Key.Key_Escape:
            self.clearFocus()
            return
        super().keyPressEvent(ev)


class GotoBox(QWidget):
    """The toolbar's Go to field with its one-line answer (red when the input is bad)."""

    def __init__(self, navigator: Navigator, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("goto")
        self.navigator = navigator
        self.edit = _Edit()
        self.edit.setObjectName("goto_edit")
        self.edit.setPlaceholderText("Go to gpa, gfn, hva, pfn, slot…")
        self.edit.setClearButtonEnabled(True)
        for a in self.edit.findChildren(QAction):
            a.setToolTip("Clear")
        self.edit.setMinimumWidth(220)
        self.edit.setToolTip(f"Frame and select {USAGE} (Ctrl+G); Alt+Left goes back")
        self.answer = QLabel("")
        self.answer.setObjectName("goto_answer")
        self.answer.setTextFormat(Qt.TextFormat.PlainText)
        self.answer.setMaximumWidth(520)
        col = QVBoxLayout(self)
        col.setContentsMargins(4, 0, 4, 0)
        col.setSpacing(0)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit)
        row.addWidget(self.answer, 1)
        col.addLayout(row)
        self.edit.returnPressed.connect(self.submit)
        self.edit.textEdited.connect(lambda _t: self.answer.setText(""))

    def submit(self) -> None:
        try:
            target = self.navigator.go_to_text(self.edit.text())
        except GotoError as e:
            self.show_error(str(e))
            return
        if target is not None and target.resolved:
            self.show_ok(target.label)
        else:
            self.answer.setStyleSheet("")
            self.answer.setText("looking up…")

    def show_error(self, text: str) -> None:
        self.answer.setStyleSheet("color: #d32f2f; font-weight: bold")
        self.answer.setText(text)
        self.answer.setToolTip(text)

    def show_ok(self, text: str) -> None:
        self.answer.setStyleSheet("")
        self.answer.setText(text)
        self.answer.setToolTip(text)

    def focus(self) -> None:
        self.edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.edit.selectAll()


def _action(window, menu, id_: str, text: str, tip: str, slot, shortcut="", checked=None):
    act = QAction(text, window)
    act.setObjectName(f"act_{id_}")
    if shortcut:
        act.setShortcut(QKeySequence(shortcut))
        tip += f" ({shortcut})"
    act.setToolTip(tip)
    act.setStatusTip(tip)
    if checked is not None:
        act.setCheckable(True)
        act.setChecked(checked)
        act.toggled.connect(slot)
    else:
        act.triggered.connect(lambda _c=False: slot())
    window.addAction(act)
    if menu is not None:
        menu.addAction(act)
    return act


def install(window: MainWindow) -> Navigator:
    """Add following, Go to, Back/Forward and the overview to `window`."""
    nav = Navigator(window)
    pane = window.map
    window.minimap = Minimap(pane)
    pane.side_row.insertWidget(1, window.minimap)
    box = GotoBox(nav)
    window.goto_box = box
    window.toolbar.addSeparator()
    window.toolbar.addWidget(box)
    bar = window.menuBar()
    menus = bar_menus(bar)
    view = menus.get("&View")
    if view is not None:
        view.addSeparator()

    def set_follow(on: bool) -> None:
        nav.follow = on

    nav.actions = {
        "follow": _action(
            window,
            view,
            "follow_changes",
            "&Follow changes",
            "Move the map to what an op changed when it is off the screen or too small to see",
            set_follow,
            checked=True,
        ),
        "fold": _action(
            window,
            view,
            "fold_empty",
            "F&old empty memory",
            "Fold long runs of empty memory (holes, untouched pages) into labelled bands",
            pane.set_fold,
            checked=True,
        ),
        "back": _action(
            window, view, "view_back", "&Back", "The previous framing", pane.back, "Alt+Left"
        ),
        "forward": _action(
            window,
            view,
            "view_forward",
            "Forwar&d",
            "The framing Back left",
            pane.forward,
            "Alt+Right",
        ),
        "goto": _action(
            window,
            view,
            "goto",
            "&Go to…",
            f"Frame and select {USAGE}",
            box.focus,
            "Ctrl+G",
        ),
    }
    from imemviz.app.presentation import install as install_presentation

    window.presentation = install_presentation(window)
    return nav
