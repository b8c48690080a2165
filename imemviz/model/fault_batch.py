"""Runs of plain faults and accepts applied in one call, without an op object per fault.

`imemviz run` of a fault trace reads a million lines like ``{"op": "guest_access",
"gpa": N}``.  Through `VM.apply` each one costs, besides the fault itself, an op
object, the handler lookup, the cyclic GC pause, the event log's commit, a
`Result` and its line: about a third of the op.  `apply_plain` takes a run of such
ops as ``(kind, gpa)`` pairs and does per op only what the fault needs: the fast
path of `fault_fast` (`access`, `accept`), the op index, and the result line, spelled
as `Result.line_json` spells it.  The events of a run go into the log with one commit.

Everything observable is as if each op had been built, applied with `VM.apply` and
its result written with `Result.line_json`: results, result lines, events (their op
indexes and order, the log, its total and dropped counts), `vm.op_index` and
`vm.last_events` afterwards (the last op's events).  An op the fast path declines
is built and applied with `VM.apply` where it stands, after the events of the ops
before it are committed, so the general path still decides everything unusual.
With `fault_fast.ENABLED` off every op goes through `VM.apply`.
tests/model/test_fault_batch.py compares it with `VM.apply` op by op.

Kinds: `ACCESS` is ``guest_access`` with every field but `gpa` at its default (vCPU 0,
a read, no `private`, no `hold`); 1 and 2 (`LEVEL_4K`, `LEVEL_2M`) are ``guest_accept``
at that level.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from imemviz.model import fault_fast
from imemviz.model.ops import GuestAccept, GuestAccess
from imemviz.model.result import Result

if TYPE_CHECKING:
    from imemviz.model.vm import VM

ACCESS = 0
"""The kind of a plain `guest_access`; an accept's kind is its level (1 = 4K, 2 = 2M)."""

ENABLED = True
"""False: `imemviz run` applies every op with VM.apply, one by one (the differential tests)."""

PlainOp = tuple[int, int]
"""(kind, gpa): one plain fault or accept."""


def apply_plain(
    vm: VM,
    ops: Iterable[PlainOp],
    index: int = 0,
    add: Callable[[str], object] | None = None,
) -> int:
    """Apply `ops` in order, as `VM.apply` of each would; returns `index` plus their count.

    `add`, when given, receives each op's result line (no newline), numbered from
    `index`: ``Result.line_json(index, op name)``.  An exception from the engine (a
    bug) leaves the VM as `VM.apply` would: the failing op counted in `vm.op_index`,
    its events committed.
    """
    if not fault_fast.ENABLED:
        return _apply_each(vm, ops, index, add)
    log = vm.events
    access, accept, enomem = fault_fast.access, fault_fast.accept, fault_fast.ENOMEM
    # Where the last op's events start in log.current (they become vm.last_events);
    # -1 once VM.apply has set vm.last_events itself, None before the first op.
    mark: int | None = None
    fast = False  # True while a fast op is under way (its op_index not yet counted)
    gc_on = gc.isenabled()
    if gc_on:
        gc.disable()  # as VM.apply: ops make no reference cycles
    try:
        for kind, gpa in ops:
            mark = len(log.current)
            fast = True
            if kind == ACCESS:
                hit = access(vm, gpa)
                if hit is not None:
                    vm.op_index += 1
                    fast = False
                    if add is not None:
                        add(
                            f'{{"index":{index},"op":"guest_access","ok":true,"errno":null,'
                            f'"ret":{{"value":{hit[0]},"level":"{hit[1]}","pfn":{hit[2]}}}}}'
                        )
                    index += 1
                    continue
            else:
                got = accept(vm, gpa, kind)
                if got is not None:
                    vm.op_index += 1
                    fast = False
                    if add is not None:
                        if got is enomem:
                            add(Result.fail(enomem).line_json(index, "guest_accept"))
                        else:
                            add(
                                f'{{"index":{index},"op":"guest_accept","ok":true,'
                                f'"errno":null,"ret":{{"level":"{got}"}}}}'
                            )
                    index += 1
                    continue
            # Declined (nothing changed): the general path, in order.
            fast = False
            log.commit()
            op = GuestAccess(gpa) if kind == ACCESS else GuestAccept(gpa, kind)
            mark = -1
            result = vm.apply(op)
            if add is not None:
                add(result.line_json(index, op.NAME))
            index += 1
    finally:
        if fast:
            vm.op_index += 1  # the fast op that raised counts, as in VM.apply
        if mark is not None and mark >= 0:
            cur = log.current
            log.commit()
            vm.last_events = cur[mark:]
        if gc_on:
            gc.enable()
    return index


def _apply_each(
    vm: VM, ops: Iterable[PlainOp], index: int, add: Callable[[str], object] | None
) -> int:
    """`apply_plain` through VM.apply, op by op (the fast path switched off)."""
    for kind, gpa in ops:
        op = GuestAccess(gpa) if kind == ACCESS else GuestAccept(gpa, kind)
        result = vm.apply(op)
        if add is not None:
            add(result.line_json(index, op.NAME))
        index += 1
    return index
