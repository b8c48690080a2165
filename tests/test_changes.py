"""model/changes.py: what an op changed (gfns, pfns, file pages, leaves) and severe outcomes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imemviz import resources
from imemviz.io import plans
from imemviz.io.replay import Timeline
from imemviz.io.session import Session, deepcopy_vm
from imemviz.model import ops as O
from imemviz.model.changes import action_text, coarsen, merge, op_changes
from imemviz.model.raster import guest_extent, step_function

MB = 1 << 20


def td(**cfg) -> Session:
    s = Session.new({"type": "tdx", "host_memory": "1G", **cfg})
    s.apply_group(plans.qemu_layout("tdx", 64 * MB), "layout")
    return s


def sw() -> Session:
    s = Session.new({"type": "sw_protected", "host_memory": "1G"})
    s.apply_group(plans.qemu_layout("sw_protected", 64 * MB), "layout")
    return s


def run(s: Session, plan) -> tuple:
    out = []
    s.apply_group(
        plan.ops, plan.label, lambda i, op, r, ev, dt: out.append(op_changes(s.vm, op, r, ev))
    )
    return merge(out), s.results[-len(plan.ops) :]


def test_accept_marks_its_page_its_leaf_its_folio() -> None:
    s = td()
    c, _ = run(s, plans.accept_and_touch(s.vm, 0x10))
    assert c.gfns == ((0x10, 0x11),)
    assert c.leaves == ((0, 0x10, 0x11),) and c.leaves_added == 1
    folio = s.vm.files[3].inode.folio_at(0x10)
    assert (3, folio.index, folio.index + 1) in c.files
    assert any(a <= folio.pfn < b for a, b in c.pfns)
    assert c.folios_added == 1 and not c.severe
    text = action_text("accept and touch", 2, None, c)
    assert text == "Accept and touch: ok — 1 page changed · 1 leaf mapped · 1 folio allocated"


def test_convert_marks_exactly_the_converted_range_not_the_invalidated_1g() -> None:
    s = td()
    run(s, plans.accept_and_touch(s.vm, 0x12))
    c, _ = run(s, plans.convert(s.vm, 0x10, 0x14, private=False, discard=True))
    assert c.gfns == ((0x10, 0x14),)
    assert c.leaves_removed == 1 and c.folios_freed == 1
    assert "4 pages changed" in c.summary()


def test_shared_access_on_sw_protected_marks_the_shared_root_and_host_page() -> None:
    s = sw()
    run(s, plans.convert(s.vm, 0x20, 0x21, private=False, discard=False))
    c, _ = run(s, plans.guest_access(0x20, write=True, value=1))
    assert c.leaves == ((1, 0x20, 0x21),) or c.leaves[0][0] == 1
    assert c.host_added >= 1 and c.pfns


def test_td_kill_is_severe_at_its_gfn() -> None:
    s = td()
    c, (r,) = run(s, plans.touch_without_accept(0x33))
    assert r.errno == "EIO"
    (sev,) = c.severe
    assert sev.kind == "td_killed" and sev.gfn == 0x33 and "TD killed" in sev.detail
    assert action_text("touch without accept", 1, None, c).startswith("Touch without accept: TD")


def test_memory_fault_exit_and_hwpoison_are_severe() -> None:
    s = td()
    c, (r,) = run(s, plans.guest_access(0x40, private=False))  # a shared access to private
    assert r.errno == "EFAULT"
    assert [(x.kind, x.gfn) for x in c.severe] == [("memory_fault", 0x40)]
    run(s, plans.accept_and_touch(s.vm, 0x41))
    pfn = s.vm.private.lookup(0x41).pfn
    c, _ = run(s, plans.Plan("memory failure", (O.MemoryFailure(pfn),)))
    assert [(x.kind, x.gfn) for x in c.severe] == [("hwpoison", 0x41)]
    assert c.pfns and c.files
    c, (r,) = run(s, plans.guest_access(0x41))
    assert r.errno == "EHWPOISON"
    assert [(x.kind, x.gfn, x.title) for x in c.severe] == [("hwpoison", 0x41, "EHWPOISON")]


def test_refused_op_text_names_the_op_errno_and_rule() -> None:
    text = action_text(
        "accept", 1, ("guest_accept", "EINVAL", "The TDX module refused."), merge([])
    )
    assert text == "Accept: guest_accept failed with EINVAL — The TDX module refused."


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 50)), max_size=80),
    st.integers(1, 12),
)
def test_coarsen_covers_everything_within_the_cap(pairs, cap) -> None:
    ranges = [(s, s + n) for s, n in pairs]
    out = coarsen(ranges, cap)
    assert len(out) <= cap
    assert all(a < b for a, b in out) and all(b < c for (_, b), (c, _) in itertools.pairwise(out))
    for s, e in ranges:
        assert any(a <= s and e <= b for a, b in out)
    if len(coarsen(ranges, 10_000)) <= cap:  # nothing to close: exact
        assert out == coarsen(ranges, 10_000)


def changed_runs(before, after, extent: int) -> list[tuple[int, int]]:
    """The gfn runs whose map code differs between two states (from their step functions)."""
    b1, c1 = step_function(before, 0, extent)
    b2, c2 = step_function(after, 0, extent)
    bounds = np.union1d(b1, b2)
    xs = bounds[:-1]
    v1 = c1[np.searchsorted(b1, xs, side="right") - 1]
    v2 = c2[np.searchsorted(b2, xs, side="right") - 1]
    k = np.flatnonzero(v1 != v2)
    return list(zip(xs[k].tolist(), bounds[k + 1].tolist(), strict=True))


SCENES = resources.scene_names()


@pytest.mark.parametrize("name", SCENES)
def test_every_changed_pixel_of_every_scene_op_is_marked(name) -> None:
    """Soundness: each gfn whose map code changes under an op lies in that op's marks."""
    tl = Timeline.load(resources.scene_path(name))
    vm = tl.start_vm()
    for k, op in enumerate(tl.ops):
        before = deepcopy_vm(vm) if k < 400 or k % 50 == 0 else None
        r = vm.apply(op)
        if before is None:
            continue
        ch = op_changes(vm, op, r, vm.last_events)
        if ch.everything:
            continue
        extent = max(guest_extent(before, 512), guest_extent(vm, 512))
        starts = np.asarray([a for a, _ in ch.gfns] or [0], np.int64)
        ends = np.asarray([b for _, b in ch.gfns] or [0], np.int64)
        for a, b in changed_runs(before, vm, extent):
            i = int(np.searchsorted(starts, a, side="right")) - 1
            assert i >= 0 and starts[i] <= a and b <= ends[i], (
                f"{name} op #{k} {op.NAME}: gfns {a:#x}-{b:#x} changed, not marked {ch.gfns}"
            )
