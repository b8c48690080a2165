"""The State summary pane, the banner and the held-fault marks: what a bug-report reader
learns the moment a state (or recording) opens (only a state file flags the summary's tab).

`install(window)` adds, without touching the map or the window's own code:

- a "State summary" dock: kernel (when the config has one), VM type, TD state,
  dead or not, the held faults, any warning (a recording cut short), and the
  invariant violations as a list: clicking one selects its gfn on the map;
- a banner above the map for what must not be missed: a dead TD (with the
  reason KVM gave), or a warning about how the file was read;
- the gfns of held faults outlined on the map (amber, dashed).

The summary comes from `imemviz.io.summary` on the engine thread: the cheap
part (held faults, dead) after every change, the invariant check when a file
opens, on "Check again", and after a seek or an undo while the tab is in front
(behind another tab, when it comes forward).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from imemviz.app import messages as M
from imemviz.app.range_overlay import RangeOverlay
from imemviz.io.session import STATE_SUFFIXES
from imemviz.io.summary import StateSummary, as_text, summarize

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow

HELD_COLOUR = QColor(230, 140, 0)
TITLE = "State summary"
FLAGGED_TITLE = "State summary ●"  # a state file just opened: its summary not looked at yet
GFN_ROLE = Qt.ItemDataRole.UserRole + 1


class _Feed(QObject):
    """Runs on the engine thread after every change (see Worker.feeds)."""

    ready = Signal(object)  # StateSummary
    held = Signal(object)  # (held gfns, dead, banner text or None)

    def __init__(self, engine: Any, parent: QObject) -> None:
        super().__init__(parent)
        self.engine = engine
        self._session_no = -1
        self._source: Any = object()  # no file yet
        self.recheck = False
        # The tab in front (set on the GUI thread, read here): behind another tab, a seek
        # or an undo does not re-check every invariant (the longest stretch the engine
        # thread held the GIL during a seek); the check runs when the tab comes forward.
        self.visible = True
        self.pending = False  # a check skipped while hidden
        self.detach = engine.worker.attach_feeds(self._feed)
        self.destroyed.connect(self.detach)

    def _feed(
        self, session: Any, version: int, session_no: int, changed: Any, reset: bool = False
    ) -> None:
        vm = session.vm
        # A reset (a seek, an undo across a rebuild) may change anything: check it all,
        # now if the tab is in front or a file just opened, else when the tab is shown.
        moved = session_no != self._session_no or reset
        opened = session.source != self._source
        full = self.recheck or opened or (moved and self.visible)
        self.pending = (self.pending or moved) and not full
        self._session_no, self._source, self.recheck = session_no, session.source, False
        summary = summarize(vm, warning=session.warning, source=session.source, check=full)
        send = self.engine.worker.deliver  # paced with the other panes' pieces
        send(self.ready, summary)
        held = sorted(vm.in_flight.items())
        gfns = tuple((pf.access.gfn, pf.access.gfn + 1) for _v, pf in held)
        texts = tuple(f"held: vCPU {v}" for v, _pf in held)
        send(self.held, (gfns, texts))


class SummaryPane(QWidget):
    """The summary as lines, then the violations; a click on one shows its gfn."""

    shown = Signal()  # painted on screen: its tab is in front (the flag can go)

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.setObjectName("state_summary")
        self.setToolTip(
            "What the state holds at a glance: VM, TD state, held faults, warnings and the "
            "invariants that do not hold (click one to see it on the map)"
        )
        self.window_ = window
        self.summary: StateSummary | None = None
        self.text = QLabel("No VM loaded")
        self.text.setObjectName("summary_text")
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text.setWordWrap(True)
        self.violations = QListWidget()
        self.violations.setObjectName("summary_violations")
        self.violations.setToolTip("Invariants that do not hold; click one to show its gfn")
        self.violations.itemActivated.connect(self._go)
        self.violations.itemClicked.connect(self._go)
        copy = QPushButton("Copy as text")
        copy.setObjectName("summary_copy")
        copy.setToolTip("The summary and the violations, for a bug report")
        copy.clicked.connect(self.copy)
        again = QPushButton("Check again")
        again.setObjectName("summary_recheck")
        again.setToolTip("Run the invariant checks on the current state (imemviz check)")
        again.clicked.connect(self.recheck)
        buttons = QHBoxLayout()
        buttons.addWidget(copy)
        buttons.addWidget(again)
        buttons.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.text)
        lay.addWidget(self.violations, 1)
        lay.addLayout(buttons)
        self.feed: _Feed | None = None

    def paintEvent(self, ev: Any) -> None:
        super().paintEvent(ev)
        self.shown.emit()

    def set_summary(self, s: StateSummary) -> None:
        old = self.summary
        if s.checked_at is None and old is not None and old.checked_at is not None:
            # A cheap update after an op (no invariant check): the last check's list stays.
            s = attrs.evolve(
                s,
                violations=old.violations,
                violation_total=old.violation_total,
                checked_at=old.checked_at,
            )
        self.summary = s
        self.text.setText("\n".join(s.lines()))
        self.violations.clear()
        for v in s.violations:
            item = QListWidgetItem(v.text)
            item.setData(GFN_ROLE, v.gfn)
            item.setToolTip(v.text + ("" if v.gfn is None else "\nclick: show the gfn on the map"))
            self.violations.addItem(item)
        if s.violation_total > len(s.violations):
            self.violations.addItem(f"... and {s.violation_total - len(s.violations)} more")

    def _go(self, item: QListWidgetItem) -> None:
        gfn = item.data(GFN_ROLE)
        if gfn is None:
            return
        w = self.window_
        w.selection.set_gfn(int(gfn))
        w.map.show_range(int(gfn), int(gfn) + 1)

    def copy(self) -> str:
        text = as_text(self.summary) if self.summary is not None else "No VM loaded"
        QGuiApplication.clipboard().setText(text)
        self.window_.show_message("State summary copied as text")
        return text

    def recheck(self) -> None:
        if self.feed is not None and self.window_.engine.snapshot is not None:
            self.window_.engine.post(M.RecheckFeeds())


class Banner(QToolBar):
    """A strip above the map for the one line that must not be missed."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__("Banner", window)
        self.setObjectName("banner_bar")
        self.setMovable(False)
        self.setFloatable(False)
        self.label = QLabel("")
        self.label.setObjectName("banner")
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setContentsMargins(8, 4, 8, 4)
        # The whole width of the window, one line (the full text is in the tooltip).
        self.label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.label.setMinimumWidth(100)
        self.addWidget(self.label)
        self.setVisible(False)

    def show_text(self, text: str | None, severe: bool) -> None:
        if not text:
            self.setVisible(False)
            return
        colours = ("#ffffff", "#b71c1c") if severe else ("#3e2723", "#ffe082")
        self.label.setStyleSheet(
            f"color: {colours[0]}; background: {colours[1]}; font-weight: bold"
        )
        self.label.setText(text)
        self.label.setToolTip(text)
        self.setVisible(True)


class StateSummary_:
    """What install() made (the window keeps it)."""

    def __init__(self, pane: SummaryPane, banner: Banner, held: RangeOverlay, feed: _Feed):
        self.pane, self.banner, self.held, self.feed = pane, banner, held, feed


def install(w: MainWindow) -> StateSummary_:
    pane = SummaryPane(w)
    pane.setMinimumSize(120, 60)
    dock = w.add_pane(pane, TITLE, Qt.DockWidgetArea.RightDockWidgetArea)
    # A tab next to the legend and the step panel (already tabbed: no tab bar added,
    # which would raise the window's minimum height).
    legend = w.docks.get("legend")
    if legend is not None:
        w.tabifyDockWidget(legend, dock)
        legend.raise_()
    banner = Banner(w)
    w.addToolBar(Qt.ToolBarArea.TopToolBarArea, banner)
    held = RangeOverlay(w.map, HELD_COLOUR, fill_alpha=90, dashed=True, markers=True)
    feed = _Feed(w.engine, w)
    pane.feed = feed
    last_source: list[Any] = [None, -1]

    def on_summary(s: StateSummary) -> None:
        pane.set_summary(s)
        text = s.banner()
        banner.show_text(text, severe=s.dead)

    def on_held(arg: tuple) -> None:
        gfns, texts = arg
        held.set_ranges(gfns, texts)

    feed.ready.connect(on_summary)
    feed.held.connect(on_held)

    def on_snapshot(snap: Any) -> None:
        # A state file just opened (a bug report's state): its summary is there (the dock
        # shown if it was closed), flagged in its tab's title, but the legend stays in
        # front: a new reader needs the colours first, and the banner above the map says
        # what must not be missed.  A recording (replayed, or opened as history) is a
        # story to step through, not a state to diagnose: its reader watches the map and
        # the Timeline, so the summary is neither brought back nor flagged (the banner
        # still shows a dead TD or a recording cut short).
        if snap.session != last_source[1]:
            last_source[1] = snap.session
            if (
                snap.source
                and snap.source != last_source[0]
                and snap.source.endswith(STATE_SUFFIXES)
            ):
                if not dock.toggleViewAction().isChecked():
                    dock.show()
                    if legend is not None and legend.toggleViewAction().isChecked():
                        legend.raise_()
                if dock.visibleRegion().isEmpty():  # behind another tab
                    dock.setWindowTitle(FLAGGED_TITLE)
            last_source[0] = snap.source

    pane.shown.connect(lambda: dock.setWindowTitle(TITLE))  # looked at: no flag any more

    def on_visible(v: bool) -> None:
        feed.visible = v
        if v and feed.pending:
            pane.recheck()  # the checks a seek or an undo skipped while it was hidden

    dock.visibilityChanged.connect(on_visible)
    w.engine.snapshotReady.connect(on_snapshot)
    return StateSummary_(pane, banner, held, feed)
