"""Components as named numpy columns: the one way to read a whole store or fill an empty one.

Every store of the engine gives its content as a `Table`: a small frozen attrs
class of equal-length 1-D numpy columns, sorted by the table's key
(`LeafTable.to_arrays`, `GmemInode.to_arrays`, `HostMemory.to_arrays`,
`ExtentMap.to_arrays`, `Memslots.to_arrays`).  Integer columns are int64 (addresses,
pfns, levels, orders and states alike: shifts such as ``1 << (9 * (level - 1))``
never overflow a narrow dtype), flag columns are bool.

`from_arrays` takes such a table (or a mapping of column name -> array) and
checks it before anything is stored: every column present and none unknown,
one-dimensional, of an integer dtype that casts safely to int64 (or bool for a
flag), all of one length, keys sorted without repeats, and each value in its
range.  The first failure is a ValueError naming the table, the column and the
row: ``leaves: column 'level' row 3 (7): must be one of 1, 2, 3``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import attrs
import numpy as np

I64 = np.dtype(np.int64)
BOOL = np.dtype(np.bool_)

T = TypeVar("T", bound="Table")


class Table:
    """Equal-length named columns (the attrs fields of a subclass), sorted by `KEY`."""

    __slots__ = ()
    NAME: ClassVar[str] = "table"
    KEY: ClassVar[tuple[str, ...]] = ()  # sorted by these columns, without repeats
    FLAGS: ClassVar[frozenset[str]] = frozenset()  # bool columns; the others are int64

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(a.name for a in attrs.fields(cls))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(getattr(self, self.names()[0]))

    def as_dict(self) -> dict[str, np.ndarray]:
        return {n: getattr(self, n) for n in self.names()}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(
            a.dtype == b.dtype and np.array_equal(a, b)
            for a, b in zip(self.as_dict().values(), other.as_dict().values(), strict=True)
        )

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def empty(cls: type[T]) -> T:
        return cls(**{n: np.zeros(0, BOOL if n in cls.FLAGS else I64) for n in cls.names()})

    @classmethod
    def checked(cls: type[T], cols: Table | Mapping[str, Any]) -> T:
        """`cols` as this table after the shape checks: names, dimensions, dtypes, lengths
        and key order (the value ranges are the component's `from_arrays` to check)."""
        d = cols.as_dict() if isinstance(cols, Table) else dict(cols)
        names = cls.names()
        for n in names:
            if n not in d:
                raise ValueError(
                    f"{cls.NAME}: column {n!r} is missing (columns: {', '.join(names)})"
                )
        for n in d:
            if n not in names:
                raise ValueError(f"{cls.NAME}: unknown column {n!r} (columns: {', '.join(names)})")
        out: dict[str, np.ndarray] = {}
        length = None
        for n in names:
            a = d[n]
            if not isinstance(a, np.ndarray):
                raise ValueError(
                    f"{cls.NAME}: column {n!r} is a {type(a).__name__}, not a numpy array"
                )
            if a.ndim != 1:
                raise ValueError(f"{cls.NAME}: column {n!r} has {a.ndim} dimensions, not 1")
            if n in cls.FLAGS:
                if a.dtype != BOOL:
                    raise ValueError(f"{cls.NAME}: column {n!r} has dtype {a.dtype}, not bool")
            elif a.dtype.kind not in "iu" or not np.can_cast(a.dtype, I64, "safe"):
                raise ValueError(
                    f"{cls.NAME}: column {n!r} has dtype {a.dtype}, not an integer dtype that "
                    "fits int64"
                )
            if length is None:
                length = len(a)
            elif len(a) != length:
                raise ValueError(
                    f"{cls.NAME}: column {n!r} has {len(a)} rows, column {names[0]!r} {length}"
                )
            out[n] = a if n in cls.FLAGS else a.astype(I64, copy=False)
        table = cls(**out)
        table._check_key()
        return table

    @classmethod
    def unchecked(cls: type[T], cols: Table | Mapping[str, Any]) -> T:
        """`cols`, which must be this table, as it is: for a `from_arrays(check=False)`
        whose caller has checked the rows itself (the state file reader, whose messages
        name the JSON path); no second pass over a million rows."""
        if type(cols) is not cls:
            raise TypeError(f"{cls.NAME}: from_arrays(check=False) takes a {cls.__name__}")
        return cols

    def _check_key(self) -> None:
        """Rows in key order without repeats (the key is one or more columns)."""
        if len(self) < 2 or not self.KEY:
            return
        cols = [getattr(self, k) for k in self.KEY]
        later = np.zeros(len(self) - 1, bool)  # row i+1 strictly after row i
        tie = np.ones(len(self) - 1, bool)
        for c in cols:
            later |= tie & (c[1:] > c[:-1])
            tie &= c[1:] == c[:-1]
        if not later.all():
            i = int(np.argmin(later)) + 1
            key = ", ".join(self.KEY)
            what = "repeats" if tie[i - 1] else "comes before"
            row = ", ".join(str(int(getattr(self, k)[i])) for k in self.KEY)
            raise ValueError(
                f"{self.NAME}: column {self.KEY[0]!r} row {i} ({row}): {what} row {i - 1} "
                f"(rows are sorted by {key}, without repeats)"
            )

    def bad(self, name: str, mask: np.ndarray, what: str) -> None:
        """Raise for the first row where `mask` is True: `what` that column's value must be."""
        if mask.any():
            i = int(np.argmax(mask))
            v = getattr(self, name)[i].item()
            raise ValueError(f"{self.NAME}: column {name!r} row {i} ({v}): {what}")

    def check_range(self, name: str, lo: int, hi: int, what: str = "") -> None:
        """Every value of column `name` in [lo, hi] (closed)."""
        a = getattr(self, name)
        self.bad(name, (a < lo) | (a > hi), what or f"must be in {lo}..{hi}")

    def check_in(self, name: str, allowed: tuple[int, ...]) -> None:
        a = getattr(self, name)
        self.bad(name, ~np.isin(a, allowed), f"must be one of {', '.join(map(str, allowed))}")


def int64(values: Any) -> np.ndarray:
    """An int64 column from a list or array."""
    return np.asarray(values, I64).reshape(-1)


@attrs.frozen(eq=False)
class LeafColumns(Table):
    """The leaves of one root (`LeafTable`): one row per leaf SPTE, sorted by gfn, then level.

    gfn: first gfn mapped (a multiple of the level's pages); level: 1 (4K), 2 (2M), 3 (1G);
    pfn: host pfn of that first gfn; state: S-EPT state 0..3 (MAPPED, PENDING, BLOCKED,
    PENDING_BLOCKED; always MAPPED outside TDX's mirror root).
    """

    NAME: ClassVar[str] = "leaves"
    KEY: ClassVar[tuple[str, ...]] = ("gfn", "level")
    gfn: np.ndarray
    level: np.ndarray
    pfn: np.ndarray
    state: np.ndarray

    @property
    def npages(self) -> np.ndarray:
        out: np.ndarray = np.left_shift(1, 9 * (self.level - 1))
        return out


@attrs.frozen(eq=False)
class FolioColumns(Table):
    """A guest_memfd inode's folios (`GmemInode`), sorted by index, then order: one row per
    single folio or run (``count`` folios of one order at index, index + 2**order, ...
    with pfns pfn, pfn + 2**order, ...: never expanded).

    index: head file index (page offset); order: 0, 9 or 18; pfn: head host pfn;
    hwpoison: bool; count: folios in the row (1: a single folio).
    """

    NAME: ClassVar[str] = "folios"
    KEY: ClassVar[tuple[str, ...]] = ("index", "order")
    FLAGS: ClassVar[frozenset[str]] = frozenset({"hwpoison"})
    index: np.ndarray
    order: np.ndarray
    pfn: np.ndarray
    hwpoison: np.ndarray
    count: np.ndarray


@attrs.frozen(eq=False)
class PageValues(Table):
    """Host pages with a non-zero content byte, by pfn: pfn, value (1..255)."""

    NAME: ClassVar[str] = "host content"
    KEY: ClassVar[tuple[str, ...]] = ("pfn",)
    pfn: np.ndarray
    value: np.ndarray


@attrs.frozen(eq=False)
class PfnList(Table):
    """A set of host pfns, sorted (the poisoned pages)."""

    NAME: ClassVar[str] = "host poisoned"
    KEY: ClassVar[tuple[str, ...]] = ("pfn",)
    pfn: np.ndarray


@attrs.frozen(eq=False)
class BlockColumns(Table):
    """Host blocks held by the rest of the host, by pfn: pfn (aligned), order 0..18."""

    NAME: ClassVar[str] = "host other"
    KEY: ClassVar[tuple[str, ...]] = ("pfn",)
    pfn: np.ndarray
    order: np.ndarray


@attrs.frozen(eq=False)
class FreeColumns(Table):
    """The allocator's free blocks, by pfn: ``count`` blocks of `order` at pfn, pfn +
    2**order, ... (runs only at the top order, 18; count 1 below it)."""

    NAME: ClassVar[str] = "host free"
    KEY: ClassVar[tuple[str, ...]] = ("pfn",)
    pfn: np.ndarray
    order: np.ndarray
    count: np.ndarray


@attrs.frozen
class HostColumns:
    """Host memory (`HostMemory`) as four tables; `npages` is the host's size in pages."""

    npages: int
    free: FreeColumns
    other: BlockColumns
    poisoned: PfnList
    content: PageValues


@attrs.frozen(eq=False)
class RunColumns(Table):
    """A step function (`ExtentMap`, the memory attributes) as its coalesced runs, by start:
    [start, end) holds value; the runs cover [0, limit) exactly, each value differs from
    the one before."""

    NAME: ClassVar[str] = "runs"
    KEY: ClassVar[tuple[str, ...]] = ("start",)
    start: np.ndarray
    end: np.ndarray
    value: np.ndarray


NO_FD = -(1 << 63)  # MemslotColumns' gmem_file / gmem_fd without a file (fds may be < 0)


@attrs.frozen(eq=False)
class MemslotColumns(Table):
    """Every memslot (`Memslots`), by id (as_id << 16 | slot id): flags, base_gfn, npages,
    userspace_addr; gmem_file: the key in `VM.files` of the bound guest_memfd (NO_FD:
    none); gmem_fd: the fd the binding was made with (NO_FD: none); gmem_pgoff;
    gmem_only (bool)."""

    NAME: ClassVar[str] = "memslots"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    FLAGS: ClassVar[frozenset[str]] = frozenset({"gmem_only"})
    id: np.ndarray
    flags: np.ndarray
    base_gfn: np.ndarray
    npages: np.ndarray
    userspace_addr: np.ndarray
    gmem_file: np.ndarray
    gmem_fd: np.ndarray
    gmem_pgoff: np.ndarray
    gmem_only: np.ndarray
