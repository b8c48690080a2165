"""The import's reading of its inputs: blocks of whole lines, read in parallel, put back
in order and put right.

The importing process reads each input (plain, gzip, zstd or `trace-cmd report`'s
output) in blocks of about `scanner.BLOCK` bytes cut at a newline, numbers their
lines, and hands them to `scanner.parse_block`: in parsing processes
(`parsers.Parsers(n)`; at most a few blocks in flight, so memory stays bounded) or
in this process (`Parsers(0)`).  A block is read with no
knowledge of the lines before it; `FileFix` puts right, in file order, the two
things those lines decide (see scanner.Block): the time of records before the
block's first timed one, and the vCPU of records of a thread the block had not
seen.  Where the reading in the block differs from what the lines before say,
those records are read again here with the right state.  So the records are the
same, byte for byte, whatever the number of processes and wherever blocks are cut
(tests/trace/test_pipeline.py), and the same as reader.records gives.

Bounds, as reader.lines: a line longer than MAX_LINE is skipped (`too_long`)
without being held whole (one spanning reads is dropped as it streams by), a
last line without its newline is `truncated`.
"""

from __future__ import annotations

import heapq
import os
from array import array
from collections.abc import Callable, Iterator
from itertools import compress
from typing import Any

from imemviz.io.trace.events import TraceOp
from imemviz.io.trace.parsers import Parsers
from imemviz.io.trace.reader import MAX_LINE, FileStats, LineReader, close, open_trace, position
from imemviz.io.trace.scanner import BLOCK, Block, _BlockParser, line_form

__all__ = ["Parsers", "blocks_of", "chunks", "processes_wanted", "rows"]


def blocks_of(
    path: str,
    stats: FileStats,
    stop: Callable[[], bool] | None = None,
    tick: Callable[[int], None] | None = None,
    block: int | None = None,
) -> Iterator[tuple[bytes, int, int | None]]:
    """(whole lines, number of the first, their offset in the file) of one file, in
    order; the offset is None unless the file is a regular file read as it is (not
    decompressed, not trace-cmd's output).  Counts in `stats` the lines read, the too
    long ones that span reads and a truncated last line.  After each read `stop()` is
    polled (true: stop reading) and `tick(position)` told."""
    block = block or BLOCK
    stream, proc = open_trace(path, stats)
    try:
        seekable = stats.via == "text" and proc is None and os.path.isfile(path)
        read = stream.read
        n = 0  # lines so far
        carry = b""
        base = 0  # the offset of carry's first byte
        skipping = False  # inside a line longer than MAX_LINE, up to its newline
        while True:
            data = read(block)
            if not data:
                break
            if skipping:
                k = data.find(b"\n")
                if k < 0:
                    base += len(data)
                    continue
                data = data[k + 1 :]
                base += k + 1
                skipping = False
            buf = carry + data if carry else data
            k = buf.rfind(b"\n")
            if k < 0:
                carry = buf
            else:
                carry = buf[k + 1 :]
                whole = buf[: k + 1]
                yield whole, n + 1, base if seekable else None
                base += k + 1
                n += whole.count(b"\n")
            if len(carry) > MAX_LINE:
                n += 1
                stats.skipped["too_long"] += 1
                base += len(carry)
                carry, skipping = b"", True
            stats.lines = n
            if stop is not None and stop():
                return
            if tick is not None:
                tick(position(stream))
        if carry:
            n += 1
            stats.skipped["truncated"] += 1
        stats.lines = n
    finally:
        close(stream, proc)


def processes_wanted() -> int:
    """Parsing processes for this machine: 2 from 2 cores on (the importing process
    commits while two workers parse: on 2 cores the three share them, and the parse
    is two thirds of the CPU; more only adds copies of the blocks), none on one core."""
    n = os.cpu_count() or 1
    return 2 if n >= 2 else 0


class FileFix:
    """One file's blocks, put right in order (see the module doc), and its stats."""

    def __init__(self, src: int, stats: FileStats, settings: dict[str, Any]) -> None:
        self.src = src
        self.stats = stats
        self.settings = settings
        self.last_ts = 0.0  # the time before the next block (reader.LineReader's start)
        self.vmap: dict[int, Any] = {}  # thread -> vCPU before the next block
        self.events: dict[str, int] = {}

    def fix(self, b: Block, data: bytes) -> None:
        redo: dict[int, tuple[float | None, tuple[int, Any] | None]] = {}
        if b.untimed and self.last_ts != 0.0:
            for k in range(b.untimed):
                redo[k] = (self.last_ts, None)
        for pid, chain in b.chains.items():
            if pid in self.vmap and self.vmap[pid] != chain[0]:
                v = self.vmap[pid]
                for k in chain[1:]:
                    ts = redo.get(k, (None, None))[0]
                    redo[k] = (ts, (pid, v))
        if redo:
            self._redo(b, data, redo)
        # What this block leaves for the next: a thread first seen here without a vCPU
        # and never given one keeps the vCPU it had before.
        before = self.vmap
        for pid, v in b.vmap.items():
            if pid in b.open_chains and pid in before:
                continue
            before[pid] = v
        st = self.stats
        if b.ts and st.first_ts is None:
            st.first_ts = b.ts[0]
        if b.last_ts is not None:
            self.last_ts = b.last_ts  # else every record inherited the time before
        st.recognised += b.recognised
        for name, v in b.skipped.items():
            st.skipped[name] += v
        for name, v in b.framings.items():
            st.framings[name] += v
        for name, v in b.events.items():
            self.events[name] = self.events.get(name, 0) + v

    def finish(self) -> None:
        self.stats.last_ts = self.last_ts if self.stats.first_ts is not None else None

    def _redo(
        self, b: Block, data: bytes, redo: dict[int, tuple[float | None, tuple[int, Any] | None]]
    ) -> None:
        """Read the records `redo` names again, with the time and vCPU the lines before
        the block give, and put them in place."""
        b.unpack()
        raw_lines = data.split(b"\n")
        parser = _BlockParser.get(self.src, self.settings)
        for k, (ts, thread) in sorted(redo.items()):
            reader = LineReader(self.src, FileStats(""))
            if ts is not None:
                reader.last_ts = ts
            if thread is not None:
                reader.vcpu_by_pid[thread[0]] = thread[1]
            n = b.line_of[k]
            raw = raw_lines[n - b.first_line]
            if raw[-1:] == b"\r":
                raw = raw[:-1]
            try:
                text, bad = raw.decode("utf-8"), False
            except UnicodeDecodeError:
                text, bad = raw.decode("utf-8", "replace"), True
            r = reader.line(n, text, bad)
            assert r is not None, (n, text)  # it was read once already
            one = Block(self.src, n)
            parser.decoder.tdp_seen = False  # out of its block: assume no spte before
            parser.emit(one, r)
            b.texts[k] = one.texts[0]
            b.ops[k] = one.ops[0]
            b.ts[k] = r.ts
            b.vcpus[k] = one.vcpus[0]
        b.pack()


# (ts, text, op, kind, vcpu, gfn): one record as the importer takes it
Row = tuple[float, str, TraceOp | None, int, int, int]


def rows(
    paths: list[str],
    stats: list[FileStats],
    settings: dict[str, Any],
    parsers: Parsers,
    skip: set[int],
    stop: Callable[[], bool] | None = None,
    tick: Callable[[int, int], None] | None = None,
) -> tuple[Iterator[Row], list[FileFix]]:
    """The records of every readable input (not in `skip`), merged by time (stable: equal
    times keep input order), and each file's FileFix (its stats and events counts are
    complete once the records are consumed)."""
    fixes = []
    streams = []
    for src, path in enumerate(paths):
        if src in skip:
            continue
        fix = FileFix(src, stats[src], settings)
        fixes.append(fix)
        streams.append(_file_rows(path, src, fix, settings, parsers, stop, tick))
    if len(streams) == 1:
        return streams[0], fixes
    return heapq.merge(*streams, key=lambda r: r[0]), fixes


# (ts, form, opk, opl, kinds, vcpus, gfns): records as columns, packed as scanner.Block.pack
# packs them: their texts as the timeline's template, the ops that are not None and
# their numbers
Chunk = tuple[
    "array[float]",
    str,
    list[int],
    list[TraceOp],
    bytes | bytearray,
    "array[int]",
    "array[int]",
]
CHUNK = 4096  # records per chunk when several files are merged


def chunks(
    paths: list[str],
    stats: list[FileStats],
    settings: dict[str, Any],
    parsers: Parsers,
    skip: set[int],
    stop: Callable[[], bool] | None = None,
    tick: Callable[[int, int], None] | None = None,
) -> tuple[Iterator[Chunk], list[FileFix]]:
    """`rows` as columns: of one file, its blocks as they are (no tuple per record, and
    the importer extends its index columns with whole arrays); of several, the merged
    records cut into chunks of CHUNK."""
    live = [i for i in range(len(paths)) if i not in skip]
    if len(live) != 1:
        records, fixes = rows(paths, stats, settings, parsers, skip, stop, tick)
        return _batched(records), fixes
    src = live[0]
    fix = FileFix(src, stats[src], settings)
    return _file_chunks(paths[src], src, fix, settings, parsers, stop, tick), [fix]


def _batched(records: Iterator[Row]) -> Iterator[Chunk]:
    while True:
        ts: array[float] = array("d")
        texts: list[str] = []
        ops: list[TraceOp | None] = []
        kinds = bytearray()
        vcpus, gfns = array("q"), array("q")
        for t, text, op, kind, vcpu, gfn in records:
            ts.append(t)
            texts.append(text)
            ops.append(op)
            kinds.append(kind)
            vcpus.append(vcpu)
            gfns.append(gfn)
            if len(texts) >= CHUNK:
                break
        if not texts:
            return
        opk = list(compress(range(len(ops)), ops))  # op tuples are never empty
        yield ts, line_form(texts), opk, list(filter(None, ops)), kinds, vcpus, gfns


def _file_chunks(
    path: str,
    src: int,
    fix: FileFix,
    settings: dict[str, Any],
    parsers: Parsers,
    stop: Callable[[], bool] | None,
    tick: Callable[[int, int], None] | None,
) -> Iterator[Chunk]:
    for b, _data in _fixed_blocks(path, src, fix, settings, parsers, stop, tick):
        assert b.form is not None and b.opk is not None and b.opl is not None  # packed
        yield b.ts, b.form, b.opk, b.opl, b.kinds, b.vcpus, b.gfns
    fix.finish()


def _fixed_blocks(
    path: str,
    src: int,
    fix: FileFix,
    settings: dict[str, Any],
    parsers: Parsers,
    stop: Callable[[], bool] | None,
    tick: Callable[[int, int], None] | None,
) -> Iterator[tuple[Block, bytes]]:
    def on_tick(pos: int) -> None:
        if tick is not None:
            tick(src, pos)

    tasks = (
        (data, src, first, settings, None if at is None else (path, at))
        for data, first, at in blocks_of(path, fix.stats, stop, on_tick)
    )
    for b, data in parsers.map(tasks):
        if stop is not None and stop():
            return  # cancelled: the blocks still in flight are not waited for
        fix.fix(b, data)
        yield b, data


def _file_rows(
    path: str,
    src: int,
    fix: FileFix,
    settings: dict[str, Any],
    parsers: Parsers,
    stop: Callable[[], bool] | None,
    tick: Callable[[int, int], None] | None,
) -> Iterator[Row]:
    """One file's records one at a time (the merge of several files takes rows)."""
    for b, _data in _fixed_blocks(path, src, fix, settings, parsers, stop, tick):
        b.unpack()
        yield from zip(b.ts, b.texts, b.ops, b.kinds, b.vcpus, b.gfns, strict=True)
    fix.finish()
