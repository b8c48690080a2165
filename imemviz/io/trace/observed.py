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
deletes the slot).  `private` is 1, 0 or null (unknown).  `apply` gives each
as its JSON text (what the timeline writes), formatted here by hand: the
import's hot path.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import Counter, deque
from typing import Any

from sortedcontainers import SortedList

from imemviz.io.trace import decode, events
from imemviz.io.trace.decode import FROZEN, LEAF, TABLE
from imemviz.io.trace.events import TraceOp, event_gfn, span
from imemviz.io.trace.reader import Record
from imemviz.model.extents import ExtentMap
from imemviz.model.uapi import KVM_MEMORY_ATTRIBUTE_PRIVATE, PFERR_PRIVATE_ACCESS

GFN_LIMIT = 1 << 52
KVM_MAP_GPA_RANGE_ENCRYPTED = 1 << 4
VM_TYPES = ("default", "sw_protected", "tdx", "snp")
__all__ = ["KVM_MEMORY_ATTRIBUTE_PRIVATE", "Evidence", "ObservedState", "event_gfn", "span"]


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
        elif k in (
            "rmp_fault",
            "ghcb_msr",
            "launch_update",
            "launch_start",
            "launch_finish",
            "rmp_dump",
            "rmp_dump_region",
            "rmpupdate_failed",
        ):
            v["snp"] += 1
        elif k.startswith("tdx_page"):
            v["tdx"] += 1
        elif k == "fault":
            ec, gpa = f["error_code"], f["gpa"]
            if ec >> 32:
                v["amd"] += 1
                if ec & (PFERR_PRIVATE_ACCESS | decode.PFERR_GUEST_ENC):
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
        self.attr: ExtentMap[int | None] = ExtentMap(0 if known_shared else None, GFN_LIMIT)
        # (as_id, gfn, level) -> (pfn, private); per as_id the sorted (gfn, level) keys,
        # and the keys added since they were last sorted (sorted only when a range of
        # leaves is asked for: most traces never ask, and a SortedList add costs).
        self.leaves: dict[tuple[int, int, int], tuple[int, int | None]] = {}
        self._keys: dict[int, SortedList[tuple[int, int]]] = {}
        self._new_keys: dict[int, set[tuple[int, int]]] = {}
        self.slots: dict[tuple[int, int], tuple[int, int, int, int | None, int]] = {}
        self.gmem_extent: dict[int, int] = {}  # QEMU guest_memfd fd -> bytes its slots reach
        self.seen_tdp = False
        self.last_fault: dict[int | None, tuple[int, bool | None]] = {}
        self.events: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self._recent_conv: deque[tuple[str, int, int, str, int]] = deque(maxlen=64)
        self.conversions = 0
        self.i = 0  # the index of the event being committed
        # The logs of effects the timeline's index keeps (timeline_index.py): arrays
        # extended by rows of ints, or None.
        self.leaf_log: Any = None
        self.attr_log: Any = None
        self.slot_log: Any = None
        self._decoder = events.Decoder(settings)
        self.marks: list[dict[str, Any]] = []  # RMPUPDATE failures (dmesg): timeline marks

    # ------------------------------------------------------------------ helpers
    def attr_at(self, gfn: int) -> int | None:
        return self.attr.get(gfn)

    def _add_leaf(
        self, fx: list[str], as_id: int, gfn: int, level: int, pfn: int, pv: int | None
    ) -> None:
        key = (as_id, gfn, level)
        old = self.leaves.get(key)
        if old is not None:
            if old[0] == pfn:
                return  # the same leaf with other permission or A/D bits
            fx.append(f'["L-",{as_id},{gfn},{level}]')
            if self.leaf_log is not None:
                opv = -1 if old[1] is None else old[1]
                self.leaf_log.extend((self.i, -1, as_id, gfn, level, old[0], opv))
        else:
            new = self._new_keys.get(as_id)
            if new is None:
                new = self._new_keys[as_id] = set()
                self._keys[as_id] = SortedList()
            new.add((gfn, level))
        self.leaves[key] = (pfn, pv)
        if self.leaf_log is not None:
            self.leaf_log.extend((self.i, 1, as_id, gfn, level, pfn, -1 if pv is None else pv))
        fx.append(f'["L+",{as_id},{gfn},{level},{pfn},{"null" if pv is None else pv}]')

    def _del_leaf(
        self, fx: list[str], as_id: int, gfn: int, level: int
    ) -> tuple[int, int | None] | None:
        old = self.leaves.pop((as_id, gfn, level), None)
        if old is not None:
            k = (gfn, level)
            new = self._new_keys[as_id]
            if k in new:
                new.remove(k)
            else:
                self._keys[as_id].remove(k)
            if self.leaf_log is not None:
                opv = -1 if old[1] is None else old[1]
                self.leaf_log.extend((self.i, -1, as_id, gfn, level, old[0], opv))
            fx.append(f'["L-",{as_id},{gfn},{level}]')
        return old

    def _drop_below(self, fx: list[str], as_id: int, gfn: int, level: int) -> None:
        """A page table at `level` went away: every leaf below it in its range goes too."""
        keys = self._keys.get(as_id)
        if keys is None:
            return
        new = self._new_keys[as_id]
        if new:
            keys.update(new)
            new.clear()
        if not keys:
            return
        end = gfn + span(level)
        doomed = [
            k for k in keys.irange((gfn, 0), (end, 0), inclusive=(True, False)) if k[1] < level
        ]
        for g, lv in doomed:
            self._del_leaf(fx, as_id, g, lv)

    def _private_of(self, pid: int | None, gfn: int, level: int) -> int | None:
        lf = self.last_fault.get(pid)
        n = 1 << (9 * (level - 1))
        if lf is not None and lf[1] is not None and gfn <= lf[0] < gfn + n:
            return int(lf[1])
        a = self.attr.get(gfn)
        if a is None or (n > 1 and not self.attr.is_uniform(gfn, gfn + n)):
            return None
        return a

    def _set_attr(self, fx: list[str], start: int, end: int, private: int) -> None:
        if start >= end or end > GFN_LIMIT:
            return
        self.attr.set_range(start, end, private)
        if self.attr_log is not None:
            self.attr_log.extend((self.i, start, end, private))
        fx.append(f'["A",{start},{end},{private}]')

    def _conversion(
        self, src: str, gpa: int, size: int, to: str, t: float
    ) -> tuple[str, str] | None:
        """A conversion's line of the summary, unless it is the other source's report of
        one already listed (QEMU traces kvm_convert_memory, then the kernel its ioctl)."""
        for i, (s, g, sz, tt, _idx) in enumerate(self._recent_conv):
            if s != src and g == gpa and sz == size and tt == to:
                del self._recent_conv[i]
                return None
        idx = self.conversions
        self.conversions += 1
        self._recent_conv.append((src, gpa, size, to, idx))
        c = {"gpa": gpa, "size": size, "to": to, "source": src, "t": t}
        return "conversions", _dump(c) + "\n"

    # ------------------------------------------------------------------ apply
    def commit(self, op: TraceOp | None) -> tuple[list[str], tuple[str, str] | None]:
        """Do one event's op (events.py) to the state: its effects (each as its JSON
        text) and what it adds to the summary's lists: (`"faults"`, `"conversions"` or
        `"launch_updates"`, the JSON line), or None.  The caller counts the event in
        `events` and sets `i`."""
        fx: list[str] = []
        if op is None:
            return fx, None
        return fx, COMMIT[op[0]](self, op, fx)

    def apply(self, r: Record) -> tuple[list[str], tuple[str, str] | None]:
        """prepare and commit one record (the import does the two in different places)."""
        self.events[r.event] += 1
        return self.commit(self._decoder.prepare(r.kind, r.fields, r.pid, r.vcpu, r.ts))


_dump = json.JSONEncoder(separators=(",", ":")).encode


class _Commit:
    """ObservedState.commit's handlers, by op code (events.py): each appends the op's
    effects to fx and returns what it adds to the summary's lists, as (list name,
    JSON line), or None."""

    @staticmethod
    def fault(st: ObservedState, op: TraceOp, fx: list[str]) -> tuple[str, str] | None:
        _, pid, gfn, private, line = op
        st.last_fault[pid] = (gfn, private)
        st.counts["faults"] += 1
        return None if line is None else ("faults", line)

    @staticmethod
    def spte(st: ObservedState, op: TraceOp, fx: list[str]) -> tuple[str, str] | None:
        _, pid, as_id, gfn, level, old, old_pfn, new, new_pfn = op
        st.seen_tdp = True
        if new == LEAF and old != TABLE and level == 1:
            # The common event, a 4K leaf installed: the general path below, inlined
            # (the import's hot path: _private_of and _add_leaf's new-leaf case).
            key = (as_id, gfn, 1)
            prev = st.leaves.get(key)
            if prev is not None and ((old == LEAF and old_pfn == new_pfn) or prev[0] == new_pfn):
                return None  # the same leaf (other permission or A/D bits)
            lf = st.last_fault.get(pid)
            if lf is not None and lf[1] is not None and lf[0] == gfn:
                pv: int | None = int(lf[1])
            else:
                attr = st.attr
                pv = attr._vals[bisect_right(attr._starts, gfn) - 1]
            if prev is not None:
                st._add_leaf(fx, as_id, gfn, 1, new_pfn, pv)
                return None
            new_keys = st._new_keys.get(as_id)
            if new_keys is None:
                new_keys = st._new_keys[as_id] = set()
                st._keys[as_id] = SortedList()
            new_keys.add((gfn, 1))
            st.leaves[key] = (new_pfn, pv)
            if st.leaf_log is not None:
                st.leaf_log.extend((st.i, 1, as_id, gfn, 1, new_pfn, -1 if pv is None else pv))
            fx.append(f'["L+",{as_id},{gfn},1,{new_pfn},{"null" if pv is None else pv}]')
            return None
        if old == LEAF and new == TABLE:
            # tdp_mmu_split_huge_page(): the children are made before the link, untraced.
            prev = st._del_leaf(fx, as_id, gfn, level)
            pv = prev[1] if prev else st._private_of(pid, gfn, level)
            n = span(level - 1)
            for i in range(512):
                st._add_leaf(fx, as_id, gfn + i * n, level - 1, old_pfn + i * n, pv)
            st.counts["splits"] += 1
            return None
        if old == TABLE and new != TABLE:
            st._drop_below(fx, as_id, gfn, level)
        if new == LEAF:
            if old == LEAF and old_pfn == new_pfn and (as_id, gfn, level) in st.leaves:
                return None
            st._add_leaf(fx, as_id, gfn, level, new_pfn, st._private_of(pid, gfn, level))
            if level > 1:
                st._drop_below(fx, as_id, gfn, level)
        elif old == LEAF and (new == decode.NONE or new == FROZEN):
            st._del_leaf(fx, as_id, gfn, level)
        return None

    @staticmethod
    def set_spte(st: ObservedState, op: TraceOp, fx: list[str]) -> tuple[str, str] | None:
        if st.seen_tdp:
            return None  # the TDP MMU's spte_changed events already said it, with the as_id
        _, pid, gfn, level, pfn = op
        st._add_leaf(fx, 0, gfn, level, pfn, st._private_of(pid, gfn, level))
        return None

    @staticmethod
    def zap(st: ObservedState, op: TraceOp, fx: list[str]) -> tuple[str, str] | None:
        if st.seen_tdp:
            return None  # the TDP MMU traces every child it zaps
        st._drop_below(fx, 0, op[1], op[2] + 1)
        return None

    @staticmethod
    def attributes(st: ObservedState, op: TraceOp, fx: list[str]) -> tuple[str, str] | None:
        _, start, end, private, ts = op
        st._set_attr(fx, start, end, private)
        to = "private" if private else "shared"
        return st._conversion("kernel", start << 12, (end - start) << 12, to, ts)

    @staticmethod
    def convert(st: ObservedState, op: TraceOp, fx: list[str]) -> tuple[str, str] | None:
        _, start, end, private, gpa, size, ts = op
        st._set_attr(fx, start, end, private)
        return st._conversion("qemu", gpa, size, "private" if private else "shared", ts)

    @staticmethod
    def memslot(st: ObservedState, op: TraceOp, fx: list[str]) -> tuple[str, str] | None:
        _, as_id, slot, gpa, size, flags, fd, off = op
        npages = size >> 12
        if npages:
            st.slots[(as_id, slot)] = (gpa >> 12, npages, flags, fd, off)
            if fd is not None:
                st.gmem_extent[fd] = max(st.gmem_extent.get(fd, 0), off + size)
        else:
            st.slots.pop((as_id, slot), None)
        if st.slot_log is not None:
            fd_ = -1 if fd is None else fd
            st.slot_log.extend((st.i, as_id, slot, gpa >> 12, npages, flags, fd_, off))
        fx.append(
            f'["S",{as_id},{slot},{gpa >> 12},{npages},{flags},{"null" if fd is None else fd},'
            f"{off}]"
        )
        return None

    @staticmethod
    def launch(st: ObservedState, op: TraceOp, fx: list[str]) -> tuple[str, str] | None:
        return "launch_updates", _dump(op[1]) + "\n"

    @staticmethod
    def memory_fault(st: ObservedState, op: TraceOp, fx: list[str]) -> tuple[str, str] | None:
        st.counts["memory_faults"] += 1
        return None


def _rmp_failure(st: ObservedState, op: TraceOp, fx: list[str]) -> tuple[str, str] | None:
    st.marks.append({"i": st.i, **op[1]})
    st.counts["rmp_failures"] += 1
    return None


COMMIT = (
    _Commit.fault,
    _Commit.spte,
    _Commit.set_spte,
    _Commit.zap,
    _Commit.attributes,
    _Commit.convert,
    _Commit.memslot,
    _Commit.launch,
    _Commit.memory_fault,
    _rmp_failure,
)
assert len(COMMIT) == events.RMP_FAILURE + 1
