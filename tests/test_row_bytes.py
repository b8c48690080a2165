"""The fast row reader (io/row_bytes.py) agrees with state_rows' quick path, or steps aside.

For random row lists, canonical and not (hex without "0x", upper case, ints
where strings go, unknown names, spaces, huge numbers, short and long rows),
`parse_rows` on the JSON bytes must either give exactly the arrays the quick
path gives for `json.loads` of the same bytes, or raise NotCanonical; and it
must never accept rows the quick path refuses.
"""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest

from imemviz.io import state_limits as B
from imemviz.io.row_bytes import NotCanonical, parse_rows
from imemviz.io.state_rows import _quick, _Slow

SPECS = {
    "leaves": B.LEAVES,
    "folios": B.FOLIOS,
    "hva": B.HVA,
    "free": B.FREE,
    "pfnmap": B.PFNMAP,
}


def _hexish(rng: random.Random) -> object:
    n = rng.choice([0, 1, 7, 0xFFF, 0x1000, 0x40000, 1 << 40, (1 << 63) - 1, 1 << 63, 1 << 64])
    n = n if rng.random() < 0.3 else rng.randrange(1 << rng.choice([4, 12, 20, 36, 52]))
    r = rng.random()
    if r < 0.8:
        return hex(n)
    return rng.choice(
        [n, f"{n:x}", f"0X{n:X}", f"0x{n:04x}", f" {hex(n)}", hex(-n), "0x", "0xg", True, None]
    )


def _field(rng: random.Random, spec: object, col: str) -> object:
    if col in ("gfn", "index", "pfn", "hva"):
        return _hexish(rng)
    if col == "level":
        return rng.choice(["4K", "4K", "2M", "1G", "8K", "4k", 1, None])
    if col == "order":
        return rng.choice([0, 0, 9, 10, 1, 18, 3, -1, "0", 1.0, True, 10**20])
    if col == "count":
        return rng.choice([1, 2, 512, 7, 10**17, 10**19, 0, -3, "2", 2.5, False])
    if col == "state":
        return rng.choice(["MAPPED", "PENDING", "BLOCKED", "PENDING_BLOCKED", "mapped", 0, "X"])
    if col == "hwpoison":
        return rng.choice([True, False, False, 0, None, "true"])
    if col == "refcount":
        return rng.choice(["none", "refcounted", "other", 1])
    raise AssertionError(col)


def _rows(rng: random.Random, spec: object) -> list[object]:
    cols = spec.columns  # type: ignore[attr-defined]
    rows: list[object] = []
    for _ in range(rng.choice([0, 1, 3, 20, 200])):
        k = rng.randint(spec.required, len(cols))  # type: ignore[attr-defined]
        if rng.random() < 0.03:
            k = rng.choice([0, len(cols) + 1])
        row = [_field(rng, spec, cols[min(j, len(cols) - 1)]) for j in range(k)]
        if rng.random() < 0.02:
            row = rng.choice([[row], 5, "x", {"a": 1}])
        rows.append(row)
    return rows


def _quick_or_none(rows: list[object], spec: object) -> tuple[np.ndarray, ...] | None:
    try:
        out = _quick(rows, spec, 1 << 40, 1 << 50)  # type: ignore[arg-type]
    except _Slow:
        return None
    return tuple(out) if out is not None else None


@pytest.mark.parametrize("name", sorted(SPECS))
def test_agrees_with_quick_path(name: str) -> None:
    spec = SPECS[name]
    rng = random.Random(name)
    fast_ok = 0
    for _ in range(600):
        # Mostly canonical rows: keep only canonical ones in a third of the lists.
        rows = _rows(rng, spec)
        text = json.dumps(rows, separators=(",", ":"))
        if rng.random() < 0.05:
            text = text.replace(",", ", ", 1)
        want = _quick_or_none(json.loads(text), spec)
        try:
            got = parse_rows(text.encode(), spec)
        except NotCanonical:
            continue
        assert want is not None, text[:200]
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype == np.int64
            np.testing.assert_array_equal(a, b)
        fast_ok += 1
    assert fast_ok > 50  # the fast path was really exercised


def test_canonical_lists_take_the_fast_path() -> None:
    rows = [
        ["0x40000", "4K", "0x1f4a7"],
        ["0x40200", "2M", "0x200", 3, "BLOCKED"],
        ["0x0", "1G", "0x0", 1],
    ]
    got = parse_rows(json.dumps(rows, separators=(",", ":")).encode(), B.LEAVES)
    want = _quick_or_none(rows, B.LEAVES)
    assert want is not None
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [len(a) for a in parse_rows(b"[]", B.FOLIOS)] == [0] * 6


@pytest.mark.parametrize(
    "text",
    [
        b'[["0x1","4K","0x2"] ]',  # a space
        b'[["0x1","4K","0X2"]]',  # upper-case prefix
        b'[["0x8000000000000000","4K","0x2"]]',  # beyond int64
        b'[["0x1","4K",2]]',  # an int where a hex string goes
        b'[["0x1","4K","0x2"],1]',  # not a row
        b'[["0x1","4K","0x2",[1]]]',  # a list inside a row
        b"[[]]",  # an empty row
        b'[["0x1","4K","0x2",1,"MAPPED",1]]',  # too long
        b'[["0x1","4K","0x2",1e2]]',  # a float count
        b'[["0x1","4K","0x2",1,"PENDING\\u0041"]]',  # an escape
        b'{"a":1}',
    ],
)
def test_not_canonical(text: bytes) -> None:
    with pytest.raises(NotCanonical):
        parse_rows(text, B.LEAVES)


# ------------------------------------------------------- whole state files


def _general(data: bytes) -> object:
    from imemviz.io.state import decode_text, parse_text, vm_from_document

    return vm_from_document(parse_text(decode_text(data, "f"), "f"))


@pytest.mark.parametrize("case", ["tdx", "sw", "default", "upm", "snp"])
def test_state_files_load_fast_and_equal(case: str) -> None:
    """A state imemviz wrote loads through the fast path, into the VM the general path builds."""
    import statecases

    from imemviz.io.state import encode_state, state_document
    from imemviz.io.state_fast import load_fast

    vm = statecases.case_vm(case)
    data = encode_state(vm, "s.json")
    fast = load_fast(data)
    assert fast is not None
    assert state_document(fast) == state_document(_general(data)) == state_document(vm)  # type: ignore[arg-type]


def test_released_files_load_fast() -> None:
    """The frozen files of released versions take the fast path too (same VM)."""
    import gzip

    import statecases

    from imemviz.io.state import state_document
    from imemviz.io.state_fast import load_fast

    for path in sorted(statecases.DATA.glob("state-v1-*.json.gz")):
        data = gzip.decompress(path.read_bytes())
        fast = load_fast(data)
        assert fast is not None, path.name
        assert state_document(fast) == state_document(_general(data))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"private":[["0x', b'"private":[["0X'),  # not canonical: the general path reads it
        (b'","4K","', b'","4k","'),  # an error the general path names
        (b'"mappings":{', b'"mappings":{"x":1,'),  # an unknown field
        (b'"version":1', b'"version":2'),
        (b"{", b"\xef\xbb\xbf{"),  # a BOM
    ],
)
def test_anything_else_steps_aside(old: bytes, new: bytes) -> None:
    import statecases

    from imemviz.io.state import encode_state
    from imemviz.io.state_fast import load_fast

    data = encode_state(statecases.case_vm("tdx"), "s.json")
    assert old in data
    assert load_fast(data.replace(old, new, 1)) is None


# ------------------------------------------------------------------ writing


def test_rows_json_is_json_dumps() -> None:
    """rows_json writes what json.dumps writes for the same rows, byte for byte."""
    from imemviz.io.row_bytes import Column, rows_json

    rng = np.random.default_rng(5)
    names = (b'"4K"', b'"2M"', b'"PENDING_BLOCKED"', b"true", b"false")
    py_names = ["4K", "2M", "PENDING_BLOCKED", True, False]
    for n in (0, 1, 2, 7, 300):
        bits = rng.integers(0, 63, n)
        a = rng.integers(0, 1 << 62, n, dtype=np.int64) >> bits
        a[: min(n, 3)] = [0, (1 << 63) - 1, 15][: min(n, 3)]
        code = rng.integers(0, len(names), n)
        b = rng.integers(0, 10**18, n, dtype=np.int64) >> rng.integers(0, 60, n)
        cnt = rng.choice([1, 1, 1, 2, 10, 10**18 - 1, 10**17], n).astype(np.int64)
        flag = rng.choice(len(names), n)
        flagged = rng.random(n) < 0.3
        has_cnt = (cnt != 1) | flagged
        cols = [
            Column("hex", a),
            Column("name", code, None, names),
            Column("int", b),
            Column("int", cnt, has_cnt),
            Column("name", flag, flagged, names),
        ]
        rows = []
        for i in range(n):
            row = [hex(int(a[i])), py_names[code[i]], int(b[i])]
            if has_cnt[i]:
                row.append(int(cnt[i]))
            if flagged[i]:
                row.append(py_names[flag[i]])
            rows.append(row)
        assert rows_json(cols) == json.dumps(rows, separators=(",", ":")).encode()


@pytest.mark.parametrize("case", ["tdx", "sw", "default", "upm", "snp"])
def test_encode_state_same_bytes(case: str) -> None:
    """The spliced writer gives the bytes the plain document encodes to."""
    import statecases

    from imemviz.io.state import compression_for, encode, encode_state, state_document

    vm = statecases.case_vm(case)
    for name in ("s.json", "s.json.gz", "s.json.zst"):
        assert encode_state(vm, name) == encode(state_document(vm), compression_for(name))


def test_placeholder_lookalike_falls_back() -> None:
    """A string of the document that reads like the splice mark: the plain encoder is used."""
    import statecases

    from imemviz.io.state import encode, encode_spliced, encode_state, state_document
    from imemviz.io.state_doc import document
    from imemviz.model import ops as O

    vm = statecases.case_vm("tdx")
    vm.apply(O.Note("\0rows0\0"))
    assert encode_spliced(document(vm, raw=True)) is None
    assert encode_state(vm, "s.json") == encode(state_document(vm))


def _outcome(load: Any, data: bytes) -> str:
    from imemviz.io.state import StateError, encode, state_document

    try:
        vm = load(data)
    except StateError as e:
        return f"StateError: {e}"
    return "" if vm is None else encode(state_document(vm)).decode()


@pytest.mark.parametrize("case", ["tdx", "sw", "upm"])
def test_mutated_files_load_the_same_either_way(case: str) -> None:
    """Random byte edits of a state file (in the rows and elsewhere): the fast path gives
    the VM or the error the general path gives, or steps aside (None)."""
    import statecases

    from imemviz.io.state import encode_state
    from imemviz.io.state_fast import load_fast

    data = encode_state(statecases.case_vm(case), "s.json")
    rows_at = data.index(b'"mappings":')
    rng = random.Random(case)
    stepped_aside = 0
    for _ in range(150):
        buf = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 3])):
            # Half of the edits land in the row lists, where the fast reader works.
            at = rng.randrange(rows_at, len(buf)) if rng.random() < 0.5 else rng.randrange(len(buf))
            edit = rng.choice(b'0123456789abcdefx,[]" \\-.ABtnul')
            op = rng.random()
            if op < 0.4:
                buf[at] = edit
            elif op < 0.7:
                buf.insert(at, edit)
            else:
                del buf[at]
        mutated = bytes(buf)
        fast = _outcome(load_fast, mutated)
        if fast == "":
            stepped_aside += 1
            continue
        assert fast == _outcome(_general, mutated), mutated[:120]
    assert stepped_aside < 150
