"""The import's reading of a plain ASCII block at once: one regex pass, fields as columns.

scanner._BlockParser reads a block of whole lines.  Its per-line loop (match one
line, convert its fields into a dict, decode the op, format the timeline text)
cost ~8 µs of Python a line.  Here a block of ASCII text is read in bulk:

- one `findall` of `_ROUTE` over the block (the framing and the event name of every line), then one `findall` per event over its lines' payloads (scanner's row patterns); formerly: the fused pattern of
  scanner.py (the tracefs framing in an atomic group, then a branch per event
  name, then per row of it a lookahead with the row's pattern and a tag group),
  in MULTILINE mode, with a last alternative `.*` so that *every* line gives
  exactly one match, in order: match k is line k, its `lastindex` the row that
  read it (or the catch-all: the line goes to reader.LineReader, as before);
- the rows' matches gathered per row and their fields converted as whole
  columns (`int` mapped over a column, SPTEs and fault error codes decoded with
  numpy), the ops and the timeline texts built per row from the columns;
- one loop in line order carries what depends on the lines before: the vCPU of
  each thread (and the block's chains, scanner.Block), the last time, and the
  lines the pattern did not read (reader.LineReader, the reference reading).

Why the multiline pattern reads each line as the per-line one does: the rows'
patterns hold nothing that can match a newline (`_SAFE` checks it: no `\\s`,
`[^`, `\\D`, `\\W`, anchors or lookarounds; `.`, `\\S`, `\\w`, `\\d` and
literal characters never match one), the framing's and the trailing `\\s*` are
written `[^\\S\\n]*` (white space within the line, what `\\s*` can match in a
line that holds no newline) and `$` before a newline is where the line ends.
An event with a row that is not safe is left to the catch-all.  The block must
be ASCII so that positions, `\\d` and `str.isprintable` mean what they do per
line; any other block goes through scanner's per-line loop.
tests/trace/test_block_scan.py holds the two readings equal line for line.
"""

from __future__ import annotations

import re
from itertools import repeat
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from imemviz.io.trace import decode
from imemviz.io.trace.events import FAULT, KIND_CODE, SET_SPTE, SPTE, TraceOp, fault_line, span
from imemviz.io.trace.formats import _hex
from imemviz.io.trace.framing import vcpu_of_comm
from imemviz.io.trace.scanner import _FAST_PREFIX, _NFRAME, FAST_ROWS, _optional_groups, text_json

if TYPE_CHECKING:
    from imemviz.io.trace.reader import LineReader, Record
    from imemviz.io.trace.scanner import Block, _BlockParser

# Constructs a row's pattern may hold for BLOCK_RX to read it as the per-line one does.
_UNSAFE = re.compile(r"\\[sDWbBAZn]|\[\^|\(\?[=!<#]|[$^]|\(\?[a-zA-OQ-Z]")


def _safe(pattern: str) -> bool:
    return _UNSAFE.search(pattern) is None


# scanner's tracefs framing (scanner._FAST_PREFIX) with its white space kept within a line.
assert _FAST_PREFIX.startswith(r"(?>\s*")
_PREFIX_RX = r"(?>[^\S\n]*" + _FAST_PREFIX[len(r"(?>\s*") :]
_PREFIX = re.compile(_PREFIX_RX)
assert _PREFIX.groups == _NFRAME
# One match a line, in order: (comm, pid, cpu, ts, event, the text after "event:"), or
# empty strings for a line without this framing.
_ROUTE = re.compile(r"(?m)^(?:" + _PREFIX_RX + r"([A-Za-z_]\w*):(.*)|.*)$")


class _RowPlan:
    """How the lines one fast row read become records, column by column."""

    __slots__ = ("by_line", "conv", "fmt", "kcode", "kind", "names", "tag", "types", "vcpu_at")

    def __init__(self, fmt: Any, tag: int, conv: Any) -> None:
        self.tag = tag  # its tag group in scanner's fast pattern (FAST_ROWS' key)
        self.fmt = fmt
        self.kind = fmt.kind
        self.kcode = KIND_CODE[fmt.kind]
        self.conv = conv  # scanner's converter: (fields, gfn) of one line's groups
        # A row with optional fields goes through that converter one line at a time.
        self.by_line = bool(_optional_groups(fmt.regex))
        self.names = [n for n, _c in fmt.converters]
        self.types = [c for _n, c in fmt.converters]
        self.vcpu_at = self.names.index("vcpu") if "vcpu" in self.names else -1


def _column(col: tuple[str, ...], c: Any) -> list[Any]:
    """One field's column converted as formats.FIELD_TYPES says."""
    if c is int:
        return list(map(int, col))
    if c is _hex:
        return list(map(int, col, repeat(16)))
    if c is str:
        return list(col)
    return list(map(c, col))


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # ASCII not printable, but "\n"
_SPTE_KINDS = np.array([decode.NONE, decode.TABLE, decode.LEAF, decode.FROZEN], dtype=object)
_U = np.uint64


def _spte_columns(values: list[int], levels: list[int]) -> tuple[list[str], list[Any]] | None:
    """decode.spte_tuple (modern layout) over whole columns: (kinds, pfns); None when a
    value does not fit in 64 bits (the caller then decodes one by one)."""
    try:
        v = np.array(values, dtype=_U)
    except OverflowError:
        return None
    lv = np.array(levels, dtype=np.int64)
    frozen = (v == _U(0x5A0)) | (v == _U(decode.SHADOW_NONPRESENT_VALUE | 0x5A0))
    present = (v & _U(decode.SPTE_MMU_PRESENT)) != 0
    leaf = (lv == 1) | ((v & _U(decode.PT_PAGE_SIZE)) != 0)
    code = np.where(frozen, 3, np.where(~present, 0, np.where(leaf, 2, 1)))
    pfn = ((v & _U(decode.PFN_MASK)) >> _U(12)).astype(object)
    pfn[(code == 0) | (code == 3)] = None
    return _SPTE_KINDS[code].tolist(), pfn.tolist()


def _objects(n: int) -> Any:
    return np.full(n, None, dtype=object)


class _Rows(NamedTuple):
    """The lines of one block one row read, and their columns."""

    plan: _RowPlan
    idx: list[int]  # the lines (0 = the block's first)
    cols: list[Any]  # by column: comm, pid, cpu, ts, the fields (None: absent), the payload
    pids: list[int]
    vcpus: list[int] | None  # the vCPU field, when the row has one


class _Event:
    """The fast rows of one event, and how to read their payloads at once.

    scanner's fused pattern, after the framing, reads `event:`, then `\\s*` and the
    first row whose pattern (and trailing white space) reaches the end of the line,
    `\\s*` giving back a space at a time when none does.  `rx` does the same over the
    texts after `event:` of many lines (one a line), each row's group capturing what
    scanner calls the payload; a line no row reads matches the catch-all.
    """

    def __init__(self, plans: list[_RowPlan]) -> None:
        self.plans = plans
        alts = []
        self.spans: list[tuple[int, int]] = []  # per row: its fields and payload in a tuple
        g = 0
        for plan in plans:
            pat = re.sub(r"\(\?P<\w+>", "(", plan.fmt.pattern)
            alts.append(f"({pat}[^\\S\\n]*)$")
            self.spans.append((g + 1, g))
            g += len(plan.names) + 1
        self.rx = re.compile(r"(?m)^(?:[^\S\n]*(?:" + "|".join(alts) + r")|.*)$")
        # findall gives "" for a group that did not take part: only rows whose groups
        # always take part, and whose payload is never empty, can be read by it.
        self.by_findall = all(
            not p.by_line and re.fullmatch(re.sub(r"\(\?P<\w+>", "(", p.fmt.pattern), "") is None
            for p in plans
        )

    def read(
        self, frames: list[tuple[str, ...]], idx: list[int]
    ) -> list[tuple[_RowPlan, list[int], list[Any]]]:
        """Of the lines `idx` (their _ROUTE tuples `frames`), those each row reads: (row,
        its lines, their columns: comm, pid, cpu, ts, the fields, the payload)."""
        out: list[tuple[_RowPlan, list[int], list[Any]]] = []
        sub = "\n".join([f[5] for f in frames])
        if self.by_findall:
            got = self.rx.findall(sub)
            assert len(got) == len(idx)
            if len(self.plans) == 1:
                if not all(t[0] for t in got):
                    keep = [j for j, t in enumerate(got) if t[0]]
                    idx = [idx[j] for j in keep]
                    got = [got[j] for j in keep]
                    frames = [frames[j] for j in keep]
                if got:
                    f = list(zip(*frames, strict=True))
                    t = list(zip(*got, strict=True))
                    out.append((self.plans[0], idx, [*f[:4], *t[1:], t[0]]))
                return out
            which = [_row_of(t, self.spans) for t in got]
            for r, plan in enumerate(self.plans):
                sel = [j for j, w in enumerate(which) if w == r]
                if not sel:
                    continue
                a, z = self.spans[r]
                f = list(zip(*[frames[j] for j in sel], strict=True))
                t = list(zip(*[got[j] for j in sel], strict=True))
                out.append(
                    (plan, [idx[j] for j in sel], [*f[:4], *t[a : a + len(plan.names)], t[z]])
                )
            return out
        # Rows with optional fields: a match object a line (None for an absent field).
        per: dict[int, tuple[list[int], list[tuple[Any, ...]]]] = {}
        for j, m in enumerate(self.rx.finditer(sub)):
            for r, (a, z) in enumerate(self.spans):
                if m.group(z + 1) is not None:
                    g = (
                        (
                            *frames[j][:4],
                            *m.group(*range(a + 1, a + 1 + len(self.plans[r].names))),
                            m.group(z + 1),
                        )
                        if self.plans[r].names
                        else (*frames[j][:4], m.group(z + 1))
                    )
                    lines, gs = per.setdefault(r, ([], []))
                    lines.append(idx[j])
                    gs.append(g)
                    break
        for r, (lines, gs) in sorted(per.items()):
            out.append((self.plans[r], lines, list(zip(*gs, strict=True))))
        return out


def _row_of(t: tuple[str, ...], spans: list[tuple[int, int]]) -> int:
    """Which row read a findall tuple (-1: none): the first whose payload is not empty."""
    for r, (_a, z) in enumerate(spans):
        if t[z]:
            return r
    return -1


class BlockScan:
    """Reads plain ASCII blocks for one scanner._BlockParser (its file and settings)."""

    def __init__(self, parser: _BlockParser) -> None:
        self.parser = parser
        self.route = _ROUTE
        by_event: dict[str, list[tuple[int, _RowPlan]]] = {}
        for tag, (fmt, _groups, conv) in sorted(FAST_ROWS.items()):  # the table's order
            by_event.setdefault(fmt.event, []).append((tag, _RowPlan(fmt, tag, conv)))
        self.events = {
            e: _Event([p for _t, p in plans])
            for e, plans in by_event.items()
            if all(_safe(p.fmt.pattern) for _t, p in plans) and re.fullmatch(r"[A-Za-z_]\w*", e)
        }
        d = parser.decoder
        self.vendor = d.vendor
        self.layout = d.layout
        self.shared_bit = d.shared_bit

    def parse(self, b: Block, reader: LineReader, parts: list[str], text: str) -> bool:
        """Read the block's lines (`parts`; `text`, the same lines each ended by a newline)
        into `b`, as scanner._BlockParser._fast does; False, with nothing done, when the
        pattern did not give one match a line (it always should)."""
        nl = len(parts)
        frames = self.route.findall(text)
        if len(frames) != nl + 1:
            return False
        by_event: dict[str, tuple[list[int], list[tuple[str, ...]]]] = {}
        for k in range(nl):
            f = frames[k]
            e = f[4]
            if e:
                got = by_event.get(e)
                if got is None:
                    by_event[e] = ([k], [f])
                else:
                    got[0].append(k)
                    got[1].append(f)
        pids = self.parser.pids
        rows: list[_Rows] = []
        for e, (idx, fs) in by_event.items():
            ev = self.events.get(e)
            if ev is None:
                continue  # no fast row: the reader reads it
            for plan, at, cols in ev.read(fs, idx):
                if any("[" in c for c in cols[0]):
                    keep = [j for j, c in enumerate(cols[0]) if "[" not in c]
                    if not keep:
                        continue
                    at = [at[j] for j in keep]
                    cols = [[c[j] for j in keep] for c in cols]
                pcol = [pids.get(s) or _pid(pids, s) for s in cols[1]]
                vcol = list(map(int, cols[4 + plan.vcpu_at])) if plan.vcpu_at >= 0 else None
                rows.append(_Rows(plan, at, cols, pcol, vcol))
        rows.sort(key=lambda r: r.idx[0])  # rows in the order they first appear
        # Per line: read here (its row's pid and vCPU field), or by the reader.
        fast = [False] * nl
        pid_of: list[Any] = [None] * nl
        vf_of: list[Any] = [None] * nl
        if len(rows) == 1 and len(rows[0].idx) == nl:
            r0 = rows[0]
            fast = [True] * nl
            pid_of = r0.pids
            if r0.vcpus is not None:
                vf_of = r0.vcpus
        elif rows:
            at = np.array([k for r in rows for k in r.idx], dtype=np.int64)
            fa = np.zeros(nl, dtype=bool)
            fa[at] = True
            fast = fa.tolist()
            pa = np.full(nl, None, dtype=object)
            pa[at] = [p for r in rows for p in r.pids]
            pid_of = pa.tolist()
            if any(r.vcpus is not None for r in rows):
                va = np.full(nl, None, dtype=object)
                for r in rows:
                    if r.vcpus is not None:
                        va[r.idx] = r.vcpus
                vf_of = va.tolist()

        def comm_at(k: int) -> str:
            return frames[k][0]

        def ts_at(k: int) -> float:
            return float(frames[k][3])

        # In line order: the vCPU of each thread (and the block's chains), the last time,
        # and the lines read the reference way.
        vmap = reader.vcpu_by_pid
        chains = b.chains
        open_chains = b.open_chains
        vcpu_of: list[Any] = [None] * nl
        slow: dict[int, Record] = {}
        rec = len(b.ops)
        last = -1  # the last line read here since the last the reader read
        first = b.first_line
        for k in range(nl):
            if fast[k]:
                pid = pid_of[k]
                vcpu = vf_of[k]
                if vcpu is not None:
                    vmap[pid] = vcpu
                    if open_chains and pid in open_chains:
                        open_chains.discard(pid)
                else:
                    vcpu = vmap.get(pid, -1)
                    if vcpu == -1:
                        vcpu = vmap[pid] = vcpu_of_comm(comm_at(k))
                        chains[pid] = [vcpu, rec]
                        open_chains.add(pid)
                    elif open_chains and pid in open_chains:
                        chains[pid].append(rec)
                vcpu_of[k] = vcpu
                last = k
                rec += 1
                continue
            if last >= 0:
                b.last_ts = reader.last_ts = ts_at(last)
                last = -1
            r = reader.line(first + k, parts[k], False)
            if r is None:
                continue
            pid = r.pid
            if pid is not None:
                if reader.vcpu_missed:
                    chains[pid] = [r.vcpu, rec]
                    open_chains.add(pid)
                elif pid in open_chains:
                    if r.fields.get("vcpu") is None:
                        chains[pid].append(rec)
                    else:
                        open_chains.discard(pid)
            if reader.timed:
                b.last_ts = r.ts
            elif b.last_ts is None:
                b.untimed += 1
            slow[k] = r
            rec += 1
        if last >= 0:
            b.last_ts = ts_at(last)
        # The records: per row as columns, put at their lines, then in line order.  The
        # block is ASCII: printable but for its newlines, and without '"' or '\\', no
        # payload in it needs escaping.
        plain = '"' not in text and "\\" not in text and _CONTROL.search(text) is None
        ts_of: list[Any] = [None] * nl
        text_of: list[Any] = [None] * nl
        op_of: list[Any] = [None] * nl
        gfn_of: list[Any] = [None] * nl
        kind_of = bytearray(nl)
        nfast = 0
        counts: list[tuple[str, int]] = []
        if len(rows) == 1 and len(rows[0].idx) == nl:
            ts_of, text_of, op_of, gfn_of = self._records(rows[0], first, vcpu_of, plain)
            kind_of = bytearray([rows[0].plan.kcode]) * nl
        else:
            at_all = []
            cols4: list[list[Any]] = [[], [], [], []]
            for r in rows:
                got = self._records(r, first, [vcpu_of[k] for k in r.idx], plain)
                at_all.extend(r.idx)
                for c, g in zip(cols4, got, strict=True):
                    c.extend(g)
                for k in r.idx:
                    kind_of[k] = r.plan.kcode
            if at_all:
                at = np.array(at_all, dtype=np.int64)
                for j, dest in enumerate((ts_of, text_of, op_of, gfn_of)):
                    arr = np.full(nl, None, dtype=object)
                    arr[at] = cols4[j]
                    dest[:] = arr.tolist()
        for r in rows:
            nfast += len(r.idx)
            counts.append((r.plan.fmt.event, len(r.idx)))
        events = b.events
        if slow:
            parser = self.parser
            for k, r in slow.items():
                one = type(b)(b.src, first + k)
                parser.emit(one, r)
                text_of[k] = one.texts[0]
                op_of[k] = one.ops[0]
                ts_of[k] = r.ts
                vcpu_of[k] = r.vcpu
                gfn_of[k] = None if one.gfns[0] == -1 else one.gfns[0]
                kind_of[k] = one.kinds[0]
                events[r.event] = events.get(r.event, 0) + 1
        for e, c in counts:
            events[e] = events.get(e, 0) + c
        if nfast == nl:
            b.texts.extend(text_of)
            b.ops.extend(op_of)
            b.ts.extend(ts_of)
            b.kinds.extend(kind_of)
            b.vcpus.extend([-1 if v is None else v for v in vcpu_of])
            b.gfns.extend([-1 if g is None else g for g in gfn_of])
            b.line_of.extend(range(first, first + nl))
        else:
            keep = [k for k in range(nl) if fast[k] or k in slow]
            b.texts.extend([text_of[k] for k in keep])
            b.ops.extend([op_of[k] for k in keep])
            b.ts.extend([ts_of[k] for k in keep])
            b.kinds.extend(bytes([kind_of[k] for k in keep]))
            b.vcpus.extend([-1 if vcpu_of[k] is None else vcpu_of[k] for k in keep])
            b.gfns.extend([-1 if gfn_of[k] is None else gfn_of[k] for k in keep])
            b.line_of.extend([first + k for k in keep])
        b.lines = nl
        b.recognised += nfast
        if nfast:
            b.framings["ftrace"] = b.framings.get("ftrace", 0) + nfast
        return True

    def _records(
        self, r: _Rows, first: int, vcpus: list[Any], plain: bool
    ) -> tuple[list[float], list[str], list[TraceOp | None], list[Any]]:
        """One row's records (at lines r.idx): times, timeline texts, ops and gfns.
        `plain`: no payload needs escaping in JSON (scanner.text_json's test)."""
        plan = r.plan
        parser = self.parser
        cols = r.cols
        pids = r.pids
        tcol = cols[3]
        tss = list(map(float, tcol))
        kind = plan.kind
        nmask = ~self.shared_bit
        ops: list[TraceOp | None]
        if plan.by_line:
            pairs = [plan.conv(g, nmask) for g in zip(*cols, strict=True)]
            gfns = [p[1] for p in pairs]
            prepare = parser.decoder.prepare
            ops = [
                prepare(kind, p[0], pid, v, t)
                for p, pid, v, t in zip(pairs, pids, vcpus, tss, strict=True)
            ]
        else:
            names = plan.names
            fields = [_column(cols[4 + j], c) for j, c in enumerate(plan.types)]
            gfns = _gfns(kind, names, fields, nmask, len(pids))
            ops = self._ops(kind, names, fields, pids, vcpus, tss)
        # The timeline text, "t" to "p": scanner._BlockParser._fast's, over columns.
        tsj = [
            s if len(s) <= 16 and s[0] != "0" and s[-1] != "0" else repr(t)
            for s, t in zip(tcol, tss, strict=True)
        ]
        cpus = parser.cpus
        ccol = [(cpus.get(s) or _cpu(cpus, s))[1] for s in cols[2]]
        pay = cols[-1]
        pjs: Any
        if plain:
            pjs, q = pay, '"'
        else:
            pjs, q = [text_json(p) for p in pay], ""
        const = parser.consts[plan.tag]
        texts = [
            f'"t":{tj}{const}{first + k},"pid":{pid},"cpu":{c},"vcpu":{"null" if v is None else v},'
            f'"g":{"null" if g is None else g},"p":{q}{p}{q}'
            for tj, k, pid, c, v, g, p in zip(tsj, r.idx, pids, ccol, vcpus, gfns, pjs, strict=True)
        ]
        return tss, texts, ops, gfns

    def _ops(
        self,
        kind: str,
        names: list[str],
        fields: list[list[Any]],
        pids: list[Any],
        vcpus: list[Any],
        tss: list[float],
    ) -> list[TraceOp | None]:
        """events.Decoder.prepare over columns: the hot kinds by column, the rest by line."""
        col = dict(zip(names, fields, strict=True))
        n = len(pids)
        modern = self.layout == "modern"
        if kind == "spte" and modern:
            levels = col["level"]
            old = _spte_columns(col["old_spte"], levels)
            new = _spte_columns(col["new_spte"], levels)
            if old is not None and new is not None:
                return list(
                    zip(
                        repeat(SPTE, n),
                        pids,
                        col["as_id"],
                        col["gfn"],
                        levels,
                        old[0],
                        old[1],
                        new[0],
                        new[1],
                        strict=True,
                    )
                )
        elif kind == "set_spte" and modern:
            levels = col["level"]
            got = _spte_columns(col["spte"], levels)
            if got is not None:
                leaf = decode.LEAF
                return [
                    (SET_SPTE, pid, g & ~(span(lv) - 1), lv, pfn) if k == leaf else None
                    for k, pfn, pid, g, lv in zip(
                        got[0], got[1], pids, col["gfn"], levels, strict=True
                    )
                ]
        elif kind == "fault":
            vendor, sb = self.vendor, self.shared_bit
            ft = decode.fault_tuple
            out: list[TraceOp | None] = []
            add = out.append
            for pid, v, t, gpa, ec in zip(
                pids, vcpus, tss, col["gpa"], col["error_code"], strict=True
            ):
                gfn, write, _f, private, _r = ft(vendor, gpa, ec, sb)
                add((FAULT, pid, gfn, private, fault_line(v, gpa, ec, gfn, write, private, t)))
            return out
        prepare = self.parser.decoder.prepare
        return [
            prepare(kind, dict(zip(names, vals, strict=True)), pid, v, t)
            for vals, pid, v, t in zip(zip(*fields, strict=True), pids, vcpus, tss, strict=True)
        ]


def _gfns(kind: str, names: list[str], fields: list[list[Any]], nmask: int, n: int) -> list[Any]:
    """observed.event_gfn over columns (scanner._converter's rule)."""
    if "gfn" in names:
        return fields[names.index("gfn")]
    if "gpa" in names:
        return [(g & nmask) >> 12 for g in fields[names.index("gpa")]]
    if kind == "attributes":
        return fields[names.index("start")]
    if kind in ("convert", "memory_fault"):
        return [s >> 12 for s in fields[names.index("start")]]
    return [None] * n


def _pid(pids: dict[str, int], s: str) -> int:
    v = pids[s] = int(s)
    return v


def _cpu(cpus: dict[str, tuple[int, str]], s: str) -> tuple[int, str]:
    c = cpus[s] = (int(s), str(int(s)))
    return c
