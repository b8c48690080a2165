"""The fault fast path (model/fault_fast.py) against the general path (model/fault.py).

The fast path is an optimisation only: with it and without it (`fault_fast.ENABLED`),
the same ops must give the same results, the same events (per op and the whole
log), the same state file and the same `imemviz run` output and stderr.  Random op
sequences come from the property tests' strategies, weighted towards the plain
faults and accepts the fast path takes, mixed with everything that can make it
fall back (conversions, punches, holds, poisoned pages, memslot changes, ...).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imemviz.cli import run_script
from imemviz.io.state import encode_state
from imemviz.model import VM, VMConfig, fault, fault_fast
from imemviz.model.ops import parse_op

from .kit import ok, vm_of
from .strategies import KERNELS, SLOT0, configs, ops_for, pages, prologue


@contextlib.contextmanager
def fast_path(enabled: bool) -> Iterator[None]:
    saved = fault_fast.ENABLED
    fault_fast.ENABLED = enabled
    try:
        yield
    finally:
        fault_fast.ENABLED = saved


# Mostly pages of the private, gmem-backed slot 0; sometimes anywhere (other slots, none).
fault_pages = st.one_of(
    st.integers(0, (SLOT0[1] >> 12) - 1), st.integers(0, 15).map(lambda k: k * 512), pages
)


def plain_faults(vm_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """The ops the fast path is for: accesses without hold or private, and accepts."""
    access = st.builds(
        lambda p, w, v: {
            "op": "guest_access",
            "gpa": (p << 12) | (p & 0xFFF),
            **({"write": True, "value": v} if w else {}),
        },
        fault_pages,
        st.booleans(),
        st.integers(0, 255),
    )
    if vm_type != "tdx":
        return access
    accept = st.builds(
        lambda p, lv: {"op": "guest_accept", "gpa": p << 12, "level": lv},
        fault_pages,
        st.sampled_from(["4K", "4K", "2M"]),
    )
    return st.one_of(access, accept, accept)


@st.composite
def fault_scenarios(draw: Any, max_ops: int = 40) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    cfg = dict(draw(configs))
    # The VM types the fast path serves, twice as often as the others.
    cfg["type"] = draw(st.sampled_from(["sw_protected", "tdx"] * 2 + ["default", "snp"]))
    cfg["kernel"] = draw(st.sampled_from(KERNELS[cfg["type"]]))
    vm_type = cfg["type"]
    # Mostly the folio orders the fast path serves: 4K folios for sw_protected, 2M for TDX.
    cfg["gmem_max_order"] = draw(st.sampled_from([9, 9, 0] if vm_type == "tdx" else [0, 0, 9]))
    cfg["tdx_private_max_level"] = draw(st.sampled_from(["2M", "2M", "4K"]))
    ops = draw(
        st.lists(
            st.one_of(*[plain_faults(vm_type)] * 3, ops_for(vm_type, cfg["kernel"])),
            min_size=5,
            max_size=max_ops,
        )
    )
    return cfg, prologue(vm_type, cfg["kernel"]) + ops


def _apply_all(cfg: dict[str, Any], ops: list[dict[str, Any]], enabled: bool) -> tuple[Any, ...]:
    with fast_path(enabled):
        vm = VM(VMConfig.from_dict(cfg))
        per_op = []
        for d in ops:
            r = vm.apply(parse_op(d))
            per_op.append(
                (r.ok, r.errno, r.ret, r.line_json(vm.op_index - 1, d["op"]), vm.last_events)
            )
        log = (list(vm.events.log), vm.events.total, vm.events.dropped)
        return per_op, log, encode_state(vm, "state.json")


@given(fault_scenarios())
@settings(max_examples=150, deadline=None)
def test_fast_and_general_paths_agree(case: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    cfg, ops = case
    fast = _apply_all(cfg, ops, True)
    general = _apply_all(cfg, ops, False)
    assert fast[0] == general[0]  # results, result lines and events, op by op
    assert fast[1] == general[1]  # the event log
    assert fast[2] == general[2]  # the state file, byte for byte


def _run_cli(path: str, enabled: bool) -> tuple[str, bytes, str]:
    """`imemviz run` in process: (results, state file bytes, stderr)."""
    with tempfile.TemporaryDirectory() as d, fast_path(enabled):
        state = os.path.join(d, "s.json")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            run_script(path, state_out=state, stdout=out)
        with open(state, "rb") as f:
            return out.getvalue(), f.read(), err.getvalue()


@given(fault_scenarios(max_ops=25))
@settings(max_examples=25, deadline=None)
def test_run_output_agrees(case: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    """The same through `imemviz run` (the script reader's fast op lines included)."""
    cfg, ops = case
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.jsonl")
        header = {"format": "imemviz-recording", "version": 1, "start": {"vm": cfg}}
        with open(path, "w") as f:
            f.write(json.dumps(header) + "\n")
            for op in ops:
                f.write(json.dumps(op) + "\n")
        assert _run_cli(path, True) == _run_cli(path, False)


def test_the_fast_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain cases never reach the general path (the tests above compare something)."""

    def general(*_: object) -> None:
        raise AssertionError("took the general path")

    sw = vm_of("sw_protected")
    for d in prologue("sw_protected"):
        ok(sw, d.pop("op"), **d)
    td = vm_of("tdx", gmem_max_order=9, tdx_private_max_level="2M")
    for d in prologue("tdx"):
        ok(td, d.pop("op"), **d)
    monkeypatch.setattr(fault, "guest_access", general)
    monkeypatch.setattr(fault, "guest_accept", general)
    assert ok(sw, "guest_access", gpa=0x5000)["level"] == "4K"  # a fault
    assert ok(sw, "guest_access", gpa=0x5000, write=True, value=9)["value"] == 9  # a hit
    assert ok(td, "guest_accept", gpa=0x200000, level="2M") == {"level": "2M"}
    assert ok(td, "guest_accept", gpa=0x600000) == {"level": "4K"}
