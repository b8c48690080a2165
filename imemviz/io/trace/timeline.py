"""The observed timeline file (OUT of `imemviz import`) and its reader.

JSON Lines.  Line 1, the header:

    {"format": "imemviz-observed", "version": 1, "sources": [...], "settings": {...},
     "options": {...}}

then one line per recognised event, in time order:

    {"i": N, "t": SECONDS, "e": EVENT, "k": KIND, "src": FILE, "ln": LINE,
     "pid": PID, "cpu": CPU, "vcpu": VCPU, "g": GFN, "p": PAYLOAD, "fx": [EFFECTS]}

(`p` the event's text as the trace printed it, `g` the gfn it is about,
`fx` as described in observed.py; `pid`, `cpu`, `vcpu`, `g` null where the
trace lacks them), lines `{"mark": ...}` where the check against the model found a
disagreement (model_check.py), and a last line `{"end": {...}}` with the
totals.  docs/traces.md describes every field.

`ObservedTimeline.load(path)` reads a file into numpy arrays: one row per
event (time, kind, vCPU, file offset) and one row per *instance* of a leaf,
an attribute run or a memslot, with the event index it was born at and the
one it died at.  The state after event i is every instance with
born <= i < died: a vectorised mask, so showing any point of a million-event
timeline costs the instances, never a replay.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from typing import IO, Any

import numpy as np
from sortedcontainers import SortedDict

from imemviz.io.trace.events import KIND_CODE

FORMAT = "imemviz-observed"
VERSION = 1
NEVER = np.iinfo(np.int64).max


class TimelineError(ValueError):
    """An observed timeline file is unusable; the message names the file and line."""


_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class TimelineWriter:
    """Writes the header, then events, marks and the end line, to an open text file.

    Every line is ASCII (json's escapes), so `pos` counts bytes; `offsets`, when
    given, is told where each event line starts (the index's column)."""

    def __init__(self, out: IO[str], header: dict[str, Any], offsets: Any = None) -> None:
        self.out = out
        self.n = 0
        self.offsets = offsets
        line = _encode({"format": FORMAT, "version": VERSION, **header}) + "\n"
        out.write(line)
        self.pos = len(line)

    def block(self, form: str, args: list[Any]) -> None:
        """Event lines in order: `form`, their %-template (scanner.line_form: the lines'
        fields "t" to "p"), filled in with `args`, per line its index and its effects'
        text (i0, fx0, i1, fx1, ...).  One format for the whole block."""
        if not args:
            return
        text = form % tuple(args)
        data = text.encode("ascii")
        raw = getattr(self.out, "buffer", None)
        if raw is not None:  # encoded once, for the offsets and the file
            self.out.flush()
            raw.write(data)
        else:
            self.out.write(text)
        if self.offsets is not None:
            ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
            ends += self.pos + 1  # where the next line starts
            self.offsets.append(self.pos)
            self.offsets.frombytes(ends[:-1].astype(np.int64).tobytes())
        self.pos += len(text)
        self.n += len(args) // 2

    def raw(self, obj: dict[str, Any]) -> None:
        line = _encode(obj) + "\n"
        self.out.write(line)
        self.pos += len(line)

    def end(self, totals: dict[str, Any]) -> None:
        self.raw({"end": totals})


def is_observed(path: str) -> bool:
    """Whether `path` starts with an observed timeline header."""
    try:
        with open(path, "rb") as f:
            head = f.readline(4096)
    except OSError:
        return False
    return b'"imemviz-observed"' in head


class _Instances:
    """Growing columns of one kind of instance."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.cols: dict[str, list[int]] = {n: [] for n in names}
        self.born: list[int] = []
        self.died: list[int] = []

    def add(self, born: int, *values: int) -> int:
        for n, v in zip(self.names, values, strict=True):
            self.cols[n].append(v)
        self.born.append(born)
        self.died.append(int(NEVER))
        return len(self.born) - 1

    def arrays(self, sort_by: str) -> dict[str, np.ndarray]:
        out = {n: np.asarray(v, dtype=np.int64) for n, v in self.cols.items()}
        out["born"] = np.asarray(self.born, dtype=np.int64)
        out["died"] = np.asarray(self.died, dtype=np.int64)
        if len(out["born"]):
            order = np.argsort(out[sort_by], kind="stable")
            out = {k: v[order] for k, v in out.items()}
        return out


class ObservedTimeline:
    """An observed timeline in memory: events as columns, state as instance arrays."""

    def __init__(self) -> None:
        self.path = ""
        self.header: dict[str, Any] = {}
        self.end: dict[str, Any] = {}
        self.ts = np.zeros(0)
        self.kind = np.zeros(0, dtype=np.uint8)
        self.vcpu = np.zeros(0, dtype=np.int32)
        self.offset = np.zeros(0, dtype=np.int64)
        self.gfn = np.zeros(0, dtype=np.int64)  # the gfn an event is about (-1: none)
        self.leaves: dict[str, np.ndarray] = {}
        self.attrs: dict[str, np.ndarray] = {}
        self.slots: dict[str, np.ndarray] = {}
        self.marks: list[dict[str, Any]] = []
        self._file: IO[bytes] | None = None

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = self.header.get("settings", {})
        return settings

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        path: str,
        progress: Callable[[int, int], None] | None = None,
        stop: Callable[[], bool] | None = None,
        use_index: bool = True,
    ) -> ObservedTimeline:
        """Read a timeline: from its index (timeline_index.py) when it has one that
        matches, else by parsing every line (with progress, and cancel by `stop`)."""
        tl = cls()
        tl.path = path
        try:
            f = open(path, "rb")  # noqa: SIM115 - kept open for event_at()
        except OSError as e:
            raise TimelineError(f"{path}: cannot read: {e.strerror or e}") from None
        gc_on = gc.isenabled()
        gc.disable()  # millions of small objects, no cycles: the GC would only rescan them
        try:
            size = max(1, f.seek(0, 2))
            f.seek(0)
            if not (use_index and tl._read_indexed(f, size)):
                f.seek(0)
                tl._read(f, size, progress, stop)
        except BaseException:
            f.close()
            raise
        finally:
            if gc_on:
                gc.enable()
        tl._file = f
        return tl

    def _read_head(self, f: IO[bytes]) -> None:
        path = self.path
        line = f.readline()
        try:
            head = json.loads(line)
        except ValueError:
            head = None
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise TimelineError(f"{path}:1: not an imemviz observed timeline")
        if head.get("version") != VERSION:
            raise TimelineError(
                f"{path}:1: observed timeline version {head.get('version')!r}; "
                f"this imemviz reads version {VERSION}"
            )
        self.header = head

    def _read_indexed(self, f: IO[bytes], size: int) -> bool:
        """Read the timeline from its index; False (nothing read) when it has none that
        matches it."""
        from imemviz.io.trace import timeline_index as TI

        ih = TI.read_head(self.path)
        if ih is None or ih.get("timeline_size") != size or not 0 < ih["tail"] <= size:
            return False
        self._read_head(f)
        f.seek(ih["tail"])
        marks, end = [], {}
        try:
            for raw in f:
                d = json.loads(raw)
                if "mark" in d:
                    marks.append(d["mark"])
                elif "end" in d:
                    end = d["end"]
                else:
                    return False
        except ValueError:
            return False
        if not isinstance(end, dict) or end.get("index") != ih.get("token"):
            return False
        cols = TI.read_sections(self.path, ih)
        if cols is None:
            return False
        self.marks, self.end = marks, end
        self.ts = cols["ts"].astype(np.float64, copy=False)
        self.kind = cols["kind"].astype(np.uint8, copy=False)
        self.vcpu = cols["vcpu"].astype(np.int32)
        self.offset = cols["offset"].astype(np.int64, copy=False)
        self.gfn = cols["gfn"].astype(np.int64, copy=False)
        self.leaves = TI.leaf_instances(cols["leaf"])
        attrs = _Instances(("start", "end", "private"))
        runs: SortedDict[int, tuple[int, int]] = SortedDict()
        for i, s, e, v in cols["attr"].tolist():
            _set_run(runs, attrs, i, s, e, v)
        slots = _Instances(("as_id", "slot", "base_gfn", "npages", "flags", "gmem_fd"))
        live_slot: dict[tuple[int, int], int] = {}
        for i, as_id, slot, base, npages, flags, fd, _off in cols["slot"].tolist():
            _slot_effect(slots, live_slot, i, as_id, slot, base, npages, flags, fd)
        self.attrs = attrs.arrays("start")
        self.slots = slots.arrays("base_gfn")
        return True

    def _read(
        self,
        f: IO[bytes],
        size: int,
        progress: Callable[[int, int], None] | None,
        stop: Callable[[], bool] | None,
    ) -> None:
        path = self.path
        self._read_head(f)
        ts: list[float] = []
        kinds: list[int] = []
        vcpus: list[int] = []
        offsets: list[int] = []
        gfns: list[int] = []
        leaves = _Instances(("as_id", "gfn", "level", "pfn", "private"))
        attrs = _Instances(("start", "end", "private"))
        slots = _Instances(("as_id", "slot", "base_gfn", "npages", "flags", "gmem_fd"))
        live_leaf: dict[tuple[int, int, int], int] = {}
        runs: SortedDict[int, tuple[int, int]] = SortedDict()  # start -> (end, instance)
        live_slot: dict[tuple[int, int], int] = {}
        pos = f.tell()
        n_line = 1
        loads = json.loads
        code = KIND_CODE
        for raw in f:
            n_line += 1
            here = pos
            pos += len(raw)
            try:
                d = loads(raw)
            except ValueError:
                raise TimelineError(f"{path}:{n_line}: not JSON") from None
            if "mark" in d:
                self.marks.append(d["mark"])
                continue
            if "end" in d:
                self.end = d["end"]
                continue
            i = len(ts)
            if progress is not None and not i & 0x3FFF:
                progress(here, size)
                if stop is not None and stop():
                    raise TimelineError(f"{path}: loading cancelled")
            try:
                ts.append(float(d["t"]))
                kinds.append(code.get(d["k"], 255))
                v = d.get("vcpu")
                vcpus.append(-1 if v is None else int(v))
                offsets.append(here)
                g = d.get("g")
                gfns.append(-1 if g is None else int(g))
                for e in d.get("fx", ()):
                    op = e[0]
                    if op == "L+":
                        live_leaf[(e[1], e[2], e[3])] = leaves.add(
                            i, e[1], e[2], e[3], e[4], -1 if e[5] is None else e[5]
                        )
                    elif op == "L-":
                        j = live_leaf.pop((e[1], e[2], e[3]), None)
                        if j is not None:
                            leaves.died[j] = i
                    elif op == "A":
                        _set_run(runs, attrs, i, e[1], e[2], e[3])
                    elif op == "S":
                        fd = -1 if e[6] is None else e[6]
                        _slot_effect(slots, live_slot, i, e[1], e[2], e[3], e[4], e[5], fd)
            except (KeyError, TypeError, IndexError, ValueError):
                raise TimelineError(f"{path}:{n_line}: malformed event line") from None
        self.ts = np.asarray(ts, dtype=np.float64)
        self.kind = np.asarray(kinds, dtype=np.uint8)
        self.vcpu = np.asarray(vcpus, dtype=np.int32)
        self.offset = np.asarray(offsets, dtype=np.int64)
        self.gfn = np.asarray(gfns, dtype=np.int64)
        self.leaves = leaves.arrays("gfn")
        self.attrs = attrs.arrays("start")
        self.slots = slots.arrays("base_gfn")
        if progress is not None:
            progress(size, size)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # ------------------------------------------------------------------ queries
    def event_at(self, i: int) -> dict[str, Any]:
        """Event i as written in the file (read on demand: rows are not kept in memory)."""
        assert self._file is not None
        self._file.seek(int(self.offset[i]))
        event: dict[str, Any] = json.loads(self._file.readline())
        return event

    def index_at_time(self, t: float) -> int:
        """The last event at or before time t (-1: before the first)."""
        return int(np.searchsorted(self.ts, t, side="right")) - 1

    def live(self, table: dict[str, np.ndarray], i: int) -> np.ndarray:
        """Indices of the instances of `table` alive after event i."""
        if not len(table.get("born", ())):
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero((table["born"] <= i) & (table["died"] > i))

    def state_at(self, i: int) -> dict[str, dict[str, np.ndarray]]:
        """Leaves, attribute runs and memslots after event i, each sorted by gfn."""
        out = {}
        for name, table in (("leaves", self.leaves), ("attrs", self.attrs), ("slots", self.slots)):
            idx = self.live(table, i)
            out[name] = {k: v[idx] for k, v in table.items()}
        return out

    @property
    def extent(self) -> int:
        """Gfns worth drawing: up to the last memslot, leaf or attribute run (2M-aligned)."""
        ends = [0]
        if len(self.slots.get("base_gfn", ())):
            ends.append(int((self.slots["base_gfn"] + self.slots["npages"]).max()))
        if len(self.leaves.get("gfn", ())):
            ends.append(int((self.leaves["gfn"] + (1 << (9 * (self.leaves["level"] - 1)))).max()))
        if len(self.attrs.get("end", ())):
            ends.append(int(self.attrs["end"][self.attrs["end"] < (1 << 40)].max(initial=0)))
        end = max(ends) or (1 << 20)
        return -(-end // 512) * 512


def _slot_effect(
    slots: _Instances,
    live_slot: dict[tuple[int, int], int],
    i: int,
    as_id: int,
    slot: int,
    base: int,
    npages: int,
    flags: int,
    fd: int,
) -> None:
    """A memslot set (npages > 0) or deleted at event i: instances of memslots."""
    key = (as_id, slot)
    j = live_slot.pop(key, None)
    if j is not None:
        slots.died[j] = i
    if npages:
        live_slot[key] = slots.add(i, as_id, slot, base, npages, flags, fd)


def _set_run(
    runs: SortedDict[int, tuple[int, int]], attrs: _Instances, i: int, s: int, e: int, v: int
) -> None:
    """Attribute runs as instances: [s, e) = v at event i ends the runs it overlaps."""
    # The run that starts before s and reaches into [s, e).
    pos = runs.bisect_right(s) - 1
    starts = []
    if pos >= 0:
        k = runs.keys()[pos]
        if k < s and runs[k][0] > s:
            starts.append(k)
    starts.extend(runs.irange(s, e, inclusive=(True, False)))
    for k in starts:
        end, j = runs.pop(k)
        attrs.died[j] = i
        old_v = attrs.cols["private"][j]
        if k < s:
            runs[k] = (s, attrs.add(i, k, s, old_v))
        if end > e:
            runs[e] = (end, attrs.add(i, e, end, old_v))
    runs[s] = (e, attrs.add(i, s, e, v))
