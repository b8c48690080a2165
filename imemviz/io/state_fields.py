"""Checked reading of JSON values for state documents: every error names its JSON path.

Small functions that either return a checked Python value or raise
`StateError(path, message)`.  The loader's hot loops (a million leaves) do a
quick inline parse and fall back to these for the precise message when
anything looks wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NoReturn, TypeVar

from imemviz.io.state import StateError
from imemviz.model.units import show_int

T = TypeVar("T")

MAX_DEPTH = 64
"""Deepest nesting a state document may have (version 1 needs 5)."""

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def fail(path: str, message: str) -> NoReturn:
    raise StateError(path, message)


def key_path(path: str, key: str) -> str:
    """`path.key`, or `path["odd key"]` for a key that is not an identifier."""
    if _IDENT.match(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key[:40])}]"


def depth(v: Any, limit: int = MAX_DEPTH + 1) -> int:
    """Nesting depth of a JSON value (scalars 0), counted up to `limit`."""
    best = 0
    stack = [(v, 0)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, dict | list):
            d += 1
            if d > best:
                best = d
                if best >= limit:
                    return best
            stack.extend((c, d) for c in (x.values() if isinstance(x, dict) else x))
    return best


def json_type(v: Any) -> str:
    """How a JSON user would name a decoded value, shortly."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"the integer {v}" if abs(v) < 1 << 64 else f"the integer {show_int(v)}"
    if isinstance(v, float):
        return f"the number {v!r}"
    if isinstance(v, str):
        s = json.dumps(v)
        return f"the string {s if len(s) <= 30 else s[:27] + '...'}"
    if isinstance(v, list | dict):
        kind = "a list" if isinstance(v, list) else "an object"
        if depth(v) > MAX_DEPTH:
            return f"{kind} nested deeper than {MAX_DEPTH} levels"
        return kind
    return type(v).__name__


def wrong(path: str, expected: str, v: Any) -> NoReturn:
    fail(path, f"expected {expected}, got {json_type(v)}")


def obj(
    v: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A JSON object with exactly the `required` keys and maybe some `optional` ones."""
    if type(v) is not dict:
        wrong(path, "an object", v)
    for k in v:
        if k not in required and k not in optional:
            known = ", ".join(required + optional)
            fail(key_path(path, k), f"unknown field (fields: {known})")
    for k in required:
        if k not in v:
            fail(key_path(path, k), "missing field")
    return v


def array(v: Any, path: str, max_len: int) -> list[Any]:
    if type(v) is not list:
        wrong(path, "a list", v)
    if len(v) > max_len:
        fail(path, f"{len(v)} entries, more than the {max_len:,} this imemviz reads")
    return v


def _range(n: int, path: str, lo: int, hi: int, what: str, beyond: str | None) -> int:
    if n < lo:
        fail(
            path,
            f"{what} must not be negative, got {show_int(n)}"
            if lo == 0 and n < 0
            else f"{what} must be at least {lo}, got {show_int(n)}",
        )
    if n > hi:
        shown = hex(n) if n.bit_length() <= 80 else f"a {n.bit_length()}-bit number"
        fail(path, f"{what} {shown} is beyond {beyond or f'the largest allowed, {hex(hi)}'}")
    return n


def integer(
    v: Any,
    path: str,
    lo: int = 0,
    hi: int = (1 << 63) - 1,
    what: str = "value",
    beyond: str | None = None,
) -> int:
    """A JSON integer in [lo, hi]."""
    if type(v) is not int:
        wrong(path, "an integer", v)
    return _range(v, path, lo, hi, what, beyond)


def address(v: Any, path: str, hi: int, what: str = "address", beyond: str | None = None) -> int:
    """A hex string ("0x1f000") or a JSON integer, in [0, hi]."""
    if type(v) is str:
        try:
            n = int(v, 16)
        except ValueError:
            fail(path, f'{what}: expected a hex string like "0x1000", got {json_type(v)}')
    elif type(v) is int:
        n = v
    else:
        wrong(path, f'a hex string like "0x1000" ({what})', v)
    return _range(n, path, 0, hi, what, beyond)


def boolean(v: Any, path: str) -> bool:
    if v is True or v is False:
        return v
    wrong(path, "true or false", v)


def optional_bool(v: Any, path: str) -> bool | None:
    if v is None or v is True or v is False:
        return v
    wrong(path, "true, false or null", v)


def enum(v: Any, path: str, choices: Mapping[str, T], what: str = "value") -> T:
    if type(v) is str and v in choices:
        return choices[v]
    names = ", ".join(json.dumps(c) for c in choices)
    fail(
        path, f"unknown {what} {json_type(v).removeprefix('the string ')} (expected one of {names})"
    )


def count(v: Any, path: str, hi: int) -> int:
    """A run length: a positive JSON integer (an absent count is 1)."""
    if type(v) is not int:
        wrong(path, "a positive integer (count)", v)
    if v < 1:
        fail(path, f"count must be at least 1, got {v}")
    if v > hi:
        fail(path, f"count {show_int(v)} is absurd (at most {hi:,} here)")
    return v
