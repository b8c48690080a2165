"""The table of event formats: one row per event and per printed variant.

Adding an event, or a kernel's or QEMU's variant of one, is adding a row to
`FORMATS`: the event name as the trace prints it, where it comes from, the
normalised `kind` the rest of the importer understands, the releases that
print it, the format string verbatim (TP_printk, or QEMU's trace-events
format with PRIx64 expanded), and a regular expression with one named group
per field.  The fields' types come from the group names (`FIELD_TYPES`).

Sources of the formats (read at Linus's tree 5192419cb62d, the 7.1 merge
window, "B" below, unless a row says otherwise):

- include/trace/events/kvm.h (kvm_userspace_exit, kvm_vm_set_mem_attributes,
  kvm_unmap_hva_range), arch/x86/kvm/trace.h (kvm_page_fault, kvm_exit,
  kvm_entry, kvm_hypercall, kvm_rmp_fault, kvm_vmgexit_msr_protocol_enter),
  arch/x86/kvm/mmu/mmutrace.h (kvm_mmu_set_spte, kvm_mmu_spte_requested,
  kvm_tdp_mmu_spte_changed, kvm_mmu_split_huge_page, KVM_MMU_PAGE_PRINTK);
- v5.10.13's arch/x86/kvm/trace.h for the old kvm_page_fault, kvm_exit and
  kvm_entry; the kvm_page_fault change of 6.1 is Wonhyuk Yang's "KVM: Add
  extra information in kvm_page_fault trace point" with Sean
  Christopherson's "KVM: x86: Use u64 for address and error code in page
  fault tracepoint" on top (2022-08-30);
- QEMU accel/kvm/trace-events, target/i386/kvm/trace-events and
  target/i386/trace-events (SEV-SNP launch);
- arch/x86/virt/svm/sev.c's dmesg lines (pr_fmt "SEV-SNP: "): the raw RMP entry
  dumps of dump_rmpentry() and rmpupdate()'s failure, decoded by rmp_dump.py;
- kprobes on the TDX SEAMCALL wrappers (arch/x86/virt/vmx/tdx/tdx.c), with the
  probe definitions docs/traces.md gives: mainline has no TDX tracepoint.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from imemviz.io.trace import rmp_dump

HEX = r"(?:0x)?[0-9a-fA-F]+"
DEC = r"-?\d+"


def _hex(s: str) -> int:
    return int(s, 16)


# Field types by group name: every group of every pattern is one of these.
FIELD_TYPES: dict[str, Callable[[str], Any]] = {
    "vcpu": int,
    "rip": _hex,
    "gpa": _hex,
    "error_code": _hex,
    "as_id": int,
    "gfn": _hex,
    "level": int,
    "old_spte": _hex,
    "new_spte": _hex,
    "spte": _hex,
    "sptep": _hex,
    "pfn": _hex,
    "errno": int,
    "perm": str,
    "gen": int,
    "role_level": int,
    "direct": str,
    "created": str,
    "start": _hex,
    "end": _hex,
    "attr": _hex,
    "reason": str,
    "code": int,
    "info1": _hex,
    "info2": _hex,
    "nr": _hex,
    "a0": _hex,
    "a1": _hex,
    "a2": _hex,
    "a3": _hex,
    "rmp_level": int,
    "psmash_ret": int,
    "ghcb_gpa": _hex,
    "addr_space": int,
    "slot": int,
    "flags": _hex,
    "size": _hex,
    "ua": _hex,
    "gmem_fd": int,
    "gmem_offset": _hex,
    "ret": int,
    "msg": str,
    "src": _hex,
    "len": _hex,
    "page_type": str,
    "attributes": _hex,
    "cpu_index": int,
    "policy": _hex,
    "rest": str,
    "lo": _hex,
    "hi": _hex,
}


@attrs.frozen
class EventFormat:
    """One printed form of one event."""

    event: str  # the name the trace prints
    source: str  # "kernel" (tracepoint), "qemu" (QEMU trace event) or "kprobe"
    kind: str  # the normalised kind (see observed.py)
    since: str  # releases that print this form
    printk: str  # the format string, verbatim
    pattern: str  # regex over the payload, one named group per field
    # fields -> the decoded text the timeline keeps beside the printed one ("d")
    decode: Callable[[dict[str, Any]], str] | None = attrs.field(default=None, eq=False)
    regex: re.Pattern[str] = attrs.field(init=False, eq=False, repr=False)
    converters: tuple[tuple[str, Callable[[str], Any]], ...] = attrs.field(
        init=False, eq=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        rx = re.compile(self.pattern + r"\s*$")
        unknown = set(rx.groupindex) - set(FIELD_TYPES)
        assert not unknown, f"{self.event}: fields without a type: {sorted(unknown)}"
        object.__setattr__(self, "regex", rx)
        names = sorted(rx.groupindex, key=rx.groupindex.__getitem__)
        object.__setattr__(self, "converters", tuple((n, FIELD_TYPES[n]) for n in names))

    def parse(self, payload: str) -> dict[str, Any] | None:
        """The payload's fields, or None when it is not this form."""
        m = self.regex.match(payload)
        if m is None:
            return None
        return {
            n: c(v) for (n, c), v in zip(self.converters, m.groups(), strict=False) if v is not None
        }


_SP_PAGE = (
    r"sp gen (?P<gen>\d+) gfn (?P<gfn>[0-9a-f]+) l(?P<role_level>\d+) \d+-byte q\d+"
    r"(?P<direct> direct)?.*?"
)

FORMATS: tuple[EventFormat, ...] = (
    # ---------------------------------------------------------------- kvm (x86 trace.h)
    EventFormat(
        "kvm_page_fault",
        "kernel",
        "fault",
        "6.1 to B",
        "vcpu %u rip 0x%lx address 0x%016llx error_code 0x%llx",
        r"vcpu (?P<vcpu>\d+) rip 0x(?P<rip>[0-9a-f]+) address 0x(?P<gpa>[0-9a-f]+) "
        r"error_code 0x(?P<error_code>[0-9a-f]+)",
    ),
    EventFormat(
        "kvm_page_fault",
        "kernel",
        "fault",
        "6.1 merge window only (Wonhyuk Yang's patch before Sean's u64 follow-up)",
        "vcpu %u rip 0x%lx address 0x%lx error_code %x",
        r"vcpu (?P<vcpu>\d+) rip 0x(?P<rip>[0-9a-f]+) address 0x(?P<gpa>[0-9a-f]+) "
        r"error_code (?P<error_code>[0-9a-f]+)",
    ),
    EventFormat(
        "kvm_page_fault",
        "kernel",
        "fault",
        "up to 6.0 (5.10 included)",
        "address %lx error_code %x",
        r"address (?P<gpa>[0-9a-f]+) error_code (?P<error_code>[0-9a-f]+)",
    ),
    EventFormat(
        "kvm_exit",
        "kernel",
        "vmexit",
        "B (requests field appended after 6.12)",
        "vcpu %u reason %s%s%s rip 0x%lx info1 0x%016llx info2 0x%016llx intr_info 0x%08x "
        "error_code 0x%08x requests 0x%016llx",
        r"vcpu (?P<vcpu>\d+) reason (?P<reason>.+?) rip 0x[0-9a-f]+ info1 0x(?P<info1>[0-9a-f]+) "
        r"info2 0x(?P<info2>[0-9a-f]+) intr_info 0x[0-9a-f]+ error_code 0x[0-9a-f]+ "
        r"requests 0x[0-9a-f]+",
    ),
    EventFormat(
        "kvm_exit",
        "kernel",
        "vmexit",
        "5.10 and later releases before the requests field",
        "vcpu %u reason %s%s%s rip 0x%lx info1 0x%016llx info2 0x%016llx intr_info 0x%08x "
        "error_code 0x%08x",
        r"vcpu (?P<vcpu>\d+) reason (?P<reason>.+?) rip 0x[0-9a-f]+ info1 0x(?P<info1>[0-9a-f]+) "
        r"info2 0x(?P<info2>[0-9a-f]+) intr_info 0x[0-9a-f]+ error_code 0x[0-9a-f]+",
    ),
    EventFormat(
        "kvm_entry",
        "kernel",
        "entry",
        "B (intr_info, error_code, immediate exit)",
        "vcpu %u, rip 0x%lx intr_info 0x%08x error_code 0x%08x%s",
        r"vcpu (?P<vcpu>\d+), rip 0x[0-9a-f]+ intr_info 0x[0-9a-f]+ error_code 0x[0-9a-f]+"
        r"(?:\[immediate exit\])?",
    ),
    EventFormat(
        "kvm_entry",
        "kernel",
        "entry",
        "5.10 and later releases before intr_info",
        "vcpu %u, rip 0x%lx",
        r"vcpu (?P<vcpu>\d+), rip 0x[0-9a-f]+",
    ),
    EventFormat(
        "kvm_hypercall",
        "kernel",
        "hypercall",
        "5.10 to B",
        "nr 0x%lx a0 0x%lx a1 0x%lx a2 0x%lx a3 0x%lx",
        r"nr 0x(?P<nr>[0-9a-f]+) a0 0x(?P<a0>[0-9a-f]+) a1 0x(?P<a1>[0-9a-f]+) "
        r"a2 0x(?P<a2>[0-9a-f]+) a3 0x(?P<a3>[0-9a-f]+)",
    ),
    EventFormat(
        "kvm_rmp_fault",
        "kernel",
        "rmp_fault",
        "6.11 to B (SEV-SNP host)",
        "vcpu %u gpa %016llx pfn 0x%llx error_code 0x%llx rmp_level %d psmash_ret %d",
        r"vcpu (?P<vcpu>\d+) gpa (?P<gpa>[0-9a-f]+) pfn 0x(?P<pfn>[0-9a-f]+) "
        r"error_code 0x(?P<error_code>[0-9a-f]+) rmp_level (?P<rmp_level>-?\d+) "
        r"psmash_ret (?P<psmash_ret>-?\d+)",
    ),
    EventFormat(
        "kvm_vmgexit_msr_protocol_enter",
        "kernel",
        "ghcb_msr",
        "5.11 to B (SEV-ES)",
        "vcpu %u, ghcb_gpa %016llx",
        r"vcpu (?P<vcpu>\d+), ghcb_gpa (?P<ghcb_gpa>[0-9a-f]+)",
    ),
    # ---------------------------------------------------------------- kvm (generic kvm.h)
    EventFormat(
        "kvm_userspace_exit",
        "kernel",
        "user_exit",
        "5.10 to B",
        "reason %s (%d)",
        r"reason (?P<reason>\S+) \((?P<code>-?\d+)\)",
    ),
    EventFormat(
        "kvm_vm_set_mem_attributes",
        "kernel",
        "attributes",
        "6.17 to B (commit 741e595f02fe)",
        "%#016llx -- %#016llx [0x%lx]",
        r"(?P<start>(?:0x)?[0-9a-f]+) -- (?P<end>(?:0x)?[0-9a-f]+) \[0x(?P<attr>[0-9a-f]+)\]",
    ),
    EventFormat(
        "kvm_unmap_hva_range",
        "kernel",
        "unmap_hva",
        "5.10 to B",
        "mmu notifier unmap range: %#016lx -- %#016lx",
        r"mmu notifier unmap range: (?P<start>(?:0x)?[0-9a-f]+) -- (?P<end>(?:0x)?[0-9a-f]+)",
    ),
    # ---------------------------------------------------------------- kvmmmu (mmutrace.h)
    EventFormat(
        "kvm_tdp_mmu_spte_changed",
        "kernel",
        "spte",
        "5.11 to B (commit b9a98c3437e3)",
        "as id %d gfn %llx level %d old_spte %llx new_spte %llx",
        r"as id (?P<as_id>\d+) gfn (?P<gfn>[0-9a-f]+) level (?P<level>\d+) "
        r"old_spte (?P<old_spte>[0-9a-f]+) new_spte (?P<new_spte>[0-9a-f]+)",
    ),
    EventFormat(
        "kvm_mmu_set_spte",
        "kernel",
        "set_spte",
        "5.4 to B (commit 335e192a3fa4)",
        "gfn %llx spte %llx (%s%s%s%s) level %d at %llx",
        r"gfn (?P<gfn>[0-9a-f]+) spte (?P<spte>[0-9a-f]+) \((?P<perm>[r-][w-][x-][u-]?)\) "
        r"level (?P<level>\d+) at (?P<sptep>[0-9a-f]+)",
    ),
    EventFormat(
        "kvm_mmu_spte_requested",
        "kernel",
        "spte_requested",
        "5.4 to B (commit 335e192a3fa4)",
        "gfn %llx pfn %llx level %d",
        r"gfn (?P<gfn>[0-9a-f]+) pfn (?P<pfn>[0-9a-f]+) level (?P<level>\d+)",
    ),
    EventFormat(
        "kvm_mmu_split_huge_page",
        "kernel",
        "split",
        "5.18 to B (commit e0b728b1f1a9)",
        "gfn %llx spte %llx level %d errno %d",
        r"gfn (?P<gfn>[0-9a-f]+) spte (?P<spte>[0-9a-f]+) level (?P<level>\d+) "
        r"errno (?P<errno>-?\d+)",
    ),
    EventFormat(
        "kvm_mmu_prepare_zap_page",
        "kernel",
        "zap_page",
        "5.10 to B (KVM_MMU_PAGE_PRINTK)",
        "sp gen %u gfn %llx l%u %u-byte q%u%s %s%s %snxe %sad root %u %s%c",
        _SP_PAGE,
    ),
    EventFormat(
        "kvm_mmu_get_page",
        "kernel",
        "get_page",
        "5.10 to B (KVM_MMU_PAGE_PRINTK then new/existing)",
        "%s %s",
        _SP_PAGE + r" (?P<created>new|existing)",
    ),
    # ---------------------------------------------------------------- kprobes (TDX SEAMCALLs)
    EventFormat(
        "tdh_mem_page_add",
        "kprobe",
        "tdx_page_add",
        "kprobe on tdh_mem_page_add (6.16 to B), see docs/traces.md",
        "p:kvm_tdx/tdh_mem_page_add tdh_mem_page_add gpa=%si",
        r"\(tdh_mem_page_add\+0x[0-9a-f]+/0x[0-9a-f]+\) gpa=0x(?P<gpa>[0-9a-f]+)",
    ),
    EventFormat(
        "tdh_mem_page_aug",
        "kprobe",
        "tdx_page_aug",
        "kprobe on tdh_mem_page_aug (6.16 to B), see docs/traces.md",
        "p:kvm_tdx/tdh_mem_page_aug tdh_mem_page_aug gpa=%si level=%dx",
        r"\(tdh_mem_page_aug\+0x[0-9a-f]+/0x[0-9a-f]+\) gpa=0x(?P<gpa>[0-9a-f]+)"
        r"(?: level=(?:0x)?(?P<level>\d+))?",
    ),
    EventFormat(
        "tdh_mem_page_remove",
        "kprobe",
        "tdx_page_remove",
        "kprobe on tdh_mem_page_remove (6.16 to B), see docs/traces.md",
        "p:kvm_tdx/tdh_mem_page_remove tdh_mem_page_remove gpa=%si level=%dx",
        r"\(tdh_mem_page_remove\+0x[0-9a-f]+/0x[0-9a-f]+\) gpa=0x(?P<gpa>[0-9a-f]+)"
        r"(?: level=(?:0x)?(?P<level>\d+))?",
    ),
    # ---------------------------------------------------------------- QEMU
    EventFormat(
        "kvm_set_user_memory",
        "qemu",
        "memslot",
        "QEMU 9.0 on (guest_memfd fields)",
        'AddrSpace#%d Slot#%d flags=0x%x gpa=0x%"PRIx64 " size=0x%"PRIx64 " ua=0x%"PRIx64 '
        '" guest_memfd=%d" " guest_memfd_offset=0x%" PRIx64 " ret=%d"',
        r"AddrSpace#(?P<addr_space>\d+) Slot#(?P<slot>\d+) flags=0x(?P<flags>[0-9a-f]+) "
        r"gpa=0x(?P<gpa>[0-9a-f]+) size=0x(?P<size>[0-9a-f]+) ua=0x(?P<ua>[0-9a-f]+) "
        r"guest_memfd=(?P<gmem_fd>-?\d+) guest_memfd_offset=0x(?P<gmem_offset>[0-9a-f]+) "
        r"ret=(?P<ret>-?\d+)",
    ),
    EventFormat(
        "kvm_set_user_memory",
        "qemu",
        "memslot",
        "QEMU with address spaces, before guest_memfd",
        'AddrSpace#%d Slot#%d flags=0x%x gpa=0x%"PRIx64 " size=0x%"PRIx64 " ua=0x%"PRIx64 '
        '" ret=%d"',
        r"AddrSpace#(?P<addr_space>\d+) Slot#(?P<slot>\d+) flags=0x(?P<flags>[0-9a-f]+) "
        r"gpa=0x(?P<gpa>[0-9a-f]+) size=0x(?P<size>[0-9a-f]+) ua=0x(?P<ua>[0-9a-f]+) "
        r"ret=(?P<ret>-?\d+)",
    ),
    EventFormat(
        "kvm_set_user_memory",
        "qemu",
        "memslot",
        "older QEMU (no address space)",
        'Slot#%d flags=0x%x gpa=0x%"PRIx64 " size=0x%"PRIx64 " ua=0x%"PRIx64 " ret=%d"',
        r"Slot#(?P<slot>\d+) flags=0x(?P<flags>[0-9a-f]+) gpa=0x(?P<gpa>[0-9a-f]+) "
        r"size=0x(?P<size>[0-9a-f]+) ua=0x(?P<ua>[0-9a-f]+) ret=(?P<ret>-?\d+)",
    ),
    EventFormat(
        "kvm_convert_memory",
        "qemu",
        "convert",
        "QEMU 9.1 on (guest_memfd series)",
        'start 0x%" PRIx64 " size 0x%" PRIx64 " %s',
        r"start 0x(?P<start>[0-9a-f]+) size 0x(?P<size>[0-9a-f]+) "
        r"(?P<msg>shared_to_private|private_to_shared)",
    ),
    EventFormat(
        "kvm_memory_fault",
        "qemu",
        "memory_fault",
        "QEMU 9.1 on (guest_memfd series)",
        'start 0x%" PRIx64 " size 0x%" PRIx64 " flags 0x%" PRIx64',
        r"start 0x(?P<start>[0-9a-f]+) size 0x(?P<size>[0-9a-f]+) flags 0x(?P<flags>[0-9a-f]+)",
    ),
    EventFormat(
        "kvm_hc_map_gpa_range",
        "qemu",
        "map_gpa_range",
        "QEMU 9.1 on (KVM_HC_MAP_GPA_RANGE exits: TDX MapGPA, SNP page-state changes)",
        'gpa 0x%" PRIx64 " size 0x%" PRIx64 " attributes 0x%" PRIx64 " flags 0x%" PRIx64',
        r"gpa 0x(?P<gpa>[0-9a-f]+) size 0x(?P<size>[0-9a-f]+) "
        r"attributes 0x(?P<attributes>[0-9a-f]+) flags 0x(?P<flags>[0-9a-f]+)",
    ),
    EventFormat(
        "kvm_run_exit",
        "qemu",
        "qemu_run_exit",
        "QEMU (all versions read)",
        "cpu_index %d, reason %d",
        r"cpu_index (?P<cpu_index>\d+), reason (?P<code>\d+)",
    ),
    EventFormat(
        "kvm_sev_snp_launch_start",
        "qemu",
        "launch_start",
        "QEMU 9.1 on (SEV-SNP)",
        'policy 0x%" PRIx64 " gosvw %s',
        r"policy 0x(?P<policy>[0-9a-f]+) gosvw (?P<rest>.*)",
    ),
    EventFormat(
        "kvm_sev_snp_launch_update",
        "qemu",
        "launch_update",
        "QEMU 9.1 on (SEV-SNP)",
        'src 0x%" PRIx64 " gpa 0x%" PRIx64 " len 0x%" PRIx64 " (%s page)',
        r"src 0x(?P<src>[0-9a-f]+) gpa 0x(?P<gpa>[0-9a-f]+) len 0x(?P<len>[0-9a-f]+) "
        r"\((?P<page_type>\w+) page\)",
    ),
    EventFormat(
        "kvm_sev_snp_launch_finish",
        "qemu",
        "launch_finish",
        "QEMU 9.1 on (SEV-SNP)",
        "id_block %s id_auth %s host_data %s",
        r"id_block (?P<rest>.*)",
    ),
)

# dmesg lines: the event is the pr_fmt prefix (framing.py's dmesg framing).
FORMATS += (
    EventFormat(
        "SEV-SNP",
        "dmesg",
        "rmp_dump",
        "B (dump_rmpentry(), an assigned pfn)",
        "PFN 0x%llx, RMP entry: [0x%016llx - 0x%016llx]",
        r"PFN 0x(?P<pfn>[0-9a-f]+), RMP entry: \[0x(?P<lo>[0-9a-f]+) - 0x(?P<hi>[0-9a-f]+)\]",
        rmp_dump.decoded_entry,
    ),
    EventFormat(
        "SEV-SNP",
        "dmesg",
        "rmp_dump",
        "B (dump_rmpentry(), a non-zero entry of an unassigned pfn's 2M region)",
        "PFN: 0x%llx, [0x%016llx - 0x%016llx]",
        r"PFN: 0x(?P<pfn>[0-9a-f]+), \[0x(?P<lo>[0-9a-f]+) - 0x(?P<hi>[0-9a-f]+)\]",
        rmp_dump.decoded_entry,
    ),
    EventFormat(
        "SEV-SNP",
        "dmesg",
        "rmp_dump_region",
        "B (dump_rmpentry(), an unassigned pfn)",
        "PFN 0x%llx unassigned, dumping non-zero entries in 2M PFN region: [0x%llx - 0x%llx]",
        r"PFN 0x(?P<pfn>[0-9a-f]+) unassigned, dumping non-zero entries in 2M PFN region: "
        r"\[0x(?P<start>[0-9a-f]+) - 0x(?P<end>[0-9a-f]+)\]",
        rmp_dump.decoded_region,
    ),
    EventFormat(
        "SEV-SNP",
        "dmesg",
        "rmpupdate_failed",
        "B (rmpupdate())",
        "RMPUPDATE failed for PFN %llx, pg_level: %d, ret: %d",
        r"RMPUPDATE failed for PFN (?P<pfn>[0-9a-f]+), pg_level: (?P<level>\d+), "
        r"ret: (?P<ret>-?\d+)",
        rmp_dump.decoded_failure,
    ),
)
# kind -> the decoder of its rows (one per kind: the timeline renders by kind)
DECODE = {f.kind: f.decode for f in FORMATS if f.decode is not None}
assert all(f.decode is DECODE.get(f.kind) for f in FORMATS if f.kind in DECODE)

BY_EVENT: dict[str, tuple[EventFormat, ...]] = {}
for _f in FORMATS:
    BY_EVENT[_f.event] = (*BY_EVENT.get(_f.event, ()), _f)
QEMU_EVENTS = frozenset(f.event for f in FORMATS if f.source == "qemu")

# QEMU's snp_page_type_to_str() -> the contract's snp_launch_update types.
SNP_PAGE_TYPES = {
    "Normal": "NORMAL",
    "Zero": "ZERO",
    "Unmeasured": "UNMEASURED",
    "Secrets": "SECRETS",
    "Cpuid": "CPUID",
    "Vmsa": "VMSA",
}


def parse_payload(event: str, payload: str) -> tuple[EventFormat, dict[str, Any]] | None:
    """The first row of `event` whose pattern matches the whole payload, and its fields."""
    for fmt in BY_EVENT.get(event, ()):
        fields = fmt.parse(payload)
        if fields is not None:
            return fmt, fields
    return None


# ------------------------------------------------------------------ C printf, for writers
_CONV = re.compile(r"%([#0-]*)(\d*)(?:ll|l|z|h|hh)?([udxsc%p])")


def c_printf(fmt: str, *args: Any) -> str:
    """`fmt` formatted as the kernel's vsnprintf would, for the conversions formats use.

    Differs from Python's % where C does: `%#x` of 0 prints "0" (no "0x"), and
    `%#016llx` pads to 16 characters including the "0x".
    """
    out: list[str] = []
    pos = 0
    it = iter(args)
    for m in _CONV.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, conv = m.group(1), m.group(2), m.group(3)
        if conv == "%":
            out.append("%")
            continue
        v = next(it)
        w = int(width) if width else 0
        if conv == "s":
            s = str(v)
        elif conv == "c":
            s = chr(v) if isinstance(v, int) else str(v)
        elif conv in "ud":
            s = str(int(v))
        else:  # x, p
            n = int(v) & ((1 << 64) - 1)
            s = f"{n:x}"
            if "#" in flags and n != 0:
                if "0" in flags and w:
                    s = "0x" + s.rjust(max(w - 2, 0), "0")
                    w = 0
                else:
                    s = "0x" + s
        if w and len(s) < w:
            s = s.rjust(w, "0" if "0" in flags and "-" not in flags else " ")
        out.append(s)
    out.append(fmt[pos:])
    return "".join(out)


def qemu_format(fmt: str) -> str:
    """A trace-events format with its PRIx64-style macros spliced in as C would."""
    s = re.sub(r'"\s*PRI([xdu])64\s*"', lambda m: "l" + m.group(1), fmt)
    s = re.sub(r'"\s*PRI([xdu])64', lambda m: "l" + m.group(1), s)
    s = re.sub(r'"\s*"', "", s)
    return s.replace('"', "")
