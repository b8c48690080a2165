"""The shared selection: one selected gfn (the cursor) and an optional gfn range.

Every pane connects to `changed`; the actions read `gfn` and `span()`.
Gfns are Python ints carried in `Signal(object)` (Signal(int) is 32-bit).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from imemviz.app.highlight import Highlight


class SelectionModel(QObject):
    """`gfn`: the selected page (None: nothing selected); `range`: [start, end) or None."""

    changed = Signal(object, object)  # gfn, range
    # Cross-highlighting between panes: a `Highlight` (gfn, pfn and file ranges) or None.
    highlighted = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.gfn: int | None = None
        self.range: tuple[int, int] | None = None
        self._anchor: int | None = None
        self.highlight: Highlight | None = None

    def set_highlight(self, hl: Highlight | None) -> None:
        """Highlight related items in every pane (a folio, a leaf, an event, a step)."""
        self.highlight = hl
        self.highlighted.emit(hl)

    def set_gfn(self, gfn: int | None, *, extend: bool = False) -> None:
        """Select one gfn; with `extend` the range grows from the anchor to it (Shift)."""
        if gfn is not None:
            gfn = max(0, int(gfn))
        if extend and gfn is not None and self._anchor is not None:
            a, b = sorted((self._anchor, gfn))
            self._set(gfn, (a, b + 1))
            return
        self._anchor = gfn
        self._set(gfn, None)

    def set_range(self, start: int, end: int, cursor: int | None = None) -> None:
        """Select [start, end) (end exclusive); the cursor goes to `cursor` or `start`."""
        start, end = sorted((max(0, int(start)), max(0, int(end))))
        if end == start:
            end = start + 1
        self._anchor = start
        self._set(start if cursor is None else cursor, (start, end))

    def clear(self) -> None:
        self._anchor = None
        self._set(None, None)

    def span(self) -> tuple[int, int] | None:
        """What range actions work on: the range, else the selected page, else None."""
        if self.range is not None:
            return self.range
        if self.gfn is not None:
            return (self.gfn, self.gfn + 1)
        return None

    def _set(self, gfn: int | None, rng: tuple[int, int] | None) -> None:
        if gfn == self.gfn and rng == self.range:
            return
        self.gfn, self.range = gfn, rng
        self.changed.emit(gfn, rng)
