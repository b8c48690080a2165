"""`imemviz import TRACE... -o OUT [--summary-json S]` (contract sections 1 and 6).

One streaming pass: every file is read line by line (reader.py), the files are
merged by time, every recognised event updates the observed state
(observed.py) and is written to OUT with the state changes it implies
(timeline.py).  Memory holds the state the trace describes (leaves,
attribute runs, memslots), one pending event per file and a few counters; the
summary's lists (faults, conversions, launch pages) are spooled to temp files
and copied into the summary at the end.  With `--check`, the events are then
run through the engine (model_check.py) and the disagreements are written
into OUT as marks.

Exit 2 only when no file can be read or none holds a recognised event: one
line naming the file.  Outputs go through the one atomic writer (imemviz.io.atomic):
they never replace an input, and a device or FIFO is written in place, never replaced.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from imemviz.io.atomic import AtomicFile, OutputError
from imemviz.io.trace import pipeline
from imemviz.io.trace.events import FAULT_LINES
from imemviz.io.trace.import_types import ImportError_ as ImportError_  # re-exported
from imemviz.io.trace.import_types import ImportOptions as ImportOptions
from imemviz.io.trace.import_types import ImportResult as ImportResult
from imemviz.io.trace.observed import COMMIT, Evidence, ObservedState
from imemviz.io.trace.parsers import ParseError
from imemviz.io.trace.reader import FileStats, TraceReadError
from imemviz.io.trace.scanner import read_records
from imemviz.io.trace.timeline import TimelineWriter
from imemviz.io.trace.timeline_index import IndexWriter, index_path, read_head

PRESCAN_RECORDS = 20_000
SMALL_INPUT = 4 << 20  # bytes of input below which it is read in this process


# ------------------------------------------------------------------ atomic output
@contextlib.contextmanager
def atomic_output(
    path: str, inputs: tuple[str, ...] = (), binary: bool = False
) -> Iterator[IO[Any]]:
    """An output written by the project's one atomic writer (imemviz.io.atomic): it
    replaces `path` only when the block succeeds, never replaces an input, and a device,
    FIFO or /dev/stdout is written in place.  Errors are ImportError_ (one line).

    The file object carries `tmp_path`, the name of what is written so far (the check
    re-reads the partial timeline)."""
    try:
        out = AtomicFile(path, inputs=inputs)
    except OutputError as e:
        raise ImportError_(str(e)) from None
    ok = False
    try:
        f = out.open("wb" if binary else "w")
        f.tmp_path = out.tmp  # type: ignore[attr-defined]
        yield f
        out.commit()
        ok = True
    except OutputError as e:
        raise ImportError_(str(e)) from None
    except OSError as e:
        raise ImportError_(f"{path}: cannot write: {e.strerror or e}") from None
    finally:
        if not ok:
            out.discard()


# ------------------------------------------------------------------ the import
def _prescan(paths: list[str], errors: dict[int, str]) -> Evidence:
    ev = Evidence()
    for i, p in enumerate(paths):
        stats = FileStats(p)
        try:
            for r in read_records(p, i, stats, PRESCAN_RECORDS):
                ev.see(r)
        except TraceReadError as e:
            errors[i] = str(e)
    return ev


def import_traces(
    paths: list[str],
    out: str,
    summary_path: str | None = None,
    options: ImportOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> ImportResult:
    """Read `paths` into the observed timeline `out` (and the summary); see the module doc.

    `progress(done, total)` is called as bytes are read; `stop()` is polled and a
    true value cancels (ImportError_ "cancelled", nothing written).
    """
    opts = options or ImportOptions()
    if not paths:
        raise ImportError_("imemviz import: no trace file given")
    errors: dict[int, str] = {}
    evidence = _prescan(paths, errors)
    if len(errors) == len(paths):
        raise ImportError_(errors[0])
    settings = evidence.settle(opts.vendor, opts.vm_type, opts.spte_layout, opts.gpaw)
    settings["attr_default"] = 0 if opts.from_vm_start or settings["vm_type"] == "default" else None
    sizes = []
    for p in paths:
        try:
            sizes.append(max(os.path.getsize(p), 1))
        except OSError:
            sizes.append(1)
    done = [0] * len(paths)

    def tick(src: int, pos: int) -> None:
        done[src] = min(pos, sizes[src])
        if progress is not None:
            progress(sum(done), sum(sizes))

    stats = [FileStats(p) for p in paths]
    state = ObservedState(settings, opts.from_vm_start)
    cancelled = []

    def should_stop() -> bool:
        if stop is not None and stop():
            cancelled.append(True)
            return True
        return False

    inputs = tuple(paths)
    spool = {
        k: tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed in finally
        for k in ("faults", "conversions", "launch_updates")
    }
    n_parsers = pipeline.processes_wanted() if opts.processes is None else opts.processes
    if sum(sizes) < SMALL_INPUT:
        n_parsers = 0  # starting processes costs more than reading a small trace
    parsers = pipeline.Parsers(n_parsers)
    index = IndexWriter()
    token = uuid.uuid4().hex
    try:
        with atomic_output(out, inputs) as f:
            header = {
                "sources": [{"path": os.path.abspath(p), "index": i} for i, p in enumerate(paths)],
                "settings": settings,
                "options": {"from_vm_start": opts.from_vm_start},
            }
            w = TimelineWriter(f, header, index.cols["offset"])
            state.leaf_log = index.cols["leaf"]
            state.attr_log = index.cols["attr"]
            state.slot_log = index.cols["slot"]
            for i in errors:
                stats[i].error = errors[i]
            # The parsing's settings: no summary, no summary lines of faults.
            parsing = {**settings, FAULT_LINES: summary_path is not None}
            chunks, fixes = pipeline.chunks(
                paths, stats, parsing, parsers, set(errors), should_stop, tick
            )
            # No reference cycles are made here: the cyclic GC scanning the state's
            # growing containers would cost a third of the time.
            gc_on = gc.isenabled()
            gc.disable()
            try:
                _commit_all(chunks, state, w, spool, index)
            except (TraceReadError, ParseError) as e:
                raise ImportError_(str(e)) from None
            finally:
                if gc_on:
                    gc.enable()
            for fix in fixes:
                state.events.update(fix.events)
            if cancelled:
                raise ImportError_("import cancelled")
            recognised = sum(s.recognised for s in stats)
            if recognised == 0:
                readable = [s for s in stats if s.error is None]
                name = (
                    readable[0].path if len(readable) == 1 else ", ".join(s.path for s in readable)
                )
                raise ImportError_(
                    f"{name}: no recognised kvm, kvmmmu or QEMU event "
                    f"({sum(s.lines for s in stats)} lines read)"
                )
            short = _summary(stats, state, settings, errors)
            tail = w.pos
            for m in state.marks:  # RMPUPDATE failures in the kernel log (rmp_dump.py)
                w.raw({"mark": m})
            disagreements = 0
            if opts.check:
                from imemviz.io.trace.model_check import check_timeline

                f.flush()
                tmp = f.tmp_path  # type: ignore[attr-defined]  # set by atomic_output
                report = check_timeline(tmp, state, settings, opts)
                for m in report.marks:
                    w.raw({"mark": m})
                short["check"] = report.summary()
                disagreements = len(report.marks)
            totals = {k: short[k] for k in ("lines", "recognised", "skipped")}
            w.end({"events": w.n, **totals, "index": token})
        _write_index(out, index, token, w.n, tail)
        if summary_path is not None:
            _write_summary(summary_path, short, state, spool, (*inputs, out))
        if progress is not None:
            progress(sum(sizes), sum(sizes))
        return ImportResult(out, short, disagreements)
    finally:
        parsers.close()
        index.close()
        for s in spool.values():
            s.close()


def _commit_all(
    chunks: Iterator[pipeline.Chunk],
    state: ObservedState,
    w: TimelineWriter,
    spool: Mapping[str, IO[str]],
    index: IndexWriter,
) -> None:
    """Every record's op done to the state, in order; its timeline line, index columns
    and summary entries written.  The hot loop of the import's process: kept to the
    records with an op (records come as packed columns, pipeline.chunks: the index
    takes them whole, the timeline writes a chunk's lines by one format)."""
    commit = COMMIT
    listed: dict[str, list[str]] = {k: [] for k in spool}
    cols = index.cols
    col_ts, col_kind, col_vcpu, col_gfn = cols["ts"], cols["kind"], cols["vcpu"], cols["gfn"]
    i = w.n
    for ts, form, opk, opl, kinds, vcpus, gfns in chunks:
        n = len(ts)
        if not n:
            continue
        col_ts.extend(ts)
        col_kind.frombytes(kinds)
        col_vcpu.extend(vcpus)
        col_gfn.extend(gfns)
        args: list[Any] = [""] * (2 * n)  # per line: its index, its effects' text
        args[::2] = range(i, i + n)
        for k, op in zip(opk, opl, strict=True):
            state.i = i + k
            fx: list[str] = []
            extra = commit[op[0]](state, op, fx)
            if fx:
                args[2 * k + 1] = ",".join(fx)
            if extra is not None:
                listed[extra[0]].append(extra[1])
        w.block(form, args)
        i += n
        for key, v in listed.items():
            if v:
                spool[key].write("".join(v))
                v.clear()
        index.flush()


def _write_index(out: str, index: IndexWriter, token: str, events: int, tail: int) -> None:
    """The timeline's index next to it (a cache: when it cannot be written, none is)."""
    path = index_path(out)
    if not os.path.isfile(out):
        return  # a device or FIFO: nothing to open later, and no index beside it in /dev
    try:
        with atomic_output(path, (out,), binary=True) as f:
            index.write(f, token, os.path.getsize(out), events, tail)
    except (ImportError_, OSError):
        # A stale index would not match OUT (its token), so it is only misleading:
        # remove it when it is our own regular file, never a link or anything else.
        with contextlib.suppress(OSError):
            if not os.path.islink(path) and os.path.isfile(path) and read_head(out) is not None:
                os.unlink(path)


def _summary(
    stats: list[FileStats], state: ObservedState, settings: dict[str, Any], errors: dict[int, str]
) -> dict[str, Any]:
    skipped: Counter[str] = Counter()
    for s in stats:
        skipped.update(s.skipped)
    return {
        "lines": sum(s.lines for s in stats),
        "recognised": sum(s.recognised for s in stats),
        "skipped": dict(sorted(skipped.items())),
        "events": dict(sorted(state.events.items())),
        "settings": settings,
        "files": [
            {
                "path": s.path,
                "lines": s.lines,
                "recognised": s.recognised,
                "skipped": dict(sorted(s.skipped.items())),
                "read_via": s.via,
                "framings": dict(s.framings),
                "first_t": s.first_ts,
                "last_t": s.last_ts,
                "error": errors.get(i),
            }
            for i, s in enumerate(stats)
        ],
        "counts": dict(state.counts),
    }


def leaves_list(state: ObservedState) -> list[dict[str, Any]]:
    """The contract's `leaves`: present leaves at the end, sorted by (as_id, gfn)."""
    names = {1: "4K", 2: "2M", 3: "1G"}
    out = []
    for (as_id, gfn, level), (pfn, pv) in sorted(state.leaves.items()):
        root = "direct"
        if state.vm_type == "tdx":
            root = "mirror" if pv == 1 else "direct" if pv == 0 else "unknown"
        out.append(
            {
                "as_id": as_id,
                "gfn": gfn,
                "level": names.get(level, str(level)),
                "pfn": pfn,
                "private": None if pv is None else bool(pv),
                "root": root,
            }
        )
    return out


def _write_summary(
    path: str,
    short: dict[str, Any],
    state: ObservedState,
    spool: Mapping[str, IO[str]],
    inputs: tuple[str, ...],
) -> None:
    enc = json.JSONEncoder(separators=(", ", ": ")).encode
    with atomic_output(path, inputs) as f:
        f.write("{")
        first = True
        for k in ("lines", "recognised", "skipped", "events"):
            f.write(("" if first else ", ") + f"{enc(k)}: {enc(short[k])}")
            first = False
        f.write(', "leaves": [')
        for j, leaf in enumerate(leaves_list(state)):
            f.write((", " if j else "") + enc(leaf))
        f.write("]")
        for k in ("faults", "conversions", "launch_updates"):
            f.write(f', "{k}": [')
            s = spool[k]
            s.seek(0)
            for j, line in enumerate(s):
                f.write((", " if j else "") + line.rstrip("\n"))
            f.write("]")
        for k, v in short.items():
            if k not in ("lines", "recognised", "skipped", "events"):
                f.write(f", {enc(k)}: {enc(v)}")
        f.write("}\n")


# ------------------------------------------------------------------ command line
def main_import(argv: list[str]) -> int:
    from imemviz.cli import UsageError, _Parser

    parser = _Parser(
        prog="imemviz import",
        description="Read kernel traces (tracefs trace, trace-cmd report, perf script, "
        "trace.dat with trace-cmd installed) and QEMU trace logs of a real VM into an "
        "observed timeline that `imemviz OUT` opens. Never imports Qt.",
    )
    parser.add_argument("traces", nargs="+", metavar="TRACE", help="trace files, merged by time")
    parser.add_argument("-o", "--out", required=True, metavar="OUT", help="the observed timeline")
    parser.add_argument("--summary-json", metavar="S", help="write what was reconstructed here")
    parser.add_argument(
        "--vendor",
        choices=("auto", "intel", "amd", "snp", "tdx"),
        default="auto",
        help="how to read kvm_page_fault error codes (default: from the trace)",
    )
    parser.add_argument(
        "--vm-type",
        choices=("auto", "default", "sw_protected", "tdx", "snp"),
        default="auto",
        help="the VM type (default: from the trace)",
    )
    parser.add_argument(
        "--spte-layout",
        choices=("auto", "modern", "old"),
        default="auto",
        help="SPTE present bit: modern (bit 11, 5.13 on) or old (5.11, 5.12)",
    )
    parser.add_argument(
        "--gpaw",
        type=int,
        choices=(48, 52),
        default=0,
        help="TDX guest physical address width (shared bit 47 or 51)",
    )
    parser.add_argument(
        "--from-vm-start",
        action="store_true",
        help="the trace starts before the VM was created: every gfn starts shared",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run the trace's uAPI ops through the model and mark disagreements",
    )
    parser.add_argument(
        "--kernel",
        default="mainline",
        metavar="NAME",
        help="the kernel profile the model follows in --check (default mainline)",
    )
    parser.add_argument(
        "--recording-out", metavar="R", help="with --check: write the derived ops as a recording"
    )
    parser.add_argument(
        "--vm-config",
        metavar="JSON",
        help="with --check: VMCONFIG fields the trace cannot tell, e.g. "
        '\'{"gmem_max_order": 9, "shared_page_size": "2M"}\'',
    )
    parser.add_argument(
        "--perfetto",
        metavar="PFTRACE",
        help="also write the timeline as a Perfetto trace (needs the perfetto package)",
    )
    ns = parser.parse_args(argv)
    if ns.perfetto:
        from imemviz.io.trace.perfetto_export import PerfettoMissing, _builder_cls

        try:
            _builder_cls()
        except PerfettoMissing as e:
            raise UsageError(f"imemviz import: --perfetto: {e}") from None
    vm_extra = None
    if ns.vm_config:
        try:
            vm_extra = json.loads(ns.vm_config)
        except ValueError:
            vm_extra = None
        if not isinstance(vm_extra, dict):
            raise UsageError("imemviz import: --vm-config: expected a JSON object")
        for k in ("type", "kernel"):
            if k in vm_extra:
                raise UsageError(
                    f"imemviz import: --vm-config: give {k} with --{k.replace('type', 'vm-type')}"
                )
    opts = ImportOptions(
        vendor=ns.vendor,
        vm_type=ns.vm_type,
        spte_layout=ns.spte_layout,
        gpaw=ns.gpaw,
        from_vm_start=ns.from_vm_start,
        check=ns.check or bool(ns.recording_out),
        kernel=ns.kernel,
        recording_out=ns.recording_out,
        vm_config=vm_extra,
    )
    try:
        res = import_traces(ns.traces, ns.out, ns.summary_json, opts)
    except ImportError_ as e:
        raise UsageError(str(e)) from None
    s = res.summary
    skipped = sum(s["skipped"].values())
    line = (
        f"imemviz import: {s['recognised']} events from {s['lines']} lines "
        f"({skipped} skipped) -> {ns.out}"
    )
    if opts.check:
        line += f"; {res.disagreements} disagreements with the model"
    failures = s.get("counts", {}).get("rmp_failures", 0)
    if failures:  # the kernel log's RMPUPDATE failures, marked in OUT (rmp_dump.py)
        line += f"; {failures} RMPUPDATE failure{'s' if failures != 1 else ''} marked"
    if ns.perfetto:
        from imemviz.io.trace.perfetto_export import export_observed

        export_observed(ns.out, ns.perfetto)
        line += f"; Perfetto trace {ns.perfetto}"
    print(line)
    return 0
