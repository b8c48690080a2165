"""The outcome of one op: ok, errno name and the `ret` object of the contract."""

from __future__ import annotations

import json
from typing import Any

import attrs

from imemviz.model.units import LEVEL_NAMES


@attrs.frozen(slots=True)
class Result:
    ok: bool
    errno: str | None = None
    ret: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def success(cls, **ret: Any) -> Result:
        return cls(True, None, ret)

    @classmethod
    def fail(cls, errno: str, **ret: Any) -> Result:
        return cls(False, errno, ret)

    def line(self, index: int, op: str) -> dict[str, Any]:
        """The contract's result line (section 4) as a dict."""
        return {"index": index, "op": op, "ok": self.ok, "errno": self.errno, "ret": self.ret}

    def line_json(self, index: int, op: str) -> str:
        """`line()` as compact JSON (no newline).  A success, by far the common case in a
        run, is spelled out around one small encode instead of encoding a dict of five."""
        if self.ok and self.errno is None:
            return f'{{"index":{index},"op":"{op}","ok":true,"errno":null,"ret":{_ret_json(self.ret)}}}'
        return _encode(self.line(index, op))


_encode = json.JSONEncoder(separators=(",", ":")).encode

_PLAIN_STRS = frozenset(LEVEL_NAMES.values())  # "4K", "2M", "1G": JSON-encoded as they are
_PLAIN_KEYS: set[str] = set()  # keys seen to be plain ASCII identifiers (ret keys: a few)


def _ret_json(ret: dict[str, Any]) -> str:
    """`_encode(ret)`: written by hand when every value is an int or a level name and every
    key a plain identifier (a fault's ret), which JSON spells exactly as Python formats them;
    anything else goes through the encoder.  The encoder object builds a C encoder on every
    call, which costs three times the formatting."""
    if not _PLAIN_KEYS.issuperset(ret):
        if not all(type(k) is str and k.isascii() and k.isidentifier() for k in ret):
            return _encode(ret)
        _PLAIN_KEYS.update(ret)
    parts = []
    for k, v in ret.items():
        t = type(v)
        if t is int:
            parts.append(f'"{k}":{v}')
        elif t is str and v in _PLAIN_STRS:
            parts.append(f'"{k}":"{v}"')
        else:
            return _encode(ret)
    return "{" + ",".join(parts) + "}"
