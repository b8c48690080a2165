"""Faults held in flight in a state document (`in_flight`: a vCPU between the fault's
pfn lookup and its install, as a guest access with ``hold`` leaves it until
``vcpu_resume``), checked and rebuilt.
"""

from __future__ import annotations

from typing import Any

from imemviz.io.state_fields import address, array, boolean, enum, fail, integer, obj, optional_bool
from imemviz.io.state_limits import GFN_BEYOND, LEVEL_SIZES, MAX_VCPU, SLOT_ID_MAX, U64_END, Ctx
from imemviz.model.fault import Access, PendingFault
from imemviz.model.memslots import Memslot
from imemviz.model.vm import GFN_LIMIT, VM

_HELD_KEYS = (
    "vcpu",
    "gpa",
    "gfn",
    "alias",
    "private",
    "write",
    "value",
    "accept_level",
    "retried",
    "is_private",
    "mmu_seq",
    "slot",
    "slot_live",
    "slot_base",
    "pfn",
    "host_level",
)


def build_in_flight(vm: VM, v: Any, ctx: Ctx) -> dict[int, PendingFault]:
    out: dict[int, PendingFault] = {}
    levels = {n: lv for n, (lv, _s) in LEVEL_SIZES.items()}
    for i, e in enumerate(array(v, "$.in_flight", MAX_VCPU + 1)):
        p = f"$.in_flight[{i}]"
        obj(e, p, _HELD_KEYS)
        vcpu = integer(e["vcpu"], f"{p}.vcpu", 0, MAX_VCPU, "vcpu")
        if out and vcpu <= next(reversed(out)):
            fail(f"{p}.vcpu", "out of order or repeated (held faults are sorted by vcpu)")
        value = e["value"]
        if value is not None:
            value = integer(value, f"{p}.value", 0, 255, "value", "a byte (0-255)")
        accept = e["accept_level"]
        if accept is not None:
            accept = enum(accept, f"{p}.accept_level", levels)
        acc = Access(
            vcpu,
            address(e["gpa"], f"{p}.gpa", U64_END - 1, "gpa"),
            address(e["gfn"], f"{p}.gfn", GFN_LIMIT - 1, "gfn", GFN_BEYOND),
            boolean(e["alias"], f"{p}.alias"),
            optional_bool(e["private"], f"{p}.private"),
            boolean(e["write"], f"{p}.write"),
            value,
            accept,
            boolean(e["retried"], f"{p}.retried"),
        )
        sid = integer(e["slot"], f"{p}.slot", 0, SLOT_ID_MAX, "slot")
        base = address(e["slot_base"], f"{p}.slot_base", GFN_LIMIT - 1, "gfn", GFN_BEYOND)
        if boolean(e["slot_live"], f"{p}.slot_live"):
            slot = vm.memslots.by_id.get(sid)
            if slot is None:
                fail(f"{p}.slot", f"no memslot has id {sid} (slot_live is true)")
        else:
            # The slot was deleted or replaced while the fault was held: only its
            # identity matters (the fault retries), so a detached stand-in will do.
            slot = Memslot(sid, 0, base, 0, 0)
        out[vcpu] = PendingFault(
            acc,
            boolean(e["is_private"], f"{p}.is_private"),
            integer(e["mmu_seq"], f"{p}.mmu_seq", what="mmu_seq"),
            slot,
            base,
            address(e["pfn"], f"{p}.pfn", ctx.npages - 1, "pfn", ctx.pfn_beyond),
            enum(e["host_level"], f"{p}.host_level", levels),
        )
    return out
