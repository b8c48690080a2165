"""The import's fast reading (scanner.py: fused patterns, blocks read in any order, by
parsing processes; pipeline.py: blocks put back in order and put right) gives the
same timeline, byte for byte, as the plain reading of reader.records, line by line:
with one process or several, wherever the blocks are cut."""

from __future__ import annotations

import heapq
import json
from pathlib import Path

import pytest

from imemviz import resources
from imemviz.io.trace import pipeline
from imemviz.io.trace.events import event_gfn
from imemviz.io.trace.formats import FORMATS
from imemviz.io.trace.importer import ImportOptions, import_traces
from imemviz.io.trace.kernel_export import export_recording, leaf_spte
from imemviz.io.trace.observed import ObservedState
from imemviz.io.trace.reader import FileStats, records
from imemviz.io.trace.scanner import FAST_MATCH, FAST_ROWS, read_records, render, time_json

from .test_formats import _payload

NP = 1 << 63


def _lines_of_every_kind() -> list[str]:
    """Every row in tracefs framing (with and without flags, tgid, trace-cmd's), perf's,
    QEMU's log framings and marker lines; noise, comments, malformed and unknown events,
    threads whose vCPU only a later or earlier line tells, lines without a time."""
    out: list[str] = []
    t = 1000.0
    for k, row in enumerate(FORMATS * 3):
        t += 0.0000137
        payload, _ = _payload(row)
        pid = 4100 + k % 5
        comm = ["CPU 1/KVM", "qemu-system-x86", "worker", "VCPU-3", "<...>"][k % 5]
        if row.source == "dmesg":  # the kernel log: dmesg, dmesg -r, no time
            forms = [
                f"[{t:12.6f}] {row.event}: {payload}",
                f"<3>[{t:12.6f}] {row.event}: {payload}",
                f"{row.event}: {payload}",
            ]
            out.append(forms[k % 3])
            continue
        if row.source == "qemu":
            forms = [
                f"{row.event} {payload}",
                f"{pid}@{t:.6f}:{row.event} {payload}",
                f"  {comm}-{pid} [003] ..... {t:.6f}: tracing_mark_write: {row.event} {payload}",
            ]
            out.append(forms[k % 3])
            continue
        forms = [
            f"{comm:>20}-{pid} [{k % 4:03d}] d..1. {t:.6f}: {row.event}: {payload}",
            f"{comm}-{pid} [{k % 4:03d}] {t:.6f}: {row.event}:   {payload}",
            f"  {comm}-{pid} (   4000) [001] d.... {t:.6f}: {row.event}: {payload}",
            f"  {comm}  {pid} [001] {t:.6f}: kvm:{row.event}: {payload}",
            f"{comm}-{pid}\t[001] ..... {t:.6f}: {row.event}: {payload}  ",
        ]
        out.append(forms[k % 5])
    out += [
        "# tracer: nop",
        "",
        "cpus=8",
        f"  worker-4102 [000] ..... {t + 1:.6f}: sched_switch: prev_comm=x",
        f"  worker-4102 [000] ..... {t + 1:.6f}: kvm_page_fault: vcpu x rip",
        f"  a-1 [2] 3.0: ev: worker-4102 [000] ..... {t + 1:.6f}: kvm_page_fault: "
        + _payload(FORMATS[0])[0],
        f"  CPU 0/KVM-4100 [000] ..... {t + 1:.6f}: kvm_page_fault: "
        + _payload(FORMATS[0])[0].replace("rip", 'r"i\\p'),
        f"  CPU 0/KVM-4100 [000] ..... 0.000001: kvm_tdp_mmu_spte_changed: as id 0 gfn 5 "
        f"level 1 old_spte {NP:x} new_spte {leaf_spte(9, 1):x}",
        f"  CPU 0/KVM-4100 [000] ..... 12.50: kvm_tdp_mmu_spte_changed: as id 0 gfn 5 "
        f"level 1 old_spte {leaf_spte(9, 1):x} new_spte {NP:x}",
    ]
    return out


def _reference(paths: list[str], settings: dict, from_vm_start: bool) -> list[str]:
    """The timeline's event lines as the plain reading gives them."""
    streams = [records(p, i, FileStats(p)) for i, p in enumerate(paths)]
    state = ObservedState(settings, from_vm_start)
    out = []
    for i, r in enumerate(heapq.merge(*streams, key=lambda r: r.ts)):
        fx, _extra = state.apply(r)
        gfn = event_gfn(r.kind, r.fields, state.shared_bit)
        line = f'{{"i":{i},{render(r, gfn)},"fx":[{",".join(fx)}]}}'
        # The hand-made JSON reads back as what it says.
        d = json.loads(line)
        assert (d["t"], d["e"], d["ln"], d["pid"], d["vcpu"], d["g"], d["p"]) == (
            r.ts,
            r.event,
            r.line,
            r.pid,
            r.vcpu,
            gfn,
            r.payload,
        )
        out.append(line)
    return out


def _events(out: Path) -> tuple[dict, list[str]]:
    lines = out.read_text().splitlines()
    return json.loads(lines[0]), [x for x in lines if x.startswith('{"i":')]


@pytest.fixture
def traces(tmp_path: Path) -> list[str]:
    lines = _lines_of_every_kind()
    a = tmp_path / "a.trace"
    a.write_text("\n".join(lines) + "\n")
    # A second file: the model's own trace of a scene (memslots, conversions, leaves),
    # with CRLF line ends and a line cut off at the end.
    b = tmp_path / "b.trace"
    scene = export_recording(str(resources.scene_path("td-boot")))
    b.write_bytes(("\r\n".join(scene) + "\r\n").encode() + b"  CPU 0/KVM-4100 [000]")
    return [str(a), str(b)]


@pytest.mark.parametrize("processes", [0, 2])
@pytest.mark.parametrize("block", [97, 1500, 1 << 20])
def test_blocks_read_as_the_plain_reading(
    tmp_path: Path, traces, monkeypatch, processes: int, block: int
) -> None:
    monkeypatch.setattr(pipeline, "BLOCK", block)
    monkeypatch.setattr("imemviz.io.trace.importer.SMALL_INPUT", 0)
    for paths in ([traces[0]], traces):
        out = tmp_path / f"o{processes}.jsonl"
        summary = tmp_path / "s.json"
        opts = ImportOptions(processes=processes, from_vm_start=True)
        import_traces(paths, str(out), str(summary), opts)
        head, got = _events(out)
        want = _reference(paths, head["settings"], True)
        assert got == want
        s = json.loads(summary.read_text())
        ref_stats = [FileStats(p) for p in paths]
        for i, p in enumerate(paths):
            for _ in records(p, i, ref_stats[i]):
                pass
        for f, ref in zip(s["files"], ref_stats, strict=True):
            assert (f["lines"], f["recognised"], f["skipped"], f["framings"]) == (
                ref.lines,
                ref.recognised,
                dict(sorted(ref.skipped.items())),
                dict(ref.framings),
            )
            assert (f["first_t"], f["last_t"]) == (ref.first_ts, ref.last_ts)


def test_vcpu_and_time_carried_across_blocks(tmp_path: Path, monkeypatch) -> None:
    """A thread's vCPU told before a block and a QEMU line without a time at the start of
    one are what the lines before say, not what the block alone would."""
    lines = []
    t = 10.0
    for i in range(200):
        t += 0.001
        lines.append(
            f"  worker-77 [001] ..... {t:.6f}: kvm_page_fault: vcpu 6 rip 0x1 "
            f"address 0x{(0x100 + i) << 12:016x} error_code 0x182"
        )
        lines.append(
            f"  worker-77 [001] ..... {t:.6f}: kvm_tdp_mmu_spte_changed: as id 0 "
            f"gfn {0x100 + i:x} level 1 old_spte {NP:x} new_spte {leaf_spte(0x900 + i, 1):x}"
        )
        lines.append(f"kvm_convert_memory start 0x{i << 12:x} size 0x1000 shared_to_private")
    p = tmp_path / "t.trace"
    p.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(pipeline, "BLOCK", 300)
    monkeypatch.setattr("imemviz.io.trace.importer.SMALL_INPUT", 0)
    out = tmp_path / "o.jsonl"
    import_traces([str(p)], str(out), options=ImportOptions(processes=0))
    _head, got = _events(out)
    ds = [json.loads(x) for x in got]
    assert {d["vcpu"] for d in ds if d["e"] != "kvm_convert_memory"} == {6}
    conv = [d for d in ds if d["e"] == "kvm_convert_memory"]
    assert all(
        c["t"] == prev["t"]
        for c, prev in zip(conv, [ds[i - 1] for i in range(2, len(ds), 3)], strict=True)
    )


def test_fast_rows_give_what_the_rows_give() -> None:
    """Per row: the fused pattern's fields and gfn are the row's and event_gfn's."""
    for row in FORMATS:
        if row.source in ("qemu", "dmesg"):
            continue
        payload, _ = _payload(row)
        line = f"  CPU 2/KVM-4102 [002] ..... 55.125: {row.event}: {payload}"
        m = FAST_MATCH(line)
        assert m is not None, line
        fmt, groups, conv = FAST_ROWS[m.lastindex]
        fields, gfn = conv(m.group(*groups), ~(1 << 51))
        assert fmt is row and fields == row.parse(payload)
        assert gfn == event_gfn(row.kind, fields, 1 << 51)
        assert line[m.end() :] == payload


def test_read_records_is_records(tmp_path: Path, traces) -> None:
    for p in traces:
        a = list(read_records(p, 0, FileStats(p), 10**9))
        b = list(records(p, 0, FileStats(p)))
        assert a == b


@pytest.mark.parametrize(
    "ts", ["1000.000006", "1404.389360", "0.5", "0.000010", "12", "123456789.123456789", "7.25"]
)
def test_time_json_is_repr_of_the_float(ts: str) -> None:
    assert time_json(ts) == repr(float(ts))
