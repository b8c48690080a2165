"""The invariant checks' array screens (model/invariant_screen.py) never hide a violation:
with and without them, check_invariants reports the same violations in the same order,
on random op sequences and on states broken on purpose (every per-leaf rule, host
pages used twice or lost)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imemviz.model import VM, VMConfig, invariants
from imemviz.model.mmu import BLOCKED, PENDING
from imemviz.model.ops import parse_op
from imemviz.model.units import LEVEL_2M, LEVEL_4K

from .kit import gmem_slot, ok, td, vm_of
from .strategies import scenarios


def both(vm: VM, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """(screened, every leaf through the per-leaf rules) violations as text."""
    screened = [str(v) for v in invariants.check_invariants(vm)]
    with monkeypatch.context() as m:
        m.setattr(invariants, "suspect_leaves", lambda vm, t, p, cols: np.ones(len(cols[0]), bool))
        m.setattr(invariants, "both_roots", lambda cols, shared: np.ones(len(cols[0]), bool))
        empty = np.zeros(0, np.int64)
        m.setattr(invariants, "host_blocks", lambda vm: (empty, empty))  # the full host pass
        full = [str(v) for v in invariants.check_invariants(vm)]
    return screened, full


@given(scenarios(max_ops=30), st.data())
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_screen_matches_every_leaf(monkeypatch, case, data) -> None:
    cfg, ops = case
    vm = VM(VMConfig.from_dict(cfg))
    for d in ops:
        vm.apply(parse_op(d))
        a, b = both(vm, monkeypatch)
        assert a == b
    # Break the state: move, re-state or add leaves, drop folios; the screen must agree.
    for table in (vm.private, vm.shared):
        for level, idx in table.leaves.items():
            keys = idx.keys()
            if not keys:
                continue
            k = data.draw(st.sampled_from(keys))
            v = idx.get(k)
            how = data.draw(st.sampled_from(["pfn", "state", "move", "dup"]))
            if how == "pfn":
                idx.set(k, v + (data.draw(st.integers(1, 600)) << 2))
            elif how == "state":
                idx.set(k, (v & ~3) | data.draw(st.sampled_from([1, 2, 3])))
            elif how == "move":
                idx.pop(k)
                idx.set(k + data.draw(st.integers(1, 1 << 20)), v)
            else:
                other = vm.shared if table is vm.private else vm.private
                other.leaves[level].set(k, v)
    for f in vm.files.values():
        for idx in f.inode.folios.values():
            keys = idx.keys()
            if keys:
                idx.pop(data.draw(st.sampled_from(keys)))
    if vm.host.other or data.draw(st.booleans()):
        vm.host.other[data.draw(st.integers(0, vm.host.npages))] = data.draw(st.integers(0, 9))
    a, b = both(vm, monkeypatch)
    assert a == b


def test_screen_names_each_rule(monkeypatch) -> None:
    """A hand-broken TD: each per-leaf rule fires once, screened and unscreened alike."""
    vm = td(tdx_private_max_level="2M", gmem_max_order=9)
    for gpa in range(0, 8 << 12, 1 << 12):
        ok(vm, "guest_accept", gpa=gpa, level="4K")
    ok(vm, "guest_accept", gpa=4 << 20, level="2M")
    ok(vm, "set_memory_attributes", address=5 << 12, size=1 << 12, attributes=0)  # zaps 5
    assert both(vm, monkeypatch) == ([], [])
    leaves = vm.private.leaves
    v = leaves[LEVEL_4K].get(1)
    leaves[LEVEL_4K].set(1, v + (5 << 2))  # I2: maps the wrong pfn
    leaves[LEVEL_4K].set(2, (leaves[LEVEL_4K].get(2) & ~3) | BLOCKED)  # I7
    leaves[LEVEL_4K].set(1 << 20, leaves[LEVEL_4K].pop(3))  # I3: outside every slot
    h = leaves[LEVEL_2M].get(1024)
    leaves[LEVEL_2M].set(1024, (h & ~3) | PENDING)
    vm.attributes.set_range(6, 7, 0)  # I1: a private leaf over a shared gfn
    screened, full = both(vm, monkeypatch)
    assert screened == full
    assert {s.split(":")[0] for s in full} >= {"I1", "I2", "I3", "I7"}


def test_screen_both_roots(monkeypatch) -> None:
    vm = vm_of("sw_protected")
    gmem_slot(vm, 0, 16 << 20)
    for gpa in range(0, 4 << 12, 1 << 12):
        ok(vm, "guest_access", gpa=gpa)
    vm.shared.leaves[LEVEL_2M].set(0, 77 << 2)
    screened, full = both(vm, monkeypatch)
    assert screened == full
    assert sum("both private and shared" in s for s in full) == 4
