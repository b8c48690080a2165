"""Steps shown, not told: while stepping through an op, the map and the entries draw the
state at that step, then the present again.

The step panel (stepper.py) says which step; this module asks the engine
thread for the state there (`Engine.show_step`: `model/step_state.py` rebuilds
it from the op's events, the worker rasterises it through the same path as
the present) and draws what only exists mid-protocol: the gfns of an
invalidation in progress, as a dotted outline (faults there retry until the
end).  The map frames what the op changed (else what the step names) as tiles
big enough to carry their state ("BLOCKED", "PENDING"), or the op's change whole
when it is too big for that (step_frame.py).  A band above the map (laid out above the plot, as the caption is, so it
covers no row, label or axis) says that it shows a past step, not the present,
and what the dotted outline means; "Back to the present" (Esc), closing the
step panel, or any action brings the present back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QBrush, QColor, QPen
from PySide6.QtWidgets import QBoxLayout, QGraphicsPathItem, QLabel, QSizePolicy

from imemviz.app.messages import StepShown
from imemviz.app.panes.map_items import CellLabels, outline_path
from imemviz.app.step_frame import step_target

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow


class StepView(QObject):
    """Connects the step panel to the engine's step view and draws its extras on the map."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.engine = window.engine
        self.shown: StepShown | None = None
        pane = window.map
        # A band above the plot (as the caption is): it says what the map shows and what
        # the dotted outline means, and covers none of the map's rows, labels or axes.
        self.label = QLabel(pane)
        self.label.setObjectName("step_view_label")
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        self.label.setStyleSheet(
            "QLabel { color: white; background: rgba(40, 20, 60, 235);"
            " border-radius: 6px; padding: 4px 10px; font-weight: bold; }"
        )
        self.label.hide()
        col = pane.layout()
        if isinstance(col, QBoxLayout):  # right above the plot (under header, banner, caption)
            col.insertWidget(max(0, col.count() - 1), self.label)
        pen_halo = QPen(QColor(255, 255, 255), 6.0)
        pen_halo.setCosmetic(True)
        pen_dots = QPen(QColor(20, 20, 20), 3.0, Qt.PenStyle.DotLine)
        pen_dots.setCosmetic(True)
        self.progress_items = []
        for pen, z in ((pen_halo, 24), (pen_dots, 25)):
            it = QGraphicsPathItem()
            it.setPen(pen)
            it.setBrush(QBrush(Qt.BrushStyle.NoBrush))
            it.setZValue(z)
            it.hide()
            pane.vb.addItem(it, ignoreBounds=True)
            self.progress_items.append(it)
        pane.viewChanged.connect(lambda _t: self._draw_progress())

        stepper = window.panes2.stepper
        self.stepper = stepper
        stepper.stepChanged.connect(self._on_step)
        stepper.presentRequested.connect(self.present)
        dock = window.docks.get("stepper")
        if dock is not None:
            dock.visibilityChanged.connect(lambda v: None if v else self.present())
        self.engine.stepShown.connect(self._on_shown)

    # ------------------------------------------------------------------ control
    def _on_step(self, k: int) -> None:
        op = self.stepper.op
        if op is None or op < 0:
            self.stepper.set_view_note(
                "This op belongs to the start (the scene or state opened): the map shows "
                "the present.",
                False,
            )
            return
        self.engine.show_step(op, k)

    def present(self) -> None:
        if self.shown is not None and self.shown.op is not None:
            self.engine.show_step(None)

    # ------------------------------------------------------------------ drawing
    def _on_shown(self, shown: StepShown) -> None:
        self.shown = shown
        marks = getattr(self.window, "marks", None)
        if marks is not None:
            marks.suspend(shown.op is not None)
        if shown.op is None:
            self.label.hide()
            self.stepper.set_view_note("The map and the entries show the present.", False)
        else:
            note = "" if shown.exact else " (this op changes memslots or files: shown as after it)"
            progress = (
                "\nDotted outline: an invalidation in progress, faults there retry until it ends"
                if shown.in_progress
                else ""
            )
            self.label.setText(
                f"Step-through — the map and the entries show {shown.title}{note}, "
                f"not the present.  Esc: back to the present{progress}"
            )
            self.stepper.set_view_note(
                f"The map and the entries show the state at this step{note}.", True
            )
            self._place()
            # What the op changed is drawn unfolded (the present may fold it: a page the
            # op freed is empty now) and framed when too small to see, as a replay is.
            # Not the invalidation in progress: it may be the whole memslot (a conversion's
            # range_add), which would unfold a gigabyte of empty rows and move the view
            # from the op's pages at that step only; its dotted outline is drawn anyway.
            nav = getattr(self.window, "navigator", None)
            ranges = sorted(shown.changed or shown.in_progress)
            if nav is not None and ranges:
                moved = nav.frame_change(ranges, legible=True)
                self._frame_labelled(ranges, shown.step, moved)
        self._draw_progress()

    def _frame_labelled(self, ranges: list[tuple[int, int]], k: int, moved: bool) -> None:
        """Zoom so that the op's pages (else the step's) are tiles with their state
        written in them, or the op's change is whole on screen (step_frame.py)."""
        pane = self.window.map
        if not getattr(self.window.navigator, "follow", True):
            return
        scale = getattr(pane, "ui_scale", 1.0)
        cells = [(w * scale, h * scale) for w, h in (CellLabels.FULL_PX, CellLabels.SHORT_PX)]
        st = self.stepper
        step = st.steps[k].span.gfns if 0 <= k < len(st.steps) else ()
        target = step_target(pane.layout_, ranges, step, cells)
        if target is not None:
            pane.go_to(target, animate=True, record=not moved)

    def _draw_progress(self) -> None:
        shown = self.shown
        ranges = shown.in_progress if shown is not None and shown.op is not None else ()
        if not ranges:
            for it in self.progress_items:
                it.hide()
            return
        lay = self.window.map.layout_
        scale = getattr(self.window.map, "ui_scale", 1.0)  # presentation mode: bigger
        for it, width in zip(self.progress_items, (6.0, 3.0), strict=True):
            pen = it.pen()
            if pen.widthF() != width * scale:
                pen.setWidthF(width * scale)
                it.setPen(pen)
        # Display coordinates: the map may fold rows (map_fold.py).
        path = outline_path(lay.display_ranges(ranges), lay.row_gfns)
        for it in self.progress_items:
            it.setPath(path)
            it.show()

    def _place(self) -> None:
        """Show the band now, its layout applied at once: the map is resized before the
        step's framing reads its size."""
        self.label.show()
        col = self.window.map.layout()
        if col is not None:
            col.activate()

    def in_progress_shown(self) -> tuple[tuple[int, int], ...]:
        return (
            self.shown.in_progress if self.shown is not None and self.shown.op is not None else ()
        )


def install(window: MainWindow) -> StepView:
    return StepView(window)
