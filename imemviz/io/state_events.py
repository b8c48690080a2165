"""The event log of a state document, checked and refilled: a column at a time when it
is well-formed (C-level passes over a million events), event by event to name the
first bad one otherwise.
"""

from __future__ import annotations

from collections import deque
from itertools import chain
from operator import itemgetter
from typing import Any

from imemviz.io.state_fields import array, fail, integer, json_type, obj, wrong
from imemviz.io.state_limits import Ctx
from imemviz.model.events import EVENT_FIELDS
from imemviz.model.vm import VM


def build_events(vm: VM, v: Any, ctx: Ctx) -> None:
    d = obj(v, "$.events", ("maxlen", "total", "dropped", "log"))
    maxlen = integer(d["maxlen"], "$.events.maxlen", 1, ctx.max_entries, "maxlen")
    log = vm.events  # kept: the VM holds on to its `current` list
    log.maxlen = maxlen
    log.total = integer(d["total"], "$.events.total", what="total")
    log.dropped = integer(d["dropped"], "$.events.dropped", what="dropped")
    raw = array(d["log"], "$.events.log", maxlen)
    ctx.spend(len(raw), "$.events.log")
    # Checked a column at a time (C-level iteration); a bad event is then found row by row.
    ok = not raw or set(map(type, raw)) == {list}
    if ok and raw:
        lens = list(map(len, raw))
        ok = min(lens) >= 2
        if ok:
            names = list(map(itemgetter(1), raw))
            try:  # a name that is a list or an object is unhashable: row by row below
                want = list(map(_EVENT_LEN.get, names))
            except TypeError:
                want = []
            ops = list(map(itemgetter(0), raw))
            ok = (
                want == lens
                and set(map(type, ops)) == {int}
                and min(ops) >= 0
                and set(map(type, chain.from_iterable(raw))) <= _EVENT_SCALARS
            )
    if not ok:
        for i, ev in enumerate(raw):
            _check_event(ev, f"$.events.log[{i}]")
    log.log = deque(map(tuple, raw), maxlen=maxlen)
    last = vm.op_index - 1
    tail = []
    for ev in reversed(log.log):
        if ev[0] != last:
            break
        tail.append(ev)
    vm.last_events = tail[::-1]


_EVENT_LEN = {name: 2 + len(fields) for name, fields in EVENT_FIELDS.items()}
_EVENT_SCALARS = {int, str, bool, type(None)}


def _check_event(ev: Any, p: str) -> None:
    """One event, [op_index, name, fields...]: raise naming what is wrong with it."""
    if type(ev) is not list or len(ev) < 2:
        wrong(p, "an event [op_index, name, fields...]", ev)
    integer(ev[0], f"{p}[0]", what="op_index")
    name = ev[1]
    if type(name) is not str or name not in EVENT_FIELDS:
        fail(f"{p}[1]", f"unknown event {json_type(name).removeprefix('the string ')}")
    names = EVENT_FIELDS[name]
    if len(ev) != 2 + len(names):
        fail(p, f"{name} has {len(names)} fields ({', '.join(names) or 'none'}), got {len(ev) - 2}")
    for j, x in enumerate(ev[2:]):
        if type(x) not in _EVENT_SCALARS:
            wrong(f"{p}[{j + 2}]", f"a number or a string ({name}.{names[j]})", x)
