"""Checked reading of JSON values for state documents: every error names its JSON path.

The state loader's face of `imemviz.model.validate`: the same converters, each
taking the JSON path of its value and raising `StateError(path, message)`, plus
the shapes only a state document has (objects with required and optional keys,
bounded lists).  The loader's hot loops (a million leaves) do a quick inline
parse and fall back to these for the precise message when anything looks wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn, ParamSpec, TypeVar

from imemviz.io.state import StateError
from imemviz.model import validate as V
from imemviz.model.validate import Invalid, json_type

__all__ = [
    "address",
    "array",
    "boolean",
    "count",
    "enum",
    "fail",
    "integer",
    "json_type",
    "key_path",
    "obj",
    "optional_bool",
    "wrong",
]

T = TypeVar("T")
P = ParamSpec("P")


def fail(path: str, message: str) -> NoReturn:
    raise StateError(path, message)


def key_path(path: str, key: str) -> str:
    """`path.key`, or `path["odd key"]` for a key that is not an identifier."""
    name = V.key_name(key)
    return f"{path}.{name}" if name == key else f"{path}[{name}]"


def _at(path: str, conv: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`conv(*args, **kwargs)`, its refusal turned into a StateError at `path`."""
    try:
        return conv(*args, **kwargs)
    except Invalid as e:
        fail(path, str(e))


def wrong(path: str, expected: str, v: Any) -> NoReturn:
    fail(path, V.expectation(expected, v))


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


def integer(
    v: Any,
    path: str,
    lo: int = 0,
    hi: int = V.INT63_MAX,
    what: str = "value",
    beyond: str | None = None,
) -> int:
    """A JSON integer in [lo, hi]."""
    return _at(path, V.integer, v, lo, hi, what, beyond)


def address(v: Any, path: str, hi: int, what: str = "address", beyond: str | None = None) -> int:
    """A hex string ("0x1f000") or a JSON integer, in [0, hi]."""
    return _at(path, V.hex_or_int, v, hi, what, beyond)


def boolean(v: Any, path: str) -> bool:
    return _at(path, V.boolean, v)


def optional_bool(v: Any, path: str) -> bool | None:
    return _at(path, V.optional_bool, v)


def enum(v: Any, path: str, choices: Mapping[Any, T]) -> T:
    """The value `choices` maps `v` (a string or an integer key) to."""
    return _at(path, V.choice, v, choices)


def count(v: Any, path: str, hi: int) -> int:
    """A run length: a positive JSON integer (an absent count is 1)."""
    return _at(path, V.count, v, hi)
