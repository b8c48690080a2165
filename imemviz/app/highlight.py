"""What the panes highlight together: gfn, host pfn and guest_memfd file ranges.

A pane that selects a folio, a leaf, an event or a protocol step builds a
`Highlight` and hands it to `SelectionModel.set_highlight`; every other pane
draws the parts it can show (the map the gfns, the host panes the pfns and
file pages, the tables their matching rows).  Addresses are 64-bit Python
ints, carried in `Signal(object)`.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from imemviz.model.protocols import Span, file_to_gfns, gfns_to_files, merge


@attrs.frozen
class Highlight:
    gfns: tuple[tuple[int, int], ...] = ()
    pfns: tuple[tuple[int, int], ...] = ()
    files: tuple[tuple[int, int, int], ...] = ()  # (fd, start index, end index)
    source: str = ""  # the pane that made it: it does not re-select itself
    label: str = ""

    def gfn_span(self) -> tuple[int, int] | None:
        """The smallest range holding every highlighted gfn (for the map's selection)."""
        if not self.gfns:
            return None
        return min(s for s, _ in self.gfns), max(e for _, e in self.gfns)


def from_span(span: Span, slots: Iterable, source: str, label: str = "") -> Highlight:
    """A highlight for an event or step: file pages also light up the gfns bound to them."""
    slots = tuple(slots)
    gfns = list(span.gfns)
    files = list(span.files)
    for fd, s, e in span.files:
        gfns += file_to_gfns(slots, fd, s, e)
    if not files:
        for s, e in span.gfns[:64]:
            files += gfns_to_files(slots, s, e)
    return Highlight(merge(gfns), merge(span.pfns), tuple(files), source, label)
