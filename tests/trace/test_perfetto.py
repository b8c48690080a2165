"""Perfetto export of observed timelines and simulator sessions (the "trace" extra)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imemviz.cli import main

perfetto = pytest.importorskip("perfetto")

from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace  # noqa: E402

from imemviz.io.trace.perfetto_export import export_recording  # noqa: E402

RECORDING = """{"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "sw_protected", "host_memory": "1G"}}}
{"op": "create_guest_memfd", "size": "16M"}
{"op": "set_user_memory_region2", "slot": 0, "flags": ["GUEST_MEMFD"], "guest_phys_addr": 0, "memory_size": "16M", "userspace_addr": "0x7f0000000000", "guest_memfd": 3}
{"op": "set_memory_attributes", "address": "0x100000", "size": "64K", "attributes": ["PRIVATE"]}
{"op": "guest_access", "gpa": "0x100000", "vcpu": 1}
{"op": "guest_access", "gpa": "0x200000", "vcpu": 0}
"""


def _read(path: Path) -> Trace:
    t = Trace()
    t.ParseFromString(path.read_bytes())
    return t


def test_session_as_perfetto(tmp_path: Path) -> None:
    rec = tmp_path / "s.jsonl"
    rec.write_text(RECORDING)
    out = tmp_path / "s.pftrace"
    n = export_recording(str(rec), str(out))
    t = _read(out)
    names = {p.track_descriptor.name for p in t.packet if p.HasField("track_descriptor")}
    assert {"vCPU 0", "vCPU 1", "private leaves", "shared leaves"} <= names
    events = [
        p.track_event.name for p in t.packet if p.HasField("track_event") and p.track_event.name
    ]
    assert len(events) == n and "kvm_page_fault" in events and "kvm_vm_set_mem_attributes" in events
    counters = [p.track_event.counter_value for p in t.packet if p.track_event.type == 4]
    assert max(counters) == 1


def test_import_writes_perfetto_next_to_the_timeline(tmp_path: Path) -> None:
    rec = tmp_path / "s.jsonl"
    rec.write_text(RECORDING)
    from imemviz.io.trace.kernel_export import export_recording as lines

    trace = tmp_path / "s.trace"
    trace.write_text("\n".join(lines(str(rec))) + "\n")
    out = tmp_path / "o.jsonl"
    pf = tmp_path / "o.pftrace"
    assert main(["import", str(trace), "-o", str(out), "--perfetto", str(pf)]) == 0
    assert len(_read(pf).packet) > 5
