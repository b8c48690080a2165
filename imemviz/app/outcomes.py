"""What an op and a user action did, told from the session: no Qt, tested headless.

`op_info` is the `OpInfo` the session keeps per op (its counters, its `changes`,
the exit it made, the gfn ranges the raster redraws); `action_record` and
`undone_record` are the `ActionRecord` of a user-level step over ops just
applied or just undone: the line the status bar and the log show, the marks,
the op F8 opens.  The engine thread (`worker.py`) publishes them.
"""

from __future__ import annotations

from typing import Any

import attrs

from imemviz.app.messages import ActionRecord, OpInfo
from imemviz.io.session import Session
from imemviz.model.changes import action_text, merge, op_changes
from imemviz.model.explain import explain
from imemviz.model.op_stats import op_stats
from imemviz.model.ops import Op
from imemviz.model.raster import changed_ranges
from imemviz.model.vm import VM


def op_info(vm: VM, index: int, op: Op, r: Any, events: list[tuple]) -> OpInfo:
    """The session's annotation of op `index` just applied to `vm` (result `r`)."""
    reason = ((r.ret or {}).get("exit") or {}).get("reason")
    exit_ = {"KVM_EXIT_MEMORY_FAULT": 1, "KVM_EXIT_MMIO": 2}.get(reason or "", 0)
    raster = changed_ranges(vm, events)
    changes = op_changes(vm, op, r, events)
    if changes.severe:  # where it happened: this op
        changes = attrs.evolve(
            changes, severe=tuple(attrs.evolve(x, op=index) for x in changes.severe)
        )
    return OpInfo(
        op_stats(vm),
        changes,
        exit_,
        not r.ok,
        None if raster is None else tuple(raster),
    )


def action_record(kind: str, label: str, s: Session, first: int, count: int) -> ActionRecord:
    """The ActionRecord of ops [first, first + count) just applied."""
    infos = [i for i in s.info[first : first + count] if i is not None]
    changes = merge([i.changes for i in infos]).with_ops(range(first, first + count))
    failed = None
    notes = []
    for k in range(first, first + count):
        r, op = s.results[k], s.ops[k]
        if r.ok:
            note = explain(op.NAME, True, None, r.ret)
            if note and note not in notes:
                notes.append(note)
            continue
        events: tuple = ()  # the rule needs them only to tell a kill from a dead VM
        if r.errno == "EIO" and (r.ret or {}).get("vm_dead"):
            events = tuple(ev for ev in log_tail(s.vm) if ev[0] == s.op_base + k)
        failed = (op.NAME, r.errno or "", explain(op.NAME, False, r.errno, r.ret, events))
        break
    name = title(label)
    if kind == "redo":
        name = "Redo: " + name
    text = action_text(name, count, failed, changes, " ".join(notes))
    return ActionRecord(
        kind,
        name,
        text,
        first,
        count,
        first if count else None,
        failed is None and not changes.severe,
        changes,
        len(s.ops),
        failed[2] if failed is not None else "",
    )


def undone_record(kind: str, label: str, s: Session, n_ops: int) -> ActionRecord:
    """The ActionRecord of ops undone (they are now the first of the future)."""
    first = len(s.ops)
    infos = [i for i in s.future_info(n_ops) if i is not None]
    changes = merge([i.changes for i in infos]).with_ops(range(first, first + n_ops))
    changes = attrs.evolve(changes, severe=())  # undone: the TD lives again
    what = f"op #{first}" if n_ops == 1 else f"ops #{first}–#{first + n_ops - 1}"
    text = f"{label} — {what} undone: {changes.summary()}"
    return ActionRecord(kind, label, text, first, n_ops, None, True, changes, len(s.ops))


def title(label: str) -> str:
    """An action's label as a title: "accept 0x810" -> "Accept 0x810"."""
    return label[:1].upper() + label[1:] if label else "Action"


def log_tail(vm: VM, n: int = 64) -> list[tuple]:
    """The last `n` events of the VM's log."""
    log = vm.events.log
    return [log[i] for i in range(max(0, len(log) - n), len(log))]
