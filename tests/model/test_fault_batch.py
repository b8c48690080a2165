"""Runs of plain faults (model/fault_batch.py, and `imemviz run`'s use of it) against
`VM.apply` op by op.

`apply_plain` is an optimisation only: a run of plain faults and accepts applied in one
call must leave what `VM.apply` of each op leaves (results and result lines, the event
log with its total and dropped counts, `op_index`, `last_events`, the state file), the
fast path on or off, whatever the ops around it do (the property tests' random ops,
weighted towards plain faults: conversions, punches, holds, poison, memslot changes
make the fast path decline in the middle of a run).  Through `imemviz run` (batching
on and off, `fault_batch.ENABLED`) the output, stderr, errors and their lines, and an
engine bug's note must not change either.
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
from imemviz.io.script import ScriptError
from imemviz.io.state import encode_state
from imemviz.model import VM, VMConfig, fault_batch, fault_fast
from imemviz.model.events import EventLog
from imemviz.model.fault_batch import ACCESS, apply_plain
from imemviz.model.host_memory import BuddyAllocator
from imemviz.model.ops import parse_op
from imemviz.model.units import LEVEL_NAMES

from .strategies import KERNELS, SLOT0, configs, ops_for, pages, prologue

# Mostly pages of the private, gmem-backed slot 0 (a few of them, so faults hit leaves
# again); sometimes anywhere (other slots, none) or 2M heads.
fault_pages = st.one_of(
    st.integers(0, 40),
    st.integers(0, (SLOT0[1] >> 12) - 1),
    st.integers(0, 15).map(lambda k: k * 512),
    pages,
)


def plain(vm_type: str) -> st.SearchStrategy[tuple[int, int]]:
    """(kind, gpa) of a plain op: an access, or (TDX) an accept at 4K or 2M."""
    kinds = [ACCESS] if vm_type != "tdx" else [ACCESS, 1, 1, 1, 2]
    return st.tuples(st.sampled_from(kinds), fault_pages.map(lambda p: p << 12))


def _as_dict(kind: int, gpa: int) -> dict[str, Any]:
    if kind == ACCESS:
        return {"op": "guest_access", "gpa": gpa}
    return {"op": "guest_accept", "gpa": gpa, "level": LEVEL_NAMES[kind]}


@st.composite
def batch_scenarios(draw: Any, max_ops: int = 60) -> tuple[dict[str, Any], list[Any]]:
    """A config and a list whose items are either an op dict (applied alone) or a list of
    (kind, gpa) plain ops (applied as one run)."""
    cfg = dict(draw(configs))
    cfg["type"] = draw(st.sampled_from(["sw_protected", "tdx"] * 3 + ["default", "snp"]))
    cfg["kernel"] = draw(st.sampled_from(KERNELS[cfg["type"]]))
    vm_type = cfg["type"]
    cfg["gmem_max_order"] = draw(st.sampled_from([9, 9, 0] if vm_type == "tdx" else [0, 0, 9]))
    cfg["tdx_private_max_level"] = draw(st.sampled_from(["2M", "2M", "4K"]))
    items = draw(
        st.lists(
            st.one_of(
                st.lists(plain(vm_type), min_size=1, max_size=12),
                st.lists(plain(vm_type), min_size=1, max_size=12),
                ops_for(vm_type, cfg["kernel"]),
            ),
            min_size=1,
            max_size=max_ops // 6,
        )
    )
    return cfg, [*prologue(vm_type, cfg["kernel"]), *items]


@contextlib.contextmanager
def switched(module: Any, enabled: bool) -> Iterator[None]:
    saved = module.ENABLED
    module.ENABLED = enabled
    try:
        yield
    finally:
        module.ENABLED = saved


def _fresh(cfg: dict[str, Any], maxlen: int) -> VM:
    vm = VM(VMConfig.from_dict(cfg))
    vm.events = EventLog(maxlen)  # small, so the dropped count is exercised too
    return vm


def _snapshot(vm: VM) -> tuple[Any, ...]:
    return vm.op_index, list(vm.last_events), vm.events.total, vm.events.dropped


def _one_by_one(cfg: dict[str, Any], items: list[Any], maxlen: int) -> tuple[Any, ...]:
    """VM.apply of every op; what the VM looks like after each item."""
    vm = _fresh(cfg, maxlen)
    lines: list[str] = []
    after = []
    for item in items:
        for d in item if isinstance(item, list) else [item]:
            op = parse_op(_as_dict(*d) if isinstance(d, tuple) else d)
            lines.append(vm.apply(op).line_json(len(lines), op.NAME))
        after.append(_snapshot(vm))
    return lines, after, list(vm.events.log), encode_state(vm, "state.json")


def _batched(cfg: dict[str, Any], items: list[Any], maxlen: int) -> tuple[Any, ...]:
    """The same with every run of plain ops through apply_plain."""
    vm = _fresh(cfg, maxlen)
    lines: list[str] = []
    after = []
    for item in items:
        if isinstance(item, list):
            assert apply_plain(vm, item, len(lines), lines.append) == len(lines)
        else:
            op = parse_op(item)
            lines.append(vm.apply(op).line_json(len(lines), op.NAME))
        after.append(_snapshot(vm))
    return lines, after, list(vm.events.log), encode_state(vm, "state.json")


@given(batch_scenarios(), st.sampled_from([200_000, 50, 7]), st.booleans())
@settings(max_examples=200, deadline=None)
def test_a_run_is_vm_apply_op_by_op(
    case: tuple[dict[str, Any], list[Any]], maxlen: int, fast: bool
) -> None:
    cfg, items = case
    with switched(fault_fast, fast):  # VM.apply through the fast path or the general one
        want = _one_by_one(cfg, items, maxlen)
    got = _batched(cfg, items, maxlen)
    assert got[0] == want[0]  # the result lines
    assert got[1] == want[1]  # op_index, last_events, total, dropped after each item
    assert got[2] == want[2]  # the event log
    assert got[3] == want[3]  # the state file, byte for byte


def test_without_lines_and_with_none() -> None:
    """`add` is optional (a bulk build); an empty run changes nothing."""
    cfg = {"type": "tdx", "gmem_max_order": 9, "tdx_private_max_level": "2M"}
    vm, ref = _fresh(cfg, 1000), _fresh(cfg, 1000)
    for d in prologue("tdx"):
        vm.apply(parse_op(d))
        ref.apply(parse_op(d))
    before = _snapshot(vm)
    assert apply_plain(vm, [], 5) == 5
    assert _snapshot(vm) == before
    run = [(2, 0x400000), (1, 0x800000), (2, 0x400000), (ACCESS, 0x9000)]
    assert apply_plain(vm, run) == 4
    for kind, gpa in run:
        ref.apply(parse_op(_as_dict(kind, gpa)))
    assert _snapshot(vm) == _snapshot(ref)
    assert list(vm.events.log) == list(ref.events.log)


class Boom(RuntimeError):
    pass


def _failing_on(monkeypatch: pytest.MonkeyPatch, calls: int) -> None:
    """The buddy allocator raises on its `calls`-th call (an engine bug in the middle of a
    fault: every path allocates the folio and the S-EPT pages through it)."""
    count = [0]
    real = BuddyAllocator.alloc

    def alloc(self: BuddyAllocator, order: int) -> int | None:
        count[0] += 1
        if count[0] == calls:
            raise Boom("engine bug")
        return real(self, order)

    monkeypatch.setattr(BuddyAllocator, "alloc", alloc)


@pytest.mark.parametrize("vm_type", ["sw_protected", "tdx"])
@pytest.mark.parametrize("calls", [1, 2, 5])
def test_an_engine_bug_mid_run_leaves_what_vm_apply_leaves(
    monkeypatch: pytest.MonkeyPatch, vm_type: str, calls: int
) -> None:
    kind = ACCESS if vm_type != "tdx" else 1
    run = [(kind, (k * 3) << 12) for k in range(1, 8)]
    cfg = {"type": vm_type}
    got = []
    for batched in (False, True):
        vm = _fresh(cfg, 1000)
        for d in prologue(vm_type):
            vm.apply(parse_op(d))
        _failing_on(monkeypatch, calls)
        lines: list[str] = []
        with pytest.raises(Boom):
            if batched:
                apply_plain(vm, run, 0, lines.append)
            else:
                for k, gpa in run:
                    lines.append(vm.apply(parse_op(_as_dict(k, gpa))).line_json(len(lines), "x"))
        monkeypatch.undo()
        got.append((len(lines), _snapshot(vm), list(vm.events.log), encode_state(vm, "s.json")))
    assert got[0] == got[1]


# ---------------------------------------------------------------- imemviz run

# Spellings of a plain line (the pre-compiled forms and a few the reader parses in full),
# and lines that end a run: comments, blank lines, general ops, "t", a refused gpa.
PLAIN_SHAPES = [
    '{{"op": "{op}", "gpa": {gpa}}}',
    '{{"op":"{op}","gpa":{gpa}}}',
    '{{"op": "{op}", "gpa": "{hexgpa}"}}',
    '{{"op": "{op}", "gpa": {gpa}, "t": 2.5}}',
    '{{"gpa": {gpa}, "op": "{op}"}}',
]
INTERRUPTIONS = [
    "# a comment",
    "",
    '{"op": "note", "text": "between"}',
    '{"op": "guest_access", "gpa": 99999999999999999999}',  # refused: an error line
    '{"op": "guest_access", "gpa": 4096, "vcpu": 1, "hold": true}',
    '{"op": "vcpu_resume", "vcpu": 1}',
    '{"op": "set_memory_attributes", "address": 0, "size": 65536, "attributes": 0}',
    '{"op": "set_memory_attributes", "address": 0, "size": 65536, "attributes": 8}',
    '{"op": "guest_accept", "gpa": 0, "level": "2M"}',
    '{"op": "guest_access", "gpa": 8192, "write": true, "value": 5}',
    '{"op": "fallocate", "fd": 3, "mode": 3, "offset": 0, "len": 32768}',
    "{not json",
]


@st.composite
def run_scripts(draw: Any) -> tuple[dict[str, Any], list[str], bool]:
    cfg = dict(draw(configs))
    cfg["type"] = draw(st.sampled_from(["sw_protected", "tdx", "tdx", "sw_protected", "snp"]))
    cfg["kernel"] = draw(st.sampled_from(KERNELS[cfg["type"]]))
    cfg["gmem_max_order"] = draw(st.sampled_from([0, 0, 9]))
    lines = [json.dumps(d) for d in prologue(cfg["type"], cfg["kernel"])]
    for _ in range(draw(st.integers(1, 8))):
        for _ in range(draw(st.integers(0, 10))):
            op = draw(st.sampled_from(["guest_access", "guest_accept"]))
            gpa = draw(fault_pages) << 12
            shape = draw(st.sampled_from(PLAIN_SHAPES))
            lines.append(shape.format(op=op, gpa=gpa, hexgpa=hex(gpa)))
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(INTERRUPTIONS)))
        elif draw(st.booleans()):
            lines.append(json.dumps(draw(ops_for(cfg["type"], cfg["kernel"]))))
    # The last line without its line break, sometimes cut short too (salvage).
    cut = draw(st.booleans())
    if cut and draw(st.booleans()):
        lines.append(lines[-1][: draw(st.integers(1, max(1, len(lines[-1]) - 1)))])
    return cfg, lines, cut


def _run(path: str, batched: bool, fast: bool, salvage: bool) -> tuple[Any, ...]:
    """`imemviz run` in process: (results, state file, stderr) or the error's text."""
    with (
        tempfile.TemporaryDirectory() as d,
        switched(fault_batch, batched),
        switched(fault_fast, fast),
    ):
        state = os.path.join(d, "s.json")
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                n = run_script(path, state_out=state, stdout=out, salvage=salvage)
        except ScriptError as e:
            return "error", str(e), out.getvalue(), err.getvalue()
        with open(state, "rb") as f:
            return n, out.getvalue(), f.read(), err.getvalue()


@given(run_scripts(), st.booleans(), st.booleans())
@settings(max_examples=100, deadline=None)
def test_run_output_is_the_same_batched_or_not(
    case: tuple[dict[str, Any], list[str], bool], fast: bool, salvage: bool
) -> None:
    cfg, lines, cut = case
    header = {"format": "imemviz-recording", "version": 1, "start": {"vm": cfg}}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.jsonl")
        with open(path, "w") as f:
            f.write(json.dumps(header) + "\n" + "\n".join(lines) + ("" if cut else "\n"))
        assert _run(path, True, True, salvage) == _run(path, False, fast, salvage)


@pytest.mark.parametrize(
    "last",
    [
        '{"op": "guest_access", "gpa": 81',  # a plain line cut short
        '{"op": "guest_access", "gpa": 8192}',  # complete, without its line break
        '{"op": "note", "te',
        "{not json",
    ],
)
@pytest.mark.parametrize("salvage", [False, True])
def test_a_cut_last_line_after_a_run(tmp_path: Any, last: str, salvage: bool) -> None:
    """The salvage warning counts the ops of the run before it; the error names its line."""
    path = tmp_path / "s.jsonl"
    header = {"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "tdx"}}}
    body = [json.dumps(d) for d in prologue("tdx")]
    body += [f'{{"op": "guest_accept", "gpa": {k << 12}}}' for k in range(600, 603)]
    path.write_text(json.dumps(header) + "\n" + "\n".join([*body, last]))
    got = [_run(str(path), batched, True, salvage) for batched in (False, True)]
    assert got[0] == got[1]
    if salvage and last != '{"op": "guest_access", "gpa": 8192}':
        assert f"replayed the {len(body)} complete op lines" in got[0][-1]


def _allocs(monkeypatch: pytest.MonkeyPatch, path: Any) -> int:
    """How many times `imemviz run` of `path` calls the buddy allocator."""
    count = [0]
    real = BuddyAllocator.alloc

    def alloc(self: BuddyAllocator, order: int) -> int | None:
        count[0] += 1
        return real(self, order)

    monkeypatch.setattr(BuddyAllocator, "alloc", alloc)
    run_script(str(path), stdout=io.StringIO())
    monkeypatch.undo()
    return count[0]


@pytest.mark.parametrize("nth", [1, 4, 8])
def test_an_engine_bug_in_a_run_names_its_op_and_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, nth: int
) -> None:
    header = {"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "tdx"}}}
    head = [json.dumps(header), *(json.dumps(d) for d in prologue("tdx")), "# faults"]
    (tmp_path / "p.jsonl").write_text("\n".join(head) + "\n")
    before = _allocs(monkeypatch, tmp_path / "p.jsonl")  # the start and the prologue
    path = tmp_path / "s.jsonl"
    faults = [f'{{"op": "guest_accept", "gpa": {k << 12}}}' for k in range(1, 9)]
    path.write_text("\n".join(head + faults) + "\n")
    notes = []
    for batched in (False, True):
        _failing_on(monkeypatch, before + nth)  # the nth allocation of the faults
        with switched(fault_batch, batched), pytest.raises(Boom) as info:
            run_script(str(path), stdout=io.StringIO())
        monkeypatch.undo()
        notes.append(info.value.__notes__)
    assert notes[0] == notes[1]
    # The op and line of a fault: ops P.. on lines P + 3.. (the header, the prologue and
    # the comment before them).
    p = len(prologue("tdx"))
    assert any(notes[0] == [f"while applying op {p + k} at {path}:{p + 3 + k}"] for k in range(8))


def test_run_takes_the_batch(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Plain fault lines never reach VM.apply when the fast path takes them (so the tests
    above compare the batch with something)."""
    path = tmp_path / "s.jsonl"
    header = {"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "tdx"}}}
    body = [json.dumps(d) for d in prologue("tdx")]
    body += [f'{{"op": "guest_accept", "gpa": {k << 12}}}' for k in range(600, 640)]
    path.write_text(json.dumps(header) + "\n" + "\n".join(body) + "\n")
    names: list[str] = []
    real = VM.apply

    def apply(self: VM, op: Any) -> Any:
        names.append(op.NAME)
        return real(self, op)

    monkeypatch.setattr(VM, "apply", apply)
    out = io.StringIO()
    assert run_script(str(path), stdout=out) == len(body)
    assert "guest_accept" not in names and len(names) == len(prologue("tdx"))
    assert out.getvalue().count('"ok":true') == len(body)


# ------------------------------------------------------------- the corners, one by one

M2 = 2 << 20
TD = {"type": "tdx", "gmem_max_order": 9, "tdx_private_max_level": "2M", "host_memory": "1G"}


def _private(gpa: int, size: int, attributes: int = 8) -> dict[str, Any]:
    return {"op": "set_memory_attributes", "address": gpa, "size": size, "attributes": attributes}


def _gmem_slot(
    slot: int, gpa: int, size: int, offset: int, flags: int = 4, hva_off: int = 0
) -> dict[str, Any]:
    return {
        "op": "set_user_memory_region2",
        "slot": slot,
        "flags": flags,
        "guest_phys_addr": gpa,
        "memory_size": size,
        "userspace_addr": 0x7F0000000000 + gpa + hva_off,
        "guest_memfd": 3,
        "guest_memfd_offset": offset,
    }


SHARED = 1 << 47  # the TD's shared bit (GPAW 48)
CORNERS: dict[str, tuple[dict[str, Any], list[Any]]] = {
    # the attribute run holding the 2M head ends inside the 2M, or a 4K in it is shared
    "mixed": (
        TD,
        [
            _private(0x3FF000, 0x1000, 0),
            _private(0x664000, 0x1000, 0),
            [(2, 0x200000), (2, 0x600000), (1, 0x200000), (2, 0x800000), (1, 0x3FF000)],
        ],
    ),
    "shared alias": (
        TD,
        [
            _private(SHARED, 4 << 20),  # refused or not, the alias is a shared access
            _gmem_slot(6, SHARED, 4 << 20, 48 << 20),
            [(1, SHARED | 0x5000), (2, SHARED | 0x200000), (1, 0x5000)],
        ],
    ),
    "hva not 2M-aligned": (
        TD,
        [
            _gmem_slot(2, 128 << 20, 4 << 20, 32 << 20, hva_off=0x1000),
            _private(128 << 20, 4 << 20),
            [(2, 128 << 20), (1, (128 << 20) + M2), (2, (128 << 20) + M2)],
        ],
    ),
    "dirty logging": (
        TD,
        [
            _gmem_slot(3, 136 << 20, 4 << 20, 36 << 20, flags=5),
            _private(136 << 20, 4 << 20),
            [(2, 136 << 20), (1, (136 << 20) + M2)],
        ],
    ),
    "slot at the file's end": (
        TD,
        [
            _gmem_slot(4, 144 << 20, M2 + 0x3000, (64 << 20) - M2 - 0x3000),
            _private(144 << 20, 4 << 20),
            [(2, 144 << 20), (1, (144 << 20) + M2), (2, (144 << 20) + M2)],
        ],
    ),
    "no slot, a shared-only slot, past a slot's end": (
        TD,
        [
            _private(32 << 20, 4 << 20),
            [(1, 100 << 20), (2, 64 << 20), (1, (64 << 20) + 4096), (1, 33 << 20), (2, 34 << 20)],
        ],
    ),
    "file offset not 2M-aligned": (
        TD,
        [
            _gmem_slot(5, 160 << 20, 4 << 20, (40 << 20) + 0x1000),
            _private(160 << 20, 4 << 20),
            [(2, 160 << 20), (1, (160 << 20) + 0x3000), (2, 160 << 20), (2, (160 << 20) + M2)],
        ],
    ),
    "file offset not 2M-aligned, fallocated": (
        TD,
        [
            _gmem_slot(5, 160 << 20, 4 << 20, (40 << 20) + 0x1000),
            _private(160 << 20, 4 << 20),
            {"op": "fallocate", "fd": 3, "mode": 1, "offset": 40 << 20, "len": 6 << 20},
            [(2, 160 << 20), (2, (160 << 20) + M2), (1, (160 << 20) + 0x3000)],
        ],
    ),
    "the guest_memfd closed": (
        TD,
        [[(1, 0x5000)], {"op": "close", "fd": 3}, [(1, 0x6000), (2, 0x400000)]],
    ),
    "host memory runs out": (
        {**TD, "host_memory": "24M"},
        [[(2, k * M2) for k in range(16)] + [(1, (k << 12) + M2 + 0x1000) for k in range(9)]],
    ),
    "4K host, 4K folios, runs out": (
        {**TD, "host_memory": "16M", "gmem_max_order": 0},
        [[(1, k << 12) for k in range(0, 8192)]],
    ),
    "a folio there already": (
        TD,
        [
            [(2, 0x200000), (1, 0xA01000)],
            _private(0x200000, M2, 0),
            _private(0xA00000, M2, 0),
            _private(0x200000, M2),
            _private(0xA00000, M2),
            [(2, 0x200000), (1, 0xA01000), (2, 0xA00000), (1, 0xA02000)],
        ],
    ),
    "fallocated runs": (
        TD,
        [
            {"op": "fallocate", "fd": 3, "mode": 1, "offset": 4 << 20, "len": 4 << 20},
            [(2, 4 << 20), (1, 0x1000), (2, 0x200000), (1, (6 << 20) + 0x1000)],
        ],
    ),
    "fallocated runs, 4K folios": (
        {**TD, "gmem_max_order": 0},
        [
            {"op": "fallocate", "fd": 3, "mode": 1, "offset": 4 << 20, "len": 8 << 20},
            [(1, 4 << 20), (1, 0x1000), (1, 0x200000), (1, (6 << 20) + 0x1000)],
        ],
    ),
    "fallocated runs, 16M": (
        TD,
        [
            {"op": "fallocate", "fd": 3, "mode": 1, "offset": 4 << 20, "len": 16 << 20},
            [(2, 4 << 20), (1, 0x1000), (2, 0x200000), (1, (6 << 20) + 0x1000)],
        ],
    ),
    "a 4K below the 2M, twice, inside": (
        TD,
        [
            [(1, 0xC01000), (2, 0xC00000), (1, 0xC01000), (2, 0xE00000), (2, 0xE00000)],
            [(1, 0xE00000), (1, 0xE03000)],
        ],
    ),
    "2M not allowed": (
        {**TD, "tdx_private_max_level": "4K"},
        [[(2, 0x200000), (1, 0x200000), (3, 0x40000000)]],
    ),
    "4K folios": ({**TD, "gmem_max_order": 0}, [[(2, 0x200000), (1, 0x200000), (1, 0x201000)]]),
    "memory_failure between runs": (
        TD,
        [[(2, 0x200000)], {"op": "memory_failure", "pfn": 0}, [(1, 0x1000), (2, 0x400000)]],
    ),
    "an access on a TD": (TD, [[(ACCESS, 0x1000), (1, 0x1000), (ACCESS, 0x1000)]]),
}


@pytest.mark.parametrize("name", list(CORNERS))
def test_corners(name: str) -> None:
    cfg, items = CORNERS[name]
    items = [*prologue("tdx"), *items]
    with switched(fault_fast, False):  # the general path: the definition
        want = _one_by_one(cfg, items, 200_000)
    got = _batched(cfg, items, 200_000)
    assert got == want


@pytest.mark.parametrize("order", [0, 9])
def test_a_poisoned_folio(order: int) -> None:
    """A folio hit by memory_failure: the accepts after it take the general path."""
    cfg = {**TD, "gmem_max_order": order}
    first = [*prologue("tdx"), [(1, 0x5000), (2, 0x400000)]]
    vm = _fresh(cfg, 1000)
    for d in prologue("tdx"):
        vm.apply(parse_op(d))
    apply_plain(vm, first[-1])
    leaf = vm.private.lookup(5)
    assert leaf is not None
    items = [
        *first,
        {"op": "memory_failure", "pfn": leaf.pfn},
        _private(0, 0x600000, 0),
        _private(0, 0x600000),
        [(1, 0x5000), (1, 0x6000), (2, 0x400000), (1, 0x401000)],
    ]
    with switched(fault_fast, False):
        want = _one_by_one(cfg, items, 1000)
    assert _batched(cfg, items, 1000) == want


@pytest.mark.parametrize("vm_type", ["sw_protected", "tdx"])
def test_a_long_run_keeps_the_log_bounded(vm_type: str) -> None:
    """A run of 3,000 faults given as one iterable commits on the way (the events waiting
    in log.current stay bounded) and leaves what VM.apply of each leaves."""
    cfg = {"type": vm_type, "host_memory": "1G"}
    kind = ACCESS if vm_type != "tdx" else 1
    run = [(kind, k << 12) for k in range(3000) if not 256 <= k < 260]  # the TD's init pages
    vm = _fresh(cfg, 5000)
    for d in prologue(vm_type):
        vm.apply(parse_op(d))
    waiting = []

    def ops() -> Iterator[tuple[int, int]]:
        for op in run:
            waiting.append(len(vm.events.current))
            yield op

    lines: list[str] = []
    apply_plain(vm, ops(), 0, lines.append)
    assert max(waiting) <= 1024 * 8 and len(waiting) == len(run)
    ref = _fresh(cfg, 5000)
    for d in prologue(vm_type):
        ref.apply(parse_op(d))
    want = [ref.apply(parse_op(_as_dict(*op))).line_json(k, "x") for k, op in enumerate(run)]
    assert [line.replace('"op":"x"', "") for line in want] == [
        line.replace(f'"op":"{"guest_access" if kind == ACCESS else "guest_accept"}"', "")
        for line in lines
    ]
    assert _snapshot(vm) == _snapshot(ref) and vm.events.dropped > 0
    assert list(vm.events.log) == list(ref.events.log)
