"""A small per-op counter tuple for the app's Counters pane (cheap: a few len() calls)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imemviz.model.units import LEVELS

if TYPE_CHECKING:
    from imemviz.model.vm import VM

# The order of `op_stats`'s tuple.
STAT_NAMES: tuple[str, ...] = (
    "private 4K",
    "private 2M",
    "private 1G",
    "shared 4K",
    "shared 2M",
    "shared 1G",
    "folios 4K",
    "folios 2M",
    "folios 1G",
    "mmu_invalidate_seq",
    "S-EPT pages",
)


def op_stats(vm: VM) -> tuple[int, ...]:
    """Leaves per level per table, folios per order, mmu_invalidate_seq, S-EPT pages."""
    folios = [0, 0, 0]
    for f in vm.files.values():
        for k, order in enumerate((0, 9, 18)):
            folios[k] += f.inode.count(order)
    return (
        *(vm.private.count(lv) for lv in LEVELS),
        *(vm.shared.count(lv) for lv in LEVELS),
        *folios,
        vm.inv.seq,
        len(vm.private.tables),
    )
