"""What the map's "Go to" box understands (no Qt): a gpa, gfn, hva, host pfn or memslot.

`parse_goto(text, slots, extent)` turns what was typed into a `Target`: gfns to frame
and select, or, for a host pfn, a `Target` whose gfns the engine thread resolves with
`pfn_target(vm, pfn)` (it needs the folios and the VMM's pages).  Bad or out-of-range
input raises `GotoError` with one line saying what is wrong, shown under the box.

    0x810000, 8M, gpa 0x810000      a guest physical address (the page holding it)
    gpa 0x800000+64K                a range: the address and a size
    gfn 0x810                       a guest frame number
    hva 0x7f0000810000              an address in the VMM (through the memslots)
    pfn 0x1f00a                     a host page: the gfns it backs
    slot 1, memslot 1               a memslot: all of it
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np

from imemviz.model.units import parse_int

PAGE_SHIFT = 12
KINDS = ("gpa", "gfn", "hva", "pfn", "slot")
ALIASES = {"memslot": "slot", "host": "pfn", "hpa": "pfn"}
USAGE = "a gpa (0x810000), gfn 0x810, hva 0x7f0000810000, pfn 0x1f00a or slot 1"


class GotoError(ValueError):
    """Input the Go to box cannot use; the message is the line to show."""


@attrs.frozen
class Target:
    kind: str
    gfns: tuple[int, int]  # [start, end) to frame; (0, 0) for a pfn not resolved yet
    label: str
    pfn: int | None = None  # a host pfn still to resolve on the engine thread

    @property
    def resolved(self) -> bool:
        return self.pfn is None


def _number(text: str, kind: str) -> int:
    try:
        v = parse_int(text)
    except ValueError:
        raise GotoError(
            f"{kind}: {text!r} is not a number (hex 0x..., decimal, or 4K/2M/1G)"
        ) from None
    if v < 0:
        raise GotoError(f"{kind}: {text} is negative")
    return v


def _split(text: str) -> tuple[str, str]:
    words = text.strip().split(None, 1)
    if not words:
        raise GotoError(f"type {USAGE}")
    head = words[0].lower().rstrip(":")
    head = ALIASES.get(head, head)
    if head in KINDS:
        if len(words) < 2:
            raise GotoError(f"{head}: which one? e.g. {head} 0x10")
        return head, words[1].strip()
    return "gpa", text.strip()


def _with_size(body: str, kind: str) -> tuple[int, int | None]:
    if "+" in body:
        a, b = body.split("+", 1)
        size = _number(b.strip(), kind)
        if size == 0:
            raise GotoError(f"{kind}: a range of size 0")
        return _number(a.strip(), kind), size
    return _number(body, kind), None


def parse_goto(
    text: str,
    slots: Iterable[Any],
    extent: int,
    shared_bit: int | None = None,
) -> Target:
    """Parse a Go to entry against the memslots (SlotInfo: id, base_gfn, npages,
    userspace_addr) and the drawn address space [0, extent) gfns."""
    kind, body = _split(text)
    slots = [s for s in slots if s.id >> 16 == 0 and s.npages]
    last_gpa = (extent << PAGE_SHIFT) - 1

    def check(a: int, b: int, what: str) -> tuple[int, int]:
        if a >= extent:
            raise GotoError(
                f"{what} is past the end of the guest's address space (last gpa {last_gpa:#x})"
            )
        return a, min(b, extent)

    if kind == "slot":
        n = _number(body, "slot")
        for s in slots:
            if s.id == n:
                return Target("slot", (s.base_gfn, s.base_gfn + s.npages), f"memslot {n}")
        have = ", ".join(str(s.id) for s in sorted(slots, key=lambda s: s.id)) or "none"
        raise GotoError(f"slot {n}: no such memslot (memslots: {have})")
    if kind == "pfn":
        pfn = _number(body, "pfn")
        return Target("pfn", (0, 0), f"pfn {pfn:#x}", pfn)
    value, size = _with_size(body, kind)
    if kind == "gfn":
        a = value
        b = a + (size or 1)
        a, b = check(a, b, f"gfn {value:#x}")
        return Target("gfn", (a, b), f"gfn {value:#x}")
    if kind == "hva":
        for s in slots:
            ua = s.userspace_addr
            if ua <= value < ua + (s.npages << PAGE_SHIFT):
                a = s.base_gfn + ((value - ua) >> PAGE_SHIFT)
                b = a + (-(-(size or 1) // 4096) if size else 1)
                b = min(b, s.base_gfn + s.npages)
                return Target("hva", (a, b), f"hva {value:#x} (memslot {s.id})")
        raise GotoError(f"hva {value:#x} is in no memslot's userspace_addr range")
    # gpa
    label = f"gpa {value:#x}"
    if shared_bit and value & shared_bit:
        value &= ~shared_bit
        label += f" (the shared alias of {value:#x})"
    a = value >> PAGE_SHIFT
    b = ((value + size - 1) >> PAGE_SHIFT) + 1 if size else a + 1
    a, b = check(a, b, f"gpa {value:#x}")
    return Target("gpa", (a, b), label)


# ------------------------------------------------------------------ host pfns


def pfn_target(vm: Any, pfn: int) -> Target:
    """The gfns a host pfn backs: a guest_memfd folio's page (through the memslots bound
    to its file), a VMM page behind a memslot's hva, or an S-EPT page (the gfns its
    entries map).  Runs on the engine thread; raises GotoError when it backs no gfn."""
    label = f"pfn {pfn:#x}"
    if not 0 <= pfn < vm.host.npages:
        raise GotoError(f"{label} is past the host's memory (last pfn {vm.host.npages - 1:#x})")
    slots = [m for m in vm.memslots.all() if m.npages and m.as_id == 0]
    # A guest_memfd folio.
    for fd, f in sorted(vm.files.items()):
        for order, idx in f.inode.folios.items():
            keys, vals = idx.arrays()
            if not keys:
                continue
            heads = np.asarray(vals, np.int64) >> 1
            hit = np.flatnonzero((heads <= pfn) & (pfn < heads + (1 << order)))
            if len(hit):
                i = int(hit[0])
                index = int(keys[i]) + pfn - int(heads[i])
                gfns = _file_gfns(slots, f, index)
                what = f"{label}: guest_memfd {fd} index {index:#x} (order-{order} folio)"
                if not gfns:
                    raise GotoError(f"{what}, bound to no memslot")
                return Target("pfn", gfns, what)
    # The VMM's memory behind a memslot's hva.
    for level, idx in vm.hva_pages.items():
        keys, vals = idx.arrays()
        if not keys:
            continue
        n = 1 << (9 * (level - 1))
        heads = np.asarray(vals, np.int64)
        hit = np.flatnonzero((heads <= pfn) & (pfn < heads + n))
        if len(hit):
            i = int(hit[0])
            hva = (int(keys[i]) + pfn - int(heads[i])) << PAGE_SHIFT
            for s in slots:
                if s.userspace_addr <= hva < s.hva_end:
                    g = s.base_gfn + ((hva - s.userspace_addr) >> PAGE_SHIFT)
                    return Target("pfn", (g, g + 1), f"{label}: the VMM's page at hva {hva:#x}")
            raise GotoError(f"{label}: the VMM's page at hva {hva:#x}, in no memslot")
    # An S-EPT page: the gfns its entries map.
    for (lv, g), p in vm.private.tables.items():
        if p == pfn:
            span = 1 << (9 * lv)
            a = g << (9 * lv)
            return Target("pfn", (a, a + span), f"{label}: an S-EPT page (level {lv})")
    if vm.host.alloc.is_free(pfn):
        raise GotoError(f"{label} is free host memory: it backs no gfn")
    raise GotoError(f"{label} belongs to the rest of the host: it backs no gfn")


def _file_gfns(slots: list[Any], f: Any, index: int) -> tuple[int, int] | None:
    for s in slots:
        if s.gmem_file is not f:
            continue
        if s.gmem_pgoff <= index < s.gmem_pgoff + s.npages:
            g = s.base_gfn + index - s.gmem_pgoff
            return g, g + 1
    return None
