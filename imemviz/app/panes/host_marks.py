"""Change marks on the host folios pane: the pfns (or guest_memfd pages) an action changed.

The same dashed black-on-white outline as on the map (`map_marks.mark_pens`),
drawn with the pane's own range-to-path (a single page is widened to a
visible width), in whichever space the pane shows: host pfns, or the offsets
of the guest_memfd it shows.  Rebuilt after every redraw of the pane; fades
with the window's `MarkController`.
"""

from __future__ import annotations

from PySide6.QtGui import QBrush
from PySide6.QtWidgets import QGraphicsPathItem

from imemviz.app.marks import MarkController
from imemviz.app.panes.folios import PFN_MODE, FoliosPane
from imemviz.app.panes.map_marks import mark_pens
from imemviz.model.changes import Changes


class FolioMarks:
    def __init__(self, pane: FoliosPane, marks: MarkController) -> None:
        self.pane = pane
        self.marks = marks
        self.changes: Changes | None = None
        halo_pen, ink_pen = mark_pens()
        self.items = []
        for pen, z in ((halo_pen, 11), (ink_pen, 12)):
            it = QGraphicsPathItem()
            it.setPen(pen)
            it.setBrush(QBrush())
            it.setZValue(z)
            it.hide()
            pane.vb.addItem(it, ignoreBounds=True)
            self.items.append(it)
        marks.marked.connect(self.set_changes)
        marks.opacityChanged.connect(self._set_opacity)
        pane.drawn.connect(self.rebuild)

    def ranges(self) -> list[tuple[int, int]]:
        """The marked pages of the space the pane shows."""
        ch = self.changes
        if ch is None:
            return []
        if self.pane.mode == PFN_MODE:
            return list(ch.pfns)
        return [(s, e) for fd, s, e in ch.files if fd == self.pane.mode]

    def set_changes(self, changes: Changes | None) -> None:
        self.changes = changes
        self.rebuild()

    def rebuild(self) -> None:
        path = self.pane._ranges_to_path(self.ranges())
        for it in self.items:
            it.setPath(path)
        self._set_opacity(self.marks.opacity())

    def _set_opacity(self, a: float) -> None:
        on = a > 0 and bool(self.ranges())
        for it in self.items:
            it.setOpacity(a)
            it.setVisible(on)

    def visible_ranges(self) -> list[tuple[int, int]]:
        return self.ranges() if self.items[1].isVisible() else []
