"""SPTE values and page-fault error codes, per kernel layout and per vendor.

SPTEs (arch/x86/kvm/mmu/spte.h at B):

- present: `SPTE_MMU_PRESENT_MASK` = bit 11 ("modern" layout, since 5.13,
  "KVM: x86/mmu: Use a dedicated bit to track shadow/MMU-present SPTEs");
  before that (5.11, 5.12: the "old" layout) an SPTE was present when it was
  not 0, not MMIO (EPT: W|X without R, 0b110 in bits 0-2; NPT: reserved bit
  51) and not the removed marker;
- the frozen / removed marker: `FROZEN_SPTE = SHADOW_NONPRESENT_VALUE | 0x5a0`
  (0x80000000000005a0 with EPT, 0x5a0 on NPT and on old kernels, where it was
  called `REMOVED_SPTE`): an SPTE in the middle of an update;
- leaf: level 1, or bit 7 (`PT_PAGE_SIZE_MASK`) at level 2 and 3
  (`is_last_spte`);
- pfn: bits 12..51 (`SPTE_BASE_ADDR_MASK`, `spte_to_pfn`).

Error codes of `kvm_page_fault` (what each caller passes):

- Intel, `handle_ept_violation` (vmx.c): the raw EPT exit qualification: bit 0
  read, bit 1 write, bit 2 instruction fetch.  Whether the access was private
  is not in it: on a `sw_protected` VM it follows the gfn's attribute.
- AMD, `npf_interception` (svm.c): the #NPF error code: P, W, U, RSVD, F in bits
  0-4, RMP bit 31, ENC (`PFERR_GUEST_ENC_MASK`) bit 34; for SNP guests KVM ORs
  in its synthetic `PFERR_PRIVATE_ACCESS` (bit 49) before tracing at B.
- TDX, `tdx_handle_ept_violation` (tdx.c): a private GPA traces error code 0x2
  (`EPT_VIOLATION_ACC_WRITE`, forced: TD private pages are always RWX) and its
  GPA without the shared bit; a shared GPA traces the real exit qualification
  and the GPA *with* the shared bit (bit 51, or 47 with 4-level EPT).
"""

from __future__ import annotations

from typing import NamedTuple

from imemviz.model.uapi import PFERR_PRIVATE_ACCESS

SPTE_MMU_PRESENT = 1 << 11
SHADOW_NONPRESENT_VALUE = 1 << 63
FROZEN_SPTES = frozenset({0x5A0, SHADOW_NONPRESENT_VALUE | 0x5A0})
PT_PAGE_SIZE = 1 << 7
PFN_MASK = ((1 << 52) - 1) & ~0xFFF

LAYOUTS = ("modern", "old")

NONE, TABLE, LEAF, FROZEN = "none", "table", "leaf", "frozen"


class Spte(NamedTuple):
    kind: str  # "none", "table", "leaf" or "frozen"
    pfn: int | None  # the page (leaf) or page table (table) it points to


def spte_present(value: int, layout: str = "modern") -> bool:
    if value in FROZEN_SPTES:
        return False
    if layout == "modern":
        return bool(value & SPTE_MMU_PRESENT)
    if value == 0:
        return False
    if (value & 0x7) == 0x6 or value & (1 << 51):
        return False  # an MMIO SPTE (EPT misconfig pattern, NPT reserved bit)
    return bool(value & 0x1)


def decode_spte(value: int, level: int, layout: str = "modern") -> Spte:
    """What one SPTE value at `level` is: nothing, a table, a leaf, or frozen."""
    return Spte(*spte_tuple(value, level, layout))


def spte_tuple(value: int, level: int, layout: str = "modern") -> tuple[str, int | None]:
    """decode_spte as a plain (kind, pfn) tuple: the import's hot path."""
    if value in FROZEN_SPTES:
        return FROZEN, None
    if layout == "modern":
        if not value & SPTE_MMU_PRESENT:
            return NONE, None
    elif not spte_present(value, layout):
        return NONE, None
    pfn = (value & PFN_MASK) >> 12
    if level == 1 or value & PT_PAGE_SIZE:
        return LEAF, pfn
    return TABLE, pfn


def guess_layout(value: int) -> str | None:
    """The layout one SPTE value shows, if it shows one (for auto-detection)."""
    if value == 0 or value in FROZEN_SPTES or value == SHADOW_NONPRESENT_VALUE:
        return None
    if value & SPTE_MMU_PRESENT:
        return "modern"
    if value & 0x1 and (value & 0x7) != 0x6 and not value & (1 << 51):
        return "old"
    return None


# ------------------------------------------------------------------ page faults
VENDORS = ("intel", "amd", "snp", "tdx")  # "snp": AMD with an SEV-SNP guest
PFERR_WRITE = 1 << 1
PFERR_USER = 1 << 2
PFERR_FETCH = 1 << 4
PFERR_GUEST_RMP = 1 << 31
PFERR_GUEST_ENC = 1 << 34
EPT_READ, EPT_WRITE, EPT_FETCH = 1 << 0, 1 << 1, 1 << 2


class Fault(NamedTuple):
    gfn: int  # without the TDX shared bit
    write: bool
    fetch: bool
    private: bool | None  # None: the error code does not say (follows the attribute)
    rmp: bool  # AMD: an RMP violation (#NPF with PFERR_GUEST_RMP)


def decode_fault(vendor: str, gpa: int, error_code: int, shared_bit: int = 1 << 51) -> Fault:
    """What one kvm_page_fault says about the access, for `vendor` (one of VENDORS)."""
    return Fault(*fault_tuple(vendor, gpa, error_code, shared_bit))


def fault_tuple(
    vendor: str, gpa: int, error_code: int, shared_bit: int = 1 << 51
) -> tuple[int, bool, bool, bool | None, bool]:
    """decode_fault as a plain tuple (Fault's fields): the import's hot path."""
    if vendor == "tdx":
        if gpa & shared_bit:
            gfn = (gpa & ~shared_bit) >> 12
            return gfn, bool(error_code & EPT_WRITE), bool(error_code & EPT_FETCH), False, False
        # Private: the error code is forced to EPT_VIOLATION_ACC_WRITE (0x2).
        return gpa >> 12, bool(error_code & EPT_WRITE), False, True, False
    if vendor in ("amd", "snp"):
        enc = bool(error_code & (PFERR_PRIVATE_ACCESS | PFERR_GUEST_ENC))
        # Only an SNP guest's C-bit says private; elsewhere the attribute decides.
        priv: bool | None = enc if vendor == "snp" else (True if enc else None)
        return (
            gpa >> 12,
            bool(error_code & PFERR_WRITE),
            bool(error_code & PFERR_FETCH),
            priv,
            bool(error_code & PFERR_GUEST_RMP),
        )
    return gpa >> 12, bool(error_code & EPT_WRITE), bool(error_code & EPT_FETCH), None, False


def describe_error_code(vendor: str, error_code: int) -> str:
    """The bits of an error code by name, for people."""
    if vendor in ("amd", "snp"):
        names = [
            (1 << 0, "P"),
            (PFERR_WRITE, "W"),
            (PFERR_USER, "U"),
            (1 << 3, "RSVD"),
            (PFERR_FETCH, "F"),
            (PFERR_GUEST_RMP, "RMP"),
            (1 << 32, "FINAL"),
            (1 << 33, "PAGE"),
            (PFERR_GUEST_ENC, "ENC"),
            (1 << 35, "SIZEM"),
            (PFERR_PRIVATE_ACCESS, "PRIVATE"),
        ]
    else:
        names = [(EPT_READ, "R"), (EPT_WRITE, "W"), (EPT_FETCH, "X")]
    return "|".join(n for bit, n in names if error_code & bit) or "-"
