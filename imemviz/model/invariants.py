"""The model invariants of reference/kernel-core.md section 7 (plus host accounting).

`check_invariants(vm)` returns every violation with the gfn/pfn it concerns.
The tests run it after every op; `imemviz check` runs it on loaded states.
Cost is linear in leaves, folios and host pages in use, never in guest size.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

import attrs
import numpy as np

from imemviz.model import snp
from imemviz.model.guest_memfd import GUEST_MEMFD
from imemviz.model.invariant_screen import both_roots, host_blocks, leaf_columns, suspect_leaves
from imemviz.model.mmu import MAPPED, PENDING, Leaf
from imemviz.model.sparse import unpack_pfnmap
from imemviz.model.units import LEVEL_4K, LEVEL_NAMES

if TYPE_CHECKING:
    from imemviz.model.vm import VM


@attrs.frozen
class Violation:
    code: str  # I1..I7, HOST
    message: str
    gfn: int | None = None
    pfn: int | None = None

    def __str__(self) -> str:
        where = []
        if self.gfn is not None:
            where.append(f"gfn {self.gfn:#x}")
        if self.pfn is not None:
            where.append(f"pfn {self.pfn:#x}")
        return f"{self.code}: {self.message}" + (f" ({', '.join(where)})" if where else "")


class _Capped(list[Violation]):
    """A list that keeps the first `limit` violations and counts them all."""

    def __init__(self, limit: int | None) -> None:
        super().__init__()
        self.limit = limit
        self.total = 0

    def append(self, v: Violation) -> None:
        self.total += 1
        if self.limit is None or len(self) < self.limit:
            super().append(v)


def check_invariants(vm: VM) -> list[Violation]:
    return count_violations(vm)[0]


def count_violations(vm: VM, limit: int | None = None) -> tuple[list[Violation], int]:
    """The first `limit` violations (all: None) and how many there are in all: a state
    broken everywhere costs a count, not millions of kept messages."""
    out = _Capped(limit)
    _check_leaves(vm, out)
    _check_bindings(vm, out)
    _check_counters(vm, out)
    _check_host(vm, out)
    if vm.snp is not None:
        for pfn, message in snp.rmp_violations(vm):
            out.append(Violation("RMP", message, pfn=pfn))
    return list(out), out.total


def _backing_pfn(vm: VM, gfn: int, private: bool) -> int | None:
    """The pfn gfn must translate to: its gmem folio page, or the host page behind its hva."""
    slot = vm.memslots.lookup(gfn)
    if slot is None:
        return None
    if private or slot.gmem_only:
        if slot.gmem_file is None:
            return None
        index = slot.gmem_index(gfn)
        folio = slot.gmem_file.inode.folio_at(index)
        return None if folio is None else folio.pfn + index - folio.index
    from imemviz.model.host_ops import host_lookup

    hvpn = slot.gfn_to_hva(gfn) >> 12
    m = host_lookup(vm, hvpn)
    return None if m is None else m[2] + hvpn - m[1]


def _check_leaves(vm: VM, out: list[Violation]) -> None:
    tables = ((vm.private, True), (vm.shared, False))
    # upm-v8: the attributes speak only for KVM_MEM_PRIVATE slots (v8 7/8 kvm_faultin_pfn()).
    attr_scope = vm.kernel["private_fault_scope"] == "private slots"
    # The array screens pick the leaves a rule might flag; the rules below run on those
    # only, so what is reported (and in which order) is what a pass over every leaf gives.
    private_cols = None
    for table, private in tables:
        cols = leaf_columns(table)
        if private:
            private_cols = cols
        suspect = (
            np.ones(len(cols[0]), bool) if attr_scope else suspect_leaves(vm, table, private, cols)
        )
        gfn, level, pfn, state = (c[suspect].tolist() for c in cols)
        for lf in map(Leaf, gfn, level, pfn, state):
            _check_leaf(vm, lf, private, attr_scope, out)
    if (
        not vm.is_tdx
        and private_cols is not None
        and any(len(idx) for idx in vm.shared.leaves.values())
    ):
        # One direct root: a gfn has one SPTE, private or shared.
        hit = both_roots(private_cols, vm.shared)
        gfn, level, pfn, state = (c[hit].tolist() for c in private_cols)
        for lf in map(Leaf, gfn, level, pfn, state):
            if vm.shared.touching(lf.gfn, lf.gfn + lf.npages):
                out.append(
                    Violation(
                        "I1", "gfn mapped both private and shared in one root", lf.gfn, lf.pfn
                    )
                )


def _check_leaf(vm: VM, lf: Leaf, private: bool, attr_scope: bool, out: list[Violation]) -> None:
    """The per-leaf rules (I1, I2, I3, I7) for one leaf of the private or shared table."""
    end = lf.gfn + lf.npages
    attr = 8 if private else 0
    in_scope = vm.has_private_mem
    if attr_scope:
        s = vm.memslots.lookup(lf.gfn)
        in_scope = s is not None and s.has_gmem
    if in_scope and not vm.attributes.all_equal(lf.gfn, end, attr):
        out.append(
            Violation(
                "I1",
                f"{'private' if private else 'shared'} {LEVEL_NAMES[lf.level]} leaf "
                f"over gfns whose attribute is not {'PRIVATE' if private else 'shared'}",
                lf.gfn,
                lf.pfn,
            )
        )
    slot = vm.memslots.lookup(lf.gfn)
    if slot is None or end > slot.end_gfn:
        out.append(Violation("I3", "leaf not inside one memslot", lf.gfn, lf.pfn))
        return
    if lf.level > LEVEL_4K and (lf.gfn ^ lf.pfn) & (lf.npages - 1):
        out.append(Violation("I3", "huge leaf with gfn and pfn not congruent", lf.gfn, lf.pfn))
    for g in {lf.gfn, end - 1}:
        want = _backing_pfn(vm, g, private)
        if want != lf.pfn_of(g):
            what = "guest_memfd folio" if private or slot.gmem_only else "host page"
            stale = (
                " (a stale leaf: v8's notifier missed the punch)"
                if vm.kernel["memfile_notifier"]
                else ""
            )
            out.append(
                Violation(
                    "I2" if private else "I1",
                    f"leaf maps pfn {lf.pfn_of(g):#x} but the {what} is "
                    f"{'missing' if want is None else hex(want)}{stale}",
                    g,
                    lf.pfn_of(g),
                )
            )
            break
    if vm.is_tdx and private:
        if lf.level > vm.config.tdx_private_max_level:
            out.append(Violation("I7", f"S-EPT leaf at {LEVEL_NAMES[lf.level]}", lf.gfn, lf.pfn))
        if lf.state not in (MAPPED, PENDING):
            out.append(Violation("I7", "S-EPT leaf left BLOCKED between ops", lf.gfn, lf.pfn))
    elif lf.state != MAPPED:
        out.append(Violation("I7", "non-S-EPT leaf with an S-EPT state", lf.gfn, lf.pfn))


def _check_bindings(vm: VM, out: list[Violation]) -> None:
    for f in vm.files.values():
        if f.kind != GUEST_MEMFD:
            continue  # v8's private slots may share file pages and reach past i_size
        prev_end = 0
        for b in sorted(f.bindings, key=lambda b: b.pgoff):
            if b.pgoff < prev_end:
                out.append(Violation("I5", f"overlapping bindings in guest_memfd fd {f.fd}"))
            if b.pgoff + b.npages > f.inode.npages:
                out.append(Violation("I5", f"binding past the end of guest_memfd fd {f.fd}"))
            prev_end = b.pgoff + b.npages
            slot = vm.memslots.by_id.get(b.slot)
            if slot is None or slot.gmem_file is not f:
                out.append(
                    Violation(
                        "I5",
                        f"binding of fd {f.fd} to a slot that does not point back",
                        slot.base_gfn if slot else None,
                    )
                )


def _check_counters(vm: VM, out: list[Violation]) -> None:
    if vm.inv.in_progress:
        out.append(
            Violation("I6", f"mmu_invalidate_in_progress is {vm.inv.in_progress} between ops")
        )


def _host_counts_agree(vm: VM, out: list[Violation]) -> bool:
    """The array pass of _check_host: True when it settled the check (no overlaps or
    empty blocks; a count mismatch is reported), False when the naming pass must run."""
    bpfn, bn = host_blocks(vm)
    order = np.argsort(bpfn, kind="stable")
    bpfn, bn = bpfn[order], bn[order]
    bend = bpfn + bn
    if not (len(bpfn) and (bn > 0).all() and (bpfn[1:] >= bend[:-1]).all()):
        return False
    total = int(bn.sum())
    poisoned = np.fromiter(vm.host.poisoned, np.int64, len(vm.host.poisoned))
    i = np.searchsorted(bpfn, poisoned, side="right") - 1
    inside = (i >= 0) & (poisoned < bend[np.maximum(i, 0)])
    lost = int((~inside).sum())
    if total + lost != vm.host.npages:
        out.append(_host_pages_violation(vm.host.npages - total - lost))
    return True


def _check_host(vm: VM, out: list[Violation]) -> None:
    """Every host page is free, poisoned or used exactly once."""
    # The common case in arrays: blocks that neither overlap nor are empty need only a
    # count (the pass below names each overlap; it runs when the arrays find one).
    if _host_counts_agree(vm, out):
        return
    used: list[tuple[int, int, str]] = []
    for f in vm.files.values():
        for seg in f.inode.iter_segments():  # a run of folios is one contiguous pfn range
            used.append((seg.pfn, seg.count << seg.order, f"folio of fd {f.fd}"))
    for level, idx in vm.hva_pages.items():
        for _head, pfn in idx.items():
            used.append((pfn, 1 << (9 * (level - 1)), "shared host page"))
    for pfn in vm.private.tables.values():
        used.append((pfn, 1, "S-EPT page"))
    for _hvpn, v in vm.pfnmap.items():
        used.append((unpack_pfnmap(v)[0], 1, "device page (VM_PFNMAP)"))
    for pfn, order in vm.host.other.items():
        used.append((pfn, 1 << order, "host page"))
    if vm.snp is not None and vm.snp.vmsa_pfn is not None:
        used.append((vm.snp.vmsa_pfn, 1, "SNP VMSA page"))
    for pfn, order, count in vm.host.alloc.free_runs():
        used.append((pfn, count << order, "free block"))
    used.sort()
    total = 0
    prev_end, prev_what = 0, ""
    for pfn, n, what in used:
        if pfn < prev_end:
            out.append(Violation("HOST", f"{what} overlaps {prev_what}", pfn=pfn))
        prev_end, prev_what = max(prev_end, pfn + n), what
        total += n
    starts = [a for a, _n, _w in used]
    lost: set[int] = set()
    for p in vm.host.poisoned:
        i = bisect_right(starts, p) - 1
        if i < 0 or p >= used[i][0] + used[i][1]:
            lost.add(p)
    if total + len(lost) != vm.host.npages:
        out.append(_host_pages_violation(vm.host.npages - total - len(lost)))


def _host_pages_violation(missing: int) -> Violation:
    return Violation("HOST", f"{missing} host pages are neither free, poisoned nor in use")
