"""The kernel's SEV-SNP RMP dumps in dmesg, decoded (arch/x86/virt/svm/sev.c at B).

`dump_rmpentry()` prints, with the `"SEV-SNP: "` pr_fmt prefix, after an RMPUPDATE
failure (`rmpupdate()`: "RMPUPDATE failed for PFN %llx, pg_level: %d, ret: %d") or an
RMP fault on a host access (`snp_dump_hva_rmpentry()`):

- an assigned pfn: "PFN 0x%llx, RMP entry: [0x%016llx - 0x%016llx]", the raw entry's
  two quadwords (lo, hi);
- an unassigned pfn: "PFN 0x%llx unassigned, dumping non-zero entries in 2M PFN region:
  [0x%llx - 0x%llx]", then "PFN: 0x%llx, [0x%016llx - 0x%016llx]" for each pfn of the
  2M region whose raw entry is not zero.

The raw entry is decoded per `struct rmpentry_raw`: lo bit 0 assigned, bit 1 pagesize
(2M), bit 2 immutable, bits 12-50 the gpa's frame number, bits 51-60 ASID, bit 61
VMSA, bit 62 validated.  That layout is **not architectural**: the kernel's comment
says it is the one of "PPR Family 19h Model 01h, Rev B1" (Zen3 and Zen4, machines
without RMPREAD); other processors may lay the entry out differently, and every
decoded dump says so (`layout`).
"""

from __future__ import annotations

from typing import Any

LAYOUT = "rmpentry_raw, Zen3/4 (non-architectural: PPR Family 19h Model 01h, Rev B1)"
# RMPUPDATE's return codes (AMD APM vol. 3, RMPUPDATE); asm/sev.h names only
# RMPUPDATE_FAIL_OVERLAP, which rmpupdate() retries, so it is never printed.
RMPUPDATE_RET = {
    1: "FAIL_INPUT",
    2: "FAIL_PERMISSION",
    3: "FAIL_INUSE",
    4: "FAIL_OVERLAP",
}
PG_LEVEL = {1: "4K", 2: "2M", 3: "1G"}  # enum pg_level


def decode_raw(lo: int, hi: int) -> dict[str, Any]:
    """struct rmpentry_raw's fields of one raw entry (Zen3/4 layout)."""
    return {
        "assigned": bool(lo & 1),
        "page_size": "2M" if lo >> 1 & 1 else "4K",
        "immutable": bool(lo >> 2 & 1),
        "gpa": ((lo >> 12) & ((1 << 39) - 1)) << 12,
        "asid": (lo >> 51) & 0x3FF,
        "vmsa": bool(lo >> 61 & 1),
        "validated": bool(lo >> 62 & 1),
        "hi": hi,
        "layout": LAYOUT,
    }


def encode_raw(
    *,
    assigned: bool = True,
    size_2m: bool = False,
    immutable: bool = False,
    gpa: int = 0,
    asid: int = 0,
    vmsa: bool = False,
    validated: bool = False,
) -> int:
    """The lo quadword of a raw entry (for tests and writers): decode_raw's inverse."""
    return (
        int(assigned)
        | int(size_2m) << 1
        | int(immutable) << 2
        | ((gpa >> 12) & ((1 << 39) - 1)) << 12
        | (asid & 0x3FF) << 51
        | int(vmsa) << 61
        | int(validated) << 62
    )


def state_of(d: dict[str, Any]) -> str:
    """The AMD page state of a decoded entry (as model/snp.py names them)."""
    if not d["assigned"]:
        return "hypervisor"
    if d["vmsa"] or d["immutable"]:
        return "firmware"
    return "guest-valid" if d["validated"] else "guest-invalid"


def text(d: dict[str, Any]) -> str:
    """One line for the event log: the decoded fields."""
    if not d["assigned"]:
        return f"not assigned (hypervisor); hi {d['hi']:#x} [{d['layout']}]"
    flags = [f for f in ("immutable", "vmsa", "validated") if d[f]]
    return (
        f"{state_of(d)}: {d['page_size']} gpa {d['gpa']:#x} asid {d['asid']}"
        + (" " + " ".join(flags) if flags else "")
        + f" [{d['layout']}]"
    )


# ------------------------------------------------------------------ per format row
def decoded_entry(f: dict[str, Any]) -> str:
    """A dump line of one raw entry (either printk)."""
    return text(decode_raw(f["lo"], f["hi"]))


def decoded_region(f: dict[str, Any]) -> str:
    return (
        f"pfn {f['pfn']:#x} is hypervisor-owned; non-zero raw entries of its 2M region "
        f"[{f['start']:#x} - {f['end']:#x}) follow"
    )


def decoded_failure(f: dict[str, Any]) -> str:
    ret = f["ret"]
    return (
        f"RMPUPDATE of pfn {f['pfn']:#x} at {PG_LEVEL.get(f['level'], f['level'])} failed: "
        f"ret {ret} ({RMPUPDATE_RET.get(ret, 'unknown')}); the raw entry is dumped next"
    )


def failure_mark(f: dict[str, Any]) -> dict[str, Any]:
    """The timeline mark of an RMPUPDATE failure (`kind` tells it from the model check's
    disagreements)."""
    ret = f["ret"]
    return {
        "kind": "rmp_failure",
        "what": "RMPUPDATE failed",
        "kernel": f"pfn {f['pfn']:#x}, pg_level {f['level']}, ret {ret} "
        f"({RMPUPDATE_RET.get(ret, 'unknown')})",
        "model": "not checked (a firmware/hardware refusal the trace alone reports)",
    }
