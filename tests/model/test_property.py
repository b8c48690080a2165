"""Random op sequences on every VM type: every invariant after every op, and determinism."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from imemviz.model import VM, VMConfig
from imemviz.model.events import event_dict, format_event
from imemviz.model.invariants import check_invariants
from imemviz.model.ops import parse_op

from .strategies import scenarios


def run(cfg, ops, check: bool) -> list:
    vm = VM(VMConfig.from_dict(cfg))
    out = []
    for i, d in enumerate(ops):
        r = vm.apply(parse_op(d))
        out.append((r.ok, r.errno, r.ret, vm.last_events))
        if check:
            for e in vm.last_events:  # every event matches its declared fields
                assert event_dict(e) and format_event(e)
            bad = check_invariants(vm)
            assert not bad, f"after op {i} {d}: {[str(v) for v in bad]}"
    return out


@given(scenarios())
def test_invariants_hold_after_every_op(case) -> None:
    cfg, ops = case
    run(cfg, ops, check=True)


@given(scenarios(max_ops=25))
@settings(max_examples=30)
def test_same_ops_same_results_and_events(case) -> None:
    cfg, ops = case
    assert run(cfg, ops, check=False) == run(cfg, ops, check=False)


@pytest.mark.slow
def test_long_sequences(slow_scale: int) -> None:
    @given(scenarios(max_ops=150))
    @settings(max_examples=15 * slow_scale)
    def inner(case) -> None:
        run(*case, check=True)

    inner()
