"""Copying a VM in steps: the session's idle-time copy of a checkpoint, which a command can
pause between any two steps and which resumes later where it stopped.

`deepcopy_vm` (session.py) copies a VM in one call; on a 4 TiB TD with every 2M page
accepted that is ~2.8 s of an engine thread that then answers no command.  `copy_steps`
gives the same copy as a generator: the big sparse indexes' dicts (leaves, folios,
host pages: millions of items) a chunk at a time, yielding between chunks, then one
`copy.deepcopy` of the rest with those dicts already in its memo (SparseIndex's
`__deepcopy__` takes them from there).  Pausing is safe only because the source does
not change meanwhile: the session copies checkpoints this way, which never change.
Never imports Qt.
"""

from __future__ import annotations

import collections
import copy
from collections.abc import Generator
from itertools import islice
from typing import Any

from imemviz.model import sparse
from imemviz.model.extents import ExtentMap
from imemviz.model.sparse import SparseIndex
from imemviz.model.vm import VM

# Dict items copied per step (a few ms); a dict of at most this many is left to deepcopy,
# whose dict.copy() of it is one short C call, several times faster than a chunked copy.
CHUNK = sparse._COPY_CHUNK
_SMALL = 64  # containers larger than this hold values, not the model's objects: not walked


def sparse_indexes(vm: VM) -> list[SparseIndex[Any]]:
    """The SparseIndex objects reachable from the VM through its objects' attributes and
    small containers (the leaf tables' levels, the files, host memory...)."""
    out: list[SparseIndex[Any]] = []
    seen: set[int] = set()
    stack: list[Any] = [vm]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(
            obj, (int, float, str, bytes, bool, type(None), ExtentMap, collections.deque)
        ):
            continue
        seen.add(id(obj))
        if isinstance(obj, SparseIndex):
            out.append(obj)
        elif isinstance(obj, dict):
            if len(obj) <= _SMALL:
                stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            if len(obj) <= _SMALL:
                stack.extend(obj)
        else:
            stack.extend(getattr(obj, "__dict__", {}).values())
            for cls in type(obj).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if name != "__weakref__" and hasattr(obj, name):
                        stack.append(getattr(obj, name))
    return out


def copy_steps(vm: VM) -> Generator[None, None, VM]:
    """A generator that copies `vm` a chunk at a time and returns the copy (equal to
    `deepcopy_vm(vm)`); `vm` must not change until it is done."""
    log = vm.events.log
    memo: dict[int, Any] = {id(log): collections.deque(log, log.maxlen)}
    for idx in sparse_indexes(vm):
        d = idx.dict_view()
        if len(d) <= CHUNK or id(d) in memo:
            continue  # small: deepcopy's own d.copy()
        out: dict[int, Any] = {}
        items = iter(d.items())
        while chunk := list(islice(items, CHUNK)):
            out.update(chunk)
            yield
        memo[id(d)] = out
    yield
    return copy.deepcopy(vm, memo)
