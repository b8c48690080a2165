"""What an op changed, in every space a front end draws, and what went badly wrong.

`op_changes(vm, op, result, events)` reads an op's events (and the state right
after it, to turn guest_memfd indexes and hvas into gfns) and returns a
`Changes`: the gfn ranges whose state changed (what `raster.changed_ranges`
redraws, less the ranges an invalidation only widens over), the host pfns and guest_memfd pages whose use changed (folios
allocated, freed or poisoned; the VMM's pages; S-EPT pages), the leaves
installed or changed per root, counts for a one-line summary, and the
*severe* outcomes with where they happened: the TD killed (kvm_vm_dead),
EHWPOISON, a KVM_EXIT_MEMORY_FAULT exit, a memory error on guest memory.

`merge` unions the changes of several ops (a user action, an undo, a seek);
range lists are coarsened to at most `cap` ranges by closing the smallest
gaps first, so a zap of 100,000 scattered leaves stays a few hundred ranges
that still cover every changed page.  `action_text` is the status line of a
user action.  Qt-free: the app's marks, status bar and log read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from imemviz.model.events import Event
from imemviz.model.raster import changed_ranges
from imemviz.model.rmp import IMMUTABLE, VALIDATED, VMSA
from imemviz.model.uapi import KVM_MEMORY_EXIT_FLAG_PRIVATE

if TYPE_CHECKING:
    from imemviz.model.vm import VM

MAX_RANGES = 256
# Events that only widen an invalidation (the leaves it zaps and the pages it frees come
# as their own events): the raster recomputes their ranges, a mark would overstate them.
_WIDEN_ONLY = frozenset({"kvm_mmu_invalidate_range_add", "kvm_unmap_hva_range"})

Range = tuple[int, int]


@attrs.frozen
class Severe:
    """An outcome that must not go unnoticed, and the gfn where it happened (if any)."""

    kind: str  # "td_killed", "vm_dead", "hwpoison", "memory_fault"
    gfn: int | None
    title: str  # a few words: "TD killed"
    detail: str  # one sentence: what happened where
    op: int = -1  # the session's op index (set by whoever knows it)


@attrs.frozen
class Changes:
    """The ranges an op (or several) changed; see the module docstring."""

    gfns: tuple[Range, ...] = ()
    pfns: tuple[Range, ...] = ()
    files: tuple[tuple[int, int, int], ...] = ()  # (fd, start index, end index)
    leaves: tuple[tuple[int, int, int], ...] = ()  # (root: 0 private / 1 shared, gfn, end)
    severe: tuple[Severe, ...] = ()
    everything: bool = False  # the op may have changed anything (a memslot move, zap all)
    folios_added: int = 0
    folios_freed: int = 0
    leaves_added: int = 0
    leaves_removed: int = 0
    host_added: int = 0  # the VMM's pages (shared memory) allocated / freed
    host_freed: int = 0
    ops: tuple[int, ...] = ()  # session op indexes these changes come from (set by callers)
    rmp: tuple[Range, ...] = ()  # SEV-SNP: host pfn ranges whose RMP entry changed

    def __bool__(self) -> bool:
        return bool(self.gfns or self.pfns or self.files or self.leaves or self.severe or self.rmp)

    @property
    def pages(self) -> int:
        """Guest pages in the changed gfn ranges."""
        return sum(e - s for s, e in self.gfns)

    def with_ops(self, ops: Iterable[int]) -> Changes:
        """These changes, said to come from session ops `ops` (severe outcomes without an op
        get the last one)."""
        ops = tuple(ops)
        severe = tuple(
            s if s.op >= 0 or not ops else attrs.evolve(s, op=ops[-1]) for s in self.severe
        )
        return attrs.evolve(self, ops=ops, severe=severe)

    def summary(self) -> str:
        """What changed, in a few words: "4 pages · 4 folios freed · 2 leaves removed"."""
        parts = []
        if self.everything:
            parts.append("the whole guest may have changed")
        elif self.gfns:
            n = self.pages
            parts.append(f"{n:,} page{'s' if n != 1 else ''} changed")
        for n, one, many, verb in (
            (self.leaves_added, "leaf", "leaves", "mapped"),
            (self.leaves_removed, "leaf", "leaves", "removed"),
            (self.folios_added, "folio", "folios", "allocated"),
            (self.folios_freed, "folio", "folios", "freed"),
            (self.host_added, "host page", "host pages", "allocated"),
            (self.host_freed, "host page", "host pages", "freed"),
        ):
            if n:
                parts.append(f"{n:,} {one if n == 1 else many} {verb}")
        return " · ".join(parts) if parts else "nothing changed"


NONE = Changes()


# ------------------------------------------------------------------ ranges
def coarsen(ranges: Iterable[Range], cap: int = MAX_RANGES) -> tuple[Range, ...]:
    """Sorted, merged ranges; past `cap` ranges the smallest gaps are closed first, so the
    result still covers every input page with as little extra as `cap` allows."""
    rs = sorted((int(s), int(e)) for s, e in ranges if e > s)
    out: list[list[int]] = []
    for s, e in rs:
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    if len(out) <= cap:
        return tuple((s, e) for s, e in out)
    a = np.asarray(out, np.int64)
    gaps = a[1:, 0] - a[:-1, 1]
    # Close the len - cap smallest gaps (ties broken by position, stable).
    close = np.zeros(len(gaps), bool)
    close[np.argsort(gaps, kind="stable")[: len(out) - cap]] = True
    starts = np.concatenate(([True], ~close))
    ends = np.concatenate((~close, [True]))
    return tuple(zip(a[starts, 0].tolist(), a[ends, 1].tolist(), strict=True))


def _coarsen_files(
    files: Iterable[tuple[int, int, int]], cap: int
) -> tuple[tuple[int, int, int], ...]:
    by_fd: dict[int, list[Range]] = {}
    for fd, s, e in files:
        by_fd.setdefault(fd, []).append((s, e))
    return tuple((fd, s, e) for fd in sorted(by_fd) for s, e in coarsen(by_fd[fd], cap))


def _coarsen_leaves(
    leaves: Iterable[tuple[int, int, int]], cap: int
) -> tuple[tuple[int, int, int], ...]:
    by_root: dict[int, list[Range]] = {}
    for root, s, e in leaves:
        by_root.setdefault(root, []).append((s, e))
    return tuple((r, s, e) for r in sorted(by_root) for s, e in coarsen(by_root[r], cap))


def merge(changes: Sequence[Changes], cap: int = MAX_RANGES) -> Changes:
    """The union of several ops' changes (counts added, severe outcomes kept in order)."""
    if not changes:
        return NONE
    if len(changes) == 1:
        return changes[0]
    return Changes(
        coarsen((r for c in changes for r in c.gfns), cap),
        coarsen((r for c in changes for r in c.pfns), cap),
        _coarsen_files((f for c in changes for f in c.files), cap),
        _coarsen_leaves((lf for c in changes for lf in c.leaves), cap),
        tuple(s for c in changes for s in c.severe),
        any(c.everything for c in changes),
        sum(c.folios_added for c in changes),
        sum(c.folios_freed for c in changes),
        sum(c.leaves_added for c in changes),
        sum(c.leaves_removed for c in changes),
        sum(c.host_added for c in changes),
        sum(c.host_freed for c in changes),
        tuple(i for c in changes for i in c.ops),
        coarsen((r for c in changes for r in c.rmp), cap),
    )


# ------------------------------------------------------------------ one op
def op_changes(vm: Any, op: Any, result: Any, events: Sequence[Event]) -> Changes:
    """What one op changed; `vm` is the state right after it (see the module docstring)."""
    gfn_ranges = changed_ranges(vm, [ev for ev in events if ev[1] not in _WIDEN_ONLY])
    everything = gfn_ranges is None
    if gfn_ranges is None:
        gfn_ranges = _fallback_gfns(vm, events)
    pfns: list[Range] = []
    files: list[tuple[int, int, int]] = []
    leaves: list[tuple[int, int, int]] = []
    folios_added = folios_freed = leaves_added = leaves_removed = host_added = host_freed = 0
    tables = {ev[4] for ev in events if ev[1] == "TDH.MEM.SEPT.ADD"}
    for ev in events:
        name, f = ev[1], ev[2:]
        if name in ("kvm_gmem_folio_alloc", "kvm_gmem_folio_free", "kvm_gmem_error_folio"):
            fd, index, order, pfn = f
            n = 1 << order
            files.append((fd, index, index + n))
            pfns.append((pfn, pfn + n))
            if name == "kvm_gmem_folio_alloc":
                folios_added += 1
            elif name == "kvm_gmem_folio_free":
                folios_freed += 1
        elif name in ("kvm_gmem_folios_alloc", "kvm_gmem_folios_free"):
            fd, index, order, pfn, count = f  # count folios of one order in a row
            n = count << order
            files.append((fd, index, index + n))
            pfns.append((pfn, pfn + n))
            if name == "kvm_gmem_folios_alloc":
                folios_added += count
            else:
                folios_freed += count
        elif name in ("mm_page_alloc", "mm_page_free"):
            pfn, order = f[0], f[1]
            pfns.append((pfn, pfn + (1 << order)))
            if name == "mm_page_alloc":
                host_added += 1
            else:
                host_freed += 1
        elif name == "TDH.MEM.SEPT.ADD":
            pfns.append((f[2], f[2] + 1))
        elif name == "memory_failure_event":
            pfns.append((f[0], f[0] + 1))
        elif name in ("TDH.MEM.PAGE.AUG", "TDG.MEM.PAGE.ACCEPT", "TDH.MEM.RANGE.BLOCK"):
            if name == "TDG.MEM.PAGE.ACCEPT" and f[2] != "TDX_SUCCESS":
                continue
            leaves.append((0, f[0], f[0] + _span(f[1])))
            leaves_added += name == "TDH.MEM.PAGE.AUG"
        elif name == "TDH.MEM.PAGE.ADD":
            leaves.append((0, f[0], f[0] + 1))
            leaves_added += 1
        elif name == "TDH.MEM.PAGE.DEMOTE":
            leaves.append((0, f[0], f[0] + _span(f[1])))
            leaves_added += 511  # one 2M leaf became 512 4K leaves
        elif name == "kvm_mmu_set_spte":
            root, gfn, _pfn, level = f
            leaves.append((_root_of(vm, root, gfn, level), gfn, gfn + _span(level)))
            leaves_added += 1
        elif name == "kvm_tdp_mmu_spte_changed" and f[4] == -1 and f[3] not in (-1, *tables):
            leaves_removed += 1
    severe = _severe(vm, op, result, events)
    return Changes(
        coarsen(gfn_ranges),
        coarsen(pfns),
        _coarsen_files(files, MAX_RANGES),
        _coarsen_leaves(leaves, MAX_RANGES),
        severe,
        everything,
        folios_added,
        folios_freed,
        leaves_added,
        leaves_removed,
        host_added,
        host_freed,
        rmp=coarsen(rmp_changes(vm, events)),
    )


def rmp_changes(vm: Any, events: Sequence[Event]) -> list[Range]:
    """The host pfn ranges whose RMP entry an op's events changed (SEV-SNP): RMPUPDATEs,
    PSMASH, the launch's pages, PVALIDATE (its pfn from the private leaf after the op) and
    SNP_LAUNCH_FINISH (every page it made Guest-Valid: before the guest runs, the
    validated pages are the launch's)."""
    snp = getattr(vm, "snp", None)
    if snp is None:
        return []
    out: list[Range] = []
    for ev in events:
        name, f = ev[1], ev[2:]
        if name == "rmp_make_private":
            out.append((f[0], f[0] + (512 if f[2] == 2 else 1)))
        elif name == "rmp_make_shared":
            out.append((f[0], f[0] + f[2]))
        elif name == "psmash" and f[1] == 0:
            out.append((f[0], f[0] + 512))
        elif name == "SNP_LAUNCH_UPDATE":
            out.append((f[1], f[1] + 1))
        elif name == "pvalidate" and f[3] == "SUCCESS":
            gfn = f[0] >> 12
            lf = vm.private.lookup(gfn)
            if lf is not None:
                n = 512 if f[1] == 2 else 1
                p = lf.pfn_of(gfn) & ~(n - 1)
                out.append((p, p + n))
        elif name == "SNP_LAUNCH_FINISH" and f[0] == "SUCCESS":
            out += [
                (r.pfn, r.pfn + r.count)
                for r in snp.rmp.runs()
                if r.flags & VALIDATED and not r.flags & (IMMUTABLE | VMSA)
            ]
    return out


def _span(level: Any) -> int:
    return 1 << (9 * (level - 1)) if isinstance(level, int) and level >= 1 else 1


def _root_of(vm: Any, root: str, gfn: int, level: int) -> int:
    """0 (the private table: S-EPT on a TD) or 1 (shared) for a leaf event's root name.
    Outside TDX both tables live in one direct root: the state after the op says which."""
    if root == "mirror":
        return 0
    if vm.is_tdx:
        return 1
    return 0 if vm.private.leaves[level].get(gfn) is not None else 1


def _fallback_gfns(vm: Any, events: Sequence[Event]) -> list[Range]:
    """When changed_ranges cannot say (a memslot move, a zap of everything): every memslot
    an event names, else every memslot."""
    out = []
    for ev in events:
        if ev[1] == "kvm_set_memslot":
            out.append((ev[4], ev[4] + ev[5]))
    if not out or any(ev[1] == "kvm_mmu_zap_all_fast" for ev in events):
        out += [(s.base_gfn, s.end_gfn) for s in vm.memslots.all() if s.npages and not s.as_id]
    return out


def _gfn_of_gpa(gpa: Any) -> int | None:
    return gpa >> 12 if isinstance(gpa, int) else None


def _gfn_of_hva(vm: VM, hva: int) -> int | None:
    for s in vm.memslots.all():
        if s.npages and not s.as_id and s.userspace_addr <= hva < s.hva_end:
            return s.base_gfn + ((hva - s.userspace_addr) >> 12)
    return None


def _severe(vm: Any, op: Any, result: Any, events: Sequence[Event]) -> tuple[Severe, ...]:
    out: list[Severe] = []
    name = getattr(op, "NAME", "")
    gpa_gfn = _gfn_of_gpa(getattr(op, "gpa", None))
    ret: Mapping[str, Any] = result.ret or {}
    for ev in events:
        if ev[1] == "kvm_vm_dead":
            kind, title = ("td_killed", "TD killed") if vm.is_tdx else ("vm_dead", "VM dead")
            out.append(Severe(kind, gpa_gfn, title, f"{title}: {ev[2]}."))
    if result.errno == "EHWPOISON" and name in ("guest_access", "host_access", "vcpu_resume"):
        if name == "host_access":
            g = _gfn_of_hva(vm, op.hva)
            where = f"hva {op.hva:#x}" + (f" (gfn {g:#x})" if g is not None else "")
        elif isinstance(exit_ := ret.get("exit"), Mapping) and "gpa" in exit_:
            g = int(exit_["gpa"]) >> 12
            where = f"gpa {int(exit_['gpa']):#x}"
        else:
            g = gpa_gfn
            where = f"gpa {g << 12:#x}" if g is not None else "the page"
        out.append(
            Severe(
                "hwpoison",
                g,
                "EHWPOISON",
                f"The access to {where} hit a poisoned page: EHWPOISON "
                "(the VMM injects a machine check).",
            )
        )
    exit_ = ret.get("exit")
    if (
        isinstance(exit_, Mapping)
        and exit_.get("reason") == "KVM_EXIT_MEMORY_FAULT"
        and result.errno != "EHWPOISON"  # said once, as EHWPOISON above
    ):
        gpa = int(exit_.get("gpa", 0))
        kind = "private" if int(exit_.get("flags", 0)) & KVM_MEMORY_EXIT_FLAG_PRIVATE else "shared"
        out.append(
            Severe(
                "memory_fault",
                gpa >> 12,
                "KVM_EXIT_MEMORY_FAULT",
                f"A {kind} access to gpa {gpa:#x} exited to the VMM with "
                f"KVM_EXIT_MEMORY_FAULT ({result.errno}).",
            )
        )
    if name == "memory_failure":
        hit = _poisoned_gfns(vm, events)
        if hit:
            out.append(
                Severe(
                    "hwpoison",
                    hit[0],
                    "memory error",
                    f"memory_failure on pfn {op.pfn:#x} poisoned guest memory at gfn "
                    f"{hit[0]:#x}: the next access there gets EHWPOISON.",
                )
            )
    return tuple(out)


def _poisoned_gfns(vm: Any, events: Sequence[Event]) -> list[int]:
    """Gfns backed by what a memory_failure poisoned (a guest_memfd folio or a VMM page)."""
    out = []
    for ev in events:
        if ev[1] == "kvm_gmem_error_folio":
            file = vm.files.get(ev[2])
            if file is None:
                continue
            for b in file.bindings_in(ev[3], ev[3] + (1 << ev[4])):
                slot = vm.memslots.by_id.get(b.slot)
                if slot is not None:
                    out.append(slot.base_gfn + max(ev[3], b.pgoff) - b.pgoff)
    if not out and vm.poisoned_hva:
        for hvpn in sorted(vm.poisoned_hva):
            g = _gfn_of_hva(vm, hvpn << 12)
            if g is not None and any(ev[1] == "memory_failure_event" for ev in events):
                out.append(g)
                break
    return out


# ------------------------------------------------------------------ text
def action_text(
    label: str,
    n_ops: int,
    failed: tuple[str, str, str] | None,
    changes: Changes,
    note: str = "",
) -> str:
    """The status line of a user action: its name, then the outcome.

    `failed` is (op name, errno, the kernel rule) of the first op that failed, or
    None; a severe outcome is said instead of the rule (where, and what it means);
    `note` is what a notable success adds (an MMIO exit, a retried fault).
    """
    name = label[:1].upper() + label[1:] if label else "Action"
    severe = changes.severe[0] if changes.severe else None
    if failed is not None:
        op, errno, rule = failed
        text = f"{name}: {op} failed with {errno}"
        detail = severe.detail if severe is not None else rule
        return f"{text} — {detail}" if detail else text
    if severe is not None:
        return f"{name}: {severe.detail}"
    text = f"{name}: ok — {changes.summary()}"
    return f"{text}. {note}" if note else text
