"""diff compares every field that changes behaviour.

Reproducer of issue 13: `imemviz diff` ignored closed std fds, poisoned hvas,
the TDX epoch, the next inode and the op counters, so two states where
`close(0)` is ok in one and EBADF in the other were reported as the same.

The state document holds everything needed to continue exactly (contract 5),
so "diff says equal" must mean "the documents are equal but for the event
log" (history), which in turn means the same result for every op.  Two
tests hold diff to that: one edits every field of real documents one at a
time, the other compares random states by their behaviour.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statecases import CASES, case_vm
from test_state_property import CONFIGS, new_vm, ops

from imemviz.io.diff import diff_vms, format_diff
from imemviz.io.state import StateError, encode, state_document, vm_from_document
from imemviz.model import ops as O
from imemviz.model.config import VMConfig
from imemviz.model.vm import VM


def doc_of(vm: VM) -> dict[str, Any]:
    """The state document without the event log (history, not state)."""
    doc = json.loads(encode(state_document(vm)))
    del doc["events"]["log"]
    return doc


def test_close_0_ok_in_one_state_and_ebadf_in_the_other_is_a_difference() -> None:
    a = VM(VMConfig.from_dict({"type": "sw_protected"}))
    b = VM(VMConfig.from_dict({"type": "sw_protected"}))
    assert a.apply(O.Close(0)).ok and b.apply(O.Note("x")).ok  # same op count
    d = diff_vms(a, b)
    assert not d["equal"] and d["process"] == {"closed_std_fds": [[0], []]}
    assert "closed_std_fds: [0] -> []" in format_diff(d)
    assert a.apply(O.Close(0)).errno == "EBADF" and b.apply(O.Close(0)).ok


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        ("tdx_epoch", lambda d: d.__setitem__("tdx_epoch", d["tdx_epoch"] + 1)),
        ("next_ino", lambda d: d.__setitem__("next_ino", d["next_ino"] + 1)),
        ("ops_applied", lambda d: d.__setitem__("op_index", d["op_index"] + 1)),
        ("events_total", lambda d: d["events"].__setitem__("total", d["events"]["total"] + 1)),
        ("poisoned_hva", lambda d: d.__setitem__("poisoned_hva", ["0x7f0000200000"])),
    ],
)
def test_each_field_the_old_diff_ignored_is_a_difference(field: str, edit: Any) -> None:
    a = case_vm("tdx")
    doc = json.loads(encode(state_document(a)))
    edit(doc)
    d = diff_vms(a, vm_from_document(doc))
    assert not d["equal"]
    text = format_diff(d)
    assert (field in text) or ("poisoned hva" in text and field == "poisoned_hva"), text


# --------------------------------------------------------- every field


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths to every scalar of a document (lists: their first three items)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _nudged(v: Any) -> list[Any]:
    """Plausible other values of a scalar (most keep the document loadable)."""
    if isinstance(v, bool):
        return [not v]
    if isinstance(v, int):
        return [v + 1, v - 1, v ^ 1, 0, 9]
    if isinstance(v, str) and v.startswith("0x"):
        n = int(v, 16)
        return [hex(n + 1), hex(n + 0x1000), hex(n ^ 0x200), hex(max(n - 1, 0))]
    if isinstance(v, str):
        return ["MAPPED", "PENDING", "4K", "2M", "RUNNABLE", "BUILDING", "9G", "x"]
    if v is None:
        return [0, True, False, ["0x0", "0x1"]]
    return []


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_field_that_a_loaded_state_keeps_is_compared(case: str) -> None:
    """Edit each scalar of a real document in turn: whenever the edited document loads and
    the state it gives differs from the original (but for the event log), diff says so;
    when it does not differ, diff says equal."""
    a = case_vm(case)
    base = json.loads(encode(state_document(a)))
    want = doc_of(a)
    checked = 0
    for path in _leaves(base):
        if path[:2] == ("events", "log") or path[0] in ("format", "version"):
            continue
        parent = base
        for key in path[:-1]:
            parent = parent[key]
        for value in _nudged(parent[path[-1]]):
            doc = copy.deepcopy(base)
            p = doc
            for key in path[:-1]:
                p = p[key]
            p[path[-1]] = value
            try:
                b = vm_from_document(doc)
            except StateError:
                continue
            checked += 1
            same = doc_of(b) == want
            assert diff_vms(a, b)["equal"] == same, (path, value)
    assert checked > 50


# --------------------------------------------------------- behaviour


PROBES = [
    O.Stats(),
    O.Close(0),
    O.Close(1),
    O.Close(3),
    O.GuestAccess(0x1000),
    O.GuestAccess(0x1000, write=True, value=9),
    O.GuestAccess(0x200000, private=True),
    O.VcpuResume(0),
    O.VcpuResume(1),
    O.VcpuResume(2),
    O.CreateGuestMemfd(2 << 20),
    O.Fallocate(3, 1, 0, 4 << 20),
    O.HostAccess(0x7F0000001000),
    O.MemoryFailure(0x100),
    O.Inspect(0x1000),
    O.Stats(),
]


@pytest.mark.slow
@pytest.mark.parametrize("vm_type", sorted(CONFIGS))
def test_states_that_diff_as_equal_behave_alike_and_the_others_differ_in_documents(
    vm_type: str, slow_scale: int
) -> None:
    @settings(max_examples=40 * slow_scale)
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        cfg = data.draw(st.sampled_from(CONFIGS[vm_type]), label="config")
        prefix = data.draw(st.lists(ops(vm_type), max_size=15), label="prefix")
        n = data.draw(st.integers(0, 3), label="suffix length")
        a, b = new_vm(cfg), new_vm(cfg)
        for op in prefix:
            a.apply(op)
            b.apply(op)
        for vm in (a, b):
            for op in data.draw(st.lists(ops(vm_type), min_size=n, max_size=n), label="suffix"):
                vm.apply(op)
        equal = diff_vms(a, b)["equal"]
        assert equal == (doc_of(a) == doc_of(b))
        if equal:
            for op in PROBES:
                assert a.apply(op) == b.apply(op), op

    prop()
