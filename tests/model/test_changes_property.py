"""Random op sequences: every map pixel an op changes lies inside its change marks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings

from imemviz.io.session import deepcopy_vm
from imemviz.model import VM, VMConfig
from imemviz.model.changes import op_changes
from imemviz.model.ops import parse_op
from imemviz.model.raster import guest_extent, step_function

from .strategies import scenarios


def changed_runs(before, after, extent: int) -> list[tuple[int, int]]:
    b1, c1 = step_function(before, 0, extent)
    b2, c2 = step_function(after, 0, extent)
    bounds = np.union1d(b1, b2)
    xs = bounds[:-1]
    v1 = c1[np.searchsorted(b1, xs, side="right") - 1]
    v2 = c2[np.searchsorted(b2, xs, side="right") - 1]
    k = np.flatnonzero(v1 != v2)
    return list(zip(xs[k].tolist(), bounds[k + 1].tolist(), strict=True))


@settings(max_examples=40, deadline=None)
@given(scenarios(max_ops=30))
def test_every_changed_pixel_of_random_ops_is_marked(case) -> None:
    cfg, dicts = case
    vm = VM(VMConfig.from_dict(cfg))
    for k, d in enumerate(dicts):
        op = parse_op(d)
        before = deepcopy_vm(vm)
        r = vm.apply(op)
        ch = op_changes(vm, op, r, vm.last_events)
        if ch.everything:
            continue
        extent = max(guest_extent(before, 512), guest_extent(vm, 512))
        for a, b in changed_runs(before, vm, extent):
            assert any(s <= a and b <= e for s, e in ch.gfns), (
                f"op #{k} {d}: gfns {a:#x}-{b:#x} changed, not marked {ch.gfns}"
            )
