"""Reading the row lists of a state document (leaves, folios, host pages, blocks, contents).

A row list is ``[[start, size?, pfn?, value?, count?, flag?], ...]`` (which
columns exist depends on the list, see `RowSpec`), sorted by start, runs not
overlapping.  `read_rows` parses a whole list column by column into numpy
arrays and checks it with array operations; only when something is wrong
does it walk the rows one by one, to name the row and the problem.  So a
million valid rows cost a few list comprehensions, and a bad one still gets
a precise ``$.mappings.private[123456].pfn: ...`` message.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple

import attrs
import msgspec
import numpy as np

from imemviz.io.row_bytes import NotCanonical, parse_rows
from imemviz.io.state_fields import address, count, enum, fail, integer, wrong
from imemviz.model.sparse import SparseIndex


@attrs.frozen
class RowSpec:
    """The columns of one kind of row list.

    `start` names column 0 (an address; `byte_addr`: a byte address whose
    page is the start).  `size`, when set, is column 1: "level" names
    ("4K", ...) or "order" integers, mapped by `sizes` to (code, span in
    pages).  Then `pfn` and `value` columns if present; these are the
    required ones.  Then the optional `count` (default 1) and `flag`
    ("state", names mapped by `flags`, default 0, or "hwpoison", a boolean).
    """

    what: str
    start: str
    size: str | None = None
    sizes: Mapping[Any, tuple[int, int]] = attrs.field(factory=dict)
    pfn: bool = False
    value: bool = False
    flag: str | None = None
    flags: Mapping[str, int] = attrs.field(factory=dict)
    byte_addr: bool = False
    align_pfn: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        cols = [self.start]
        if self.size:
            cols.append(self.size)
        if self.pfn:
            cols.append("pfn")
        if self.value:
            cols.append("value")
        cols.append("count")
        if self.flag:
            cols.append(self.flag)
        return tuple(cols)

    @property
    def required(self) -> int:
        return 1 + bool(self.size) + self.pfn + self.value

    def spans_of(self, code: np.ndarray) -> np.ndarray:
        """The span in pages of each row, from its size code."""
        spans = np.zeros(max(c for c, _sp in self.sizes.values()) + 1, np.int64)
        for c, sp in self.sizes.values():
            spans[c] = sp
        out: np.ndarray = spans[code]
        return out


class Rows(NamedTuple):
    """A checked row list as int64 arrays (start in pages; code: level/order; extra: value/flag)."""

    start: np.ndarray
    code: np.ndarray
    span: np.ndarray
    pfn: np.ndarray
    count: np.ndarray  # type: ignore[assignment]  # shadows tuple.count; nothing calls that
    extra: np.ndarray

    @property
    def end(self) -> np.ndarray:
        end: np.ndarray = self.start + self.count * self.span
        return end


class _Slow(Exception):
    """The quick parse met something it does not handle: read row by row."""


_I64 = np.int64


def read_rows(
    rows: Any,
    path: str,
    spec: RowSpec,
    *,
    limit: int,
    beyond: str,
    npages: int,
    pfn_beyond: str,
    max_rows: int,
) -> Rows:
    """Parse and check one row list; raise StateError naming the row and the problem.

    `limit` bounds start + count*span (in pages); pfns run below `npages`.
    """
    if isinstance(rows, msgspec.Raw):
        # The row list's JSON bytes (state_fast): read by array operations, or NotCanonical.
        fast = Rows(*parse_rows(rows, spec))
        if len(fast.count) > max_rows or _bad_rows(fast, spec, limit, npages) is not None:
            raise NotCanonical  # the general path names the row
        return _no_overlap(fast, path, spec)
    if type(rows) is not list:
        wrong(path, f"a list of [{', '.join(spec.columns)}] rows", rows)
    if len(rows) > max_rows:
        fail(path, f"{len(rows):,} rows, more than the {max_rows:,} this imemviz reads")
    try:
        out = _quick(rows, spec, npages, limit)
    except _Slow:
        out = None
    if out is None:
        out = _precise_all(rows, path, spec, limit, beyond, npages, pfn_beyond)
    else:
        bad = _bad_rows(out, spec, limit, npages)
        if bad is not None:
            _precise(rows[bad], f"{path}[{bad}]", spec, limit, beyond, npages, pfn_beyond)
            fail(f"{path}[{bad}]", f"unusable {spec.what}")  # not reached: _precise raises
    return _no_overlap(out, path, spec)


def _no_overlap(out: Rows, path: str, spec: RowSpec) -> Rows:
    end = out.end
    over = np.flatnonzero(out.start[1:] < end[:-1])
    if len(over):
        i = int(over[0]) + 1
        fail(
            f"{path}[{i}]",
            f"{spec.what} overlaps the row before or is out of order (rows "
            f"are sorted by {spec.start} and do not overlap)",
        )
    return out


# ------------------------------------------------------------ quick path


def _hexes(rows: list[list[Any]], j: int) -> np.ndarray:
    """Column j of every row, hex strings parsed, as int64 (C-level iteration throughout)."""
    try:
        return np.fromiter(map(int, map(itemgetter(j), rows), repeat(16)), _I64, len(rows))
    except (TypeError, ValueError, OverflowError):
        raise _Slow from None


def _ints(col: list[Any]) -> np.ndarray:
    if col and set(map(type, col)) != {int}:
        raise _Slow
    try:
        return np.fromiter(col, _I64, len(col))
    except OverflowError:
        raise _Slow from None


def _quick(rows: list[Any], spec: RowSpec, npages: int, limit: int) -> Rows | None:
    """Parse column by column; _Slow for anything but well-typed rows."""
    n = len(rows)
    if n == 0:
        z = np.zeros(0, _I64)
        return Rows(z, z, z, z, z, z)
    if set(map(type, rows)) != {list}:
        raise _Slow
    lens = np.fromiter(map(len, rows), _I64, n)
    req, full = spec.required, len(spec.columns)
    if lens.min() < req or lens.max() > full:
        raise _Slow
    start = _hexes(rows, 0)
    if spec.byte_addr:
        if np.any(start & 0xFFF):
            raise _Slow
        start = start >> 12
    j = 1
    if spec.size:
        codes = {k: c for k, (c, _s) in spec.sizes.items()}
        col: Any = map(itemgetter(1), rows)
        if spec.size == "order":
            col = _ints(list(col)).tolist()
        try:
            code = np.fromiter(map(codes.__getitem__, col), _I64, n)
        except (KeyError, TypeError):
            raise _Slow from None
        span = spec.spans_of(code)
        j = 2
    else:
        code = np.zeros(n, _I64)
        span = np.ones(n, _I64)
    pfn = np.zeros(n, _I64)
    if spec.pfn:
        pfn = _hexes(rows, j)
        j += 1
    extra = np.zeros(n, _I64)
    if spec.value:
        extra = _ints(list(map(itemgetter(j), rows)))
        j += 1
    cnt = np.ones(n, _I64)
    has = np.flatnonzero(lens > j)
    if len(has):
        cnt[has] = _ints([rows[i][j] for i in has.tolist()])
    j += 1
    has = np.flatnonzero(lens > j)
    if len(has):
        col = [rows[i][j] for i in has.tolist()]
        if spec.flag == "hwpoison":
            if not all(x is True or x is False for x in col):
                raise _Slow
            extra[has] = np.array(col, _I64)
        else:
            try:
                extra[has] = np.array([spec.flags[x] for x in col], _I64)
            except (KeyError, TypeError):
                raise _Slow from None
    return Rows(start, code, span, pfn, cnt, extra)


def _bad_rows(r: Rows, spec: RowSpec, limit: int, npages: int) -> int | None:
    """Index of the first row that breaks a row-local rule, or None."""
    span = r.span
    ok = (r.start >= 0) & (r.start % span == 0) & (r.count >= 1)
    ok &= r.count <= np.maximum(limit - r.start, 0) // span
    if spec.pfn:
        ok &= (r.pfn >= 0) & (r.count <= np.maximum(npages - r.pfn, 0) // span)
        if spec.align_pfn:
            ok &= r.pfn % span == 0
    if spec.value:
        ok &= (r.extra >= 1) & (r.extra <= 255)
    if ok.all():
        return None
    return int(np.flatnonzero(~ok)[0])


# ---------------------------------------------------------- precise path


def _precise_all(
    rows: list[Any], path: str, spec: RowSpec, limit: int, beyond: str, npages: int, pfn_beyond: str
) -> Rows:
    cols: list[list[int]] = [[] for _ in range(6)]
    for i, row in enumerate(rows):
        for c, v in zip(
            cols,
            _precise(row, f"{path}[{i}]", spec, limit, beyond, npages, pfn_beyond),
            strict=True,
        ):
            c.append(v)
    return Rows(*(np.array(c, _I64) for c in cols))


def _precise(
    row: Any, p: str, spec: RowSpec, limit: int, beyond: str, npages: int, pfn_beyond: str
) -> tuple[int, int, int, int, int, int]:
    """One row, checked field by field: (start, code, span, pfn, count, extra)."""
    names = spec.columns
    if type(row) is not list:
        wrong(p, f"a row [{', '.join(names)}]", row)
    if not spec.required <= len(row) <= len(names):
        fail(
            p,
            f"expected a row [{', '.join(names)}] with {spec.required} to {len(names)} "
            f"values, got {len(row)}",
        )
    shift = 12 if spec.byte_addr else 0
    code, span = 0, 1
    j = 1
    if spec.size:
        v = row[1]
        if spec.size == "order":
            integer(v, f"{p}[1]", what="order")
        code, span = enum(v, f"{p}[1]", spec.sizes)
        j = 2
    start = address(row[0], f"{p}[0]", (limit << shift) - 1, spec.start, beyond)
    if start & ((span << shift) - 1):
        what = f"its {spec.size}" if spec.size else "a page"
        fail(
            f"{p}[0]", f"{spec.start} {hex(start)} is not aligned to {what} ({hex(span << shift)})"
        )
    start >>= shift
    pfn = extra = 0
    if spec.pfn:
        pfn = address(row[j], f"{p}[{j}]", npages - 1, "pfn", pfn_beyond)
        if spec.align_pfn and pfn & (span - 1):
            fail(f"{p}[{j}]", f"pfn {hex(pfn)} is not aligned to its {spec.size} ({hex(span)})")
        j += 1
    if spec.value:
        extra = integer(
            row[j], f"{p}[{j}]", 1, 255, "value", "a byte (1-255; pages holding 0 are not stored)"
        )
        j += 1
    n = count(row[j], f"{p}[{j}]", limit) if len(row) > j else 1
    if start + n * span > limit:
        fail(
            f"{p}[{j}]", f"a run of {n} from {spec.start} {hex(start << shift)} ends past {beyond}"
        )
    if spec.pfn and pfn + n * span > npages:
        fail(f"{p}[{j}]", f"pfns {hex(pfn)}-{hex(pfn + n * span - 1)} run past {pfn_beyond}")
    j += 1
    if len(row) > j:
        v = row[j]
        if spec.flag == "hwpoison":
            if v is not True and v is not False:
                wrong(f"{p}[{j}]", "true or false (hwpoison)", v)
            extra = int(v)
        else:
            extra = enum(v, f"{p}[{j}]", spec.flags)
    return start, code, span, pfn, n, extra


# --------------------------------------------------------------- building


def expand(r: Rows, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every member of the runs (optionally of the rows in `mask`): (start, pfn, extra)."""
    if mask is not None:
        r = Rows(*(a[mask] for a in r))
    if not len(r.count) or np.all(r.count == 1):
        return r.start, r.pfn, r.extra
    total = int(r.count.sum())
    first = np.cumsum(r.count) - r.count
    k = np.arange(total, dtype=_I64) - np.repeat(first, r.count)
    step = np.repeat(r.span, r.count) * k
    return (
        np.repeat(r.start, r.count) + step,
        np.repeat(r.pfn, r.count) + step,
        np.repeat(r.extra, r.count),
    )


def fill(idx: SparseIndex[int], keys: np.ndarray, vals: np.ndarray) -> None:
    """Store sorted, distinct `keys` -> `vals` into an empty sparse index (in place)."""
    if len(keys):
        idx.load_sorted(keys.tolist(), vals.tolist())
