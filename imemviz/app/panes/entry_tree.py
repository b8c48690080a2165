"""The entries pane's address tree: a root's leaves as the page walk groups them,
1G regions -> 2M regions -> leaves, filled lazily when a node is expanded.

Each level is one `np.unique` over the gfns inside the node (the arrays are
sorted by gfn, so a node's leaves are one `searchsorted` slice): expanding
costs the leaves under the node, never the whole table.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTreeWidgetItem

from imemviz.app.feeds import LeafArrays

LEVEL_TEXT = {1: "4K", 2: "2M", 3: "1G"}
MAX_CHILDREN = 1024  # per node; more are summarised in one line
ROLE = Qt.ItemDataRole.UserRole
GFN_LIMIT = 1 << 52


def address_node(root: int, label: str) -> QTreeWidgetItem:
    """The top node of one root's address tree (children come on expand)."""
    it = QTreeWidgetItem([label, ""])
    it.setData(0, ROLE, ("region", root, 30, 0, GFN_LIMIT))
    it.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
    return it


def _slice(lv: LeafArrays, root: int, start: int, end: int) -> np.ndarray:
    """Positions of the root's leaves whose first gfn is in [start, end)."""
    i0 = int(np.searchsorted(lv.gfn, start))
    i1 = int(np.searchsorted(lv.gfn, end))
    pos = np.arange(i0, i1)
    return pos[lv.root[i0:i1] == root]


def populate(item: QTreeWidgetItem, lv: LeafArrays) -> None:
    """Fill an expanded region node: sub-regions (1G, then 2M) holding leaves, or leaves."""
    data = item.data(0, ROLE)
    if not data or data[0] != "region" or item.childCount():
        return
    _, root, shift, start, end = data
    pos = _slice(lv, root, start, end)
    child_shift = {30: 18, 18: 9}.get(shift)
    if child_shift is None:  # a 2M region: its leaves
        for i in pos[:MAX_CHILDREN].tolist():
            g, level, pfn = int(lv.gfn[i]), int(lv.level[i]), int(lv.pfn[i])
            leaf = QTreeWidgetItem([f"{LEVEL_TEXT[level]} leaf gfn {g:#x}", f"pfn {pfn:#x}"])
            leaf.setData(0, ROLE, ("leaf", int(i)))
            item.addChild(leaf)
    else:
        heads, counts = np.unique(lv.gfn[pos] >> child_shift, return_counts=True)
        size = 1 << child_shift
        # A huge leaf starts a region and spans it: its region node shows it as a leaf.
        for h, n in zip(heads[:MAX_CHILDREN].tolist(), counts.tolist(), strict=False):
            s = h << child_shift
            name = "1G" if child_shift == 18 else "2M"
            sub = QTreeWidgetItem([f"{name} @ gfn {s:#x}", f"{n:,}"])
            sub.setData(0, ROLE, ("region", root, child_shift, s, s + size))
            sub.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            item.addChild(sub)
        if len(heads) > MAX_CHILDREN:
            item.addChild(QTreeWidgetItem([f"… {len(heads) - MAX_CHILDREN:,} more", ""]))
