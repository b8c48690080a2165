"""The run loop's shortcuts give what the general code gives: the script reader's
pre-compiled op lines (io/script.py `_FAST_LINE`) against json + parse_op, and the
hand-written result `ret` (model/result.py `_ret_json`) against the JSON encoder."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from imemviz.io import script
from imemviz.io.script import _FAST_LINE, PlainRun, ScriptError, ScriptReader
from imemviz.model.fault_batch import ACCESS
from imemviz.model.ops import GuestAccept, GuestAccess
from imemviz.model.result import Result, _encode, _ret_json

HEADER = b'{"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "tdx"}}}\n'

U64 = (1 << 64) - 1
gpa_tokens = st.one_of(
    st.integers(0, U64 + 10).map(str),
    st.sampled_from(["0", "00", "01", "-1", "1e3", "1.0", str(U64), str(U64 + 1), "9" * 20]),
    st.integers(0, U64 + 10).map(lambda n: json.dumps(hex(n))),
    st.integers(0, U64).map(lambda n: json.dumps(f"0x{n:X}")),
    st.sampled_from(['"0x"', '"0xg"', '"4K"', '"1G"', "true", "null", '"0x' + "f" * 17 + '"']),
)
line_shapes = st.sampled_from(
    [
        '{{"op": "{op}", "gpa": {v}}}',
        '{{"op":"{op}","gpa":{v}}}',
        '{{"op": "{op}", "gpa": {v}, "t": 1.5}}',
        '{{"gpa": {v}, "op": "{op}"}}',
        '{{"op": "{op}", "gpa": {v}, "gpa": 4096}}',
        '{{"op": "{op}", "gpa": {v} }}',
    ]
)


_NEVER = re.compile(rb"(?!)")  # a pattern that matches nothing: every line read in full


def _read(body: bytes, fast: bool = True) -> list[Any] | str:
    """(line, op, t) of every op, or the ScriptError's text; `fast` False: the reader
    without its pre-compiled lines (each line through json and parse_op)."""
    saved = script._FAST_LINE
    script._FAST_LINE = saved if fast else _NEVER
    try:
        return list(ScriptReader(io.BytesIO(HEADER + body), "s.jsonl"))
    except ScriptError as e:
        return str(e)
    finally:
        script._FAST_LINE = saved


def _read_runs(body: bytes, size: int) -> list[Any] | str:
    """`_read` through ScriptReader.runs(): each PlainRun spelled out as the ops it stands
    for, on their lines; `size` the longest run."""
    got: list[Any] = []
    try:
        for item in ScriptReader(io.BytesIO(HEADER + body), "s.jsonl").runs(size):
            if isinstance(item, PlainRun):
                for k, (kind, gpa) in enumerate(item.ops):
                    op = GuestAccess(gpa) if kind == ACCESS else GuestAccept(gpa, kind)
                    got.append((item.line + k, op, None))
            else:
                got.append(item)
    except ScriptError as e:
        return str(e)
    return got


@given(
    st.lists(
        st.tuples(line_shapes, st.sampled_from(["guest_access", "guest_accept"]), gpa_tokens),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["\n", "\r\n"]),
)
def test_fast_op_lines_read_as_json_and_parse_op(lines: list[Any], end: str) -> None:
    body = "".join(shape.format(op=op, v=v) + end for shape, op, v in lines).encode()
    want = _read(body, fast=False)
    assert _read(body) == want
    for size in (1, 2, 1024):
        assert _read_runs(body, size) == want


def test_the_pattern_takes_the_common_lines() -> None:
    assert _FAST_LINE.fullmatch(b'{"op": "guest_access", "gpa": 4096}\n')
    assert _FAST_LINE.fullmatch(b'{"op":"guest_accept","gpa":"0x200000"}\r\n')
    assert not _FAST_LINE.fullmatch(b'{"op": "guest_access", "gpa": 4096}')  # a cut last line
    assert not _FAST_LINE.fullmatch(b'{"op": "guest_access", "gpa": 012}\n')  # not JSON


def test_an_out_of_range_fast_line_is_the_general_error() -> None:
    body = b'{"op": "guest_access", "gpa": 99999999999999999999}\n'
    got = _read(body)
    assert isinstance(got, str) and got.startswith("s.jsonl:2: guest_access.gpa: out of range")
    assert _read_runs(body, 1024) == got


json_values = st.recursive(
    st.one_of(
        st.integers(-(1 << 70), 1 << 70),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False),
        st.sampled_from(["4K", "2M", "1G", "EIO", 'a"b', "\u00e9", "KVM_EXIT_MMIO"]),
        st.text(max_size=5),
    ),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=4), kids)),
    max_leaves=6,
)
keys = st.one_of(
    st.sampled_from(["value", "level", "pfn", "fd", "retried", "exit", "in_flight"]),
    st.text(max_size=6),
)


@given(st.dictionaries(keys, json_values, max_size=4))
def test_ret_json_is_the_encoder(ret: dict[str, Any]) -> None:
    assert _ret_json(ret) == _encode(ret)
    line = Result(True, None, ret).line_json(7, "guest_access")
    assert json.loads(line) == {
        "index": 7,
        "op": "guest_access",
        "ok": True,
        "errno": None,
        "ret": ret,
    }
    assert line == _encode(Result(True, None, ret).line(7, "guest_access"))
