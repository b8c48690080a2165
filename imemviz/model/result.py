"""The outcome of one op: ok, errno name and the `ret` object of the contract."""

from __future__ import annotations

import json
from typing import Any

import attrs


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
            return (
                f'{{"index":{index},"op":"{op}","ok":true,"errno":null,"ret":{_encode(self.ret)}}}'
            )
        return _encode(self.line(index, op))


_encode = json.JSONEncoder(separators=(",", ":")).encode
