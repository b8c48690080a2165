"""State files (contract section 5): save a VM, load it back, exactly.

A state file is one JSON document, ``{"format": "imemviz-state", "version": 1,
...}``, plain (``.json``) or compressed by extension (``.gz``: gzip,
``.zst``: zstandard).  Its schema is in ``docs/state-format.md``;
`imemviz.io.state_doc` writes it and `imemviz.io.state_build` validates and
reads it.  This module is the file side:

- writing is canonical (fixed key order, compact separators, gzip mtime 0,
  fixed zstd level: save -> load -> save gives the same bytes) and goes
  through the one atomic writer, `imemviz.io.atomic` (on any error the old
  file is untouched and the temp file removed);
- reading stops at `MAX_DECOMPRESSED` bytes however small the file is
  (decompression bombs), refuses foreign JSON and newer versions, and brings
  older versions up to date through `MIGRATIONS`, the one place that knows
  about them.  It parses plain JSON only: nothing in a file is ever run.

Every problem with a file's content is a `StateError` naming the JSON path
(``$.memslots[2].base_gfn``) or the file.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import io
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import zstandard

from imemviz.model.validate import expectation
from imemviz.model.vm import VM

FORMAT = "imemviz-state"
VERSION = 1
"""The version this imemviz writes, and the newest it reads."""

SUFFIXES = (".json", ".json.gz", ".json.zst")
"""The file names state files are given (reading goes by content, writing by name)."""

MAX_DECOMPRESSED = 512 << 20
"""Largest (decompressed) state document read: 512 MiB."""

MAX_JSON_VALUES = 32_000_000
"""Most JSON values (counted from the separators and brackets while decompressing, before
anything is parsed) a state document may hold.  Parsed, a value costs 8 to 80 bytes
of Python objects: this bounds the parse near 2 GB even for a document of tiny values
(``[0,0,0,...]``: 268 million of them fit in 512 MiB).  A state of 3 million rows
needs about 15 million."""

ZSTD_LEVEL = 1
"""Level 1: a million-leaf state compresses in 0.2 s instead of 0.36 s (level 3), and
smaller (13.8 MB instead of 14.4 MB: its hex rows gain nothing from the slower search)."""
GZIP_LEVEL = 6
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20
# Every byte but ',', '[' and '{': deleting them leaves the marks counted (one C pass).
_NOT_VALUE_MARKS = bytes(c for c in range(256) if c not in b",[{")
# Canonical JSON: compact separators, ASCII only (non-ASCII text as \u escapes).
_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, check_circular=False, allow_nan=False
)

MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""version N -> a function turning a raw version-N document into a version N+1 one.

Every released version but the newest has an entry; `migrate` chains them.
Version 1 is the first released version, so the chain is empty for now.
"""


class StateError(ValueError):
    """A state document is unusable; `path` is a JSON path or a file name.

    ``str()`` is one line: ``PATH: MESSAGE``.
    """

    def __init__(self, path: str, message: str) -> None:
        # A key in the file may hold a line break; the message stays one line.
        path = path.replace("\r", "\\r").replace("\n", "\\n")
        message = " ".join(message.splitlines())
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


# ------------------------------------------------------------------ API


def state_document(vm: VM) -> dict[str, Any]:
    """The state document of `vm`: plain JSON values, keys in the canonical order."""
    from imemviz.io.state_doc import document

    return document(vm)


def vm_from_document(doc: Any) -> VM:
    """A new VM from a decoded state document (any supported version).

    Checks the format and version, migrates, validates every field, and only
    then builds; raises StateError naming the JSON path of the first problem.
    """
    from imemviz.io.state_build import build_vm

    return build_vm(migrate(doc))


def save_state(
    vm: VM, path: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str]] = ()
) -> None:
    """Write `vm`'s state file at `path` with the atomic writer; compression by extension.

    Raises OutputError (an OSError, one line) when it cannot be written.
    """
    from imemviz.io.atomic import AtomicFile

    out = AtomicFile(path, inputs=inputs)
    try:
        out.write(encode_state(vm, out.real))
    except BaseException:
        out.discard()
        raise
    out.commit()


def encode_state(vm: VM, name: str) -> bytes:
    """The bytes of `vm`'s state file named `name` (compression by its extension).

    The big row lists are written straight from arrays (`row_bytes.rows_json`) and
    spliced into the rest: the same bytes as `encode(state_document(vm))`, faster.
    """
    from imemviz.io.state_doc import document

    with no_gc():
        data = encode_spliced(document(vm, raw=True))
    compression = compression_for(os.fspath(name))
    if data is None:
        return encode(state_document(vm), compression)
    return compress(data, compression)


def load_state(path: str | os.PathLike[str]) -> VM:
    """A new VM from the state file at `path`.

    Raises StateError for unusable content (the path of the error is a JSON
    path, or the file name for problems with the file as a whole), OSError
    when the file cannot be read.
    """
    from imemviz.io.state_fast import load_fast

    name = os.fspath(path)
    with open(name, "rb") as f:
        data = read_limited(f, name)
    vm = load_fast(data)  # a file in the form imemviz writes, without json.loads
    if vm is not None:
        return vm
    text = decode_text(data, name)
    del data  # the general parse runs with the text alone, as read_document's does
    return vm_from_document(parse_text(text, name))


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic GC: making millions of small objects would start it over and over."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# ---------------------------------------------------------------- write


def compression_for(path: str) -> str:
    """ "gzip", "zstd" or "none", from the file name's extension."""
    name = path.lower()
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith(".zst"):
        return "zstd"
    return "none"


def encode(doc: dict[str, Any], compression: str = "none") -> bytes:
    """The canonical bytes of a document: compact JSON, one final newline, compressed."""
    return compress((_ENCODER.encode(doc) + "\n").encode("ascii"), compression)


def encode_spliced(doc: dict[str, Any]) -> bytes | None:
    """`encode`'s uncompressed bytes of a document whose leaves and folios are `RawRows`
    (row lists already written as JSON), or None when a string of the document reads
    like the marks that stand for them while the rest is encoded."""
    from imemviz.io.row_bytes import RawRows

    raw: list[bytes] = []

    def mark(rows: Any) -> Any:
        if not isinstance(rows, RawRows):
            return rows
        raw.append(rows.text)
        return f"\0rows{len(raw) - 1}\0"

    doc = dict(doc)
    doc["mappings"] = {k: mark(v) for k, v in doc["mappings"].items()}
    doc["gmem_files"] = [{**f, "folios": mark(f["folios"])} for f in doc["gmem_files"]]
    text = _ENCODER.encode(doc) + "\n"
    spots = []
    for i, rows in enumerate(raw):
        marked = f'"\\u0000rows{i}\\u0000"'
        if text.count(marked) != 1:
            return None  # the document holds the same text elsewhere: no splicing
        at = text.index(marked)
        spots.append((at, at + len(marked), rows))
    parts: list[bytes] = []
    done = 0
    for at, end, rows in sorted(spots):
        parts += (text[done:at].encode("ascii"), rows)
        done = end
    parts.append(text[done:].encode("ascii"))
    return b"".join(parts)


def compress(data: bytes, compression: str) -> bytes:
    """`data` compressed as `compression` says ("gzip", "zstd" or "none")."""
    if compression == "gzip":
        buf = io.BytesIO()
        # filename="" and mtime=0: the header carries neither the temp name nor the time.
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=GZIP_LEVEL
        ) as gz:
            gz.write(data)
        return buf.getvalue()
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    return data


# ----------------------------------------------------------------- read


def read_document(path: str | os.PathLike[str]) -> Any:
    """The decoded JSON of a state file (any format and version: not yet checked).

    The compression is recognised by its magic bytes, so a misnamed file
    still opens.  Raises StateError (path: the file name) for a file that is
    not readable JSON, OSError when it cannot be opened.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        # The bytes are dropped once decoded: the parse runs with the text alone.
        text = decode_text(read_limited(f, name), name)
    return parse_text(text, name)


def read_limited(f: IO[bytes], name: str, limit: int | None = None) -> bytes:
    """All of `f`, decompressed if it is gzip or zstd, refusing more than `limit` bytes."""
    limit = MAX_DECOMPRESSED if limit is None else limit
    head = f.read(4)
    f.seek(-len(head), os.SEEK_CUR)
    try:
        if head[:2] == _GZIP_MAGIC:
            reader: IO[bytes] | gzip.GzipFile = gzip.GzipFile(fileobj=f, mode="rb")
        elif head == _ZSTD_MAGIC:
            frame = f.read(18)
            f.seek(-len(frame), os.SEEK_CUR)
            zstandard.get_frame_parameters(frame)  # ZstdError for a broken frame header
            reader = zstandard.ZstdDecompressor().stream_reader(f)
        else:
            reader = f
        buf = bytearray()
        values = 0
        while True:
            chunk = reader.read(min(_CHUNK, limit + 1 - len(buf)))
            if not chunk:
                break
            buf += chunk
            if len(buf) > limit:
                raise StateError(
                    name,
                    f"more than {_mib(limit)} of JSON once decompressed; "
                    "refusing to read it (is it really a state file?)",
                )
            # An upper bound of the values the chunk holds: every value but the first of
            # a list or object follows a comma, and lists and objects are values too.
            values += len(chunk.translate(None, _NOT_VALUE_MARKS))
            if values > MAX_JSON_VALUES:
                raise StateError(
                    name,
                    f"more than {MAX_JSON_VALUES:,} JSON values, more than any state "
                    "this imemviz loads; refusing to parse it (is it really a state file?)",
                )
        if not buf and reader is not f:
            raise EOFError("no data")
        return bytes(buf) if len(buf) < _CHUNK else buf  # type: ignore[return-value]
    except (EOFError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError) as e:
        kind = "gzip" if head[:2] == _GZIP_MAGIC else "zstd"
        raise StateError(
            name, f"corrupt or truncated {kind} data ({e or 'unexpected end'})"
        ) from None


def parse_json(data: bytes | bytearray, name: str) -> Any:
    """Decode UTF-8 JSON (plain json: no code, no custom types)."""
    return parse_text(decode_text(data, name), name)


def decode_text(data: bytes | bytearray, name: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StateError(name, f"not a state file: not UTF-8 text (byte {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def parse_text(text: str, name: str) -> Any:
    if not text.strip():
        raise StateError(name, "empty file")
    try:
        with no_gc():  # millions of small lists: the cyclic GC would run over and over
            return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        _not_a_recording(text, e, name)
        end = text.rstrip()
        truncated = e.pos >= len(end) or not end.endswith(("}", "]"))
        what = "truncated JSON (the file ends too early)" if truncated else "invalid JSON"
        raise StateError(name, f"{what}: {e.msg} (line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise StateError(name, "invalid JSON: nested too deeply") from None
    except ValueError as e:  # an integer literal of more than 4,300 digits
        what = "an integer with more than 4,300 digits" if "digits" in str(e) else str(e)[:100]
        raise StateError(name, f"invalid JSON: {what}") from None


RECORDING_HINT = (
    "this is a recording (a script), not a state file: run it with `imemviz run FILE` "
    "(add --state-out STATE to save its final state) or open it with `imemviz FILE`"
)


def _not_a_recording(text: str, e: json.JSONDecodeError, name: str) -> None:
    """JSON Lines where one document was expected: say so when it is a script or recording."""
    for line in text[: 1 << 20].splitlines()[:200]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            first = json.loads(line)
        except ValueError:
            return
        if isinstance(first, dict) and (
            first.get("format") == "imemviz-recording" or isinstance(first.get("op"), str)
        ):
            raise StateError(name, RECORDING_HINT)
        return


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _mib(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


# ------------------------------------------------------------ versions


def migrate(doc: Any) -> dict[str, Any]:
    """Check format and version; bring an older document up to `VERSION`.

    The one place that knows about old versions: each step is
    ``MIGRATIONS[v]``, a function on the raw document that returns a
    version v+1 document.
    """
    if not isinstance(doc, dict):
        raise StateError("$", f'not a state file: expected a JSON object with "format": "{FORMAT}"')
    fmt = doc.get("format")
    if fmt != FORMAT:
        if "format" not in doc:
            if isinstance(doc.get("op"), str):
                raise StateError("", RECORDING_HINT)  # about the file, not a JSON path
            raise StateError("$", f'not a state file: no "format" field (expected "{FORMAT}")')
        hint = ""
        if fmt == "imemviz-recording":
            hint = "; " + RECORDING_HINT
        raise StateError(
            "$.format", f'not a state file: format is {_short(fmt)}, expected "{FORMAT}"{hint}'
        )
    version = doc.get("version")
    if type(version) is not int:
        raise StateError("$.version", expectation("an integer", version))
    if version > VERSION:
        raise StateError(
            "$.version",
            f"state file version {version} is newer than this "
            f"imemviz (reads up to {VERSION}); update imemviz",
        )
    while version < VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise StateError(
                "$.version",
                f"state file version {version} is not supported "
                f"(this imemviz reads versions {min(MIGRATIONS, default=VERSION)}"
                f" to {VERSION})",
            )
        doc = step(doc)
        if not isinstance(doc, dict) or doc.get("version") != version + 1:
            raise AssertionError(f"migration from version {version} did not give {version + 1}")
        version += 1
    return doc


def _short(v: Any) -> str:
    s = json.dumps(v)
    return s if len(s) <= 40 else s[:37] + "..."
