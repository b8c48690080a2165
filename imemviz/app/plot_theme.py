"""Light and dark for what the widget palette does not reach: the plots and the log's text.

The widgets follow the Fusion palette `settings.apply_theme` sets; the pyqtgraph views
(map, overview, host folios, counters), the map's outlines and labels and the log's
coloured text take their colours from the current `PlotTheme`.  `set_dark()` switches
it and `hub().changed` tells every pane, which repaints; a pane subscribes with `follow()`,
which also applies the current theme at once.  The states' colours
(`palette.py`) are the same in both: they carry the legend's meanings and were checked
for colour-blind viewers; only what surrounds them changes (the background past the
end of the guest included, so the map ends where the dark background starts).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from PySide6.QtCore import QObject, Signal


@attrs.frozen
class PlotTheme:
    dark: bool
    background: str  # plot background (and OUTSIDE on the map)
    axis: str  # axis lines
    text: str  # axis labels, gutter labels, fold labels
    muted: str  # secondary text (holes' labels, event lines)
    outline: str  # memslot outlines and brackets
    selection: str  # the selected range's dashes and the cursor
    halo: str  # under outlines, so they show on any state colour
    hole_ink: str  # the holes' hatching
    ok: str  # log: an op that succeeded
    error: str  # log and status bar: a refused op, an error
    info: str  # log: messages and captions
    step: str  # log: protocol steps
    caption_row: str  # the replay list's caption rows
    caption_row_text: str


LIGHT = PlotTheme(
    dark=False,
    background="#ffffff",
    axis="#444444",
    text="#222222",
    muted="#555555",
    outline="#191919",
    selection="#000000",
    halo="#ffffff",
    hole_ink="#787878",
    ok="#1b5e20",
    error="#b71c1c",
    info="#0d47a1",
    step="#4a148c",
    caption_row="#fff3c4",
    caption_row_text="#222222",
)

DARK = PlotTheme(
    dark=True,
    background="#202124",
    axis="#9a9a9a",
    text="#e6e6e6",
    muted="#b0b0b0",
    outline="#0a0a0a",
    selection="#000000",
    halo="#f0f0f0",
    hole_ink="#5a5a5a",
    ok="#81c784",
    error="#ff8a80",
    info="#90caf9",
    step="#ce93d8",
    caption_row="#5c4d12",
    caption_row_text="#fff3c4",
)


class ThemeHub(QObject):
    changed = Signal(object)  # PlotTheme

    def __init__(self) -> None:
        super().__init__()
        self.theme = LIGHT


_HUB: ThemeHub | None = None


def hub() -> ThemeHub:
    global _HUB
    if _HUB is None:
        _HUB = ThemeHub()
    return _HUB


def current() -> PlotTheme:
    return hub().theme


def follow(apply: Callable[[PlotTheme], object]) -> None:
    """`apply` (a pane's bound method) takes the current theme now and every new one:
    a pane created while dark mode is on is dark from the start, not at the next switch."""
    hub().changed.connect(apply)
    apply(current())


def set_dark(dark: bool) -> PlotTheme:
    """Switch the plots' theme (settings.apply_theme calls this); panes repaint."""
    h = hub()
    theme = DARK if dark else LIGHT
    if theme != h.theme:
        h.theme = theme
        h.changed.emit(theme)
    return theme
