"""Every row of the event-format table, written from its own format string, reads back;
every framing carries it; noise, truncation, wrong encodings and huge lines are counted."""

from __future__ import annotations

import pytest

from imemviz.io.trace.formats import BY_EVENT, FORMATS, c_printf, parse_payload, qemu_format
from imemviz.io.trace.framing import Frame, frame

# Per row (event, since): the printf arguments, and the fields they must read back as.
SAMPLES: dict[tuple[str, str], tuple[tuple, dict]] = {
    ("kvm_page_fault", "6.1 to B"): (
        (3, 0xFFFFFFFF81000000, 0x18CBC00000, 0x500000004),
        {"vcpu": 3, "rip": 0xFFFFFFFF81000000, "gpa": 0x18CBC00000, "error_code": 0x500000004},
    ),
    (
        "kvm_page_fault",
        "6.1 merge window only (Wonhyuk Yang's patch before Sean's u64 follow-up)",
    ): (
        (5, 0x7F08A4602116, 0x113600002, 0x181),
        {"vcpu": 5, "gpa": 0x113600002, "error_code": 0x181},
    ),
    ("kvm_page_fault", "up to 6.0 (5.10 included)"): (
        (0x84D000, 0x4),
        {"gpa": 0x84D000, "error_code": 4},
    ),
    ("kvm_exit", "B (requests field appended after 6.12)"): (
        (4, "EPT_VIOLATION", "", "", 0xFFFFFFFF820FE612, 0x184, 0, 0, 0, 0),
        {"vcpu": 4, "reason": "EPT_VIOLATION", "info1": 0x184},
    ),
    ("kvm_exit", "5.10 and later releases before the requests field"): (
        (4, "npf", "", "", 0x0, 0x500000004, 0x18CBC00000, 0, 0),
        {"vcpu": 4, "reason": "npf", "info2": 0x18CBC00000},
    ),
    ("kvm_entry", "B (intr_info, error_code, immediate exit)"): (
        (2, 0xFFF0, 0, 0, "[immediate exit]"),
        {"vcpu": 2},
    ),
    ("kvm_entry", "5.10 and later releases before intr_info"): ((7, 0xFFF0), {"vcpu": 7}),
    ("kvm_hypercall", "5.10 to B"): (
        (12, 0x100000, 16, 0x10, 0),
        {"nr": 12, "a0": 0x100000, "a1": 16, "a2": 0x10},
    ),
    ("kvm_rmp_fault", "6.11 to B (SEV-SNP host)"): (
        (1, 0x200000, 0x1234, 0x80000004, 2, 0),
        {"vcpu": 1, "gpa": 0x200000, "pfn": 0x1234, "rmp_level": 2, "psmash_ret": 0},
    ),
    ("kvm_vmgexit_msr_protocol_enter", "5.11 to B (SEV-ES)"): (
        (0, 0x12345014),
        {"vcpu": 0, "ghcb_gpa": 0x12345014},
    ),
    ("kvm_userspace_exit", "5.10 to B"): (("error", 14), {"reason": "error", "code": 14}),
    ("kvm_vm_set_mem_attributes", "6.17 to B (commit 741e595f02fe)"): (
        (0, 0x80000, 8),
        {"start": 0, "end": 0x80000, "attr": 8},
    ),
    ("kvm_unmap_hva_range", "5.10 to B"): (
        (0x7F0000000000, 0x7F0000200000),
        {"start": 0x7F0000000000, "end": 0x7F0000200000},
    ),
    ("kvm_tdp_mmu_spte_changed", "5.11 to B (commit b9a98c3437e3)"): (
        (0, 0xFFC00, 2, 0x800000010BC97907, 0x80000000000005A0),
        {"as_id": 0, "gfn": 0xFFC00, "level": 2, "new_spte": 0x80000000000005A0},
    ),
    ("kvm_mmu_set_spte", "5.4 to B (commit 335e192a3fa4)"): (
        (0xFFFFF, 0x8BE2171025, "r", "-", "x", "u", 1, 0x8A53B01FF8),
        {"gfn": 0xFFFFF, "spte": 0x8BE2171025, "perm": "r-xu", "level": 1},
    ),
    ("kvm_mmu_spte_requested", "5.4 to B (commit 335e192a3fa4)"): (
        (0x84D, 0x100B4A4D, 2),
        {"gfn": 0x84D, "pfn": 0x100B4A4D, "level": 2},
    ),
    ("kvm_mmu_split_huge_page", "5.18 to B (commit e0b728b1f1a9)"): (
        (0x200, 0x400887, 2, 0),
        {"gfn": 0x200, "level": 2, "errno": 0},
    ),
    ("kvm_mmu_prepare_zap_page", "5.10 to B (KVM_MMU_PAGE_PRINTK)"): (
        (0, 0x800, 1, 8, 0, " direct", "wux", "", "", "", 0, "sync", ""),
        {"gfn": 0x800, "role_level": 1, "direct": " direct"},
    ),
}

# Rows whose format is not a printf of the payload: the payload, verbatim.
LITERAL = {
    "kvm_mmu_get_page": (
        "sp gen 0 gfn 0 l4 8-byte q0 direct wux nxe ad root 1 sync new",
        {"gfn": 0, "role_level": 4, "created": "new"},
    ),
    "tdh_mem_page_add": ("(tdh_mem_page_add+0x4/0x80) gpa=0x800000", {"gpa": 0x800000}),
    "tdh_mem_page_aug": (
        "(tdh_mem_page_aug+0x4/0x90) gpa=0x810000 level=0x0",
        {"gpa": 0x810000, "level": 0},
    ),
    "tdh_mem_page_remove": ("(tdh_mem_page_remove+0x4/0x90) gpa=0x810000", {"gpa": 0x810000}),
}

QEMU_SAMPLES = {
    ("kvm_set_user_memory", "QEMU 9.0 on (guest_memfd fields)"): (
        (0, 1, 4, 0x100000000, 0x80000000, 0x7F4000000000, 27, 0x80000000, 0),
        {"slot": 1, "flags": 4, "gpa": 0x100000000, "gmem_fd": 27, "gmem_offset": 0x80000000},
    ),
    ("kvm_set_user_memory", "QEMU with address spaces, before guest_memfd"): (
        (1, 0, 0, 0, 0xA0000, 0x7F4000000000, 0),
        {"addr_space": 1, "slot": 0, "size": 0xA0000},
    ),
    ("kvm_set_user_memory", "older QEMU (no address space)"): (
        (2, 2, 0xC0000, 0x20000, 0x7F5000000000, 0),
        {"slot": 2, "flags": 2, "gpa": 0xC0000},
    ),
    ("kvm_convert_memory", "QEMU 9.1 on (guest_memfd series)"): (
        (0x80000000, 0x200000, "private_to_shared"),
        {"start": 0x80000000, "size": 0x200000, "msg": "private_to_shared"},
    ),
    ("kvm_memory_fault", "QEMU 9.1 on (guest_memfd series)"): (
        (0x1000, 0x1000, 8),
        {"start": 0x1000, "flags": 8},
    ),
    (
        "kvm_hc_map_gpa_range",
        "QEMU 9.1 on (KVM_HC_MAP_GPA_RANGE exits: TDX MapGPA, SNP page-state changes)",
    ): (
        (0x100000, 0x200000, 0x10, 0),
        {"gpa": 0x100000, "attributes": 0x10},
    ),
    ("kvm_run_exit", "QEMU (all versions read)"): ((0, 39), {"cpu_index": 0, "code": 39}),
    ("kvm_sev_snp_launch_start", "QEMU 9.1 on (SEV-SNP)"): ((0x30000, "0"), {"policy": 0x30000}),
    ("kvm_sev_snp_launch_update", "QEMU 9.1 on (SEV-SNP)"): (
        (0x7F0000000000, 0x800000, 0x1000, "Cpuid"),
        {"gpa": 0x800000, "len": 0x1000, "page_type": "Cpuid"},
    ),
    ("kvm_sev_snp_launch_finish", "QEMU 9.1 on (SEV-SNP)"): (("0", "0", "0"), {}),
}
# arch/x86/virt/svm/sev.c's dmesg lines (the payload after the "SEV-SNP: " prefix)
SAMPLES |= {
    ("SEV-SNP", "B (dump_rmpentry(), an assigned pfn)"): (
        (0x12A3C5, 0x4008000004820001, 0),
        {"pfn": 0x12A3C5, "lo": 0x4008000004820001, "hi": 0},
    ),
    ("SEV-SNP", "B (dump_rmpentry(), a non-zero entry of an unassigned pfn's 2M region)"): (
        (0x12A401, 0x3, 0x10),
        {"pfn": 0x12A401, "lo": 3, "hi": 0x10},
    ),
    ("SEV-SNP", "B (dump_rmpentry(), an unassigned pfn)"): (
        (0x12A400, 0x12A400, 0x12A600),
        {"pfn": 0x12A400, "start": 0x12A400, "end": 0x12A600},
    ),
    ("SEV-SNP", "B (rmpupdate())"): (
        (0x12A3C5, 2, 3),
        {"pfn": 0x12A3C5, "level": 2, "ret": 3},
    ),
}


def _payload(row) -> tuple[str, dict]:
    key = (row.event, row.since)
    if row.event in LITERAL:
        return LITERAL[row.event]
    if row.source == "qemu":
        args, want = QEMU_SAMPLES[key]
        return c_printf(qemu_format(row.printk), *args), want
    args, want = SAMPLES[key]
    return c_printf(row.printk, *args), want


@pytest.mark.parametrize("row", FORMATS, ids=lambda r: f"{r.event}[{r.since[:24]}]")
def test_every_format_reads_back(row) -> None:
    text, want = _payload(row)
    parsed = parse_payload(row.event, text)
    assert parsed is not None, text
    fmt, fields = parsed
    assert fmt is row, f"{text!r} read as {fmt.since!r}"
    for k, v in want.items():
        assert fields[k] == v, (k, text)


def test_every_row_has_a_sample() -> None:
    keys = set(SAMPLES) | set(QEMU_SAMPLES)
    for row in FORMATS:
        assert row.event in LITERAL or (row.event, row.since) in keys, row


def test_c_printf_follows_c() -> None:
    assert c_printf("%#016llx", 0) == "0000000000000000"  # no 0x for zero in C
    assert c_printf("%#016llx", 0x800) == "0x00000000000800"
    assert c_printf("0x%016llx", 0x1000) == "0x0000000000001000"
    assert c_printf("%08x %d %s", 0xAB, -3, "x") == "000000ab -3 x"
    assert qemu_format('start 0x%" PRIx64 " size 0x%" PRIx64 " %s') == "start 0x%lx size 0x%lx %s"


def test_attribute_range_with_zero_start_reads() -> None:
    # kvm_vm_set_mem_attributes prints gfn 0 without "0x" (C's %#x of zero).
    text = c_printf(BY_EVENT["kvm_vm_set_mem_attributes"][0].printk, 0, 0x200, 8)
    assert text.startswith("0000000000000000 -- 0x")
    assert parse_payload("kvm_vm_set_mem_attributes", text)[1] == {
        "start": 0,
        "end": 0x200,
        "attr": 8,
    }


PAYLOAD = "vcpu 0 rip 0x0 address 0x0000000000200000 error_code 0x182"


@pytest.mark.parametrize(
    "line, framing, pid, ts",
    [
        (
            f"     CPU 0/KVM-4145    [002] .....    86.581928: kvm_page_fault: {PAYLOAD}",
            "ftrace",
            4145,
            86.581928,
        ),
        (
            f"  qemu-system-x86-8397 [002] d..1.  1404.389366: kvm_page_fault: {PAYLOAD}",
            "ftrace",
            8397,
            1404.389366,
        ),
        (
            f"  <...>-1946910 [226] ...1. 324797.313982: kvm_page_fault: {PAYLOAD}",
            "ftrace",
            1946910,
            324797.313982,
        ),
        (
            f"  qemu-5786 (   5700) [029] d.... 3602162.971193: kvm_page_fault: {PAYLOAD}",
            "ftrace",
            5786,
            3602162.971193,
        ),
        (
            f"  CPU 0/KVM-995362 [016] 55709.716253: kvm_page_fault:   {PAYLOAD}",
            "ftrace",
            995362,
            55709.716253,
        ),
        (
            f"  CPU 0/KVM  4145 [002]    86.581928: kvm:kvm_page_fault: {PAYLOAD}",
            "perf",
            4145,
            86.581928,
        ),
        (
            f"qemu-kvm 4145/4146 [002] 86.581928: kvm:kvm_page_fault: {PAYLOAD}",
            "perf",
            4145,
            86.581928,
        ),
    ],
)
def test_kernel_framings(line: str, framing: str, pid: int, ts: float) -> None:
    f = frame(line)
    assert isinstance(f, Frame), line
    assert (f.framing, f.pid, f.ts, f.event, f.payload) == (
        framing,
        pid,
        ts,
        "kvm_page_fault",
        PAYLOAD,
    )


QARGS = "start 0x80000000 size 0x200000 private_to_shared"


@pytest.mark.parametrize(
    "line, ts",
    [
        (f"15268@1647341556.928341:kvm_convert_memory {QARGS}", 1647341556.928341),
        (f"2024-03-20T08:39:45.991426Z kvm_convert_memory {QARGS}", 1710923985.991426),
        (f"kvm_convert_memory {QARGS}", None),
        (
            f" qemu-system-x86-4000 [000] ..... 12.5: tracing_mark_write: kvm_convert_memory {QARGS}",
            12.5,
        ),
        (
            f" qemu-system-x86-4000 [000] 12.5: print: tracing_mark_write: kvm_convert_memory {QARGS}",
            12.5,
        ),
    ],
)
def test_qemu_framings(line: str, ts: float | None) -> None:
    f = frame(line)
    assert isinstance(f, Frame), line
    assert f.event == "kvm_convert_memory" and f.payload == QARGS and f.framing == "qemu"
    assert f.ts == pytest.approx(ts) if ts is not None else f.ts is None


@pytest.mark.parametrize(
    "line, reason",
    [
        ("# tracer: nop", "comment"),
        ("", "comment"),
        ("cpus=8", "not_a_trace_line"),
        ("qemu-system-x86_64: warning: host doesn't support requested feature", "not_a_trace_line"),
        ("[  123.456] kvm: loading out-of-tree module", "not_a_trace_line"),
    ],
)
def test_noise_is_not_a_trace_line(line: str, reason: str) -> None:
    assert frame(line) == reason
