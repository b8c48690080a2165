"""Observed timelines and simulator sessions as Perfetto traces (.pftrace).

Written with the `perfetto` package's streaming trace builder (pure Python
over protobuf; the "trace" extra: `pip install 'imemviz[trace]'`), never a
downloaded binary.  The trace opens in ui.perfetto.dev next to the user's
other traces:

- one track per vCPU, one for events without a vCPU (the VMM's ioctls, QEMU),
  with every event as an instant named after its tracepoint and the kernel's
  own text as an argument;
- a "disagreements with the model" track with the check's marks;
- counters: leaves (private, shared, unknown kind) and private gfns over time.

A session (a recording) is exported by printing the model's events as a host
would trace them (kernel_export.py), importing that, and exporting the result:
the same tracks for simulated and observed VMs.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


class PerfettoMissing(RuntimeError):
    """The perfetto package is not installed."""


def _builder_cls() -> Any:
    try:
        from perfetto.trace_builder.proto_builder import StreamingTraceProtoBuilder
    except ImportError:
        raise PerfettoMissing(
            "Perfetto export needs the perfetto package: pip install 'imemviz[trace]' "
            "(or pip install 'perfetto>=0.59,<0.60')"
        ) from None
    return StreamingTraceProtoBuilder


SEQ = 7
INSTANT, COUNTER = 3, 4  # TrackEvent.Type


def export_observed(timeline: str, out: str) -> int:
    """Write the observed timeline file `timeline` as a Perfetto trace; returns the events."""
    builder_cls = _builder_cls()
    from imemviz.io.trace.importer import atomic_output

    tracks: dict[Any, int] = {}
    n = 0
    with open(timeline, encoding="utf-8") as src:
        head = json.loads(src.readline())
        if head.get("format") != "imemviz-observed":
            raise ValueError(f"{timeline}: not an imemviz observed timeline")
        with atomic_output(out, (timeline,), binary=True) as f:
            b = builder_cls(f)
            first = [True]

            def packet(ts_ns: int | None = None) -> Any:  # perfetto's packet (untyped)
                p = b.create_packet()
                p.trusted_packet_sequence_id = SEQ
                if first[0]:
                    p.sequence_flags = 1  # SEQ_INCREMENTAL_STATE_CLEARED
                    first[0] = False
                if ts_ns is not None:
                    p.timestamp = ts_ns
                return p

            def track(key: Any, name: str, counter: bool = False) -> int:
                uuid = tracks.get(key)
                if uuid is None:
                    uuid = tracks[key] = 1000 + len(tracks)
                    p = packet()
                    p.track_descriptor.uuid = uuid
                    p.track_descriptor.name = name
                    if counter:
                        p.track_descriptor.counter.SetInParent()
                    b.write_packet(p)
                return uuid

            counts = {"private": 0, "shared": 0, "unknown": 0}
            leaf_kind: dict[tuple[int, int, int], str] = {}
            marks = []
            for raw in src:
                d = json.loads(raw)
                if "mark" in d:
                    marks.append(d["mark"])
                    continue
                if "i" not in d:
                    continue
                ts = round(d["t"] * 1e9)
                v = d.get("vcpu")
                t = track(("vcpu", v), f"vCPU {v}" if v is not None else "VMM and kernel (no vCPU)")
                p = packet(ts)
                ev = p.track_event
                ev.type = INSTANT
                ev.track_uuid = t
                ev.name = d["e"]
                a = ev.debug_annotations.add()
                a.name = "trace"
                a.string_value = d["p"]
                if d.get("g") is not None:
                    a = ev.debug_annotations.add()
                    a.name = "gfn"
                    a.string_value = hex(d["g"])
                b.write_packet(p)
                n += 1
                changed = False
                for e in d.get("fx", ()):
                    if e[0] == "L+":
                        kind = {1: "private", 0: "shared"}.get(e[5], "unknown")
                        leaf_kind[(e[1], e[2], e[3])] = kind
                        counts[kind] += 1
                        changed = True
                    elif e[0] == "L-":
                        gone = leaf_kind.pop((e[1], e[2], e[3]), None)
                        if gone is not None:
                            counts[gone] -= 1
                            changed = True
                if changed:
                    for kind, value in counts.items():
                        c = track(("leaves", kind), f"{kind} leaves", counter=True)
                        p = packet(ts)
                        p.track_event.type = COUNTER
                        p.track_event.track_uuid = c
                        p.track_event.counter_value = value
                        b.write_packet(p)
            for m in marks:
                t = track("marks", "disagreements with the model")
                p = packet(round(m["t"] * 1e9))
                p.track_event.type = INSTANT
                p.track_event.track_uuid = t
                p.track_event.name = m["what"]
                for k in ("kernel", "model", "level"):
                    a = p.track_event.debug_annotations.add()
                    a.name = k
                    a.string_value = str(m[k])
                a = p.track_event.debug_annotations.add()
                a.name = "gfn"
                a.string_value = hex(m["gfn"])
                b.write_packet(p)
    return n


def export_recording(recording: str, out: str) -> int:
    """A simulator session (script or recording) as a Perfetto trace, via its kernel trace."""
    _builder_cls()  # fail early, before any work, when perfetto is missing
    from imemviz.io.trace.importer import ImportOptions, import_traces
    from imemviz.io.trace.kernel_export import export_recording as lines

    with tempfile.TemporaryDirectory(prefix="imemviz-pftrace-") as tmp:
        trace = os.path.join(tmp, "session.trace")
        with open(trace, "w", encoding="utf-8") as f:
            for line in lines(recording):
                f.write(line + "\n")
        timeline = os.path.join(tmp, "session.observed.jsonl")
        import_traces([trace], timeline, options=ImportOptions(from_vm_start=True))
        return export_observed(timeline, out)


def export_session(session: Any, out: str, say: Any = print) -> None:
    """The app's File > Export session as Perfetto trace (runs on the engine thread)."""
    try:
        with tempfile.TemporaryDirectory(prefix="imemviz-pftrace-") as tmp:
            rec = os.path.join(tmp, "session.jsonl")
            session.save_recording(rec)
            n = export_recording(rec, out)
    except (PerfettoMissing, OSError, ValueError) as e:
        say(f"Perfetto export: {e}")
        return
    say(f"Perfetto trace of {n} events written to {out}")
