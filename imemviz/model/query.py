"""Ops that read the state: `inspect` (one gfn's whole chain), `stats`, and `note` captions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imemviz.model import snp
from imemviz.model.fault import decode_gpa
from imemviz.model.mmu import STATE_NAMES
from imemviz.model.result import Result
from imemviz.model.units import LEVEL_1G, LEVEL_2M, LEVEL_NAMES, LEVELS

if TYPE_CHECKING:
    from imemviz.model.ops import Inspect, Note, Stats
    from imemviz.model.vm import VM


def note(vm: VM, op: Note) -> Result:
    vm.emit("note", op.text)
    return Result.success()


def inspect_gfn(vm: VM, gfn: int) -> dict[str, Any]:
    """The contract's inspect answer for a gfn (TDX: without the shared bit)."""
    slot = vm.memslots.lookup(gfn)
    gmem = folio_d = None
    content_private = content_shared = None
    if slot is not None and slot.gmem_file is not None:
        index = slot.gmem_index(gfn)
        gmem = {"fd": slot.gmem_file.fd, "index": index}
        folio = slot.gmem_file.inode.folio_at(index)
        if folio is not None:
            folio_d = {
                "index": folio.index,
                "order": folio.order,
                "pfn": folio.pfn,
                "hwpoison": folio.hwpoison,
            }
            content_private = vm.host.read(folio.pfn + index - folio.index)
    if slot is not None and slot.gmem_only:
        content_shared = content_private  # the VMM's mmap of the guest_memfd: the same page
    elif slot is not None:
        from imemviz.model.host_ops import host_lookup

        m = host_lookup(vm, slot.gfn_to_hva(gfn) >> 12)
        if m is not None:
            _level, head, pfn = m
            content_shared = vm.host.read(pfn + (slot.gfn_to_hva(gfn) >> 12) - head)
    pm = vm.private.lookup(gfn)
    sm = vm.shared.lookup(gfn)
    out: dict[str, Any] = {
        "gfn": gfn,
        "attributes": vm.attributes.get(gfn),
        "memslot": slot.id if slot is not None else None,
        "gmem": gmem,
        "folio": folio_d,
        "private_mapping": None
        if pm is None
        else {
            "level": LEVEL_NAMES[pm.level],
            "pfn": pm.pfn_of(gfn),
            "state": STATE_NAMES[pm.state],
        },
        "shared_mapping": None
        if sm is None
        else {"level": LEVEL_NAMES[sm.level], "pfn": sm.pfn_of(gfn)},
        "content": {"private": content_private, "shared": content_shared},
    }
    if vm.snp is not None:
        # Contract 3.2: the RMP entry of the pfn behind the private mapping or the folio.
        rmp_pfn: int | None = out["private_mapping"]["pfn"] if pm is not None else None
        if rmp_pfn is None and folio_d is not None and gmem is not None:
            rmp_pfn = folio_d["pfn"] + gmem["index"] - folio_d["index"]
        out["rmp"] = None if rmp_pfn is None else snp.rmp_dict(vm.snp.rmp.lookup(rmp_pfn))
    if slot is not None:
        out["hva"] = slot.gfn_to_hva(gfn)
        out["mixed"] = {LEVEL_NAMES[lv]: vm.mixed(gfn, lv) for lv in (LEVEL_2M, LEVEL_1G)}
        out["huge_allowed"] = {
            LEVEL_NAMES[lv]: slot.huge_allowed(gfn, lv) for lv in (LEVEL_2M, LEVEL_1G)
        }
    return out


def inspect(vm: VM, op: Inspect) -> Result:
    gfn, _alias = decode_gpa(vm, op.gpa)
    return Result(True, None, inspect_gfn(vm, gfn))


def stats_dict(vm: VM) -> dict[str, Any]:
    folios = {"0": 0, "9": 0, "18": 0}
    for f in vm.files.values():
        for order in (0, 9, 18):
            folios[str(order)] += f.inode.count(order)
    return {
        "vm_type": vm.config.type,
        "vm_dead": vm.dead,
        "td_state": vm.td_state,
        "mmu_invalidate_seq": vm.inv.seq,
        "mmu_invalidate_in_progress": vm.inv.in_progress,
        "mappings": {
            "private": {LEVEL_NAMES[lv]: vm.private.count(lv) for lv in LEVELS},
            "shared": {LEVEL_NAMES[lv]: vm.shared.count(lv) for lv in LEVELS},
        },
        "gmem_folios": folios,
        "host_free_bytes": vm.host.free_bytes,
        "sept_pages": len(vm.private.tables),
        "memslots": len(vm.memslots.by_id),
        "gmem_files": len(vm.files),
        "in_flight": sorted(vm.in_flight),
        "events_total": vm.events.total + len(vm.events.current),
        "snp": None
        if vm.snp is None
        else {
            "launched": vm.snp.launched,
            "vmsa_pfn": vm.snp.vmsa_pfn,
            "rmp_assigned": vm.snp.rmp.count_assigned(),
        },
    }


def stats(vm: VM, op: Stats) -> Result:
    return Result(True, None, stats_dict(vm))
