"""Counters over the op count: leaves per level per root, folios per order,
mmu_invalidate_seq, and the exits ops produced (memory fault, MMIO, errno failures).

Every `OpRecord` carries `stats` (`imemviz.model.op_stats`); the pane appends
one row per op to a growing numpy array and redraws the curves at most every
`REDRAW_MS`, so a replay of a million ops does not repaint a million times.
x is the session's op index, as in the log, the event log and the timeline
(the start at -1).  After an undo or a seek the engine sends the whole history
up to the new position (`feeds.CountersHistory`): the curves are cut back to
it, not restarted.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget

from imemviz.app.feeds import CountersHistory, PaneFeed
from imemviz.app.records import OpRecord
from imemviz.app.worker import Engine
from imemviz.model.op_stats import STAT_NAMES

EXIT_NAMES = ("memory-fault exits", "MMIO exits", "errno failures")
COLUMNS = (*STAT_NAMES, *EXIT_NAMES)
REDRAW_MS = 100

# plot title -> (column, colour, dashed); the map's colours (private warm, shared cool)
PLOTS = {
    "leaves": (
        ("private 4K", "#e69f00", False),
        ("private 2M", "#d55e00", False),
        ("private 1G", "#8c3b00", False),
        ("shared 4K", "#56b4e9", True),
        ("shared 2M", "#0072b2", True),
        ("shared 1G", "#00355e", True),
    ),
    "guest_memfd folios / S-EPT pages": (
        ("folios 4K", "#e69f00", False),
        ("folios 2M", "#d55e00", False),
        ("folios 1G", "#8c3b00", False),
        ("S-EPT pages", "#009e73", True),
    ),
    "mmu_invalidate_seq and exits": (
        ("mmu_invalidate_seq", "#000000", False),
        ("memory-fault exits", "#cc79a7", True),
        ("MMIO exits", "#56b4e9", True),
        ("errno failures", "#b71c1c", True),
    ),
}


class CountersPane(QWidget):
    def __init__(self, engine: Engine, feed: PaneFeed, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("counters")
        self.setToolTip("Counters after every op (x: op index)")
        self.ops = np.zeros(0, np.int64)
        self.data = np.zeros((0, len(COLUMNS)), np.int64)
        self._rows: list[tuple[int, ...]] = []
        self._idx: list[int] = []
        self._exits = [0, 0, 0]
        self._stale = False
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground("w")
        self.curves: dict[str, pg.PlotDataItem] = {}
        first = None
        for k, (title, lines) in enumerate(PLOTS.items()):
            plot = self.view.addPlot(row=k, col=0, title=title)
            # One legend row, top left: three stacked rows would cover the small plots.
            plot.addLegend(offset=(5, 1), labelTextSize="8pt", colCount=len(lines))
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setMenuEnabled(False)
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            # Long histories (a 20,000-op recording) draw at the cost of the pixels.
            plot.setDownsampling(auto=True, mode="peak")
            plot.setClipToView(True)
            for name, colour, dashed in lines:
                pen = pg.mkPen(
                    colour, width=2, style=pg.QtCore.Qt.PenStyle.DashLine if dashed else None
                )
                self.curves[name] = plot.plot(
                    [], [], name=name, pen=pen, stepMode=None, autoDownsampleFactor=1.0
                )
        assert first is not None  # PLOTS names at least one plot
        first.getAxis("bottom").setLabel("op # (−1: the start)")
        self.plots = [self.view.getItem(k, 0) for k in range(len(PLOTS))]
        from imemviz.app import plot_theme

        plot_theme.follow(self.apply_theme)  # the theme now (dark at start too) and later
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.view)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.flush)
        engine.opApplied.connect(self.on_op)
        feed.statsReset.connect(self.reset)

    def apply_theme(self, theme) -> None:
        """Dark or light backgrounds, axes, titles and legends (imemviz.app.plot_theme)."""
        self.view.setBackground(theme.background)
        for plot, title in zip(self.plots, PLOTS, strict=True):
            plot.setTitle(title, color=theme.text)
            for side in ("left", "bottom"):
                ax = plot.getAxis(side)
                ax.setPen(pg.mkPen(theme.axis))
                ax.setTextPen(pg.mkPen(theme.text))
            if plot.legend is not None:
                plot.legend.setLabelTextColor(theme.text)
        # The one black curve would vanish on a dark background.
        seq = self.curves.get("mmu_invalidate_seq")
        if seq is not None:
            pen = seq.opts["pen"]
            pen = pg.mkPen(theme.text, width=pen.widthF(), style=pen.style())
            seq.setPen(pen)
            if seq.opts.get("symbol"):
                seq.setSymbolPen(pen)
                seq.setSymbolBrush(pen.color())

    def reset(self, history: CountersHistory) -> None:
        """The session's history was rewritten (open, new VM, undo, seek): every op's
        counters up to the current position."""
        self.ops = history.ops.copy()
        self.data = np.hstack((history.stats, history.exits)).astype(np.int64)
        self._rows, self._idx = [], []
        self._exits = [int(x) for x in history.exits[-1]] if len(history.exits) else [0, 0, 0]
        # Drawn a moment later, in its own turn of the event loop: the map's new raster
        # (which came with the same command) is not kept waiting for the curves.
        self._stale = True
        if not self._timer.isActive():
            self._timer.start()

    def on_op(self, rec: OpRecord) -> None:
        if not rec.stats:
            return
        ret = rec.line.get("ret") or {}
        reason = (ret.get("exit") or {}).get("reason")
        if reason == "KVM_EXIT_MEMORY_FAULT":
            self._exits[0] += 1
        elif reason == "KVM_EXIT_MMIO":
            self._exits[1] += 1
        if not rec.ok:
            self._exits[2] += 1
        self._idx.append(rec.index)
        self._rows.append((*rec.stats, *self._exits))
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        self._timer.stop()
        if self._rows:
            self.ops = np.concatenate((self.ops, np.asarray(self._idx, np.int64)))
            self.data = np.vstack((self.data, np.asarray(self._rows, np.int64)))
            self._rows, self._idx = [], []
        if not self.isVisible() or self.visibleRegion().isEmpty():
            # Hidden, or a tab behind another: drawn when it is shown (`shown`).
            self._stale = True
            return
        self._stale = False
        few = len(self.ops) < 60  # a handful of points: draw them, a line alone is not seen
        for name, curve in self.curves.items():
            col = COLUMNS.index(name)
            curve.setData(self.ops, self.data[:, col])
            curve.setSymbol("o" if few else None)
            curve.setSymbolSize(5)
            curve.setSymbolPen(curve.opts["pen"])
            curve.setSymbolBrush(curve.opts["pen"].color())

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        self.shown(True)

    def shown(self, visible: bool) -> None:
        """The pane (or its dock's tab) came into view: draw what it missed."""
        if visible and self._stale and not self._timer.isActive():
            self._timer.start()

    def series(self, name: str) -> np.ndarray:
        self.flush()
        return self.data[:, COLUMNS.index(name)]
