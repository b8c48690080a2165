"""Checking decoded JSON values: how a value is named in a message, and the converters.

One layer for the three readers of outside input: the op parser (`model/ops.py`,
script lines), the VM config (`model/config.py`, a header's ``vm``) and the
state loader (`io/state_fields.py` and the ``state_*`` modules).  A converter
returns the checked Python value or raises `Invalid` with a message that says
what is wrong but not where: each reader puts its own location in front (an
op's field, a header path, a state document's JSON path) in its own exception
type (`OpError`, `ConfigError`, `StateError`).

The common case stays cheap: every converter tests for the plain valid value
first (``type(v) is int`` and in range), the run loop's pre-compiled op lines
call the ops' converters directly, and the state loader's row lists are
checked with numpy, coming here only to word the error of a bad row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from imemviz.model.units import parse_int, show_int

T = TypeVar("T")

MAX_DEPTH = 64
"""Deepest nesting a value may have before it is refused unread (a state needs 5)."""

INT63_MAX = (1 << 63) - 1


class Invalid(ValueError):
    """A value is unusable; the message says what is wrong, the caller says where."""


# ------------------------------------------------------------------ naming


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
    """How a JSON user would name a decoded value, shortly: ``the integer 5``,
    ``the string "2Q"`` (as JSON spells it, cut at 30 characters), ``a list``, ``true``."""
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


def key_name(key: str) -> str:
    """A field name as a path shows it: itself, or JSON-quoted (cut short) when it is
    not an identifier, so an odd key (a newline, a colon) cannot break the line."""
    return key if key.isascii() and key.isidentifier() else json.dumps(key[:40])


def expectation(what: str, v: Any) -> str:
    """``expected <what>, got <v's json_type>``: the message for a value of the wrong kind."""
    return f"expected {what}, got {json_type(v)}"


def expected(what: str, v: Any) -> NoReturn:
    """Refuse `v` as not being `what`."""
    raise Invalid(expectation(what, v))


# ---------------------------------------------------------------- integers


def to_int(v: Any) -> int:
    """A JSON integer, or a string `units.parse_int` reads ("0x1000", "2M", "-1")."""
    if type(v) is int:
        return v
    if type(v) is str:
        try:
            return parse_int(v)
        except ValueError as e:
            raise Invalid(str(e)) from None
    expected("an integer", v)


def unsigned(top: int, what: str) -> Callable[[Any], int]:
    """A converter for a C unsigned field: 0..top, and -1 for all ones as C allows."""

    def conv(v: Any) -> int:
        n: int = v if type(v) is int else to_int(v)
        if 0 <= n <= top:
            return n
        if n == -1:
            return top
        raise Invalid(f"out of range for a {what} (0..{top:#x}, or -1 for all ones): {show_int(n)}")

    return conv


def ranged(lo: int, hi: int, what: str) -> Callable[[Any], int]:
    """A converter for a signed C field (an int, a loff_t, an index): lo..hi."""

    def conv(v: Any) -> int:
        n: int = v if type(v) is int else to_int(v)
        if lo <= n <= hi:
            return n
        raise Invalid(f"out of range for {what} ({lo}..{hi}): {show_int(n)}")

    return conv


def bounded(n: int, lo: int, hi: int, what: str = "value", beyond: str | None = None) -> int:
    """`n` if lo <= n <= hi; the refusal names `what` and, above `hi`, what it is
    `beyond` (default: the largest value allowed)."""
    if n < lo:
        raise Invalid(
            f"{what} must not be negative, got {show_int(n)}"
            if lo == 0 and n < 0
            else f"{what} must be at least {lo}, got {show_int(n)}"
        )
    if n > hi:
        shown = hex(n) if n.bit_length() <= 80 else f"a {n.bit_length()}-bit number"
        raise Invalid(f"{what} {shown} is beyond {beyond or f'the largest allowed, {hex(hi)}'}")
    return n


def integer(
    v: Any, lo: int = 0, hi: int = INT63_MAX, what: str = "value", beyond: str | None = None
) -> int:
    """A JSON integer (not a string) in [lo, hi]."""
    if type(v) is not int:
        expected("an integer", v)
    return bounded(v, lo, hi, what, beyond)


def hex_or_int(v: Any, hi: int, what: str = "address", beyond: str | None = None) -> int:
    """A hex string ("0x1f000", the 0x optional) or a JSON integer, in [0, hi]."""
    if type(v) is str:
        try:
            n = int(v, 16)
        except ValueError:
            raise Invalid(
                f'{what}: expected a hex string like "0x1000", got {json_type(v)}'
            ) from None
    elif type(v) is int:
        n = v
    else:
        expected(f'a hex string like "0x1000" ({what})', v)
    return bounded(n, 0, hi, what, beyond)


def count(v: Any, hi: int) -> int:
    """A run length: a positive JSON integer, at most `hi`."""
    if type(v) is not int:
        expected("a positive integer (count)", v)
    if v < 1:
        raise Invalid(f"count must be at least 1, got {v}")
    if v > hi:
        raise Invalid(f"count {show_int(v)} is absurd (at most {hi:,} here)")
    return v


# ------------------------------------------------------------ other kinds


def boolean(v: Any) -> bool:
    if v is True or v is False:
        return v
    expected("true or false", v)


def optional_bool(v: Any) -> bool | None:
    if v is None or v is True or v is False:
        return v
    expected("true, false or null", v)


def string(v: Any) -> str:
    if type(v) is str:
        return v
    expected("a string", v)


def choice(v: Any, choices: Mapping[Any, T]) -> T:
    """The value `choices` gives for `v`, a string or an integer (not a boolean) among
    its keys: otherwise ``expected one of A, B, got ...``."""
    if (type(v) is str or type(v) is int) and v in choices:
        return choices[v]
    expected(f"one of {', '.join(map(str, choices))}", v)


def one_of(v: Any, choices: Sequence[str]) -> str:
    """`v` itself when it is one of the strings `choices` (`choice` over a list)."""
    if type(v) is str and v in choices:
        return v
    expected(f"one of {', '.join(choices)}", v)


def flags(names: Mapping[str, int], as_int: Callable[[Any], int]) -> Callable[[Any], int]:
    """A converter for a flag field: an integer (`as_int` checks it), or a list of the
    kernel's names for its bits (`names`: name -> bit), ORed together."""
    known = ", ".join(names) or "none are defined"

    def conv(v: Any) -> int:
        if type(v) is int:
            return as_int(v)
        if type(v) is list:
            bits = 0
            for item in v:
                if type(item) is not str:
                    raise Invalid(f"flag names must be strings, got {json_type(item)}")
                bit = names.get(item)
                if bit is None:
                    raise Invalid(f"unknown flag {item!r} (known: {known})")
                bits |= bit
            return bits
        if type(v) is str:
            if v in names:
                raise Invalid(f'flag names go in a list: ["{v}"] (or the integer {names[v]})')
            return as_int(v)
        expected("an integer or a list of flag names", v)

    return conv
