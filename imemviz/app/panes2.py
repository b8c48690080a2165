"""Part 2 of the desktop app, installed into a `MainWindow`: host folios, S-EPT / EPT entries,
the event log, counters and the protocol step panel, plus the "Step through last op" action.

Kept out of window.py so that the window only calls `install(window)`.  The
panes are tabbed in the bottom dock area next to the log; they all talk
through `window.selection` (selection and highlight) and one `PaneFeed`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence

from imemviz.app.feeds import PaneFeed
from imemviz.app.map_highlight import MapHighlight
from imemviz.app.menus import menu_of
from imemviz.app.panes.counters import CountersPane
from imemviz.app.panes.entries import EntriesPane
from imemviz.app.panes.event_log import EventLogPane
from imemviz.app.panes.folios import FoliosPane
from imemviz.app.stepper import StepPanel

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow


@attrs.define
class Panes2:
    feed: PaneFeed
    folios: FoliosPane
    entries: EntriesPane
    events: EventLogPane
    counters: CountersPane
    stepper: StepPanel
    step_action: QAction
    step_op: Callable[[int], None]
    map_highlight: MapHighlight


def install(w: MainWindow) -> Panes2:
    """Create the panes, dock them, add the action; returns them (the window keeps them)."""
    feed = PaneFeed(w.engine, w)
    sel = w.selection
    folios = FoliosPane(w.engine, feed, sel)
    entries = EntriesPane(feed, sel)
    events = EventLogPane(w.engine, feed, sel)
    counters = CountersPane(w.engine, feed)
    stepper = StepPanel(
        sel,
        lambda: w.engine.snapshot.slots if w.engine.snapshot is not None else (),
        events.show_position,
    )
    for pane in (folios, entries, events, counters, stepper):
        # Small explicit minimums: docked panes must not raise the window's minimum size.
        pane.setMinimumSize(120, 60)
    log_dock = w.docks.get("log")
    for pane, title in (
        (events, "Event log"),
        (entries, "S-EPT / EPT entries"),
        (folios, "Host folios"),
        (counters, "Counters"),
    ):
        dock = w.add_pane(pane, title, Qt.DockWidgetArea.BottomDockWidgetArea)
        if log_dock is not None:
            w.tabifyDockWidget(log_dock, dock)
    step_dock = w.add_pane(stepper, "Step through", Qt.DockWidgetArea.RightDockWidgetArea)
    inspector_dock = w.docks.get("inspector")
    if inspector_dock is not None:
        # A tab behind the inspector (stacked, it would add its height to the window's
        # minimum); never behind the legend, which stays in view: the map needs it.
        w.tabifyDockWidget(inspector_dock, step_dock)
        inspector_dock.raise_()
    if log_dock is not None:
        log_dock.raise_()

    def jump(start: int, end: int) -> None:
        w.map.show_range(start, end)

    entries.jumpRequested.connect(jump)

    def follow(hl) -> None:
        # The map scrolls (never zooms) to what another pane highlights, when it is out of view.
        span = hl.gfn_span() if hl is not None else None
        if span is None or w.map.snapshot is None:
            return
        a, b = w.map.layout_.visible_gfns()
        if span[1] <= a or span[0] >= b:  # none of it in view (a span around the view is)
            w.map.layout_.ensure_visible(span[0])
            w.map.refresh()

    sel.highlighted.connect(follow)

    def drop_stale(gfn, rng) -> None:
        # A new selection that is not the highlight's own (a click on the map) ends it.
        hl = sel.highlight
        if hl is None or not hl.gfns:
            return
        cur = rng if rng is not None else (None if gfn is None else (gfn, gfn + 1))
        if cur != hl.gfn_span():
            sel.set_highlight(None)

    sel.changed.connect(drop_stale)
    map_highlight = MapHighlight(w.map, sel)
    # The feed builds what a visible pane shows (tabbed docks are hidden behind others).
    w.docks["entries"].visibilityChanged.connect(lambda v: feed.set_wanted(leaves=v))
    w.docks["folios"].visibilityChanged.connect(lambda v: feed.set_wanted(host=v))
    w.docks["counters"].visibilityChanged.connect(counters.shown)

    def step_op(op: int) -> None:
        first, evs = events.model.op_events(op)
        stepper.load(op, evs, first)
        dock = w.docks.get("stepper")
        if dock is not None:
            dock.show()
            dock.raise_()
        ev_dock = w.docks.get("event_log")
        if ev_dock is not None:
            ev_dock.raise_()
        step_rmp = getattr(w, "step_rmp", None)  # SEV-SNP: the RMP tab (step_rmp.py)
        if step_rmp is not None:
            step_rmp.after_step_op()
        stepper.setFocus()

    def step_last() -> None:
        # The last action's main op (a conversion, not its trailing punch-hole), else the
        # newest op with events.
        rec = getattr(w, "last_action", None)
        if rec is not None and rec.main is not None and events.model.op_events(rec.main)[1]:
            step_op(rec.main)
            return
        ops = events.model.session_ops()
        if not ops:
            w.show_message("No op has emitted events yet.")
            return
        step_op(max(ops))

    events.stepRequested.connect(step_op)
    act = QAction("Step through the last action", w)
    act.setObjectName("act_step_last")
    act.setShortcut(QKeySequence("F8"))
    act.setToolTip(
        "Play the last action's kernel protocol step by step, the map drawing each step (F8)"
    )
    act.setStatusTip(act.toolTip())
    act.triggered.connect(step_last)
    w.addAction(act)
    for menu_action in w.menuBar().actions():
        menu = menu_of(menu_action)
        if menu_action.text().replace("&", "") == "Memory" and menu is not None:
            menu.addSeparator()
            menu.addAction(act)
            break
    return Panes2(feed, folios, entries, events, counters, stepper, act, step_op, map_highlight)
