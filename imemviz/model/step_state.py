"""The state in the middle of an op: after each step of its kernel protocol.

An op is atomic in the engine, but the step-through (`protocols.steps`) tells
it as phases: BLOCK every leaf, TRACK, REMOVE, ...; AUG (PENDING), then
ACCEPT (MAPPED); a hole punch's folios present, then freed.  `StepReplayer`
rebuilds the state at step k from a copy of the state before the op, by
applying the events of steps 0..k in step order: each event names what it
changed (a leaf's state, a leaf added or removed, a folio allocated or freed,
an attribute range, the VMM's pages), so the intermediate states the kernel
goes through (leaves BLOCKED at the BLOCK step) are drawn by the same raster
path as any state.  On an SNP guest the RMP is replayed too: RMPUPDATEs, PSMASH,
the launch's Pre-Guest pages and the guest's PVALIDATE (the RMP pane's step view).  It also tracks the gfn ranges of an invalidation in
progress (between `kvm_mmu_invalidate_begin` and `_end`).

An event that changes what this module does not rebuild (a memslot created or
deleted, a file created or closed, a memory error on a VMM page) ends the
exact replay: from that step on the state shown is the state after the op
(`StepState.exact` is False).  Replaying every step of an op gives the state
after it, pixel for pixel (tests/test_step_state.py checks every scene op).

Qt-free; the app's engine thread serves "the map at step k of op N" from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from imemviz.model.events import Event
from imemviz.model.guest_memfd import Folio, Segment
from imemviz.model.mmu import BLOCKED, MAPPED, PENDING, PENDING_BLOCKED, Leaf, LeafTable
from imemviz.model.protocols import Step, merge
from imemviz.model.rmp import PMD_PAGES, VALIDATED, VMSA
from imemviz.model.sparse import unpack_leaf
from imemviz.model.units import LEVEL_2M

if TYPE_CHECKING:
    from imemviz.model.vm import VM

Range = tuple[int, int]

# Events that change nothing the map, the entries or the host folios draw.
_INERT = frozenset(
    {
        "kvm_page_fault",
        "kvm_mmu_spte_requested",
        "kvm_userspace_exit",
        "kvm_mmio",
        "kvm_mmu_page_fault_retry",
        "kvm_faultin_pfn",
        "kvm_gmem_fallocate",
        "kvm_gmem_populate",
        "kvm_vm_dead",
        "handle_mm_fault",
        "madvise",
        "kvm_unmap_hva_range",
        "TDH.MR.EXTEND",
        "TDH.MR.FINALIZE",
        "TDH.MEM.TRACK",
        "TDH.PHYMEM.PAGE.WBINVD",
        # SEV-SNP: the flush, the reclaim (its rmp_make_shared follows), the guest's #VC
        # and page-state change (exits only), and kvm_rmp_fault (its PSMASH and the zap's
        # invalidation events come before it and are replayed themselves)
        "clflush_cache_range",
        "SNP_PAGE_RECLAIM",
        "snp_page_not_validated",
        "snp_psc",
        "kvm_rmp_fault",
        "note",
    }
)


@attrs.frozen
class StepState:
    """The state at one step (read only: it belongs to the replayer, until its next call)."""

    vm: Any
    step: int  # steps 0..step applied (-1: the state before the op)
    in_progress: tuple[Range, ...]  # gfns an invalidation has in progress at this step
    exact: bool  # False: an event up to here could not be replayed; `vm` is the state after


class Unsupported(Exception):
    """An event this module does not replay."""


class StepReplayer:
    """States of one op after each of its steps, from the state before it.

    `before` and `after` are read only; `copy` makes an independent VM (the
    session's deep copy).  Going forward applies only the new steps; going
    back starts again from a copy of `before`.
    """

    def __init__(
        self,
        before: Any,
        after: Any,
        events: Sequence[Event],
        steps: Sequence[Step],
        copy: Any,
    ) -> None:
        self.before, self.after = before, after
        self.events = list(events)
        self.steps = list(steps)
        self._copy = copy
        self._vm: Any = None
        self._done = -1
        self._exact_until = len(self.steps)  # first step that could not be replayed
        self._mmu: list[Range] = []
        self._gmem: list[Range] = []
        self._depth = 0
        # KVM_SET_MEMORY_ATTRIBUTES stores the attributes inside its invalidation, just
        # before kvm_mmu_invalidate_end (the event comes first): held until then.
        self._attrs: list[Event] = []
        names = [ev[1] for ev in self.events]
        first_attr = (
            names.index("kvm_vm_set_mem_attributes")
            if ("kvm_vm_set_mem_attributes" in names)
            else -1
        )
        self._attrs_wait = first_attr >= 0 and "kvm_mmu_invalidate_end" in names[first_attr:]

    def state(self, k: int) -> StepState:
        """The state after steps 0..k (k = -1: before the op; clamped to the last step)."""
        k = max(-1, min(k, len(self.steps) - 1))
        if k >= self._exact_until:
            return StepState(self.after, k, (), False)
        if self._vm is None or k < self._done:
            self._vm = self._copy(self.before)
            self._done = -1
            self._mmu, self._gmem, self._depth, self._attrs = [], [], 0, []
        while self._done < k:
            step = self.steps[self._done + 1]
            try:
                for p in step.positions:
                    self._apply(self.events[p])
            except Unsupported:
                self._exact_until = self._done + 1
                self._vm = None
                return StepState(self.after, k, (), False)
            self._done += 1
        return StepState(self._vm, k, merge(self._mmu + self._gmem), True)

    # ------------------------------------------------------------------ events
    def _apply(self, ev: Event) -> None:
        name, f = ev[1], ev[2:]
        if name in _INERT:
            return
        vm = self._vm
        handler = _HANDLERS.get(name)
        if handler is not None:
            handler(self, vm, f)
            return
        if name == "kvm_mmu_invalidate_begin":
            self._depth = f[0]
        elif name == "kvm_mmu_invalidate_range_add":
            self._mmu.append((f[0], f[1]))
        elif name == "kvm_mmu_invalidate_end":
            for f_attr in self._attrs:
                _attributes(self, vm, f_attr)
            self._attrs = []
            self._depth = max(0, self._depth - 1)
            if not self._depth:
                self._mmu = []
        elif name == "kvm_gmem_invalidate_begin":
            self._gmem += _file_gfns(vm, f[0], f[1], f[2])
        elif name == "kvm_gmem_invalidate_end":
            self._gmem = []
        else:
            raise Unsupported(name)

    def _table(self, vm: VM, root: str, gfn: int, level: int, pfn: int) -> LeafTable:
        """The table a `kvm_mmu_set_spte` of the direct root wrote (outside TDX the private
        and shared leaves share that root: the state after the op says which)."""
        if vm.is_tdx:
            return vm.private if root == "mirror" else vm.shared
        v = self.after.private.leaves[level].get(gfn)
        if v is not None and unpack_leaf(v)[0] == pfn:
            return vm.private
        v = self.after.shared.leaves[level].get(gfn)
        if v is not None and unpack_leaf(v)[0] == pfn:
            return vm.shared
        return vm.private if vm.attr_private(gfn) else vm.shared


def _file_gfns(vm: Any, fd: int, start: int, end: int) -> list[Range]:
    file = vm.files.get(fd)
    if file is None:
        return []
    out = []
    for b in file.bindings_in(start, end):
        slot = vm.memslots.by_id.get(b.slot)
        if slot is not None:
            a, z = max(start, b.pgoff), min(end, b.pgoff + b.npages)
            out.append((slot.base_gfn + a - b.pgoff, slot.base_gfn + z - b.pgoff))
    return out


def _leaf(table: LeafTable, gfn: int, level: int) -> Leaf | None:
    v = table.leaves[level].get(gfn)
    return None if v is None else Leaf(gfn, level, *unpack_leaf(v))


# ------------------------------------------------------------------ handlers
def _attributes(r: StepReplayer, vm: Any, f: Event) -> None:
    vm.attributes.set_range(f[0], f[1], f[2])


def _attributes_event(r: StepReplayer, vm: Any, f: Event) -> None:
    if r._attrs_wait:
        r._attrs.append(f)  # stored at the invalidation's end, as attr_ops does
    else:
        _attributes(r, vm, f)


def _aug(r: StepReplayer, vm: Any, f: Event) -> None:
    vm.private.install(Leaf(f[0], f[1], f[2], PENDING))


def _add(r: StepReplayer, vm: Any, f: Event) -> None:
    vm.private.install(Leaf(f[0], 1, f[1], MAPPED))


def _accept(r: StepReplayer, vm: Any, f: Event) -> None:
    gfn, level, status = f
    if status != "TDX_SUCCESS":
        return
    lf = _leaf(vm.private, gfn & ~((1 << (9 * (level - 1))) - 1), level)
    if lf is None:
        raise Unsupported("TDG.MEM.PAGE.ACCEPT of a missing leaf")
    vm.private.set_state(lf, MAPPED)


def _block(r: StepReplayer, vm: Any, f: Event) -> None:
    lf = _leaf(vm.private, f[0], f[1])
    if lf is None:
        raise Unsupported("TDH.MEM.RANGE.BLOCK of a missing leaf")
    vm.private.set_state(lf, PENDING_BLOCKED if lf.state == PENDING else BLOCKED)


def _remove(r: StepReplayer, vm: Any, f: Event) -> None:
    vm.private.leaves[f[1]].pop(f[0])


def _demote(r: StepReplayer, vm: Any, f: Event) -> None:
    gfn, level, sept = f
    lf = _leaf(vm.private, gfn, level)
    if lf is None:
        raise Unsupported("TDH.MEM.PAGE.DEMOTE of a missing leaf")
    vm.private.remove(lf)
    state = {BLOCKED: MAPPED, PENDING_BLOCKED: PENDING}.get(lf.state, lf.state)
    child = 1 << (9 * (level - 2))  # gfns per entry of the new S-EPT page
    for k in range(512):
        vm.private.install(Leaf(gfn + k * child, level - 1, lf.pfn + k * child, state))
    vm.private.tables[(level - 1, gfn >> (9 * (level - 1)))] = sept


def _spte_changed(r: StepReplayer, vm: Any, f: Event) -> None:
    root, gfn, level, old, new = f
    if new != -1 or old == -1:
        return  # an install: the AUG / ADD / set_spte event that comes with it does it
    tables = [vm.private] if root == "mirror" else [vm.shared]
    if not vm.is_tdx:
        tables = [vm.private, vm.shared]
    for t in tables:
        v = t.leaves[level].get(gfn)
        if v is not None and unpack_leaf(v)[0] == old:
            t.leaves[level].pop(gfn)
            return


def _set_spte(r: StepReplayer, vm: Any, f: Event) -> None:
    root, gfn, pfn, level = f
    r._table(vm, root, gfn, level, pfn).install(Leaf(gfn, level, pfn, MAPPED))


def _sept_add(r: StepReplayer, vm: Any, f: Event) -> None:
    gfn, level, pfn = f
    vm.private.tables[(level - 1, gfn >> (9 * (level - 1)))] = pfn


def _inode(vm: Any, fd: int) -> Any:
    file = vm.files.get(fd)
    if file is None:
        raise Unsupported(f"no file {fd} before the op")
    return file.inode


def _folio_alloc(r: StepReplayer, vm: Any, f: Event) -> None:
    fd, index, order, pfn = f
    _inode(vm, fd).add(Folio(index, order, pfn))


def _folio_free(r: StepReplayer, vm: Any, f: Event) -> None:
    fd, index, order, _pfn = f
    inode = _inode(vm, fd)
    folio = inode.folio_at(index)
    if folio is None:
        raise Unsupported("kvm_gmem_folio_free of a missing folio")
    inode.remove(folio)
    if folio.order > order:  # a huge folio split by a partial punch: its other pages stay
        end = index + (1 << order)
        for k in range(folio.npages):
            i = folio.index + k
            if not index <= i < end:
                inode.add(Folio(i, 0, folio.pfn + k, folio.hwpoison))


def _folios_alloc(r: StepReplayer, vm: Any, f: Event) -> None:
    """`count` folios of one order in a row (one fallocate of a range): one run."""
    fd, index, order, pfn, count = f
    _inode(vm, fd).add_segment(Segment(index, order, pfn, False, count))


def _folios_free(r: StepReplayer, vm: Any, f: Event) -> None:
    """Pages [index, index + count << order) leave the page cache (a punch): whole folios
    of that order, or the inside of a huge folio split by a partial punch (its pages
    outside the range stay, as 4K folios)."""
    from imemviz.model.gmem_ops import _cut

    fd, index, order, _pfn, count = f
    inode = _inode(vm, fd)
    end = index + (count << order)
    for seg in inode.segments_in(index, end):
        n = 1 << seg.order
        a = max(0, (index - seg.index) >> seg.order)
        b = min(seg.count, -((seg.index - end) // n))
        if seg.order < order or a >= b:
            raise Unsupported("kvm_gmem_folios_free over folios of a smaller order")
        _cut(inode, seg, a, b)
        if seg.order == order:
            continue
        for k in range(a, b):  # a huge folio split: the pages outside the range stay
            folio = seg.folio(k)
            lo, hi = max(index, folio.index), min(end, folio.index + n)
            if lo > folio.index:
                inode.add_segment(
                    Segment(folio.index, 0, folio.pfn, folio.hwpoison, lo - folio.index)
                )
            if hi < folio.index + n:
                pfn = folio.pfn + (hi - folio.index)
                inode.add_segment(Segment(hi, 0, pfn, folio.hwpoison, folio.index + n - hi))


def _error_folio(r: StepReplayer, vm: Any, f: Event) -> None:
    fd, index, _order, _pfn = f
    inode = _inode(vm, fd)
    folio = inode.folio_at(index)
    if folio is None:
        raise Unsupported("kvm_gmem_error_folio of a missing folio")
    inode.set_hwpoison(folio)


def _page_alloc(r: StepReplayer, vm: Any, f: Event) -> None:
    pfn, order, hva = f
    vm.hva_pages[order // 9 + 1].set(hva >> 12, pfn)


def _page_free(r: StepReplayer, vm: Any, f: Event) -> None:
    _pfn, order, hva = f
    level = order // 9 + 1
    hvpn = hva >> 12
    if vm.hva_pages[level].pop(hvpn) is not None:
        return
    # A 4K free inside a huge page: the huge page is split, the rest stays.
    for big in (3, 2):
        n = 1 << (9 * (big - 1))
        head = hvpn & ~(n - 1)
        p = vm.hva_pages[big].pop(head)
        if p is not None:
            for k in range(n):
                if head + k != hvpn:
                    vm.hva_pages[1].set(head + k, p + k)
            return


def _memory_failure(r: StepReplayer, vm: Any, f: Event) -> None:
    pfn, kind, _result = f
    if kind != "dirty LRU page":
        return  # a guest_memfd folio (kvm_gmem_error_folio follows) or not guest memory
    # A VMM page: its hva is poisoned (host_ops.poison_shared_page); the page itself is
    # dropped by the mm_page_free that follows.
    for level, idx in vm.hva_pages.items():
        n = 1 << (9 * (level - 1))
        for head, p in idx.items():
            if p <= pfn < p + n:
                vm.poisoned_hva.add(head + (pfn - p))
                return
    raise Unsupported("memory_failure on a page that backs no hva")


# -- SEV-SNP: the RMP (model/snp.py, model/snp_ops.py) -------------------------------
def _snp(vm: Any) -> Any:
    if vm.snp is None:
        raise Unsupported("an SNP event on a VM that is not an SNP guest")
    return vm.snp


def _rmp_make_private(r: StepReplayer, vm: Any, f: Event) -> None:
    pfn, gpa, level, _asid, immutable = f
    _snp(vm).rmp.make_private(pfn, gpa >> 12, level, bool(immutable))


def _rmp_make_shared(r: StepReplayer, vm: Any, f: Event) -> None:
    pfn, _level, npages = f
    _snp(vm).rmp.make_shared(pfn, npages)


def _psmash(r: StepReplayer, vm: Any, f: Event) -> None:
    pfn, ret = f
    if ret == 0 and not _snp(vm).rmp.psmash(pfn):
        raise Unsupported("psmash of a pfn with no 2M RMP entry")


def _launch_update(r: StepReplayer, vm: Any, f: Event) -> None:
    """SNP_LAUNCH_UPDATE: the page written (its content as after the op: one write per
    page per op), then Pre-Guest (validated); the VMSA page leaves the allocator too."""
    _gpa, pfn, page_type, status = f
    snp = _snp(vm)
    if page_type == "VMSA":
        vm.host.alloc.take(pfn)  # snp_launch_finish(): vm.host.allocate(0) gave it
        snp.rmp.set_flags(pfn, 1, VMSA | VALIDATED, 0)
        snp.vmsa_pfn = pfn
        return
    vm.host.write(pfn, r.after.host.read(pfn))
    if status == "SUCCESS":
        snp.rmp.set_flags(pfn, 1, VALIDATED, 0)


def _launch_finish(r: StepReplayer, vm: Any, f: Event) -> None:
    from imemviz.model.snp import finish_launch

    if f[0] == "SUCCESS":
        finish_launch(vm)
        _snp(vm).launched = True


def _pvalidate(r: StepReplayer, vm: Any, f: Event) -> None:
    gpa, level, validate, status = f
    if status != "SUCCESS":
        return
    gfn = gpa >> 12
    lf = vm.private.lookup(gfn)
    if lf is None:
        raise Unsupported("pvalidate of a gfn with no private leaf")
    pfn = lf.pfn_of(gfn)
    n = PMD_PAGES if level == LEVEL_2M else 1
    head = pfn & ~(n - 1)
    if validate:
        _snp(vm).rmp.set_flags(head, n, VALIDATED, 0)
    else:
        _snp(vm).rmp.set_flags(head, n, 0, VALIDATED)


_HANDLERS = {
    "kvm_vm_set_mem_attributes": _attributes_event,
    "TDH.MEM.PAGE.AUG": _aug,
    "TDH.MEM.PAGE.ADD": _add,
    "TDG.MEM.PAGE.ACCEPT": _accept,
    "TDH.MEM.RANGE.BLOCK": _block,
    "TDH.MEM.PAGE.REMOVE": _remove,
    "TDH.MEM.PAGE.DEMOTE": _demote,
    "TDH.MEM.SEPT.ADD": _sept_add,
    "kvm_tdp_mmu_spte_changed": _spte_changed,
    "kvm_mmu_set_spte": _set_spte,
    "kvm_gmem_folio_alloc": _folio_alloc,
    "kvm_gmem_folio_free": _folio_free,
    "kvm_gmem_folios_alloc": _folios_alloc,
    "kvm_gmem_folios_free": _folios_free,
    "kvm_gmem_error_folio": _error_folio,
    "mm_page_alloc": _page_alloc,
    "mm_page_free": _page_free,
    "memory_failure_event": _memory_failure,
    "rmp_make_private": _rmp_make_private,
    "rmp_make_shared": _rmp_make_shared,
    "psmash": _psmash,
    "SNP_LAUNCH_UPDATE": _launch_update,
    "SNP_LAUNCH_FINISH": _launch_finish,
    "pvalidate": _pvalidate,
}
