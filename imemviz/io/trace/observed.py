"""What a trace tells about the VM, updated event by event.

`Evidence` looks at the first lines of every file and settles what the
decoding needs: the vendor (Intel, AMD, SNP, TDX), the SPTE layout (modern /
old), the TDX shared bit and the VM type.  Options given on the command line
win over it.

`ObservedState.apply(record)` turns one event into the state changes it
implies ("effects") and keeps the state the trace has told so far:

- leaves: `kvm_tdp_mmu_spte_changed` decoded (a present leaf is added, a leaf
  that becomes non-present or frozen is removed, a table that goes away takes
  every leaf below it, a huge leaf turned into a table is split into the 512
  leaves `tdp_mmu_split_huge_page` made without tracing them); traces without
  any TDP MMU event fall back to `kvm_mmu_set_spte` (shadow MMU);
- whether a leaf maps private memory: the access type of the last fault on the
  same thread when it covers the gfn (TDX and SNP error codes say it), else the
  gfn's attribute then, else unknown.  On TDX that is also the root: private
  leaves live in the mirror root, shared ones in the direct root (the trace
  prints both with the same gfn: `tdp_iter` keeps the shared bit apart);
- attributes: `kvm_vm_set_mem_attributes` (6.17 on) and QEMU's
  `kvm_convert_memory`; before any of them a gfn's attribute is unknown unless
  the trace starts with the VM (`from_vm_start`: everything shared) or the VM
  has no private memory;
- memslots: QEMU's `kvm_set_user_memory` (the kernel has no memslot event).

Effects are small lists, written into the observed timeline:
`["L+", as_id, gfn, level, pfn, private]`, `["L-", as_id, gfn, level]`,
`["A", start_gfn, end_gfn, private]` and
`["S", as_id, slot, base_gfn, npages, flags, gmem_fd, gmem_offset]` (npages 0
deletes the slot).  `private` is 1, 0 or null (unknown).
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from sortedcontainers import SortedList

from imemviz.io.trace import decode
from imemviz.io.trace.decode import FROZEN, LEAF, TABLE
from imemviz.io.trace.formats import SNP_PAGE_TYPES
from imemviz.io.trace.reader import Record
from imemviz.model.extents import ExtentMap

GFN_LIMIT = 1 << 52
KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3
KVM_MAP_GPA_RANGE_ENCRYPTED = 1 << 4
VM_TYPES = ("default", "sw_protected", "tdx", "snp")


def span(level: int) -> int:
    return 1 << (9 * (level - 1))


class Evidence:
    """What the first lines of a trace say about vendor, SPTE layout and VM type."""

    def __init__(self) -> None:
        self.votes: Counter[str] = Counter()
        self.layouts: Counter[str] = Counter()
        self.high_gpa_bits: Counter[int] = Counter()
        self.private_memory = False

    def see(self, r: Record) -> None:
        k, f = r.kind, r.fields
        v = self.votes
        if k == "vmexit":
            reason = f["reason"]
            if reason == "TDCALL":
                v["tdx"] += 1
            elif reason[:1].isupper():
                v["intel"] += 1
            else:
                v["amd"] += 1
        elif k in ("rmp_fault", "ghcb_msr", "launch_update", "launch_start", "launch_finish"):
            v["snp"] += 1
        elif k.startswith("tdx_page"):
            v["tdx"] += 1
        elif k == "fault":
            ec, gpa = f["error_code"], f["gpa"]
            if ec >> 32:
                v["amd"] += 1
                if ec & (decode.PFERR_PRIVATE_ACCESS | decode.PFERR_GUEST_ENC):
                    v["snp"] += 1
            for bit in (51, 47):
                if gpa >> bit & 1:
                    self.high_gpa_bits[bit] += 1
                    break
        elif k in ("spte", "split"):
            for val in (f.get("old_spte"), f.get("new_spte"), f.get("spte")):
                if val is not None:
                    g = decode.guess_layout(val)
                    if g:
                        self.layouts[g] += 1
        elif k in ("attributes", "convert", "memory_fault", "map_gpa_range") or (
            k == "memslot" and f.get("gmem_fd", -1) >= 0 and f.get("flags", 0) & 4
        ):
            self.private_memory = True

    def settle(
        self, vendor: str = "auto", vm_type: str = "auto", layout: str = "auto", gpaw: int = 0
    ) -> dict[str, Any]:
        v = self.votes
        if vm_type == "auto":
            if v["tdx"] or (v["intel"] and self.high_gpa_bits):
                vm_type = "tdx"
            elif v["snp"]:
                vm_type = "snp"
            elif self.private_memory:
                vm_type = "sw_protected"
            else:
                vm_type = "default"
        if vendor == "auto":
            if vm_type in ("tdx", "snp"):
                vendor = vm_type
            elif v["amd"] > v["intel"]:
                vendor = "amd"
            else:
                vendor = "intel"
        if layout == "auto":
            layout = "old" if self.layouts["old"] > self.layouts["modern"] else "modern"
        if not gpaw:
            gpaw = 48 if self.high_gpa_bits[47] > self.high_gpa_bits[51] else 52
        return {"vendor": vendor, "vm_type": vm_type, "spte_layout": layout, "gpaw": gpaw}


class ObservedState:
    """The VM as far as the trace has told, and the summary of the contract."""

    def __init__(self, settings: dict[str, Any], from_vm_start: bool = False) -> None:
        self.vendor: str = settings["vendor"]
        self.vm_type: str = settings["vm_type"]
        self.layout: str = settings["spte_layout"]
        self.shared_bit = 1 << (51 if settings["gpaw"] == 52 else 47)
        known_shared = from_vm_start or self.vm_type == "default"
        self.attr: ExtentMap = ExtentMap(0 if known_shared else None, GFN_LIMIT)
        # (as_id, gfn, level) -> (pfn, private); per as_id the sorted (gfn, level) keys.
        self.leaves: dict[tuple[int, int, int], tuple[int, int | None]] = {}
        self._keys: dict[int, SortedList] = {}
        self.slots: dict[tuple[int, int], tuple[int, int, int, int | None, int]] = {}
        self.gmem_extent: dict[int, int] = {}  # QEMU guest_memfd fd -> bytes its slots reach
        self.seen_tdp = False
        self.last_fault: dict[int | None, tuple[int, bool | None]] = {}
        self.events: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self._recent_conv: deque[tuple[str, int, int, str, int]] = deque(maxlen=64)
        self.conversions = 0

    # ------------------------------------------------------------------ helpers
    def attr_at(self, gfn: int) -> int | None:
        return self.attr.get(gfn)

    def _add_leaf(self, fx: list, as_id: int, gfn: int, level: int, pfn: int, pv) -> None:
        key = (as_id, gfn, level)
        old = self.leaves.get(key)
        if old is not None:
            if old[0] == pfn:
                return  # the same leaf with other permission or A/D bits
            fx.append(["L-", as_id, gfn, level])
        else:
            keys = self._keys.get(as_id)
            if keys is None:
                keys = self._keys[as_id] = SortedList()
            keys.add((gfn, level))
        self.leaves[key] = (pfn, pv)
        fx.append(["L+", as_id, gfn, level, pfn, pv])

    def _del_leaf(self, fx: list, as_id: int, gfn: int, level: int) -> tuple[int, Any] | None:
        old = self.leaves.pop((as_id, gfn, level), None)
        if old is not None:
            self._keys[as_id].remove((gfn, level))
            fx.append(["L-", as_id, gfn, level])
        return old

    def _drop_below(self, fx: list, as_id: int, gfn: int, level: int) -> None:
        """A page table at `level` went away: every leaf below it in its range goes too."""
        keys = self._keys.get(as_id)
        if not keys:
            return
        end = gfn + span(level)
        doomed = [
            k for k in keys.irange((gfn, 0), (end, 0), inclusive=(True, False)) if k[1] < level
        ]
        for g, lv in doomed:
            self._del_leaf(fx, as_id, g, lv)

    def _private_of(self, r: Record, gfn: int, level: int) -> int | None:
        lf = self.last_fault.get(r.pid)
        if lf is not None and lf[1] is not None and gfn <= lf[0] < gfn + span(level):
            return int(lf[1])
        a = self.attr.get(gfn)
        if a is None or not self.attr.is_uniform(gfn, gfn + span(level)):
            return None
        return a

    def _set_attr(self, fx: list, start: int, end: int, private: int) -> None:
        if start >= end or end > GFN_LIMIT:
            return
        self.attr.set_range(start, end, private)
        fx.append(["A", start, end, private])

    def _conversion(self, src: str, gpa: int, size: int, to: str, t: float) -> dict | None:
        """A conversion for the summary, unless it is the other source's report of one
        already listed (QEMU traces kvm_convert_memory, then the kernel its ioctl)."""
        for i, (s, g, sz, tt, idx) in enumerate(self._recent_conv):
            if s != src and g == gpa and sz == size and tt == to:
                del self._recent_conv[i]
                return {"same_as": idx}
        idx = self.conversions
        self.conversions += 1
        self._recent_conv.append((src, gpa, size, to, idx))
        return {"gpa": gpa, "size": size, "to": to, "source": src, "t": t}

    # ------------------------------------------------------------------ apply
    def apply(self, r: Record) -> tuple[list, dict[str, Any], int | None]:
        """The effects of one event, what it adds to the summary lists, and its gfn."""
        self.events[r.event] += 1
        fx: list = []
        extra: dict[str, Any] = {}
        f = r.fields
        handler = _HANDLERS.get(r.kind)
        if handler is not None:
            handler(self, r, f, fx, extra)
        gfn = f.get("gfn")
        if gfn is None:
            gpa = f.get("gpa")
            if gpa is not None:
                gfn = (gpa & ~self.shared_bit) >> 12
            elif r.kind == "attributes":
                gfn = f["start"]
            elif r.kind in ("convert", "memory_fault"):
                gfn = f["start"] >> 12
        return fx, extra, gfn


def _h_fault(st: ObservedState, r: Record, f, fx, extra) -> None:
    d = decode.decode_fault(st.vendor, f["gpa"], f["error_code"], st.shared_bit)
    st.last_fault[r.pid] = (d.gfn, d.private)
    st.counts["faults"] += 1
    extra["fault"] = {
        "vcpu": r.vcpu,
        "gpa": f["gpa"],
        "error_code": f["error_code"],
        "gfn": d.gfn,
        "write": d.write,
        "private": d.private,
        "t": r.ts,
    }


def _h_spte(st: ObservedState, r: Record, f, fx, extra) -> None:
    st.seen_tdp = True
    as_id, gfn, level = f["as_id"], f["gfn"], f["level"]
    old = decode.decode_spte(f["old_spte"], level, st.layout)
    new = decode.decode_spte(f["new_spte"], level, st.layout)
    if old.kind == LEAF and new.kind == TABLE:
        # tdp_mmu_split_huge_page(): the children are made before the link, untraced.
        prev = st._del_leaf(fx, as_id, gfn, level)
        pv = prev[1] if prev else st._private_of(r, gfn, level)
        n = span(level - 1)
        for i in range(512):
            st._add_leaf(fx, as_id, gfn + i * n, level - 1, old.pfn + i * n, pv)
        st.counts["splits"] += 1
        return
    if old.kind == TABLE and new.kind != TABLE:
        st._drop_below(fx, as_id, gfn, level)
    if new.kind == LEAF:
        if old.kind == LEAF and old.pfn == new.pfn and (as_id, gfn, level) in st.leaves:
            return
        st._add_leaf(fx, as_id, gfn, level, new.pfn, st._private_of(r, gfn, level))
        if level > 1:
            st._drop_below(fx, as_id, gfn, level)
    elif new.kind in (decode.NONE, FROZEN) and old.kind == LEAF:
        st._del_leaf(fx, as_id, gfn, level)


def _h_set_spte(st: ObservedState, r: Record, f, fx, extra) -> None:
    if st.seen_tdp:
        return  # the TDP MMU's spte_changed events already said it, with the as_id
    level = f["level"]
    s = decode.decode_spte(f["spte"], level, st.layout)
    if s.kind == LEAF:
        gfn = f["gfn"] & ~(span(level) - 1)
        st._add_leaf(fx, 0, gfn, level, s.pfn, st._private_of(r, gfn, level))


def _h_zap_page(st: ObservedState, r: Record, f, fx, extra) -> None:
    if st.seen_tdp:
        return  # the TDP MMU traces every child it zaps
    st._drop_below(fx, 0, f["gfn"], f["role_level"] + 1)


def _h_attributes(st: ObservedState, r: Record, f, fx, extra) -> None:
    private = 1 if f["attr"] & KVM_MEMORY_ATTRIBUTE_PRIVATE else 0
    st._set_attr(fx, f["start"], f["end"], private)
    c = st._conversion(
        "kernel",
        f["start"] << 12,
        (f["end"] - f["start"]) << 12,
        "private" if private else "shared",
        r.ts,
    )
    if c is not None:
        extra["conversion"] = c


def _h_convert(st: ObservedState, r: Record, f, fx, extra) -> None:
    private = 1 if f["msg"] == "shared_to_private" else 0
    start = f["start"] >> 12
    st._set_attr(fx, start, (f["start"] + f["size"] + 0xFFF) >> 12, private)
    c = st._conversion("qemu", f["start"], f["size"], "private" if private else "shared", r.ts)
    if c is not None:
        extra["conversion"] = c


def _h_memslot(st: ObservedState, r: Record, f, fx, extra) -> None:
    if f["ret"] != 0:
        return
    as_id, slot = f.get("addr_space", 0), f["slot"]
    npages = f["size"] >> 12
    fd = f.get("gmem_fd", -1)
    fd = fd if fd >= 0 and f["flags"] & 4 else None
    off = f.get("gmem_offset", 0)
    if npages:
        st.slots[(as_id, slot)] = (f["gpa"] >> 12, npages, f["flags"], fd, off)
        if fd is not None:
            st.gmem_extent[fd] = max(st.gmem_extent.get(fd, 0), off + f["size"])
    else:
        st.slots.pop((as_id, slot), None)
    fx.append(["S", as_id, slot, f["gpa"] >> 12, npages, f["flags"], fd, off])


def _h_launch(st: ObservedState, r: Record, f, fx, extra) -> None:
    extra["launch"] = {
        "gpa": f["gpa"],
        "size": f["len"],
        "type": SNP_PAGE_TYPES.get(f["page_type"], f["page_type"].upper()),
        "t": r.ts,
    }


def _h_tdx_add(st: ObservedState, r: Record, f, fx, extra) -> None:
    extra["launch"] = {"gpa": f["gpa"], "size": 4096, "type": "TDX_PAGE_ADD", "t": r.ts}


def _h_memory_fault(st: ObservedState, r: Record, f, fx, extra) -> None:
    st.counts["memory_faults"] += 1


_HANDLERS = {
    "fault": _h_fault,
    "spte": _h_spte,
    "set_spte": _h_set_spte,
    "zap_page": _h_zap_page,
    "attributes": _h_attributes,
    "convert": _h_convert,
    "memslot": _h_memslot,
    "launch_update": _h_launch,
    "tdx_page_add": _h_tdx_add,
    "memory_fault": _h_memory_fault,
}
