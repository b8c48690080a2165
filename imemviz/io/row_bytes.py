"""A state file's big row lists read straight from their JSON bytes, with array operations.

`imemviz.io.state_rows` reads a row list that `json.loads` turned into a million
Python lists and several million strings; making those objects is most of a
load.  This module reads the *bytes* of a row list instead (a `msgspec.Raw`
slice of the document, see `imemviz.io.state_fast`) when they are in the
form imemviz writes: compact, with fields that are ``"0x..."`` hex strings of
lowercase digits, known names (``"4K"``, ``"MAPPED"``), small decimal
integers, ``true`` or ``false``.  The bytes were already checked to be valid
JSON by the decoder, so only their shape is checked here.

It gives exactly what `state_rows`' quick path gives for the same rows, or
raises `NotCanonical` for anything else (spaces, escapes, upper-case or
unprefixed hex, ints where strings go, unknown names, numbers that do not fit
in 63 bits, rows of the wrong length...): the caller then reads the whole file
the general way, which accepts and refuses exactly what it did before, with
the same messages.  ``tests/test_row_bytes.py`` checks both paths agree.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from imemviz.io.state_rows import RowSpec

_I64 = np.int64


class NotCanonical(Exception):
    """The bytes are not in the form imemviz writes: read the document the general way."""


# Every byte a canonical row list holds; any other (space, backslash, '-', '.', '{', a
# non-ASCII byte...) sends the list to the general path.  With only these, a string
# holds letters, digits and '_', so '[', ']' and ',' are always structure.
_ALLOWED = ('[],"_' + string.ascii_letters + string.digits).encode()
_OPEN, _CLOSE, _COMMA, _QUOTE = b'[],"'
_CLASS = bytes(
    {_OPEN: 1, _CLOSE: 2, _COMMA: 3}.get(ch, 0 if ch in _ALLOWED else 255) for ch in range(256)
)
_DEPTH = np.array([0, 1, -1, 0], np.int8)  # by class: '[' opens, ']' closes
_HEX = np.full(256, 255, np.uint8)
_HEX[list(b"0123456789abcdef")] = np.arange(16, dtype=np.uint8)
_DEC = np.full(256, 255, np.uint8)
_DEC[list(b"0123456789")] = np.arange(10, dtype=np.uint8)


def parse_rows(
    raw: bytes | memoryview, spec: RowSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start, code, span, pfn, count, extra) of a canonical row list, as int64 arrays:
    what `state_rows`' quick path makes of the same rows.  Raises NotCanonical."""
    buf = bytes(raw)
    # One C pass classifies every byte: structure 1-3, other allowed 0, anything else 255.
    codes = buf.translate(_CLASS)
    if spec.value or b"\xff" in codes:
        raise NotCanonical
    b = np.frombuffer(buf, np.uint8)
    if len(b) < 2 or b[0] != _OPEN:
        raise NotCanonical  # not a list
    if len(b) == 2:
        z = np.zeros(0, _I64)
        return z, z, z, z, z, z
    cls = np.frombuffer(codes, np.uint8)
    pos = np.flatnonzero(cls)
    kind = cls[pos]
    depth = np.cumsum(_DEPTH[kind], dtype=np.int32)
    if depth.max() > 2:
        raise NotCanonical  # a list inside a row
    # Between the rows (depth 1) only bare separators: "],[" ; a scalar there is not a row.
    d1 = np.flatnonzero(depth[:-1] == 1)
    if np.any(pos[d1 + 1] - pos[d1] != 1):
        raise NotCanonical
    # A field follows every struct char that leaves depth 2: a row's '[' or a ',' in a row.
    f = np.flatnonzero(depth == 2)
    fs = pos[f] + 1
    fe = pos[f + 1]
    if np.any(fe <= fs):
        raise NotCanonical  # an empty row
    first = np.flatnonzero(kind[f] == 1)  # a row's '['
    lens = np.diff(np.append(first, len(f)))
    ncols = len(spec.columns)
    if lens.min() < spec.required or lens.max() > ncols:
        raise NotCanonical
    n = len(first)

    def field(j: int) -> tuple[np.ndarray, np.ndarray]:
        """Where field j of every row starts and ends (a required column)."""
        idx = first + j
        return fs[idx], fe[idx]

    def optional(j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows that have column j, and where their field j starts and ends."""
        rows = np.flatnonzero(lens > j)
        idx = first[rows] + j
        return rows, fs[idx], fe[idx]

    s, e = field(0)
    start = _hex(b, s, e)
    if spec.byte_addr:
        if np.any(start & 0xFFF):
            raise NotCanonical
        start >>= 12
    j = 1
    if spec.size:
        s, e = field(1)
        if spec.size == "order":
            code = _lookup(_dec(b, s, e), {int(k): c for k, (c, _sp) in spec.sizes.items()})
        else:
            code = _names(b, s, e, {str(k).encode(): c for k, (c, _sp) in spec.sizes.items()})
        span = spec.spans_of(code)
        j = 2
    else:
        code = np.zeros(n, _I64)
        span = np.ones(n, _I64)
    pfn = np.zeros(n, _I64)
    if spec.pfn:
        s, e = field(j)
        pfn = _hex(b, s, e)
        j += 1
    cnt = np.ones(n, _I64)
    rows, s, e = optional(j)
    if len(rows):
        cnt[rows] = _dec(b, s, e)
    j += 1
    extra = np.zeros(n, _I64)
    rows, s, e = optional(j)
    if len(rows):
        if spec.flag == "hwpoison":
            extra[rows] = _bools(b, s, e)
        else:
            extra[rows] = _names(b, s, e, {k.encode(): v for k, v in spec.flags.items()})
    return start, code, span, pfn, cnt, extra


def _hex(b: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Fields that are "0x" + 1 to 16 lowercase hex digits, below 2**63, as int64."""
    if not len(s):
        return np.zeros(0, _I64)
    d = e - s - 4  # the digits: all but '"0x' and '"'
    if d.min() < 1 or d.max() > 16:
        raise NotCanonical
    if np.any(b[s] != _QUOTE) or np.any(b[s + 1] != ord("0")) or np.any(b[s + 2] != ord("x")):
        raise NotCanonical
    n = len(s)
    v = np.zeros(n, np.uint64)
    at = e - 2  # the last digit; moves left one digit a round
    ch, nib, wide = np.empty(n, np.uint8), np.empty(n, np.uint8), np.empty(n, np.uint64)
    every = int(d.min())
    for i in range(int(d.max())):  # digit i from the right, weight 16**i
        np.take(b, at, out=ch)  # (buffers reused: a million-row temp costs page faults)
        np.take(_HEX, ch, out=nib)
        if i >= every:  # not every field has this digit
            has = d > i
            if np.any(has & (nib == 255)):
                raise NotCanonical
            nib[~has] = 0
        elif nib.max() == 255:
            raise NotCanonical
        wide[...] = nib
        v |= np.left_shift(wide, np.uint64(4 * i), out=wide)
        np.subtract(at, 1, out=at)
    if np.any(v >> np.uint64(63)):
        raise NotCanonical  # beyond int64: the general path says where
    return v.view(_I64)


def _dec(b: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Fields that are JSON integers of 1 to 18 digits (no sign), as int64."""
    if not len(s):
        return np.zeros(0, _I64)
    d = e - s
    if d.max() > 18:
        raise NotCanonical
    v = np.zeros(len(s), _I64)
    for i in range(int(d.max())):
        has = d > i
        dig = _DEC[b[e - 1 - i]]
        if np.any(has & (dig == 255)):
            raise NotCanonical  # a string, a float, true/false, null
        v += np.where(has, dig, 0).astype(_I64) * 10**i
    return v


def _names(b: np.ndarray, s: np.ndarray, e: np.ndarray, names: dict[bytes, int]) -> np.ndarray:
    """Fields that are one of the JSON strings `names`, as their codes."""
    out = np.empty(len(s), _I64)
    left = np.arange(len(s))  # the fields not matched yet
    for name, c in names.items():
        q = b'"' + name + b'"'
        sel = (e[left] - s[left]) == len(q)
        cand = left[sel]
        ok = np.ones(len(cand), bool)
        at = s[cand]
        for t, ch in enumerate(q):
            ok &= b[at + t] == ch
        out[cand[ok]] = c
        sel[sel] = ok
        left = left[~sel]
    if len(left):
        raise NotCanonical
    return out


def _lookup(values: np.ndarray, codes: dict[int, int]) -> np.ndarray:
    lut = np.full(max(codes) + 1, -1, _I64)
    for k, c in codes.items():
        lut[k] = c
    if len(values) and (values.max() >= len(lut) or np.any(lut[values] < 0)):
        raise NotCanonical
    out: np.ndarray = lut[values]
    return out


def _bools(b: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Fields that are true or false (valid JSON: a 4-byte 't...' field is true)."""
    length = e - s
    true = (length == 4) & (b[s] == ord("t"))
    false = (length == 5) & (b[s] == ord("f"))
    if not np.all(true | false):
        raise NotCanonical
    out: np.ndarray = true.astype(_I64)
    return out


# ------------------------------------------------------------------ writing


_HEX_CHARS = np.frombuffer(b"0123456789abcdef", np.uint8)
_DEC_CHARS = np.frombuffer(b"0123456789", np.uint8)
_HEX_TOP = np.array([1 << (4 * k) for k in range(1, 16)], np.int64)  # 16, 256, ...
_DEC_TOP = np.array([10**k for k in range(1, 19)], np.int64)


class Column:
    """One column of rows to write: "hex" ("0x1f4a7"), "int" (512) or "name" (codes into
    `names`, each the field's JSON text: b'"4K"', b'true'); `present`: which rows have
    it (trailing columns), None for all."""

    __slots__ = ("kind", "names", "present", "values")

    def __init__(
        self,
        kind: str,
        values: np.ndarray,
        present: np.ndarray | None = None,
        names: tuple[bytes, ...] = (),
    ) -> None:
        self.kind = kind
        self.values = np.asarray(values, _I64)
        self.present = present
        self.names = names


def rows_json(cols: list[Column]) -> bytes:
    """The compact JSON text of the row list, byte for byte what json.dumps(rows,
    separators=(",", ":")) gives for the same rows (columns in order; a present column
    is present in every row that has a later one).  Values are not negative."""
    n = len(cols[0].values)
    if n == 0:
        return b"[]"
    lengths: list[np.ndarray] = []
    for c in cols:
        v = c.values
        if c.kind == "hex":
            length = 5 + np.searchsorted(_HEX_TOP, v, side="right")  # '"0x' digits '"'
        elif c.kind == "int":
            length = 1 + np.searchsorted(_DEC_TOP, v, side="right")
        else:
            length = np.array([len(t) for t in c.names], _I64)[v]
        if c.present is not None:
            length = np.where(c.present, length + 1, 0)  # with its ',' before it
        elif lengths:
            length = length + 1
        lengths.append(length)
    row_len = 2 + np.sum(lengths, axis=0)  # '[' fields ']'
    ends = np.cumsum(row_len + 1)  # each row and the ',' (or final ']') after it
    starts = ends - row_len - 1 + 1  # the outer '[' comes first
    out = np.empty(int(ends[-1]) + 1, np.uint8)
    out[0] = _OPEN
    out[starts] = _OPEN
    out[starts + row_len - 1] = _CLOSE
    out[starts[:-1] + row_len[:-1]] = _COMMA
    out[-1] = _CLOSE
    cursor = starts + 1
    for j, c in enumerate(cols):
        rows = np.arange(n) if c.present is None else np.flatnonzero(c.present)
        at = cursor[rows]
        if j:
            out[at] = _COMMA
            at = at + 1
        _write(out, at, c, c.values[rows])
        cursor = cursor + lengths[j]
    return out.tobytes()


def _write(out: np.ndarray, at: np.ndarray, c: Column, v: np.ndarray) -> None:
    if c.kind == "name":
        for code, text in enumerate(c.names):
            where = at[v == code]
            for t, ch in enumerate(text):
                out[where + t] = ch
        return
    if c.kind == "hex":
        out[at] = _QUOTE
        out[at + 1] = ord("0")
        out[at + 2] = ord("x")
        top, base, chars, skip = _HEX_TOP, 16, _HEX_CHARS, 3
    else:
        top, base, chars, skip = _DEC_TOP, 10, _DEC_CHARS, 0
    nd = 1 + np.searchsorted(top, v, side="right")
    # Digit i from the right sits at at + skip + nd - 1 - i; rows with more digits first.
    order = np.argsort(-nd, kind="stable")
    nd_sorted = nd[order]
    last = (at + skip + nd - 1)[order]
    rest = v[order]
    for i in range(int(nd_sorted[0]) if len(nd_sorted) else 0):
        k = int(np.searchsorted(-nd_sorted, -i, side="left"))  # rows with nd > i
        out[last[:k] - i] = chars[rest[:k] % base]
        rest[:k] //= base
    if c.kind == "hex":
        out[at + skip + nd] = _QUOTE


class RawRows:
    """A row list already written as JSON (`rows_json`), for the state encoder to splice in."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = text
