"""session.py's loose VMs and sorted checkpoints: every undo, redo, seek and prepare gives the
state a fresh replay of the kept ops gives (differential, on a small TD and on a sparse
4 TiB one), redo by swap reports what a redo by replay reports, and the bisect finds the
checkpoint the old linear search found."""

from __future__ import annotations

import bisect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imemviz.io import plans
from imemviz.io.replay import StateCache, Timeline
from imemviz.io.session import Session
from imemviz.io.state import state_document
from imemviz.model import ops as O

MB = 1 << 20
TIB = 1 << 40
VM_SMALL = {"type": "tdx", "host_memory": "1G"}
VM_BIG = {"type": "tdx", "host_memory": "64G", "tdx_private_max_level": "2M", "gmem_max_order": 9}


def ticking(policy: tuple[float, float] = (0.0, 0.0)) -> dict:
    """Session kwargs with a clock that advances one "second" per reading: the checkpoint
    and loose-VM choices are the same on every run, whatever the machine's load.
    `policy`: (min_checkpoint_seconds: a checkpoint every couple of ops with 0, fewer
    with more, none but the start's with a huge one, so the loose VMs do all the work;
    redo_swap_seconds: 0 swaps on every redo, a huge one never)."""
    ticks = iter(range(10_000_000))
    return {
        "min_checkpoint_seconds": policy[0],
        "max_ops_between_checkpoints": 3,
        "redo_swap_seconds": policy[1],
        "clock": lambda: float(next(ticks)),
    }


POLICY = st.tuples(st.sampled_from([0.0, 8.0, 1e9]), st.sampled_from([0.0, 1e9]))


def small_session(**kw) -> Session:
    s = Session({"vm": VM_SMALL}, **kw)
    s.apply_group(plans.qemu_layout("tdx", 64 * MB), "layout")
    return s


def big_session(**kw) -> Session:
    """A sparse 4 TiB TD: two memslots on one guest_memfd, all private, nothing touched."""
    s = Session({"vm": VM_BIG}, **kw)
    s.apply_group(
        [
            O.CreateGuestMemfd(size=4 * TIB),
            O.SetUserMemoryRegion2(
                0,
                flags=4,
                guest_phys_addr=0,
                memory_size=2 << 30,
                userspace_addr=0x100000000000,
                guest_memfd=3,
            ),
            O.SetUserMemoryRegion2(
                1,
                flags=4,
                guest_phys_addr=4 << 30,
                memory_size=4 * TIB - (2 << 30),
                userspace_addr=0x100080000000,
                guest_memfd=3,
                guest_memfd_offset=2 << 30,
            ),
            O.SetMemoryAttributes(0, 2 << 30, 8),
            O.SetMemoryAttributes(4 << 30, 4 * TIB - (2 << 30), 8),
            O.TdxFinalizeVm(),
        ],
        "layout",
    )
    return s


def replayed(s: Session, config: dict) -> dict:
    vm = Session({"vm": config}).vm
    for op in s.ops:
        vm.apply(op)
    return state_document(vm)


# Actions, and moves more often than actions: the moves are what is tested.
MOVES = ["undo", "redo", "seek", "prepare", "cut"]
KINDS = ["accept", "touch", "conv", "punch", "fork", *MOVES, *MOVES, *MOVES]
STEP = st.tuples(st.sampled_from(KINDS), st.integers(0, 1 << 16))


def run_steps(s: Session, steps, gfn_of, config: dict) -> Session:
    """Apply a mix of actions, undos, redos, seeks and (interrupted) prepares, comparing the
    state with a fresh replay after every step."""
    for kind, n in steps:
        g = gfn_of(n)
        if kind == "undo":
            s.undo()
        elif kind == "redo":
            s.redo()
        elif kind == "seek":
            s.seek(n % (s.length + 1))
        elif kind == "prepare":
            s.prepare()
        elif kind == "cut":  # a prepare a command interrupts after a few ops
            left = iter(range(n % 4, -1, -1))
            s.prepare(lambda left=left: next(left, 0) == 0)
        elif kind == "fork":
            s = s.fork()
        elif kind == "accept":
            s.apply_group(plans.accept_and_touch(s.vm, g).ops)
        elif kind == "touch":
            s.apply_group(plans.guest_access(g, write=True, value=n & 0xFF).ops)
        elif kind == "conv":
            s.apply_group(plans.convert(s.vm, g, g + 3, private=bool(n & 1), discard=True).ops)
        else:
            s.apply_group(plans.punch_hole(s.vm, g, g + 5).ops)
        assert state_document(s.vm) == replayed(s, config), (kind, n)
        assert len(s.loose_positions) <= 2
        # Every loose VM is the state after its own number of timeline ops.
        timeline = [*s.ops, *s.future_ops()]
        for p in s.loose_positions:
            vm = Session({"vm": config}).vm
            for op in timeline[:p]:
                vm.apply(op)
            assert state_document(s._loose[p]) == state_document(vm), ("loose", p)
    return s


@settings(max_examples=60, deadline=None)
@given(POLICY, st.lists(STEP, min_size=6, max_size=24))
def test_small_td_matches_a_replay_after_every_move(policy, steps) -> None:
    run_steps(small_session(**ticking(policy)), steps, lambda n: n % 64, VM_SMALL)


@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@given(POLICY, st.lists(STEP, min_size=4, max_size=12))
def test_sparse_4tib_td_matches_a_replay_after_every_move(policy, steps) -> None:
    # Pages all over the 4 TiB: low RAM and the high slot, 2M leaves and 4K splits.
    def gfn_of(n: int) -> int:
        return ((4 << 30) >> 12) + (n << 20) % ((4 * TIB - (2 << 30)) >> 12) if n & 1 else n % 512

    run_steps(big_session(**ticking(policy)), steps, gfn_of, VM_BIG)


def test_undo_and_redo_swap_the_kept_vms() -> None:
    s = small_session(redo_swap_seconds=0.0)
    for g in range(4):
        s.apply_group(plans.accept_and_touch(s.vm, g).ops, f"a{g}")
    before = s.vm
    assert not s.undo_ready and s.prepare() and s.undo_ready
    spare = s._loose[len(s.ops) - s.groups[-1]]
    assert s.undo()
    assert s.vm is spare and s._loose[len(s.ops) + 2] is before  # nothing copied
    assert s.redo() is not None
    assert s.vm is before and s.undo_ready  # the undone VM back, the spare behind it
    assert s.undo() and s.vm is spare


def test_undo_from_a_prepare_cut_short() -> None:
    """A command stopped the prepare part way: the undo continues from where it got."""
    s = small_session()
    for g in range(3):
        s.apply_group(plans.accept_and_touch(s.vm, g).ops)
    s.prepare()
    s.apply_group(plans.convert(s.vm, 0, 64, private=False, discard=True).ops)
    s.apply_group(plans.accept_and_touch(s.vm, 9).ops)
    calls = iter([False, True])  # one op applied, then a command waits
    assert not s.prepare(lambda: next(calls, True))
    behind = [p for p in s.loose_positions if p < len(s.ops) - s.groups[-1]]
    assert behind and not s.undo_ready
    s.undo()
    assert state_document(s.vm) == replayed(s, VM_SMALL)
    assert s.loose_positions == [len(s.ops) + 2]  # the VM behind was used, not a copy


def test_redo_by_swap_reports_what_a_replayed_redo_reports() -> None:
    def record(s: Session) -> list:
        seen: list = []
        s.redo(lambda i, op, r, ev, dt: seen.append((i, op, r, list(ev))))
        return seen

    a, b = small_session(redo_swap_seconds=0.0), small_session(max_loose=0)
    for s in (a, b):
        for g in (3, 9):
            s.apply_group(plans.accept_and_touch(s.vm, g).ops, "a")
        s.apply_group(plans.convert(s.vm, 0, 16, private=False, discard=True).ops, "conv")
        s.undo()
    assert a.loose_positions and not b.loose_positions
    got, want = record(a), record(b)
    assert got == want and got
    assert state_document(a.vm) == state_document(b.vm)
    assert a.results == b.results and a.vm.last_events == b.vm.last_events


def test_a_new_action_drops_what_the_replaced_future_held() -> None:
    s = small_session(**ticking())
    for g in range(12):
        s.apply_group(plans.accept_and_touch(s.vm, g).ops)
    s.seek(3)
    assert any(k > len(s.ops) for k in s.checkpoints)
    assert any(k > len(s.ops) for k in s.loose_positions)
    s.apply_group(plans.guest_access(40, write=True, value=1).ops)
    assert all(k <= len(s.ops) for k in s.checkpoints + s.loose_positions)
    assert s.checkpoints == sorted(s._checkpoints) and not s.can_redo


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=30))
def test_checkpoint_bisect_is_the_linear_search(moves) -> None:
    """Checkpoints taken, dropped past a position and found again: the bisect over the
    sorted keys gives max(k <= n) over the dict, every time."""
    s = small_session(**ticking())
    for grow, n in moves:
        if grow:
            s.apply_group([O.GuestAccess((n % 64) << 12)])
        else:
            s.seek(n % (s.length + 1))
            if n & 1:
                s.apply_group([O.GuestAccess(0)])  # drops the future's checkpoints
        assert s.checkpoints == sorted(s._checkpoints)
        for k in range(s.length + 2):
            if k <= len(s.ops):
                assert s._ckpt_base(k) == max(c for c in s._checkpoints if c <= k)


def test_state_cache_bisect() -> None:
    s = small_session()
    for g in range(10):
        s.apply_group(plans.accept_and_touch(s.vm, g).ops)
    tl = Timeline("mem", s.start, tuple(s.ops), tuple(None for _ in s.ops))
    cache = StateCache(tl, interval=3)
    for k in (len(tl), 4, 0, 7, len(tl) - 1):
        assert state_document(cache.vm_at(k)) == state_document(s.vm_at(k))
        keys = cache.checkpoints
        assert keys == sorted(cache._checkpoints)
        assert keys[bisect.bisect_right(keys, k) - 1] == max(c for c in keys if c <= k)


def _all_sparse(vm) -> set[int]:
    """Every SparseIndex reachable from the VM, by a walk of the whole object graph."""
    import gc

    from imemviz.model.sparse import SparseIndex

    seen: set[int] = set()
    found: set[int] = set()
    stack = [vm]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (int, str, bytes, float, type)):
            continue
        seen.add(id(o))
        if isinstance(o, SparseIndex):
            found.add(id(o))
        stack.extend(gc.get_referents(o))
    return found


def test_copy_in_steps_is_the_deep_copy(monkeypatch) -> None:
    from imemviz.io import vm_copy
    from imemviz.io.session import deepcopy_vm

    monkeypatch.setattr(vm_copy, "CHUNK", 64)  # small indexes take the stepped path too
    s = big_session()
    for n in range(300):
        s.apply_group(plans.accept_and_touch(s.vm, ((4 << 30) >> 12) + n * 513).ops)
    vm = s.vm
    assert {id(x) for x in vm_copy.sparse_indexes(vm)} == _all_sparse(vm)
    steps = vm_copy.copy_steps(vm)
    n_steps = 0
    try:
        while True:
            next(steps)
            n_steps += 1
    except StopIteration as done:
        copied = done.value
    assert n_steps > 10
    assert state_document(copied) == state_document(deepcopy_vm(vm)) == state_document(vm)
    copied.apply(O.GuestAccept((5 << 30) + (7 << 12)))  # independent of the source
    assert state_document(vm) == state_document(s.vm_at(len(s.ops)))


def test_prepare_pauses_a_copy_and_goes_on_with_it(monkeypatch) -> None:
    from imemviz.io import vm_copy

    monkeypatch.setattr(vm_copy, "CHUNK", 16)
    s = small_session(**ticking((1e9, 0.0)))  # few checkpoints
    for g in range(40):
        s.apply_group(plans.accept_and_touch(s.vm, g).ops)
    s.undo()
    s.apply_group(plans.guest_access(50, write=True, value=2).ops)
    s._loose.clear()  # nothing behind: the prepare must copy the start
    budget = iter(range(3))
    assert not s.prepare(lambda: next(budget, None) is None)
    assert s._copying is not None and not s.loose_positions
    job = s._copying
    assert not s.prepare(lambda: True) and s._copying is job  # not started again
    assert s.prepare() and s._copying is None and s.undo_ready
    s.undo()
    assert state_document(s.vm) == replayed(s, VM_SMALL)


def test_seek_back_and_forth_swaps_the_two_vms() -> None:
    s = small_session(redo_swap_seconds=0.0)
    for g in range(6):
        s.apply_group(plans.accept_and_touch(s.vm, g).ops)
    end = s.vm
    r = s.seek(3)
    assert r.rebuilt and end is s._loose[r.before]
    back = s.vm
    r = s.seek(s.length, on_op=lambda *a: pytest.fail("the ops were applied"))
    assert r.rebuilt and s.vm is end and s._loose[r.before] is back
    assert state_document(s.vm) == replayed(s, VM_SMALL)
