"""The import's fast reading of a trace file: whole blocks, one match per line.

reader.py reads a file the plain way, one line at a time: frame the line
(which framing, where the event and its payload are), then match the payload
against its event's rows and convert the fields.  Two regular expressions, a
dict and a dozen small objects per line: that was the floor of the import.
Here the same reading is done with less work per line:

- the file is read in blocks of `BLOCK` bytes, decoded and split at once; a
  block holding a line longer than `MAX_LINE`, bytes that are not UTF-8 or a
  CR is split line by line exactly as `reader.lines` does;
- a line's event name is found with two `str.find` (between its first ": "
  and the next ":"), and a dict gives that event's rows, each compiled
  *fused*: the tracefs framing of `framing._FTRACE` in an atomic group (so it
  frames the line exactly as `_FTRACE` does), then the row's payload pattern
  in a lookahead (so it reads the payload exactly as the row does), then the
  payload itself; one match reads the whole line;
- a row's fields are converted by a function generated from the table's field
  types (`formats.FIELD_TYPES`), not a loop over (name, type) pairs;
- the part of the event's timeline line that the observed state does not
  change (`"t"` to `"p"`) is formatted here, once (`Record.text`).

Every line the fused patterns do not read (other framings, QEMU's lines,
trace markers, noise, malformed payloads, lines of events no row knows) goes
to `reader.LineReader`, the reference reading, with the same carried state
(last time, vCPU per thread): the two agree line for line, which
tests/trace/test_scanner.py holds them to.
"""

from __future__ import annotations

import json
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import compress
from typing import Any, ClassVar, NamedTuple

from imemviz.io.trace.events import KIND_CODE, Decoder, TraceOp, event_gfn
from imemviz.io.trace.formats import BY_EVENT, DECODE, EventFormat, _hex
from imemviz.io.trace.framing import _FTRACE, vcpu_of_comm
from imemviz.io.trace.reader import (
    _MARKERS,
    MAX_LINE,
    FileStats,
    LineReader,
    Record,
    close,
    lines,
    open_trace,
)

BLOCK = 1 << 20  # bytes read at a time: a few thousand lines

_new = tuple.__new__
_dumps = json.dumps

# The tracefs framing of the common lines, a narrower form of framing._FTRACE:
# spaces where _FTRACE allows any white space, no tgid column, a time with a
# fraction, an event name in [a-z_].  Groups: comm, pid, cpu, ts.  Where it
# frames a line whose comm holds no "[", _FTRACE frames it the same: _FTRACE
# takes the first "-" after which its continuation matches, and such a "-"
# before this one would need a "[" before this one (inside the comm); at the
# same "-" both read the same fields, as every piece here is a narrowing of
# the piece there.  The atomic group keeps a failed payload from trying a
# later "-".
_FAST_PREFIX = r"(?>\s*(.*?)-(\d+) +\[(\d+)\] +(?:[^\s\[\]:]{4,6} +)?(\d+\.\d+): +)"
_NFRAME = 4
assert _FTRACE.pattern.startswith(r"\s*(?P<comm>.*?)-(?P<pid>\d+)\s+")
assert _FTRACE.pattern.endswith(r":\s+(?P<event>[A-Za-z_][\w.]*):\s*(?P<payload>.*)")


def _optional_groups(rx: re.Pattern[str]) -> set[int]:
    """Group numbers of `rx` that may not take part in a match (under ?, *, | ...)."""
    try:
        from re import _parser  # type: ignore[attr-defined]

        tree = _parser.parse(rx.pattern)
    except Exception:  # another Python's internals: treat every group as optional
        return set(range(1, rx.groups + 1))
    out: set[int] = set()

    def walk(items: Any, optional: bool) -> None:
        for op, av in items:
            name = str(op)
            if name == "SUBPATTERN":
                if optional and av[0]:
                    out.add(av[0])
                walk(av[-1], optional)
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                walk(av[2], optional or av[0] == 0)
            elif name == "BRANCH":
                for alt in av[1]:
                    walk(alt, True)
            elif name in ("ATOMIC_GROUP",):
                walk(av, optional)
            elif name in ("ASSERT", "ASSERT_NOT"):
                walk(av[1], True)
            elif name == "GROUPREF_EXISTS":
                walk(av[1], True)
                if av[2] is not None:
                    walk(av[2], True)

    walk(tree, False)
    return out


# A fast-path line's regex groups, and the function that turns a row's groups into its
# fields and the gfn it is about (conv(groups, ~shared_bit)).
Groups = tuple[str | Any, ...]
Converter = Callable[[Groups, int], tuple[dict[str, Any], int | None]]
# parse_block's task: (data, src, first_line, settings)
BlockTask = tuple[bytes, int, int, dict[str, Any]]


def _converter(fmt: EventFormat, first: int) -> Converter:
    """(fields, gfn) = conv(groups, ~shared_bit): the row's fields from groups[first:], as
    `fmt.parse` gives them, and the gfn the event is about, as observed.event_gfn says."""
    conv = fmt.converters
    if _optional_groups(fmt.regex):
        # A field may be missing: the generic way, which leaves it out.
        kind = fmt.kind

        def generic(g: Groups, nmask: int) -> tuple[dict[str, Any], int | None]:
            vals = g[first : first + len(conv)]
            f = {n: c(v) for (n, c), v in zip(conv, vals, strict=True) if v is not None}
            return f, event_gfn(kind, f, ~nmask)

        return generic
    parts = []
    env: dict[str, Any] = {}
    for k, (name, c) in enumerate(conv):
        v = f"g[{first + k}]"
        if c is int:
            expr = f"int({v})"
        elif c is _hex:
            expr = f"int({v}, 16)"
        elif c is str:
            expr = v
        else:
            env[f"c{k}"] = c
            expr = f"c{k}({v})"
        parts.append(f"{name!r}: {expr}")
    names = {n for n, _c in conv}
    # observed.event_gfn for this row's fields (test_scanner holds them equal).
    if "gfn" in names:
        gfn = "f['gfn']"
    elif "gpa" in names:
        gfn = "(f['gpa'] & nmask) >> 12"
    elif fmt.kind == "attributes":
        gfn = "f['start']"
    elif fmt.kind in ("convert", "memory_fault"):
        gfn = "f['start'] >> 12"
    else:
        gfn = "None"
    src = f"def conv(g, nmask):\n    f = {{{', '.join(parts)}}}\n    return f, {gfn}\n"
    exec(compile(src, f"<fields of {fmt.event}>", "exec"), env)
    made: Converter = env["conv"]
    return made


def _trie(items: dict[str, str]) -> str:
    """One alternation of `literal + body` for every item, the literals' common prefixes
    matched once (the regex engine tries alternatives one by one)."""
    tree: dict[str, Any] = {}  # a trie: char -> subtree, and "" -> the body
    for lit, body in items.items():
        node = tree
        for ch in lit:
            node = node.setdefault(ch, {})
        node[""] = body

    def emit(node: dict[str, Any]) -> str:
        alts = []
        for ch, child in node.items():
            if ch == "":
                alts.append(child)
                continue
            lit = ch
            while len(child) == 1 and "" not in child:
                ((nxt, child),) = child.items()
                lit += nxt
            alts.append(re.escape(lit) + emit(child))
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(tree)


class _Row(NamedTuple):
    fmt: EventFormat
    groups: tuple[int, ...]  # for m.group(*groups): comm, pid, cpu, ts, then the fields
    conv: Converter


def _fast_line() -> tuple[Callable[[str], re.Match[str] | None], dict[int, _Row]]:
    """The one pattern that reads a common line whole, and its rows by their tag group.

    After the framing, a branch per event name (`name:`), then per row of it a
    lookahead with the row's pattern (its groups unnamed) and an empty tag group:
    m.lastindex names the row that read the payload, m.end() is where the payload
    starts.  Rows are tried in the table's order, as reader.LineReader tries them.
    """
    made: list[tuple[EventFormat, int]] = []  # row, its number of groups
    branches: dict[str, str] = {}
    for event, fmts in BY_EVENT.items():
        if event in _MARKERS:
            continue
        alts = []
        for fmt in fmts:
            if fmt.source == "dmesg":
                continue  # kernel log lines are never tracefs-framed: reader.py reads them
            pat = re.sub(r"\(\?P<\w+>", "(", fmt.pattern)
            n = re.compile(pat).groups
            assert n == len(fmt.converters), fmt
            alts.append(f"(?={pat}\\s*$)(?P<row{len(made)}>)")
            made.append((fmt, n))
        if not alts:
            continue
        branches[event + ":"] = "\\s*(?:" + "|".join(alts) + ")"
    rx = re.compile(_FAST_PREFIX + _trie(branches))
    rows: dict[int, _Row] = {}
    for k, (fmt, n) in enumerate(made):
        tag = rx.groupindex[f"row{k}"]  # the row's groups come right before its tag
        rows[tag] = _Row(fmt, (1, 2, 3, 4, *range(tag - n, tag)), _converter(fmt, _NFRAME))
    return rx.match, rows


FAST_MATCH, FAST_ROWS = _fast_line()


def time_json(ts_s: str) -> str:
    """repr(float(ts_s)), the time as the timeline writes it; the text itself when it
    reads back the same (digits without leading or trailing zeros, at most 15 of them:
    every such decimal is a different double and repr gives its shortest form)."""
    if "." in ts_s and len(ts_s) <= 16 and ts_s[0] != "0" and ts_s[-1] != "0":
        return ts_s
    return repr(float(ts_s))


def text_json(s: str) -> str:
    """json.dumps(s), without the call for the plain printable ASCII of most payloads."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'
    return _dumps(s)


def render(r: Record, gfn: int | None) -> str:
    """The timeline line's fields from "t" to "p" (timeline.TimelineWriter.event writes
    `{"i":N,` + this + `,"fx":[...]}`), and "d", the decoded text of the events whose
    format row decodes them (formats.DECODE: the RMP dumps)."""
    out = (
        f'"t":{r.ts!r},"e":"{r.event}","k":"{r.kind}","src":{r.src},'
        f'"ln":{r.line},"pid":{_j(r.pid)},"cpu":{_j(r.cpu)},"vcpu":{_j(r.vcpu)},'
        f'"g":{_j(gfn)},"p":{text_json(r.payload)}'
    )
    dec = DECODE.get(r.kind)
    return out if dec is None else out + f',"d":{text_json(dec(r.fields))}'


def _j(v: int | None) -> str:
    return "null" if v is None else str(v)


def read_records(path: str, src: int, stats: FileStats, limit: int) -> Iterator[Record]:
    """The first `limit` or so recognised events of a file, with their fields, read as
    reader.records reads them (the prescan, where the settings are not known yet)."""
    stream, proc = open_trace(path, stats)
    try:
        reader = LineReader(src, stats)
        n = 0
        got = 0
        for n, text, bad in lines(stream, stats):
            r = None
            if not bad:
                m = FAST_MATCH(text)
                if m is not None:
                    assert m.lastindex is not None  # the fast pattern ends in a tag group
                    fmt, groups, conv = FAST_ROWS[m.lastindex]
                    g = m.group(*groups)
                    if "[" not in g[0]:
                        r = _fast_record(reader, fmt, conv(g, -1)[0], g, n, text[m.end() :])
            if r is None:
                r = reader.line(n, text, bad)
            if r is not None:
                yield r
                got += 1
                if got >= limit:
                    return
    finally:
        close(stream, proc)


def _fast_record(
    reader: LineReader,
    fmt: EventFormat,
    fields: dict[str, Any],
    g: Groups,
    n: int,
    payload: str,
) -> Record:
    """A line the fast pattern read, as reader.LineReader would give it."""
    ts = float(g[3])
    pid = int(g[1])
    vcpu = fields.get("vcpu")
    vmap = reader.vcpu_by_pid
    if vcpu is not None:
        vmap[pid] = vcpu
    else:
        vcpu = vmap.get(pid, -1)
        if vcpu == -1:
            vcpu = vmap[pid] = vcpu_of_comm(g[0])
    reader.last_ts = ts
    st = reader.stats
    if st.first_ts is None:
        st.first_ts = ts
    st.recognised += 1
    st.framings["ftrace"] += 1
    return Record(ts, reader.src, n, pid, int(g[2]), vcpu, fmt.event, fmt.kind, fields, payload)


# ---------------------------------------------------------------------- blocks
# The timeline's event lines as one %-template (timeline.TimelineWriter.block fills in
# each line's index and effects): `{"i":%d,` + the line's text + `,"fx":[%s]}`.
_HEAD = '{"i":%d,'
_SEP = ',"fx":[%s]}\n{"i":%d,'
_END = ',"fx":[%s]}\n'


def line_form(texts: list[str]) -> str:
    """The %-template of the event lines with these texts ("t" to "p"; none holds a
    newline: JSON), in order; "" for none."""
    if not texts:
        return ""
    return _HEAD + "\n".join(texts).replace("%", "%%").replace("\n", _SEP) + _END


def form_texts(form: str) -> list[str]:
    """`line_form` undone."""
    if not form:
        return []
    body = form[len(_HEAD) : -len(_END)]
    return [t.replace("%%", "%") for t in body.split(_SEP)]


class Block:
    """What reading one block of whole lines found: the records as columns.

    Read with no knowledge of the lines before the block (so blocks can be read in
    any order, by any process), except the number of its first line.  What the
    lines before would have changed is said, for the importer to put right
    (`pipeline.py`): the records before the first timed one (`untimed`: their time
    is the last time before the block), and the records whose vCPU came from a
    thread first seen in this block without one (`chains`: the vCPU the thread had
    before the block, if it had one, is theirs).
    """

    __slots__ = (
        "chains",
        "events",
        "first_line",
        "form",
        "framings",
        "gfns",
        "kinds",
        "last_ts",
        "line_of",
        "lines",
        "open_chains",
        "opk",
        "opl",
        "ops",
        "recognised",
        "skipped",
        "src",
        "texts",
        "ts",
        "untimed",
        "vcpus",
        "vmap",
    )

    def __init__(self, src: int, first_line: int) -> None:
        self.src = src
        self.first_line = first_line  # the number of the block's first line
        self.lines = 0
        self.recognised = 0
        self.skipped: dict[str, int] = {}
        self.framings: dict[str, int] = {}
        self.events: dict[str, int] = {}
        self.texts: list[str] = []  # per record: its timeline fields "t" to "p"
        self.ops: list[TraceOp | None] = []  # per record: its op (events.py)
        self.ts = array("d")  # per record: time
        self.kinds = bytearray()  # per record: events.KIND_CODE
        self.vcpus = array("q")  # per record: vCPU, -1 for none
        self.gfns = array("q")  # per record: the gfn it is about, -1 for none
        self.line_of = array("q")  # per record: its line number
        self.last_ts: float | None = None  # of the last timed record
        self.untimed = 0  # records before the first timed one
        # pid -> [the vCPU it took, then the records that took it]
        self.chains: dict[int, list[Any]] = {}
        self.open_chains: set[int] = set()  # ... and not yet ended by a vCPU field
        self.vmap: dict[int, Any] = {}  # thread -> vCPU at the end of the block
        # Packed (`pack`), as the block crosses to the importing process: the texts as
        # the %-template of their timeline lines (`line_form`), the ops that are not
        # None and their records' numbers; texts and ops are then None.
        self.form: str | None = None
        self.opk: list[int] | None = None
        self.opl: list[TraceOp] | None = None

    def pack(self) -> Block:
        """The block as it crosses between processes: one string instead of a string per
        record (made into the timeline's template here, in the parsing process, not in
        the importing one), no None per record without an op (pickling either costs
        as much as reading the line did)."""
        if self.form is None:
            texts, ops = self.texts, self.ops
            self.form = line_form(texts)
            self.opk = list(compress(range(len(ops)), ops))  # op tuples are never empty
            self.opl = list(filter(None, ops))
            self.texts = self.ops = None  # type: ignore[assignment]
        return self

    def unpack(self) -> Block:
        """`pack` undone: texts and ops per record again."""
        if self.form is not None:
            n = len(self.ts)
            self.texts = form_texts(self.form)
            ops: list[TraceOp | None] = [None] * n
            for k, op in zip(self.opk or (), self.opl or (), strict=True):
                ops[k] = op
            self.ops = ops
            self.form = self.opk = self.opl = None
        return self

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for k, v in zip(self.__slots__, state, strict=True):
            setattr(self, k, v)


def parse_block(task: BlockTask) -> Block:
    """Read one block: task = (data, src, first_line, settings); data is whole lines."""
    data, src, first_line, settings = task
    return _BlockParser.get(src, settings).parse(data, first_line).pack()


class _BlockParser:
    """Reads blocks of one file under one trace's settings (cached per process)."""

    _cache: ClassVar[dict[tuple[int, tuple[tuple[str, Any], ...]], _BlockParser]] = {}

    @classmethod
    def get(cls, src: int, settings: dict[str, Any]) -> _BlockParser:
        key = (src, tuple(sorted(settings.items())))
        p = cls._cache.get(key)
        if p is None:
            if len(cls._cache) > 64:
                cls._cache.clear()
            p = cls._cache[key] = cls(src, settings)
        return p

    def __init__(self, src: int, settings: dict[str, Any]) -> None:
        self.src = src
        self.decoder = Decoder(settings)
        self.shared_bit = self.decoder.shared_bit
        # Per row: the constant part of its timeline text for this file.
        self.consts = {
            tag: f',"e":"{fmt.event}","k":"{fmt.kind}","src":{src},"ln":'
            for tag, (fmt, _g, _c) in FAST_ROWS.items()
        }
        self.cpus: dict[str, tuple[int, str]] = {}
        self.pids: dict[str, int] = {}
        # Per row tag, what the fast path needs of it in one lookup: its groups, its
        # fields' converter, its kind's prepare (or None), its constant text, its kind.
        by_kind = self.decoder._by_kind
        self.fast_rows = {
            tag: (groups, conv, by_kind.get(fmt.kind), self.consts[tag], KIND_CODE[fmt.kind])
            for tag, (fmt, groups, conv) in FAST_ROWS.items()
        }

    def parse(self, data: bytes, first_line: int) -> Block:
        self.decoder.tdp_seen = False  # the blocks before are not known here
        b = Block(self.src, first_line)
        stats = FileStats("")
        reader = LineReader(self.src, stats)
        parts = _plain_lines(data)
        if parts is None:
            self._one_by_one(b, reader, stats, data)
        else:
            # No quote, backslash or byte outside ASCII in the whole block: every payload
            # is its JSON text between quotes once it is printable.
            plain = data.isascii() and b'"' not in data and b"\\" not in data
            self._fast(b, reader, stats, parts, plain)
        b.skipped = dict(stats.skipped)
        for k, v in stats.framings.items():
            b.framings[k] = b.framings.get(k, 0) + v
        b.recognised += stats.recognised
        b.vmap = reader.vcpu_by_pid
        return b

    # The reference path, for lines the fast path does not read (and whole blocks with
    # long lines, CRs or bad bytes).  `reader` carries the block's own state; what it
    # does not know (the time and thread map before the block) is tracked here.
    def _slow(self, b: Block, reader: LineReader, n: int, text: str, bad: bool) -> None:
        r = reader.line(n, text, bad)
        if r is None:
            return
        k = len(b.ops)
        pid = r.pid
        if pid is not None:
            if reader.vcpu_missed:
                b.chains[pid] = [r.vcpu, k]
                b.open_chains.add(pid)
            elif pid in b.open_chains:
                if r.fields.get("vcpu") is None:
                    b.chains[pid].append(k)
                else:
                    b.open_chains.discard(pid)
        if reader.timed:
            b.last_ts = r.ts
        elif b.last_ts is None:
            b.untimed += 1
        self.emit(b, r)

    def emit(self, b: Block, r: Record) -> None:
        """Append one record read the reference way to the block's columns."""
        gfn = event_gfn(r.kind, r.fields, self.shared_bit)
        b.texts.append(render(r, gfn))
        b.ops.append(self.decoder.prepare(r.kind, r.fields, r.pid, r.vcpu, r.ts))
        b.ts.append(r.ts)
        b.kinds.append(KIND_CODE.get(r.kind, 255))
        b.vcpus.append(-1 if r.vcpu is None else r.vcpu)
        b.gfns.append(-1 if gfn is None else gfn)
        b.line_of.append(r.line)
        b.events[r.event] = b.events.get(r.event, 0) + 1

    def _one_by_one(self, b: Block, reader: LineReader, stats: FileStats, data: bytes) -> None:
        """reader.lines's way: too long, CR, bad bytes decided per line."""
        n = b.first_line - 1
        for raw in data.split(b"\n")[:-1]:
            n += 1
            if len(raw) > MAX_LINE:
                stats.skipped["too_long"] += 1
                continue
            if raw[-1:] == b"\r":
                raw = raw[:-1]
            try:
                text, bad = raw.decode("utf-8"), False
            except UnicodeDecodeError:
                text, bad = raw.decode("utf-8", "replace"), True
            self._slow(b, reader, n, text, bad)
        b.lines = n - b.first_line + 1

    def _fast(
        self, b: Block, reader: LineReader, stats: FileStats, parts: list[str], plain: bool
    ) -> None:
        vmap = reader.vcpu_by_pid
        match = FAST_MATCH
        rows = self.fast_rows
        nmask = ~self.shared_bit
        cpus = self.cpus
        pids = self.pids
        texts = b.texts.append
        ops = b.ops.append
        tss = b.ts.append
        kinds = b.kinds.append
        vcpus = b.vcpus.append
        gfns = b.gfns.append
        line_of = b.line_of.append
        chains = b.chains
        open_chains = b.open_chains
        tag_list: list[int] = []  # per fast record, its row (counted at the end)
        tags = tag_list.append
        slow = self._slow
        n = b.first_line - 1
        fast = 0
        last_ts = None
        for text in parts:
            n += 1
            m = match(text)
            if m is not None:
                tag = m.lastindex
                assert tag is not None  # the fast pattern ends in a tag group
                groups, conv, prep, const, code = rows[tag]
                g = m.group(*groups)
                if "[" not in g[0]:
                    fields, gfn = conv(g, nmask)
                    ts_s = g[3]
                    ts = float(ts_s)
                    pid_s = g[1]
                    pid = pids.get(pid_s)
                    if pid is None:
                        pid = pids[pid_s] = int(pid_s)
                    cpu_s = g[2]
                    c = cpus.get(cpu_s)
                    if c is None:
                        c = cpus[cpu_s] = (int(cpu_s), str(int(cpu_s)))
                    vcpu = fields.get("vcpu")
                    if vcpu is not None:
                        vmap[pid] = vcpu
                        if open_chains and pid in open_chains:
                            open_chains.discard(pid)
                    else:
                        vcpu = vmap.get(pid, -1)
                        if vcpu == -1:
                            vcpu = vmap[pid] = vcpu_of_comm(g[0])
                            chains[pid] = [vcpu, len(b.ops)]
                            open_chains.add(pid)
                        elif open_chains and pid in open_chains:
                            chains[pid].append(len(b.ops))
                    last_ts = ts
                    fast += 1
                    if not ("." in ts_s and len(ts_s) <= 16 and ts_s[0] != "0" and ts_s[-1] != "0"):
                        ts_s = repr(ts)
                    payload = text[m.end() :]
                    if not (
                        payload.isprintable()
                        and (
                            plain
                            or (payload.isascii() and '"' not in payload and "\\" not in payload)
                        )
                    ):
                        payload = _dumps(payload)[1:-1]  # its JSON text, between the quotes
                    vcpu_j: object  # its JSON text, or the int that prints as it
                    gfn_j: object
                    if vcpu is None:
                        vcpus(-1)
                        vcpu_j = "null"
                    else:
                        vcpus(vcpu)
                        vcpu_j = vcpu
                    if gfn is None:
                        gfns(-1)
                        gfn_j = "null"
                    else:
                        gfns(gfn)
                        gfn_j = gfn
                    texts(
                        f'"t":{ts_s}{const}{n},"pid":{pid},"cpu":{c[1]},'
                        f'"vcpu":{vcpu_j},"g":{gfn_j},"p":"{payload}"'
                    )
                    ops(None if prep is None else prep(fields, pid, vcpu, ts))
                    tss(ts)
                    kinds(code)
                    line_of(n)
                    tags(tag)
                    continue
            if last_ts is not None:
                b.last_ts = reader.last_ts = last_ts
                last_ts = None
            slow(b, reader, n, text, False)
        if last_ts is not None:
            b.last_ts = last_ts
        b.lines = n - b.first_line + 1
        b.recognised += fast
        if fast:
            b.framings["ftrace"] = fast
        for tag, count in Counter(tag_list).items():
            e = FAST_ROWS[tag].fmt.event
            b.events[e] = b.events.get(e, 0) + count


def _plain_lines(whole: bytes) -> list[str] | None:
    """The lines of a block of whole lines when it is plain: UTF-8, no line longer
    than MAX_LINE bytes (a CR before each newline is dropped, as reader.lines does);
    None otherwise."""
    if b"\r" in whole:
        if any(len(b) > MAX_LINE for b in whole.split(b"\n")):
            return None  # the long line's length counts its CR
        whole = whole.replace(b"\r\n", b"\n")
    try:
        text = whole.decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = text.split("\n")
    parts.pop()  # after the last newline
    quarter = MAX_LINE // 4
    # A line of more than a quarter of MAX_LINE characters may be longer than MAX_LINE
    # in bytes: measure those.
    if (
        len(whole) > MAX_LINE
        and max(map(len, parts), default=0) > quarter
        and any(len(p.encode()) > MAX_LINE for p in parts if len(p) > quarter)
    ):
        return None
    return parts
