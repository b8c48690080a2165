"""What the app's actions do, as contract ops: one `Plan` per user intent.

Each function looks at the current state (read only) and returns the ops a
VMM or guest would issue for the intent, in order, plus a note when there is
nothing to do.  The app's worker calls them on its thread just before
applying the ops, so the plan always sees the state it applies to; the ops,
not the intent, go into the recording.  Never imports Qt.
"""

from __future__ import annotations

import attrs

from imemviz.model import ops as O
from imemviz.model.memslot_ops import TASK_SIZE_MAX
from imemviz.model.memslots import Memslot
from imemviz.model.mmu import MAPPED
from imemviz.model.query import inspect_gfn
from imemviz.model.uapi import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    KVM_MEMORY_ATTRIBUTE_PRIVATE,
)
from imemviz.model.units import LEVEL_4K
from imemviz.model.vm import VM

PRIVATE = KVM_MEMORY_ATTRIBUTE_PRIVATE
PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
KEEP_SIZE = FALLOC_FL_KEEP_SIZE


@attrs.frozen
class Plan:
    """Ops to apply as one undo step; `note` says why there are none (or what happens)."""

    label: str
    ops: tuple[O.Op, ...] = ()
    note: str = ""


def _slots(vm: VM, start: int, end: int) -> list[tuple[Memslot, int, int]]:
    """(slot, a, b): the part [a, b) of [start, end) each memslot of address space 0 covers."""
    return [
        (s, max(start, s.base_gfn), min(end, s.end_gfn))
        for s in vm.memslots.in_range(start, end)
        if s.npages
    ]


# --------------------------------------------------------------- guest side


def guest_access(
    gfn: int, *, write: bool = False, value: int = 0, private: bool | None = None
) -> Plan:
    """A guest read or write of one page; `private` None follows the attribute."""
    kind = {None: "", True: " private", False: " shared"}[private]
    op = O.GuestAccess(gfn << 12, write=write, value=value if write else None, private=private)
    return Plan(f"guest {'write' if write else 'read'}{kind}", (op,))


def accept_and_touch(vm: VM, gfn: int, *, write: bool = False, value: int = 0) -> Plan:
    """What a TDX guest does with memory it has not used: TDG.MEM.PAGE.ACCEPT, then access.

    A page that is already accepted (S-EPT MAPPED) is just accessed, as a guest
    tracking its accepted memory would.
    """
    leaf = vm.private.lookup(gfn)
    access = guest_access(gfn, write=write, value=value).ops
    if leaf is not None and leaf.state == MAPPED:
        return Plan("touch (already accepted)", access)
    return Plan("accept and touch", (O.GuestAccept(gfn << 12, level=LEVEL_4K), *access))


def default_click(vm: VM, gfn: int) -> Plan:
    """The map's click: accept and touch on a TDX private gfn, a plain guest read elsewhere."""
    if vm.is_tdx and vm.attr_private(gfn) and vm.memslots.lookup(gfn) is not None:
        return accept_and_touch(vm, gfn)
    return guest_access(gfn)


def touch_without_accept(gfn: int) -> Plan:
    """A private access to a page the TD never accepted: AUG leaves it PENDING, the TD dies."""
    return Plan(
        "touch without accept",
        (O.GuestAccess(gfn << 12, private=True),),
        "A private access to an unaccepted page: KVM adds it with TDH.MEM.PAGE.AUG "
        "(PENDING) and the re-executed access finds it PENDING: the TD is killed.",
    )


def accept(gfn: int, level: int = LEVEL_4K) -> Plan:
    return Plan("accept", (O.GuestAccept(gfn << 12, level=level),))


# ---------------------------------------------------------------- VMM side


def convert(vm: VM, start: int, end: int, private: bool, discard: bool) -> Plan:
    """KVM_SET_MEMORY_ATTRIBUTES over [start, end), then (with `discard`) drop the old backing.

    As QEMU's ram_block_convert_range(): to shared, PUNCH_HOLE|KEEP_SIZE the
    guest_memfd range; to private, madvise(DONTNEED) the shared hva range.
    """
    name = "private" if private else "shared"
    ops: list[O.Op] = [
        O.SetMemoryAttributes(start << 12, (end - start) << 12, PRIVATE if private else 0)
    ]
    if discard:
        extra = dontneed(vm, start, end) if private else punch_hole(vm, start, end)
        ops.extend(extra.ops)
    return Plan(f"convert to {name}" + (" + discard" if discard else ""), tuple(ops))


def punch_hole(vm: VM, start: int, end: int) -> Plan:
    """fallocate(PUNCH_HOLE|KEEP_SIZE) on the guest_memfd range behind [start, end)."""
    ops = []
    for slot, a, b in _slots(vm, start, end):
        if slot.gmem_file is None:
            continue
        ops.append(O.Fallocate(slot.gmem_file.fd, PUNCH, slot.gmem_index(a) << 12, (b - a) << 12))
    note = "" if ops else "No guest_memfd is bound behind this range."
    return Plan("punch hole", tuple(ops), note)


def allocate(vm: VM, start: int, end: int) -> Plan:
    """fallocate(KEEP_SIZE): allocate guest_memfd folios behind [start, end) (preallocation)."""
    ops = []
    for slot, a, b in _slots(vm, start, end):
        if slot.gmem_file is None:
            continue
        ops.append(
            O.Fallocate(slot.gmem_file.fd, KEEP_SIZE, slot.gmem_index(a) << 12, (b - a) << 12)
        )
    note = "" if ops else "No guest_memfd is bound behind this range."
    return Plan("fallocate", tuple(ops), note)


def dontneed(vm: VM, start: int, end: int) -> Plan:
    """madvise(MADV_DONTNEED) on the VMM's hva range behind [start, end)."""
    ops = [O.Madvise(slot.gfn_to_hva(a), (b - a) << 12) for slot, a, b in _slots(vm, start, end)]
    note = "" if ops else "No memslot covers this range."
    return Plan("madvise DONTNEED", tuple(ops), note)


def backing_pfn(vm: VM, gfn: int) -> int | None:
    """The host pfn behind a gfn for its current attribute (mapping, folio or host page)."""
    d = inspect_gfn(vm, gfn)
    private = bool(d["attributes"] & PRIVATE)
    m = d["private_mapping"] if private else d["shared_mapping"]
    if m is not None:
        mapped: int = m["pfn"]
        return mapped
    f = d["folio"]
    if f is not None and (private or d["shared_mapping"] is None):
        folio_pfn: int = f["pfn"] + d["gmem"]["index"] - f["index"]
        return folio_pfn
    return None


def memory_failure(vm: VM, gfn: int) -> Plan:
    """A memory error on the host page behind the gfn."""
    pfn = backing_pfn(vm, gfn)
    if pfn is None:
        return Plan("memory failure", (), "No host page backs this gfn yet: touch it first.")
    return Plan(f"memory failure on pfn {pfn:#x}", (O.MemoryFailure(pfn),))


# -------------------------------------------------------------- the race

RACE_STEPS = ("hold", "invalidate", "resume")


def race_step(vm: VM, step: str, gfn: int, how: str = "convert", vcpu: int = 0) -> Plan:
    """One step of the fault-vs-invalidation race on gfn.

    hold: a guest access that stops after kvm_faultin_pfn() (pfn and
    mmu_invalidate_seq snapshot taken, mmu_lock not yet); invalidate: an op
    that runs an invalidation over the gfn (`how` "convert" flips its
    attribute, "punch" punches the guest_memfd page, "dontneed" drops the
    shared page); resume: the fault takes mmu_lock, sees the sequence count
    moved and retries.
    """
    if step == "hold":
        return Plan("hold a fault", (O.GuestAccess(gfn << 12, vcpu=vcpu, hold=True),))
    if step == "invalidate":
        if how == "punch":
            return punch_hole(vm, gfn, gfn + 1)
        if how == "dontneed":
            return dontneed(vm, gfn, gfn + 1)
        return convert(vm, gfn, gfn + 1, not vm.attr_private(gfn), discard=False)
    if step == "resume":
        return Plan("resume the fault", (O.VcpuResume(vcpu),))
    raise ValueError(f"unknown race step {step!r} (steps: {', '.join(RACE_STEPS)})")


# ------------------------------------------------------------- new VM layout


QEMU_HVA = 0x7F0000000000  # where the layout maps guest RAM when it fits below TASK_SIZE_MAX
HVA_ALIGN = 1 << 30


class LayoutError(ValueError):
    """A QEMU-style layout that cannot exist (the message names the field and the limit)."""


def layout_hva(ram: int) -> int:
    """The VMM address of guest RAM: 0x7f0000000000 as in the scenes, or lower for a guest
    too big to end below the top of user space (x86-64 TASK_SIZE_MAX, which
    `__kvm_set_memory_region()` checks with access_ok()): a 4 TiB guest at
    0x7f0000000000 would end past it and its memslot would fail with EINVAL."""
    if ram <= 0:
        return QEMU_HVA
    if QEMU_HVA + ram <= TASK_SIZE_MAX:
        return QEMU_HVA
    hva = (TASK_SIZE_MAX - ram) // HVA_ALIGN * HVA_ALIGN
    if hva < HVA_ALIGN:
        raise LayoutError(
            f"guest RAM: {ram:#x} bytes do not fit in the VMM's address space "
            f"(user space ends at {TASK_SIZE_MAX:#x})"
        )
    return hva


def qemu_layout(
    vm_type: str,
    ram: int,
    *,
    finalize: bool = True,
    low_limit: int = 2 << 30,
    kernel: str = "mainline",
) -> list[O.Op]:
    """Ops that give a new VM QEMU-style RAM: low RAM at 0, the rest above 4G.

    VMs with private memory get one guest_memfd bound to both memslots and
    all RAM private (as QEMU sets up a confidential guest); a TD also gets a
    few measured initial pages (TDH.MEM.PAGE.ADD, the firmware) and is
    finalized when `finalize` is true.  The RAM is mapped at `layout_hva(ram)`;
    `LayoutError` when no address fits.  Under kernel upm-v8 (the 2022 design,
    as its QEMU branch "memory-backend-memfd-private" did) the private memory is
    an inaccessible memfd behind KVM_MEM_PRIVATE slots, private from the start.
    """
    if ram <= 0:
        return []
    if kernel == "upm-v8":
        return _upm_layout(ram, low_limit)
    private_mem = vm_type != "default"
    low = min(ram, low_limit)
    high = ram - low
    hva = layout_hva(ram)
    ops: list[O.Op] = []
    flags = 4 if private_mem else 0
    if private_mem:
        ops.append(O.CreateGuestMemfd(size=ram))
    ops.append(
        O.SetUserMemoryRegion2(
            0,
            flags=flags,
            guest_phys_addr=0,
            memory_size=low,
            userspace_addr=hva,
            guest_memfd=3 if private_mem else 0,
        )
    )
    if high:
        ops.append(
            O.SetUserMemoryRegion2(
                1,
                flags=flags,
                guest_phys_addr=4 << 30,
                memory_size=high,
                userspace_addr=hva + low,
                guest_memfd=3 if private_mem else 0,
                guest_memfd_offset=low if private_mem else 0,
            )
        )
    if private_mem:
        ops.append(O.SetMemoryAttributes(0, low, PRIVATE))
        if high:
            ops.append(O.SetMemoryAttributes(4 << 30, high, PRIVATE))
    if vm_type == "tdx":
        n = min(16, low >> 12)
        ops.append(O.TdxInitMemRegion(gpa=low - (n << 12), nr_pages=n))
        if finalize:
            ops.append(O.TdxFinalizeVm())
    if vm_type == "snp":
        n = min(16, low >> 12)  # the firmware's pages, as QEMU launches OVMF
        ops.append(O.SnpLaunchUpdate(gpa=low - (n << 12), size=n << 12, value=0x90))
        if finalize:
            ops.append(O.SnpLaunchFinish())
    return ops


def _upm_layout(ram: int, low_limit: int) -> list[O.Op]:
    low = min(ram, low_limit)
    high = ram - low
    hva = layout_hva(ram)
    ops: list[O.Op] = [O.MemfdCreate(size=ram, flags=8)]  # MFD_INACCESSIBLE
    ops.append(
        O.SetUserMemoryRegion(
            0, flags=4, guest_phys_addr=0, memory_size=low, userspace_addr=hva, private_fd=3
        )
    )
    if high:
        ops.append(
            O.SetUserMemoryRegion(
                1,
                flags=4,
                guest_phys_addr=4 << 30,
                memory_size=high,
                userspace_addr=hva + low,
                private_fd=3,
                private_offset=low,
            )
        )
    return ops
