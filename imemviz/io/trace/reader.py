"""Reading trace files: bounded lines, encodings, trace.dat, and the merge by time.

Every file is read as bytes, one line at a time and never more than
`MAX_LINE` bytes of it: a longer line is skipped (counted `too_long`) without
being held in memory.  Bytes that are not UTF-8 are replaced; a line that then
is not recognised counts as `bad_encoding`.  A last line without its newline
was cut off while the trace was written: it counts as `truncated` (a cut hex
number would otherwise read as a wrong value).  gzip and zstd files are read
through their decompressors; a trace.dat (trace-cmd's binary format) is read
through `trace-cmd report` when trace-cmd is installed.

`records(path, ...)` yields the recognised events of one file in file order;
`merged(...)` merges several files by time with heapq.merge, holding one
pending event per file.
"""

from __future__ import annotations

import contextlib
import gzip
import heapq
import io
import itertools
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any, NamedTuple

from imemviz.io.trace.formats import BY_EVENT
from imemviz.io.trace.framing import _FTRACE, COMMENT, Frame, frame, vcpu_of_comm

MAX_LINE = 64 * 1024
TRACE_DAT_MAGIC = b"\x17\x08\x44tracing"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class TraceReadError(Exception):
    """A file cannot be read at all (missing, unreadable, trace.dat without trace-cmd)."""


class Record(NamedTuple):
    ts: float
    src: int  # index of the file among the inputs
    line: int  # 1-based line number in that file (in trace-cmd's output for trace.dat)
    pid: int | None
    cpu: int | None
    vcpu: int | None  # from the event, else from a `CPU n/KVM` thread name
    event: str
    kind: str
    fields: dict[str, Any]
    payload: str  # the event's text as the trace printed it
    text: str | None = None  # its timeline fields "t" to "p" (scanner.py), when rendered


class FileStats:
    """What reading one file found."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines = 0
        self.recognised = 0
        self.skipped: Counter[str] = Counter()
        self.framings: Counter[str] = Counter()
        self.error: str | None = None
        self.via: str = "text"  # "text", "gzip", "zstd", "trace-cmd report"
        self.first_ts: float | None = None
        self.last_ts: float | None = None


def open_trace(path: str, stats: FileStats) -> tuple[IO[bytes], subprocess.Popen[bytes] | None]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as e:
        raise TraceReadError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        head = f.read(10)
        f.seek(0)
    except OSError as e:
        f.close()
        raise TraceReadError(f"{path}: cannot read: {e.strerror or e}") from None
    if head.startswith(TRACE_DAT_MAGIC):
        f.close()
        exe = shutil.which("trace-cmd")
        if exe is None:
            raise TraceReadError(
                f"{path}: a trace.dat file; reading it needs trace-cmd "
                "(apt-get install trace-cmd), or convert it with `trace-cmd report "
                f"{path} > trace.txt` on the machine that recorded it"
            )
        stats.via = "trace-cmd report"
        proc = subprocess.Popen(
            [exe, "report", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        return proc.stdout, proc
    if head.startswith(GZIP_MAGIC):
        stats.via = "gzip"
        return gzip.open(f), None  # type: ignore[return-value]
    if head.startswith(ZSTD_MAGIC):
        try:
            import zstandard
        except ImportError:
            f.close()
            raise TraceReadError(
                f"{path}: zstd-compressed; install the zstandard package or decompress it"
            ) from None
        stats.via = "zstd"
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(f)), None
    return f, None


def lines(stream: IO[bytes], stats: FileStats) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, had bad bytes) for every complete line of bounded length."""
    n = 0
    readline = stream.readline
    while True:
        b = readline(MAX_LINE + 1)
        if not b:
            return
        n += 1
        stats.lines = n
        if b[-1:] != b"\n":
            if len(b) > MAX_LINE:
                stats.skipped["too_long"] += 1
                while b and b[-1:] != b"\n":
                    b = readline(MAX_LINE)
                continue
            stats.skipped["truncated"] += 1
            return
        b = b[:-1]
        if b[-1:] == b"\r":
            b = b[:-1]
        try:
            yield n, b.decode("utf-8"), False
        except UnicodeDecodeError:
            yield n, b.decode("utf-8", "replace"), True


class LineReader:
    """The reference reading of one line: framing, payload row, time and vCPU.

    Holds what reading carries from line to line in one file (the last time, for
    lines without one; the vCPU of each thread).  `scanner.py`'s fast path reads
    the common lines itself and hands every other line here, so both agree.
    """

    def __init__(self, src: int, stats: FileStats) -> None:
        self.src = src
        self.stats = stats
        self.last_ts = 0.0
        self.vcpu_by_pid: dict[int, int | None] = {}
        # About the last line read: whether it had a time of its own, and whether its
        # vCPU was looked up for a thread not seen before (scanner.Block tracks both).
        self.timed = False
        self.vcpu_missed = False

    def line(self, n: int, text: str, bad: bool) -> Record | None:
        """The record of line `n`, or None (the skip is counted in the stats)."""
        stats = self.stats
        m = _FTRACE.fullmatch(text)
        if m is not None and m.group("event") not in _MARKERS:
            # The common case, inlined: tracefs / trace-cmd report framing.
            comm, pid_s, cpu_s, ts_s, event, payload = m.groups()
            ts: float | None = float(ts_s)
            pid: int | None = int(pid_s)
            cpu: int | None = int(cpu_s)
            framing = "ftrace"
        else:
            f = frame(text)
            if not isinstance(f, Frame):
                stats.skipped["bad_encoding" if bad and f != COMMENT else f] += 1
                return None
            ts, pid, cpu, comm, event, payload, framing = f
        fields = None
        fmt = None
        for fmt in BY_EVENT.get(event, ()):
            fields = fmt.parse(payload)
            if fields is not None:
                break
        if fields is None or fmt is None:
            if bad:
                stats.skipped["bad_encoding"] += 1
            elif event in BY_EVENT:
                stats.skipped["malformed"] += 1
            else:
                stats.skipped["unknown_event"] += 1
            return None
        self.timed = ts is not None
        if ts is None:
            ts = self.last_ts
        self.last_ts = ts
        if stats.first_ts is None:
            stats.first_ts = ts
        stats.recognised += 1
        stats.framings[framing] += 1
        vcpu = fields.get("vcpu")
        self.vcpu_missed = False
        if pid is not None:
            if vcpu is not None:
                self.vcpu_by_pid[pid] = vcpu
            else:
                vcpu = self.vcpu_by_pid.get(pid, -1)
                if vcpu == -1:
                    vcpu = self.vcpu_by_pid[pid] = vcpu_of_comm(comm)
                    self.vcpu_missed = True
        return Record(ts, self.src, n, pid, cpu, vcpu, event, fmt.kind, fields, payload)

    def finish(self) -> None:
        self.stats.last_ts = self.last_ts if self.stats.first_ts is not None else None


def records(
    path: str, src: int, stats: FileStats, stop: Any = None, tick: Any = None
) -> Iterator[Record]:
    """The recognised events of one file, in file order, one line at a time (the
    reference reading; the import uses `scanner.scan`, which reads the same).

    Every 4096 lines `stop()`, when given, is polled (a true value ends the file)
    and `tick(src, position)` is told how far into the file reading is.
    """
    stream, proc = open_trace(path, stats)
    reader = LineReader(src, stats)
    try:
        read = reader.line
        for n, text, bad in lines(stream, stats):
            if not n & 0xFFF:
                if stop is not None and stop():
                    return
                if tick is not None:
                    tick(src, position(stream))
            r = read(n, text, bad)
            if r is not None:
                yield r
        reader.finish()
    finally:
        close(stream, proc)


def close(stream: IO[bytes], proc: subprocess.Popen[bytes] | None) -> None:
    with contextlib.suppress(OSError):
        stream.close()
    if proc is not None:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()


def position(stream: Any) -> int:
    try:
        raw = getattr(stream, "fileobj", None) or stream  # gzip: the compressed position
        return int(raw.tell())
    except (OSError, ValueError, AttributeError):
        return 0


_MARKERS = frozenset({"tracing_mark_write", "print"})  # may carry QEMU's ftrace backend


def merged(streams: list[Iterator[list[Record]]]) -> Iterator[Record]:
    """Several files' events (in lists, as scanner.scan yields them) merged by time
    (stable: equal times keep input order)."""
    if len(streams) == 1:
        return itertools.chain.from_iterable(streams[0])
    return heapq.merge(*map(itertools.chain.from_iterable, streams), key=lambda r: r.ts)
