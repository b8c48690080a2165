"""Loading a state file the fast way, when it is in the form imemviz writes.

`json.loads` of a million-leaf state makes a million lists and four million
strings only for `state_rows` to turn them into arrays.  Here the document is
decoded by msgspec with the big row lists (the leaves of both roots and every
file's folios) left as raw JSON bytes (`msgspec.Raw`), which
`imemviz.io.row_bytes` reads with array operations; everything else is
decoded as plain JSON values, equal to what `json.loads` gives, and the VM is
built by the one validating builder (`state_build.build_vm`).

Nothing is accepted or refused differently: `load_fast` returns None, and
the caller reads the file the general way (`json.loads`, the same messages),
for anything outside the fast path's narrow form: non-ASCII bytes (imemviz
writes ASCII; JSON's UTF-8 rules are then the general path's), JSON msgspec
refuses (malformed, numbers beyond 64 bits, surrogates: the general path
names the error or accepts it), a document that is not exactly the current
version's fields, and row lists that are not canonical or hold a bad row
(`row_bytes.NotCanonical`).  A `StateError` raised here is the one the
general path raises for the same file: every value the builder sees before
it is equal on both paths.
"""

from __future__ import annotations

from typing import Any

import msgspec

from imemviz.io.row_bytes import NotCanonical
from imemviz.model.vm import VM

_Raw = msgspec.Raw
_UNSET: Any = msgspec.UNSET


class _Mappings(msgspec.Struct, forbid_unknown_fields=True):
    private: _Raw
    shared: _Raw
    sept_pages: Any


class _File(msgspec.Struct, forbid_unknown_fields=True):
    fd: Any
    ino: Any
    size: Any
    flags: Any
    bindings: Any
    folios: _Raw
    kind: Any = _UNSET


class _Doc(msgspec.Struct, forbid_unknown_fields=True):
    format: Any
    version: Any
    vm: Any
    op_index: Any
    dead: Any
    td_state: Any
    tdx_epoch: Any
    next_ino: Any
    closed_std_fds: Any
    invalidate: Any
    host: Any
    attributes: Any
    memslots: Any
    gmem_files: list[_File]
    mappings: _Mappings
    hva_pages: Any
    poisoned_hva: Any
    in_flight: Any
    events: Any
    pfnmap: Any = _UNSET
    snp: Any = _UNSET


_DECODER = msgspec.json.Decoder(_Doc)


def _plain(s: msgspec.Struct) -> dict[str, Any]:
    """A struct as the dict json.loads would give (fields the file lacks left out)."""
    out = {}
    for name in s.__struct_fields__:
        v = getattr(s, name)
        if v is _UNSET:
            continue
        if isinstance(v, msgspec.Struct):
            v = _plain(v)
        elif name == "gmem_files":
            v = [_plain(f) for f in v]
        out[name] = v
    return out


def load_fast(data: bytes | bytearray) -> VM | None:
    """The VM of a state file's (decompressed) bytes, or None: read it the general way."""
    from imemviz.io.state import FORMAT, VERSION, no_gc
    from imemviz.io.state_build import build_vm

    if not data.isascii():
        return None
    with no_gc():
        try:
            s = _DECODER.decode(data)
        except Exception:  # malformed, too deep, out of range: the general path's to name
            return None
        if s.format != FORMAT or type(s.version) is not int or s.version != VERSION:
            return None  # foreign, older or newer: the general path says so (or migrates)
        try:
            return build_vm(_plain(s))
        except NotCanonical:
            return None
