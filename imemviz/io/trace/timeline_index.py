"""The observed timeline's index: what opening a timeline needs, as binary columns.

`imemviz import` writes it next to OUT, as `OUT.index`, so the app opens a
million-event timeline in a fraction of a second instead of parsing every JSON
line (timeline.ObservedTimeline.load falls back to parsing when the index is
missing, stale or unreadable: it is a cache, never the only copy).

Layout: one JSON line (ASCII) padded with spaces to a multiple of 8 bytes,

    {"format": "imemviz-observed-index", "version": 1, "token": T, "timeline_size": N,
     "events": E, "tail": OFFSET, "sections": {NAME: [offset, count, dtype], ...}}

then the sections, little-endian: per event `ts` (<f8), `kind` (|u1),
`vcpu` (<i8, -1 none), `offset` (<i8, the event's line in OUT), `gfn` (<i8, -1
none); the logs of the effects as rows of <i8: `leaf` (i, +1/-1, as_id, gfn,
level, pfn, private or -1), `attr` (i, start, end, private), `slot` (i, as_id,
slot, base_gfn, npages, flags, gmem_fd or -1, gmem_offset).  `token` is the
one OUT's end line holds (`{"end": {..., "index": T}}`), `timeline_size` OUT's
size, and `tail` where OUT's marks and end line start: an index that does not
match its timeline is not used.

The importer streams the columns to temporary files as it goes (memory stays
bounded by a buffer) and joins them at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from array import array
from typing import IO, Any

import numpy as np

FORMAT = "imemviz-observed-index"
VERSION = 1
SUFFIX = ".index"
FLUSH = 1 << 16  # entries held before a column is written out

_SECTIONS = (
    ("ts", "d", "<f8", 1),
    ("kind", "B", "|u1", 1),
    ("vcpu", "q", "<i8", 1),
    ("offset", "q", "<i8", 1),
    ("gfn", "q", "<i8", 1),
    ("leaf", "q", "<i8", 7),
    ("attr", "q", "<i8", 4),
    ("slot", "q", "<i8", 8),
)
ROW = {name: width for name, _c, _d, width in _SECTIONS}


def index_path(timeline: str) -> str:
    return timeline + SUFFIX


class IndexWriter:
    """Collects the columns while the import runs; `write` makes the index file."""

    def __init__(self) -> None:
        # "ts" is an array of doubles, the others of int64 (which mypy takes as floats too)
        self.cols: dict[str, array[float]] = {name: array(code) for name, code, _d, _w in _SECTIONS}
        self._spool: dict[str, IO[bytes]] = {}
        self.count = {name: 0 for name in self.cols}

    def flush(self, force: bool = False) -> None:
        for name, col in self.cols.items():
            if col and (force or len(col) >= FLUSH):
                f = self._spool.get(name)
                if f is None:
                    f = self._spool[name] = tempfile.TemporaryFile()  # noqa: SIM115 - closed
                col.tofile(f)
                self.count[name] += len(col)
                del col[:]

    def write(self, out: IO[bytes], token: str, timeline_size: int, events: int, tail: int) -> None:
        """The index, into the open binary file `out`."""
        self.flush(force=True)
        sections: dict[str, list[Any]] = {}
        head = {
            "format": FORMAT,
            "version": VERSION,
            "token": token,
            "timeline_size": timeline_size,
            "events": events,
            "tail": tail,
            "sections": sections,
        }
        # Offsets depend on the header's length, which depends on the offsets' digits:
        # reserve room, then fill in.
        sizes = {
            name: (self.count[name] * array(code).itemsize) for name, code, _d, _w in _SECTIONS
        }
        base = 0
        while True:
            pos = base
            for name, _code, dtype, _w in _SECTIONS:
                sections[name] = [pos, self.count[name], dtype]
                pos += -(-sizes[name] // 8) * 8
            line = json.dumps(head, separators=(",", ":"))
            need = -(-(len(line) + 1) // 8) * 8
            if need <= base:
                break
            base = need
        out.write(line.encode("ascii").ljust(base - 1) + b"\n")
        for name, _code, _dtype, _w in _SECTIONS:
            f = self._spool.get(name)
            if f is not None:
                f.seek(0)
                shutil.copyfileobj(f, out, 1 << 20)
            pad = -sizes[name] % 8
            if pad:
                out.write(b"\0" * pad)

    def close(self) -> None:
        for f in self._spool.values():
            f.close()
        self._spool.clear()


def read_head(timeline: str) -> dict[str, Any] | None:
    """The header of `timeline`'s index, if there is one of this format."""
    try:
        with open(index_path(timeline), "rb") as f:
            head = json.loads(f.readline(1 << 16))
    except (OSError, ValueError):
        return None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        return None
    if head.get("version") != VERSION or not isinstance(head.get("tail"), int):
        return None
    return head


def read_sections(timeline: str, head: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The index's columns and logs (the caller has checked `head` against the
    timeline); None when the file does not hold what its header says."""
    try:
        with open(index_path(timeline), "rb") as f:
            total = os.fstat(f.fileno()).st_size
            out: dict[str, np.ndarray] = {}
            for name, _code, dtype, width in _SECTIONS:
                offset, count, dt = head["sections"][name]
                if dt != dtype or count % width or offset + count * np.dtype(dt).itemsize > total:
                    return None
                f.seek(offset)
                a = np.fromfile(f, dtype=np.dtype(dt), count=count)
                if len(a) != count:
                    return None
                out[name] = a.reshape(-1, width) if width > 1 else a
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(len(out[k]) != head.get("events") for k in ("ts", "kind", "vcpu", "offset", "gfn")):
        return None
    return out


NEVER = np.iinfo(np.int64).max


def leaf_instances(log: np.ndarray) -> dict[str, np.ndarray]:
    """Leaf instances (as_id, gfn, level, pfn, private, born, died), sorted by gfn, from
    the leaf log: what timeline._read builds from the L+ / L- effects.

    Per leaf (as_id, gfn, level) the log alternates: an L+ is followed by the L-
    that ends it, if any (the importer writes the L- of a replaced leaf first)."""
    names = ("as_id", "gfn", "level", "pfn", "private")
    if not len(log):
        return {n: np.zeros(0, dtype=np.int64) for n in (*names, "born", "died")}
    n = len(log)
    seq = np.arange(n)
    order = np.lexsort((seq, log[:, 4], log[:, 3], log[:, 2]))
    s = log[order]
    same = np.zeros(n, dtype=bool)
    same[:-1] = ((s[1:, 2] == s[:-1, 2]) & (s[1:, 3] == s[:-1, 3]) & (s[1:, 4] == s[:-1, 4])) & (
        s[1:, 1] == -1
    )
    died = np.full(n, NEVER, dtype=np.int64)
    died[:-1] = np.where(same[:-1], s[1:, 0], NEVER)
    plus = s[:, 1] == 1
    born_rows = s[plus]
    died = died[plus]
    emitted = np.argsort(order[plus], kind="stable")  # back to the order of the L+
    born_rows, died = born_rows[emitted], died[emitted]
    out = {name: born_rows[:, 2 + k].copy() for k, name in enumerate(names)}
    out["born"] = born_rows[:, 0].copy()
    out["died"] = died
    by_gfn = np.argsort(out["gfn"], kind="stable")
    return {k: v[by_gfn] for k, v in out.items()}
