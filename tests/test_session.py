"""session.py and plans.py: undo/redo by replay from checkpoints, recordings, action plans."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imemviz.io import plans
from imemviz.io.script import read_script, start_vm
from imemviz.io.session import Session, SessionError
from imemviz.model import ops as O
from imemviz.model.config import ConfigError
from imemviz.model.query import inspect_gfn, stats_dict
from imemviz.model.raster import step_function

MB = 1 << 20


def td_session(**kw) -> Session:
    s = (
        Session.new({"type": "tdx", "host_memory": "1G"}, **kw)
        if not kw
        else Session({"vm": {"type": "tdx", "host_memory": "1G"}}, **kw)
    )
    s.apply_group(plans.qemu_layout("tdx", 64 * MB), "layout")
    return s


def fingerprint(session: Session) -> tuple:
    vm = session.vm
    st_ = stats_dict(vm)
    b, c = step_function(vm, 0, (64 * MB) >> 12)
    return (
        json.dumps(st_, sort_keys=True),
        b.tobytes(),
        c.tobytes(),
        json.dumps([inspect_gfn(vm, g) for g in range(0, (64 * MB) >> 12, 61)], sort_keys=True),
    )


def test_new_session_and_layout() -> None:
    s = td_session()
    assert s.vm.td_state == "RUNNABLE"
    assert sorted(s.vm.memslots.by_id) == [0]
    assert all(r.ok for r in s.results)
    assert s.groups == [len(s.ops)] and s.labels == ["layout"]
    with pytest.raises(ConfigError):
        Session.new({"type": "nope"})


def test_undo_redo_restore_exact_states() -> None:
    s = td_session()
    prints = [fingerprint(s)]
    for gfn in (1, 2, 3, 0x200):
        s.apply_group(plans.accept_and_touch(s.vm, gfn).ops)
        prints.append(fingerprint(s))
    s.apply_group(plans.convert(s.vm, 0, 4, private=False, discard=True).ops)
    prints.append(fingerprint(s))
    for want in reversed(prints[:-1]):
        assert s.undo()
        assert fingerprint(s) == want
    assert s.undo_label == "layout" and s.undo()  # the layout group itself
    assert not s.undo() and not s.can_undo
    s.redo()
    for want in prints[1:]:
        assert s.redo() is not None
        assert fingerprint(s) == want
    assert s.redo() is None
    # A new op after an undo forgets the redo history.
    s.undo()
    s.apply(O.GuestAccept(0x5000))
    assert not s.can_redo


def test_checkpoints_bound_replay() -> None:
    # A clock that advances one "second" per reading: the checkpoint policy sees the
    # same costs on every run, whatever the machine's load.
    ticks = iter(range(1_000_000))
    s = td_session(
        min_checkpoint_seconds=0.0, max_ops_between_checkpoints=4, clock=lambda: float(next(ticks))
    )
    for gfn in range(40):
        s.apply(O.GuestAccept(gfn << 12))
    assert len(s.checkpoints) >= 2
    ref = fingerprint(s)
    for _ in range(10):
        s.undo()
    # Checkpoints in the undone future stay, for redo and seeks...
    assert any(k > len(s.ops) for k in s.checkpoints)
    for _ in range(10):
        s.redo()
    assert fingerprint(s) == ref
    # ... until a new action replaces that future.
    for _ in range(10):
        s.undo()
    s.apply(O.GuestAccept(63 << 12))
    assert all(k <= len(s.ops) for k in s.checkpoints) and not s.can_redo


def test_seek_moves_both_ways_keeping_the_future() -> None:
    ticks = iter(range(1_000_000))
    # redo_swap_seconds: never swap the VM a seek back left in (test_session_loose.py does).
    s = td_session(
        min_checkpoint_seconds=0.0,
        max_ops_between_checkpoints=4,
        clock=lambda: float(next(ticks)),
        redo_swap_seconds=1e9,
    )
    s.annotate = lambda vm, i, op, r, events: (i, vm.op_index - s.op_base - 1, len(events))
    prints = [fingerprint(s)]
    for gfn in range(30):
        s.apply_group(plans.accept_and_touch(s.vm, gfn).ops, f"a{gfn}")
        prints.append(fingerprint(s))
    n = s.position
    assert s.length == n and s.info[-1][:2] == (len(s.ops) - 1, len(s.ops) - 1)
    info = list(s.info)
    # Backwards to any group: rebuilt from a checkpoint, the rest kept as the future.
    r = s.seek(5)
    assert r.rebuilt and s.position == 5 and s.length == n and fingerprint(s) == prints[4]
    assert s.future()[0].label == "a4" and s.redo_label == "a4"
    # Forwards past a checkpoint: rebuilt, with the stored results and annotations.
    r = s.seek(n - 1)
    assert r.rebuilt and r.after == len(s.ops) and fingerprint(s) == prints[n - 2]
    assert s.info == info[: len(s.ops)] and len(s.results) == len(s.ops)
    # One step forwards with no checkpoint inside: applied, on_op called per op.
    seen = []
    r = s.seek(n, on_op=lambda i, op, res, ev, dt: seen.append(i))
    assert not r.rebuilt and seen == [len(s.ops) - 2, len(s.ops) - 1]
    assert fingerprint(s) == prints[n - 1] and s.info == info
    assert s.seek(n + 5).after == len(s.ops)  # clamped
    # vm_at builds any earlier state without touching the session's.
    vm = s.vm_at(4)
    assert vm is not s.vm and vm.op_index == s.op_base + 4


def test_fork_keeps_the_history_and_drops_the_future() -> None:
    s = td_session()
    for gfn in range(6):
        s.apply_group(plans.accept_and_touch(s.vm, gfn).ops)
    s.seek(3)
    f = s.fork()
    f.apply_group(plans.guest_access(40, write=True, value=1).ops, "what if")
    assert f.position == 4 and not f.can_redo
    assert s.position == 3 and s.length == 7 and s.can_redo  # the original is untouched
    s.seek(7)
    assert s.vm.private.lookup(5) is not None and f.vm.private.lookup(5) is None


def test_op_base_counts_the_starts_own_ops() -> None:
    s = Session.scene("default")
    assert s.op_base == s.vm.op_index > 0
    s.apply_group(plans.accept_and_touch(s.vm, 0x20000).ops)
    # Session op 0 (the accept) is the VM's op op_base + 0: its events carry that number.
    assert s.vm.events.log[-1][1] == "TDG.MEM.PAGE.ACCEPT"
    assert s.vm.events.log[-1][0] == s.op_base + 0


def test_undo_brings_a_killed_td_back() -> None:
    s = td_session()
    r = s.apply_group(plans.touch_without_accept(5).ops)
    assert r[0].errno == "EIO" and s.vm.dead
    s.undo()
    assert not s.vm.dead


def test_save_recording_replays_to_the_same_state(tmp_path) -> None:
    s = td_session()
    s.apply_group(plans.accept_and_touch(s.vm, 7).ops)
    s.apply_group(plans.convert(s.vm, 8, 16, private=False, discard=True).ops)
    s.apply_group(plans.guest_access(8, write=True, value=0x5A).ops)
    path = tmp_path / "rec.jsonl"
    s.save_recording(path)
    script = read_script(path)
    assert script.header.start == s.start
    vm = start_vm(script.header.start)
    for _line, op, t in script.ops:
        vm.apply(op)
        assert t is not None
    assert stats_dict(vm) == stats_dict(s.vm)
    again = Session.open(path)
    assert fingerprint(again) == fingerprint(s)
    assert again.can_undo and len(again.groups) == len(s.ops)


def test_open_errors_are_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "x"}}}\n'
    )
    with pytest.raises(SessionError) as e:
        Session.open(bad)
    assert "bad.jsonl:1" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SessionError):
        Session.open(tmp_path / "missing.jsonl")
    with pytest.raises(SessionError):
        Session.scene("no-such-scene")


def test_state_round_trip(tmp_path) -> None:
    pytest.importorskip("imemviz.io.state")
    s = td_session()
    s.apply_group(plans.accept_and_touch(s.vm, 3, write=True, value=9).ops)
    path = tmp_path / "s.json.gz"
    s.save_state(path)
    t = Session.open(path)
    assert "state" in t.start
    assert fingerprint(t) == fingerprint(s)
    t.apply(O.GuestAccess(3 << 12))
    assert t.results[-1].ret["value"] == 9


# ------------------------------------------------------------------- plans


def test_accept_and_touch_skips_the_accept_of_accepted_pages() -> None:
    s = td_session()
    p = plans.accept_and_touch(s.vm, 9)
    assert [op.NAME for op in p.ops] == ["guest_accept", "guest_access"]
    s.apply_group(p.ops)
    assert [op.NAME for op in plans.accept_and_touch(s.vm, 9).ops] == ["guest_access"]
    assert [op.NAME for op in plans.default_click(s.vm, 9).ops] == ["guest_access"]
    assert [op.NAME for op in plans.default_click(s.vm, 10).ops] == ["guest_accept", "guest_access"]
    # A hole: a plain guest access (MMIO exit).
    assert [op.NAME for op in plans.default_click(s.vm, 1 << 30).ops] == ["guest_access"]


def test_convert_with_discard_frees_the_old_backing() -> None:
    s = td_session()
    s.apply_group(plans.accept_and_touch(s.vm, 0x100).ops)
    folio = inspect_gfn(s.vm, 0x100)["folio"]
    assert folio is not None
    s.apply_group(plans.convert(s.vm, 0x100, 0x101, private=False, discard=False).ops)
    assert inspect_gfn(s.vm, 0x100)["folio"] is not None  # kept: memory held twice
    s.undo()
    p = plans.convert(s.vm, 0x100, 0x101, private=False, discard=True)
    assert [op.NAME for op in p.ops] == ["set_memory_attributes", "fallocate"]
    s.apply_group(p.ops)
    assert inspect_gfn(s.vm, 0x100)["folio"] is None
    # Back to private, dropping the shared page the guest touched meanwhile.
    s.apply_group(plans.guest_access(0x100, write=True, value=1).ops)
    assert inspect_gfn(s.vm, 0x100)["content"]["shared"] == 1
    p = plans.convert(s.vm, 0x100, 0x101, private=True, discard=True)
    assert [op.NAME for op in p.ops] == ["set_memory_attributes", "madvise"]
    s.apply_group(p.ops)
    assert inspect_gfn(s.vm, 0x100)["content"]["shared"] is None


def test_range_plans_split_by_memslot() -> None:
    s = Session.new({"type": "sw_protected", "host_memory": "1G"})
    s.apply_group(plans.qemu_layout("sw_protected", 2 * 1024 * MB + 4 * MB, low_limit=2048 * MB))
    lo_end = (2048 * MB) >> 12
    hi = (4 << 30) >> 12
    p = plans.punch_hole(s.vm, lo_end - 2, hi + 2)
    assert [(op.offset, op.len) for op in p.ops] == [
        ((lo_end - 2) << 12, 2 << 12),
        (lo_end << 12, 2 << 12),
    ]
    assert plans.punch_hole(s.vm, lo_end, lo_end + 10).note  # the hole between the slots
    d = plans.dontneed(s.vm, lo_end - 2, hi + 2)
    assert len(d.ops) == 2 and all(r.ok for r in s.apply_group(d.ops))
    a = plans.allocate(s.vm, 0, 4)
    assert s.apply_group(a.ops)[0].ok


def test_memory_failure_plan_hits_the_backing_page() -> None:
    s = td_session()
    assert not plans.memory_failure(s.vm, 20).ops
    s.apply_group(plans.accept_and_touch(s.vm, 20).ops)
    p = plans.memory_failure(s.vm, 20)
    assert p.ops[0].pfn == inspect_gfn(s.vm, 20)["private_mapping"]["pfn"]
    s.apply_group(p.ops)
    assert inspect_gfn(s.vm, 20)["folio"]["hwpoison"]
    r = s.apply_group(plans.guest_access(20).ops)
    assert r[0].errno == "EHWPOISON"


@pytest.mark.parametrize("how", ["convert", "punch", "dontneed"])
def test_race_steps_retry(how: str) -> None:
    s = Session.new({"type": "sw_protected", "host_memory": "1G"})
    s.apply_group(plans.qemu_layout("sw_protected", 64 * MB))
    gfn = 0x40
    if how == "dontneed":
        s.apply_group(plans.convert(s.vm, gfn, gfn + 1, private=False, discard=False).ops)
    r = s.apply_group(plans.race_step(s.vm, "hold", gfn).ops)
    assert r[0].ret.get("in_flight")
    seq = s.vm.inv.seq
    s.apply_group(plans.race_step(s.vm, "invalidate", gfn, how).ops)
    assert s.vm.inv.seq > seq
    r = s.apply_group(plans.race_step(s.vm, "resume", gfn).ops)
    assert r[0].ret.get("retried"), r[0]
    with pytest.raises(ValueError):
        plans.race_step(s.vm, "nope", gfn)


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["accept", "touch", "conv", "punch", "undo", "redo"]),
            st.integers(0, 64),
        ),
        max_size=20,
    )
)
def test_undo_redo_matches_a_plain_replay(steps) -> None:
    """Whatever mix of actions, undo and redo: the state equals a replay of the kept ops."""
    s = td_session(min_checkpoint_seconds=0.0, max_ops_between_checkpoints=3)
    for kind, g in steps:
        if kind == "undo":
            s.undo()
        elif kind == "redo":
            s.redo()
        elif kind == "accept":
            s.apply_group(plans.accept_and_touch(s.vm, g).ops)
        elif kind == "touch":
            s.apply_group(plans.guest_access(g, write=True, value=g).ops)
        elif kind == "conv":
            s.apply_group(plans.convert(s.vm, g, g + 3, private=bool(g & 1), discard=True).ops)
        else:
            s.apply_group(plans.punch_hole(s.vm, g, g + 5).ops)
    replay = Session({"vm": {"type": "tdx", "host_memory": "1G"}})
    for op in s.ops:
        replay.vm.apply(op)
    assert fingerprint(replay) == fingerprint(s)


def test_deepcopy_vm_is_independent() -> None:
    from imemviz.io.session import deepcopy_vm

    s = td_session()
    c = deepcopy_vm(s.vm)
    n = s.vm.events.total
    r = c.apply(O.GuestAccept(0x5000))
    assert r.ok and c.last_events and s.vm.events.total == n and not s.vm.events.current
    assert s.vm.private.lookup(5) is None and c.private.lookup(5) is not None
    assert len(c.events.log) == len(s.vm.events.log) + len(c.last_events)


def test_recording_after_opening_a_state_embeds_it(tmp_path) -> None:
    pytest.importorskip("imemviz.io.state")
    s = td_session()
    s.apply_group(plans.accept_and_touch(s.vm, 4, write=True, value=3).ops)
    state = tmp_path / "s.json.zst"
    s.save_state(state)
    t = Session.open(state)
    t.apply_group(plans.convert(t.vm, 4, 8, private=False, discard=True).ops)
    rec = tmp_path / "r.jsonl"
    t.save_recording(rec)
    script = read_script(rec)
    assert list(script.header.start) == ["state"]
    vm = start_vm(script.header.start)
    for _line, op, _t in script.ops:
        vm.apply(op)
    assert stats_dict(vm) == stats_dict(t.vm)
    assert inspect_gfn(vm, 4) == inspect_gfn(t.vm, 4)


def test_sparse_index_deep_copy_is_independent_and_ordered() -> None:
    import copy
    import random

    from imemviz.model.sparse import SparseIndex, copy_dict

    rnd = random.Random(3)
    a: SparseIndex[int] = SparseIndex()
    ref_a: dict[int, int] = {}
    for k in rnd.sample(range(200_000), 30_000):
        a.set(k, k * 3)
        ref_a[k] = k * 3
    for k, _v in a.pop_range(1000, 2000):  # the sorted keys exist; then some pending ones
        del ref_a[k]
    for k in rnd.sample(range(200_000, 210_000), 500):
        a.set(k, -k)
        ref_a[k] = -k
    b = copy.deepcopy(a)
    ref_b = dict(ref_a)
    b.set(5, 1)
    ref_b[5] = 1
    for k, _v in b.pop_range(100_000, 150_000):
        del ref_b[k]
    first = a.keys()[0]
    a.pop(first)
    del ref_a[first]
    for idx, ref in ((a, ref_a), (b, ref_b)):
        keys, vals = idx.arrays()
        assert keys == sorted(ref) and vals == [ref[k] for k in keys]
        assert idx.items_in(150_000, 160_000) == [
            (k, ref[k]) for k in sorted(ref) if 150_000 <= k < 160_000
        ]
    assert not b.any_in(100_000, 150_000) and a.any_in(100_000, 150_000)
    big = {k: k for k in range(200_000)}
    assert copy_dict(big) == big and copy_dict(big) is not big
