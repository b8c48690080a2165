"""Runs of plain faults and accepts applied in one call, without an op object per fault.

`imemviz run` of a fault trace reads a million lines like ``{"op": "guest_access",
"gpa": N}``.  Through `VM.apply` each one costs, besides the fault itself, an op
object, the handler lookup, the cyclic GC pause, the event log's commit, a
`Result` and its line: about a third of the op.  `apply_plain` takes a run of such
ops as ``(kind, gpa)`` pairs and does per op only what the fault needs: the fast
path of `fault_fast` (`access`; on a TD `_accepter`, `fault_fast.accept` with its loop
invariants taken once per run), the op index, and the result line, spelled as
`Result.line_json` spells it.  The events go into the log one commit per 1,024 ops.

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
from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from imemviz.model import fault_fast
from imemviz.model.fault import PFERR_WRITE
from imemviz.model.ops import GuestAccept, GuestAccess
from imemviz.model.result import Result
from imemviz.model.uapi import KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES
from imemviz.model.units import LEVEL_2M, LEVEL_4K
from imemviz.model.zap import ensure_tables

if TYPE_CHECKING:
    from imemviz.model.events import Event
    from imemviz.model.vm import VM

ACCESS = 0
"""The kind of a plain `guest_access`; an accept's kind is its level (1 = 4K, 2 = 2M)."""

ENABLED = True
"""False: `imemviz run` applies every op with VM.apply, one by one (the differential tests)."""

PlainOp = tuple[int, int]
"""(kind, gpa): one plain fault or accept."""

_COMMIT_EVERY = 1024
"""A run commits its events to the log at least this often (a long one would otherwise
hold all of them, past the log's bound, until its end)."""


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
    access, enomem = fault_fast.access, fault_fast.ENOMEM
    accept: Callable[[int, int], str | None] | None = None
    hoisted = False  # False: (re)build `accept` before the next accept
    last_fast = False  # the last op was applied here (its events are not committed yet)
    under_way = False  # a fast op is changing state (its op_index not yet counted)
    pending = 0  # ops whose events wait in log.current
    gc_on = gc.isenabled()
    if gc_on:
        gc.disable()  # as VM.apply: ops make no reference cycles
    try:
        for kind, gpa in ops:
            if pending >= _COMMIT_EVERY:  # a long run keeps the log's bound (before an op:
                log.commit()  # the last op's events stay in log.current for last_events)
                pending = 0
                hoisted = False  # `accept` holds log.current's extend
            if kind == ACCESS:
                under_way = True
                hit = access(vm, gpa)
                if hit is not None:
                    vm.op_index += 1
                    under_way = False
                    last_fast = True
                    pending += 1
                    if add is not None:
                        add(
                            f'{{"index":{index},"op":"guest_access","ok":true,"errno":null,'
                            f'"ret":{{"value":{hit[0]},"level":"{hit[1]}","pfn":{hit[2]}}}}}'
                        )
                    index += 1
                    continue
                under_way = False
            else:
                if not hoisted:
                    accept = _accepter(vm)
                    hoisted = True
                if accept is not None:
                    under_way = True
                    got = accept(gpa, kind)
                    if got is not None:
                        vm.op_index += 1
                        under_way = False
                        last_fast = True
                        pending += 1
                        if got is enomem:
                            hoisted = False
                            if add is not None:
                                add(Result.fail(enomem).line_json(index, "guest_accept"))
                        elif add is not None:
                            add(
                                f'{{"index":{index},"op":"guest_accept","ok":true,'
                                f'"errno":null,"ret":{{"level":"{got}"}}}}'
                            )
                        index += 1
                        continue
                    under_way = False
            # Declined (nothing changed), or never fast (an access on a TD, an accept
            # elsewhere): VM.apply, in order, after the events of the ops before it.
            log.commit()
            pending = 0
            op = GuestAccess(gpa) if kind == ACCESS else GuestAccept(gpa, kind)
            last_fast = False
            hoisted = False  # the general path may change anything
            result = vm.apply(op)
            if add is not None:
                add(result.line_json(index, op.NAME))
            index += 1
    finally:
        if under_way:
            vm.op_index += 1  # the fast op that raised counts, as in VM.apply
        if last_fast or under_way:
            # The last op's events (every event starts with its op index) become
            # vm.last_events, as VM.apply's commit makes them.
            cur = log.current
            log.commit()
            last = vm.op_index - 1
            k = len(cur)
            while k and cur[k - 1][0] == last:
                k -= 1
            vm.last_events = cur[k:]
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


# --------------------------------------------------------------------- TDX accepts

_NO_END = 1 << 64  # past every gfn: the end of the last attribute run


def _accepter(vm: VM) -> Callable[[int, int], str | None] | None:
    """`fault_fast.accept` for a run of accepts, its loop invariants taken once.

    Returns None when no accept can take the fast path now (the VM-level conditions
    of `fault_fast.accept`), else a function (gpa, level) -> what `fault_fast.accept`
    returns, and None, having changed nothing, where that would return None or take
    its rarer branches (a folio of another order or of a run, `folio_at`).  What it
    takes once holds until an op goes through VM.apply (the caller builds a new one
    then): the VM-level conditions, the config, the private table's dicts, the
    attribute and memslot lists, and per memslot its fields, its guest_memfd inode,
    and whether that inode has folios of another order or runs (the accepts add
    folios of the one order `gmem_max_order`, never of another or a run).  The
    attribute run and the memslot of the last gfn are remembered.  Every step is
    `fault_fast.accept`'s, in its order; tests/model/test_fault_batch.py compares.
    """
    if (
        not vm.is_tdx
        or vm.dead
        or vm.td_state != "RUNNABLE"
        or vm.snp is not None
        or 0 in vm.in_flight
        or vm.inv.in_progress
        or vm.kernel.v8_fault_scope
    ):
        return None
    config = vm.config
    order = config.gmem_max_order
    if order not in (0, 9):
        return None  # fault_fast.accept takes neither 4K nor 2M then
    huge_ok = order == 9 and config.tdx_private_max_level >= LEVEL_2M
    shared_bit = vm.shared_bit
    table = vm.private
    d4k, d2m, d1g, tables, root = table._d4k, table._d2m, table._d1g, table.tables, table.root
    pending4k, pending2m = table.leaves[LEVEL_4K]._pending, table.leaves[LEVEL_2M]._pending
    starts, vals = vm.attributes._starts, vm.attributes._vals
    has_private_mem = vm.has_private_mem
    bases, slots = vm.memslots._bases, vm.memslots._sorted
    host = vm.host
    alloc, content = host.alloc, host.content
    extend = vm.events.current.extend  # the list is replaced only by a commit (VM.apply)
    # The attribute run holding the last gfn: [a_lo, a_hi), private or not.
    a_lo = a_hi = 0
    a_priv = 0
    # The memslot holding the last gfn, [s_lo, s_hi), and what accept reads of it.
    s_lo = s_hi = base = npages = pgoff = flags = uaddr_pfn = fd = inode_npages = 0
    other = False
    store_d: dict[int, int] = {}
    store_pending: list[int] = []

    def accept(gpa: int, level: int) -> str | None:
        nonlocal a_lo, a_hi, a_priv, s_lo, s_hi, base, npages, pgoff, flags, uaddr_pfn
        nonlocal fd, inode_npages, other, store_d, store_pending
        gfn = gpa >> 12
        if gfn & shared_bit:
            return None
        if level == LEVEL_2M:
            if not huge_ok:
                return None
            gfn &= ~(_HUGE - 1)
        elif level != LEVEL_4K:
            return None
        if gfn in d4k or (d2m and gfn & ~0x1FF in d2m) or (d1g and gfn & ~0x3FFFF in d1g):
            return None  # a leaf exists
        if not a_lo <= gfn < a_hi:
            run = bisect_right(starts, gfn) - 1
            a_lo, a_priv = starts[run], vals[run]
            a_hi = starts[run + 1] if run + 1 < len(starts) else _NO_END
        if not a_priv:
            return None  # shared
        if not s_lo <= gfn < s_hi:
            k = bisect_right(bases, gfn) - 1
            if k < 0:
                return None
            slot = slots[k]
            if gfn >= slot.base_gfn + slot.npages or not slot.flags & KVM_MEM_GUEST_MEMFD:
                return None
            file = slot.gmem_file
            if file is None:
                return None
            inode = file.inode
            folios, runs = inode.folios, inode.runs
            s_lo = base = slot.base_gfn
            npages = slot.npages
            s_hi = base + npages
            pgoff, flags, uaddr_pfn = slot.gmem_pgoff, slot.flags, slot.userspace_addr >> 12
            fd, inode_npages = file.fd, inode.npages
            store = folios[order]
            store_d, store_pending = store._d, store._pending
            other = bool(
                runs[0].folios
                or runs[9].folios
                or runs[18].folios
                or (order and folios[0]._d)
                or (not order and folios[9]._d)
                or folios[18]._d
            )
        index = gfn - base + pgoff
        head_index = index & ~(_HUGE - 1) if order else index
        fv = store_d.get(head_index)
        if fv is None:
            if other:
                return None  # fault_fast.accept asks folio_at
            new = True
            head_pfn = 0
        elif fv & 1:
            return None  # hwpoison
        else:
            new = False
            head_pfn = fv >> 1
        if level == LEVEL_2M and (
            (LEVEL_4K, gfn >> 9) in tables
            or flags & KVM_MEM_LOG_DIRTY_PAGES
            or gfn < base
            or gfn + _HUGE > base + npages
            or (base ^ uaddr_pfn) & (_HUGE - 1)
            or (has_private_mem and a_hi < gfn + _HUGE)
            or (new and (index ^ gfn) & (_HUGE - 1))
            or (not new and (gfn ^ (head_pfn + index - head_index)) & 511)
        ):
            return None
        if new:
            if order and head_index + _HUGE > inode_npages:
                return None
            if not order and not alloc.free_pages:
                return None
            alloc_pfn = alloc.alloc(order)
            if alloc_pfn is None:
                return None
            head_pfn = alloc_pfn
        # Nothing has changed up to here; from here on the accept commits.
        pfn = head_pfn + (index - head_index)
        i = vm.op_index
        head: tuple[Event, ...]  # the events before the S-EPT pages (when some are missing)
        if new:
            store_pending.append(head_index)
            store_d[head_index] = head_pfn << 1
            head = (
                (i, "kvm_page_fault", 0, gfn << 12, PFERR_WRITE),
                (i, "kvm_gmem_folio_alloc", fd, head_index, order, head_pfn),
                (i, "kvm_mmu_spte_requested", gfn, pfn, level),
            )
        else:
            head = (
                (i, "kvm_page_fault", 0, gfn << 12, PFERR_WRITE),
                (i, "kvm_mmu_spte_requested", gfn, pfn, level),
            )
        if (level, gfn >> (9 * level)) not in tables:
            extend(head)
            head = ()
            if not ensure_tables(vm, table, gfn, level):  # TDH.MEM.SEPT.ADD the missing pages
                return fault_fast.ENOMEM
        if level == LEVEL_4K:
            pending4k.append(gfn)
            d4k[gfn] = pfn << 2  # AUG leaves it PENDING; the ACCEPT makes it MAPPED
        else:
            pending2m.append(gfn)
            d2m[gfn] = pfn << 2
        if content._d:
            host.clear(pfn, 1 << (9 * (level - 1)))  # ACCEPT initialises the page to zero
        extend(
            (
                *head,
                (i, "kvm_tdp_mmu_spte_changed", root, gfn, level, -1, pfn),
                (i, "TDH.MEM.PAGE.AUG", gfn, level, pfn),
                (i, "TDG.MEM.PAGE.ACCEPT", gfn, level, "TDX_SUCCESS"),
            )
        )
        return "4K" if level == LEVEL_4K else "2M"

    return accept


_HUGE = 512  # pages in a 2M folio or leaf
