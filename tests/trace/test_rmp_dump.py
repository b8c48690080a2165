"""The kernel's SEV-SNP RMP dumps in dmesg (arch/x86/virt/svm/sev.c: dump_rmpentry(),
rmpupdate()), read by `imemviz import` and decoded per struct rmpentry_raw (the
non-architectural Zen3/4 layout); an RMPUPDATE failure is a mark of the timeline."""

from __future__ import annotations

import json

import pytest

from imemviz import resources
from imemviz.io.replay import Timeline
from imemviz.io.trace.formats import BY_EVENT, c_printf
from imemviz.io.trace.framing import Frame, frame
from imemviz.io.trace.importer import ImportOptions, import_traces
from imemviz.io.trace.rmp_dump import LAYOUT, decode_raw, encode_raw, state_of
from imemviz.model.snp import rmp_dict

PRINTK = {f.kind: f.printk for f in BY_EVENT["SEV-SNP"]}
ENTRY = "PFN 0x%llx, RMP entry: [0x%016llx - 0x%016llx]"
REGION_ENTRY = "PFN: 0x%llx, [0x%016llx - 0x%016llx]"
REGION = "PFN 0x%llx unassigned, dumping non-zero entries in 2M PFN region: [0x%llx - 0x%llx]"
FAILED = "RMPUPDATE failed for PFN %llx, pg_level: %d, ret: %d"


def test_the_table_holds_the_kernels_format_strings_verbatim() -> None:
    printks = {f.printk for f in BY_EVENT["SEV-SNP"]}
    assert printks == {ENTRY, REGION_ENTRY, REGION, FAILED}


def _dmesg(ts: float, fmt: str, *args) -> str:
    """A line as dmesg prints it: `[%5lu.%06lu] ` then pr_fmt's prefix."""
    return f"[{ts:12.6f}] SEV-SNP: " + c_printf(fmt, *args)


@pytest.mark.parametrize(
    ("line", "ts"),
    [
        ("[ 1234.567890] SEV-SNP: PFN 0x1, RMP entry: [0x0000000000000001 - 0x0]", 1234.56789),
        ("<3>[    5.000001] SEV-SNP: RMPUPDATE failed for PFN 1, pg_level: 1, ret: 2", 5.000001),
        (
            "[Mon Dec  7 13:00:00 2026] SEV-SNP: RMPUPDATE failed for PFN 1, pg_level: 1, ret: 2",
            None,
        ),
        ("Dec 07 13:00:00 host kernel: SEV-SNP: PFN: 0x1, [0x3 - 0x0]", None),
        ("SEV-SNP: PFN: 0x1, [0x3 - 0x0]", None),
    ],
)
def test_dmesg_framings(line: str, ts: float | None) -> None:
    f = frame(line)
    assert isinstance(f, Frame) and f.framing == "dmesg" and f.event == "SEV-SNP"
    assert f.ts == ts


def test_decode_follows_struct_rmpentry_raw() -> None:
    lo = encode_raw(size_2m=True, immutable=True, gpa=0x7FFF_FFFF_F000, asid=1023, vmsa=True)
    d = decode_raw(lo, 0x55)
    assert d["assigned"] and d["page_size"] == "2M" and d["immutable"] and d["vmsa"]
    assert d["gpa"] == 0x7FFF_FFFF_F000 and d["asid"] == 1023 and not d["validated"]
    assert d["hi"] == 0x55 and "non-architectural" in d["layout"] and "Zen3/4" in d["layout"]
    # Bit by bit: assigned 0, pagesize 1, immutable 2, gpa 12-50, asid 51-60, vmsa 61,
    # validated 62.
    assert decode_raw(1 << 62 | 1, 0)["validated"]
    assert decode_raw(1 << 51 | 1, 0)["asid"] == 1
    assert decode_raw(1 << 12 | 1, 0)["gpa"] == 0x1000
    assert decode_raw(1 << 50 | 1, 0)["gpa"] == 1 << 50
    assert not decode_raw(0, 0)["assigned"]


def test_the_models_entries_encode_and_decode_to_what_inspect_says() -> None:
    """Every RMP entry of snp-launch, written as a Zen3/4 raw entry and decoded, gives the
    fields and the state of the contract's inspect `rmp` object (model/snp.py)."""
    tl = Timeline.load(resources.scene_path("snp-launch"))
    vm = tl.start_vm()
    for op in tl.ops:
        vm.apply(op)
    for run in vm.snp.rmp.runs():
        e = vm.snp.rmp.lookup(run.pfn)
        want = rmp_dict(e)
        lo = encode_raw(
            size_2m=e.page_size == "2M",
            immutable=e.immutable,
            gpa=e.gfn << 12,
            asid=want["asid"],
            vmsa=e.vmsa,
            validated=e.validated,
        )
        d = decode_raw(lo, 0)
        for k in ("page_size", "immutable", "gpa", "asid", "vmsa", "validated"):
            assert d[k] == want[k], k
        assert state_of(d) == want["state"]


def test_import_decodes_the_dumps_and_marks_the_failure(tmp_path) -> None:
    pfn = 0x12A3C5
    lo = encode_raw(gpa=0x4820000, asid=1, validated=True)
    region_lo = encode_raw(size_2m=True, asid=1)
    lines = [
        _dmesg(1234.5, FAILED, pfn, 1, 3),
        _dmesg(1234.500001, ENTRY, pfn, lo, 0),
        _dmesg(1240.25, REGION, 0x12A400, 0x12A400, 0x12A600),
        _dmesg(1240.250002, REGION_ENTRY, 0x12A401, region_lo, 0),
        "[ 1240.3] kvm: some other kernel line",
    ]
    src = tmp_path / "dmesg.txt"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "obs.jsonl"
    res = import_traces([str(src)], str(out), options=ImportOptions())
    rows = [json.loads(x) for x in out.read_text().splitlines()[1:]]
    events = [r for r in rows if "i" in r]
    assert [e["k"] for e in events] == [
        "rmpupdate_failed",
        "rmp_dump",
        "rmp_dump_region",
        "rmp_dump",
    ]
    assert events[0]["p"] == f"RMPUPDATE failed for PFN {pfn:x}, pg_level: 1, ret: 3"
    assert "FAIL_INUSE" in events[0]["d"] and "4K" in events[0]["d"]
    assert events[1]["d"].startswith("guest-valid: 4K gpa 0x4820000 asid 1 validated")
    assert LAYOUT in events[1]["d"]
    assert "hypervisor-owned" in events[2]["d"]
    assert events[3]["d"].startswith("guest-invalid: 2M gpa 0x0 asid 1")
    assert events[0]["t"] == 1234.5
    marks = [r["mark"] for r in rows if "mark" in r]
    assert len(marks) == 1 and marks[0]["i"] == 0 and marks[0]["kind"] == "rmp_failure"
    assert "ret 3 (FAIL_INUSE)" in marks[0]["kernel"]
    header = json.loads(out.read_text().splitlines()[0])
    assert header["settings"]["vm_type"] == "snp"  # the dumps say SEV-SNP
    assert res.summary["recognised"] == 4


def test_the_command_line_counts_the_marked_failures(tmp_path, capsys) -> None:
    from imemviz.cli import main

    src = tmp_path / "dmesg.txt"
    src.write_text(_dmesg(5.0, FAILED, 0x10, 2, 2) + "\n" + _dmesg(5.1, FAILED, 0x11, 1, 3) + "\n")
    assert main(["import", str(src), "-o", str(tmp_path / "o.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "2 events from 2 lines (0 skipped)" in out and "2 RMPUPDATE failures marked" in out
