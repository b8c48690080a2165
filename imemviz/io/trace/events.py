"""What each recognised event asks of the observed state, decided from the event alone.

The import splits `ObservedState.apply` in two: `prepare(record)` here decodes
an event into a small *op* tuple (what it would do to the state: add this
leaf, set these attributes, ...) with no state at all, so it runs in the
parsing processes (scanner.py); `ObservedState.commit(op)` then does it to the
state, in order, in the importing process.  The op's first element is its code:

| code | event kind | op |
| --- | --- | --- |
| `FAULT` | fault | `(FAULT, pid, gfn, private, summary_line)` |
| `SPTE` | spte | `(SPTE, pid, as_id, gfn, level, old_kind, old_pfn, new_kind, new_pfn)` |
| `SET_SPTE` | set_spte (a leaf) | `(SET_SPTE, pid, gfn, level, pfn)` |
| `ZAP` | zap_page | `(ZAP, gfn, role_level)` |
| `ATTR` | attributes | `(ATTR, start_gfn, end_gfn, private, ts)` |
| `CONVERT` | convert | `(CONVERT, start_gfn, end_gfn, private, gpa, size, ts)` |
| `MEMSLOT` | memslot (ret 0) | `(MEMSLOT, as_id, slot, gpa, size, flags, gmem_fd, gmem_offset)` |
| `LAUNCH` | launch_update, tdx_page_add | `(LAUNCH, summary_entry)` |
| `MEMORY_FAULT` | memory_fault | `(MEMORY_FAULT,)` |
| `RMP_FAILURE` | rmpupdate_failed (dmesg) | `(RMP_FAILURE, mark)`: the timeline marks it |

Other events change nothing (op None).  A fault's line of the summary's
`faults` list is written here, by hand, as json.dumps with separators
(",", ":") would.  Nothing here imports numpy or the model: parsing
processes start light.
"""

from __future__ import annotations

import json
from typing import Any, TypeAlias

from imemviz.io.trace import decode
from imemviz.io.trace.formats import SNP_PAGE_TYPES
from imemviz.model.uapi import KVM_MEMORY_ATTRIBUTE_PRIVATE

FAULT, SPTE, SET_SPTE, ZAP, ATTR, CONVERT, MEMSLOT, LAUNCH, MEMORY_FAULT, RMP_FAILURE = range(10)

# The normalised event kinds (formats.py's `kind`), numbered for the timeline's columns.
KINDS = (
    "fault",
    "spte",
    "set_spte",
    "spte_requested",
    "split",
    "zap_page",
    "get_page",
    "attributes",
    "unmap_hva",
    "user_exit",
    "vmexit",
    "entry",
    "hypercall",
    "rmp_fault",
    "ghcb_msr",
    "memslot",
    "convert",
    "memory_fault",
    "map_gpa_range",
    "qemu_run_exit",
    "launch_start",
    "launch_update",
    "launch_finish",
    "tdx_page_add",
    "tdx_page_aug",
    "tdx_page_remove",
    "rmp_dump",
    "rmp_dump_region",
    "rmpupdate_failed",
)
KIND_CODE = {k: i for i, k in enumerate(KINDS)}


def span(level: int) -> int:
    return 1 << (9 * (level - 1))


def event_gfn(kind: str, f: dict[str, Any], shared_bit: int) -> int | None:
    """The gfn an event is about (the timeline's "g"), from its fields alone."""
    gfn = f.get("gfn")
    if gfn is None:
        gpa = f.get("gpa")
        if gpa is not None:
            gfn = (gpa & ~shared_bit) >> 12
        elif kind == "attributes":
            gfn = f["start"]
        elif kind in ("convert", "memory_fault"):
            gfn = f["start"] >> 12
    return gfn


def float_json(t: float) -> str:
    """A float as json.dumps writes it."""
    return repr(t) if t - t == 0 else json.dumps(t)


def fault_line(
    vcpu: int | None, gpa: int, ec: int, gfn: int, write: bool, private: bool | None, t: float
) -> str:
    """One line of the summary's faults, fields FAULT_FIELDS, newline included."""
    return (
        f'{{"vcpu":{"null" if vcpu is None else vcpu},"gpa":{gpa},"error_code":{ec},'
        f'"gfn":{gfn},"write":{"true" if write else "false"},'
        f'"private":{"null" if private is None else "true" if private else "false"},'
        f'"t":{float_json(t)}}}\n'
    )


FAULT_FIELDS = ("vcpu", "gpa", "error_code", "gfn", "write", "private", "t")
# A key of the settings the import's parsing is given (never the timeline's header):
# False when no summary is written, so no fault needs its summary line.
FAULT_LINES = "_fault_lines"


# A decoded trace event (prepare's result): (op code, its fields...), the fields per op
# code as ObservedState.commit's handlers unpack them.
TraceOp: TypeAlias = tuple[Any, ...]


class Decoder:
    """prepare(kind, fields, pid, vcpu, ts) -> op, under one trace's settings."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.vendor: str = settings["vendor"]
        self.layout: str = settings["spte_layout"]
        self.shared_bit = 1 << (51 if settings["gpaw"] == 52 else 47)
        # The summary's lines of faults are made only when a summary is written (the
        # import's settings for its parsing say; a fault's op then carries None).
        self.fault_lines: bool = settings.get(FAULT_LINES, True)
        # Set by a TDP MMU spte event: from then on the state ignores set_spte and zap
        # events (ObservedState.seen_tdp), so they need no op.  The block parser
        # clears it at each block (what the blocks before said is not known there).
        self.tdp_seen = False
        self._by_kind = {
            "fault": self._fault,
            "spte": self._spte,
            "set_spte": self._set_spte,
            "zap_page": self._zap,
            "attributes": self._attributes,
            "convert": self._convert,
            "memslot": self._memslot,
            "launch_update": self._launch,
            "tdx_page_add": self._tdx_add,
            "memory_fault": self._memory_fault,
            "rmpupdate_failed": self._rmp_failure,
        }

    def _rmp_failure(
        self, f: dict[str, Any], pid: int | None, vcpu: int | None, ts: float
    ) -> TraceOp:
        from imemviz.io.trace.rmp_dump import failure_mark

        return RMP_FAILURE, failure_mark(f)

    def prepare(
        self, kind: str, f: dict[str, Any], pid: int | None, vcpu: int | None, ts: float
    ) -> TraceOp | None:
        p = self._by_kind.get(kind)
        return None if p is None else p(f, pid, vcpu, ts)

    def _fault(self, f: dict[str, Any], pid: int | None, vcpu: int | None, ts: float) -> TraceOp:
        gpa, ec = f["gpa"], f["error_code"]
        gfn, write, _fetch, private, _rmp = decode.fault_tuple(
            self.vendor, gpa, ec, self.shared_bit
        )
        if not self.fault_lines:
            return FAULT, pid, gfn, private, None
        return FAULT, pid, gfn, private, fault_line(vcpu, gpa, ec, gfn, write, private, ts)

    def _spte(self, f: dict[str, Any], pid: int | None, vcpu: int | None, ts: float) -> TraceOp:
        self.tdp_seen = True
        level = f["level"]
        old, old_pfn = decode.spte_tuple(f["old_spte"], level, self.layout)
        new, new_pfn = decode.spte_tuple(f["new_spte"], level, self.layout)
        return SPTE, pid, f["as_id"], f["gfn"], level, old, old_pfn, new, new_pfn

    def _set_spte(
        self, f: dict[str, Any], pid: int | None, vcpu: int | None, ts: float
    ) -> TraceOp | None:
        if self.tdp_seen:
            return None
        level = f["level"]
        kind, pfn = decode.spte_tuple(f["spte"], level, self.layout)
        if kind != decode.LEAF:
            return None
        return SET_SPTE, pid, f["gfn"] & ~(span(level) - 1), level, pfn

    def _zap(
        self, f: dict[str, Any], pid: int | None, vcpu: int | None, ts: float
    ) -> TraceOp | None:
        if self.tdp_seen:
            return None
        return ZAP, f["gfn"], f["role_level"]

    def _attributes(
        self, f: dict[str, Any], pid: int | None, vcpu: int | None, ts: float
    ) -> TraceOp:
        private = 1 if f["attr"] & KVM_MEMORY_ATTRIBUTE_PRIVATE else 0
        return ATTR, f["start"], f["end"], private, ts

    def _convert(self, f: dict[str, Any], pid: int | None, vcpu: int | None, ts: float) -> TraceOp:
        private = 1 if f["msg"] == "shared_to_private" else 0
        start, size = f["start"], f["size"]
        return CONVERT, start >> 12, (start + size + 0xFFF) >> 12, private, start, size, ts

    def _memslot(
        self, f: dict[str, Any], pid: int | None, vcpu: int | None, ts: float
    ) -> TraceOp | None:
        if f["ret"] != 0:
            return None
        fd = f.get("gmem_fd", -1)
        fd = fd if fd >= 0 and f["flags"] & 4 else None
        return (
            MEMSLOT,
            f.get("addr_space", 0),
            f["slot"],
            f["gpa"],
            f["size"],
            f["flags"],
            fd,
            f.get("gmem_offset", 0),
        )

    def _launch(self, f: dict[str, Any], pid: int | None, vcpu: int | None, ts: float) -> TraceOp:
        kind = SNP_PAGE_TYPES.get(f["page_type"], f["page_type"].upper())
        return LAUNCH, {"gpa": f["gpa"], "size": f["len"], "type": kind, "t": ts}

    def _tdx_add(self, f: dict[str, Any], pid: int | None, vcpu: int | None, ts: float) -> TraceOp:
        return LAUNCH, {"gpa": f["gpa"], "size": 4096, "type": "TDX_PAGE_ADD", "t": ts}

    def _memory_fault(
        self, f: dict[str, Any], pid: int | None, vcpu: int | None, ts: float
    ) -> TraceOp:
        return (MEMORY_FAULT,)
