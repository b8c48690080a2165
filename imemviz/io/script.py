"""Reading scripts and recordings (contract section 2), and the VM they start from.

A script is UTF-8 JSON Lines: blank lines and ``#`` comments are skipped, the
first other line is the header, every later line is one op.  `ScriptReader`
streams ``(line_no, op, t)`` one line at a time, so a million-line script
never sits in memory; `read_script` is the whole-file convenience for small
ones.  Every problem is a `ScriptError` whose text is one line,
``FILE:LINE: message``, with physical 1-based line numbers.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import attrs

from imemviz.model.config import ConfigError, VMConfig
from imemviz.model.fault_batch import ACCESS, PlainOp
from imemviz.model.ops import OPS, Op, OpError, op_fields, parse_op
from imemviz.model.units import LEVEL_4K, U64_MAX
from imemviz.model.validate import expectation
from imemviz.model.vm import VM

# The C scanner behind json.loads, called directly for the common line that
# starts with "{": json.loads' Python wrapper costs four times the parse.
_scan_value = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__, not in typeshed

FORMAT = "imemviz-recording"
VERSION = 1
START_KINDS = ("vm", "scene", "state")
HEADER_FIELDS = ("format", "version", "start")

# A scene is a recording and may itself start from a scene; this bounds a cycle.
MAX_SCENE_DEPTH = 8

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_STATE_HINT = (
    "this is a state file, not a script: open it with `imemviz FILE`, "
    "or continue from it with `imemviz run SCRIPT --from-state FILE`"
)

ScriptOp = tuple[int, Op, float | None]
"""One op of a script: its physical line number, the op, and its "t" (or None)."""


class ScriptError(ValueError):
    """A script cannot be used; `str()` is one line: ``SOURCE:LINE: message``."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.message = message


@attrs.frozen
class Header:
    """The header line: `start` is the START object, with exactly one key."""

    version: int
    start: Mapping[str, Any]
    line: int

    @property
    def kind(self) -> str:
        """ "vm", "scene" or "state"."""
        return next(iter(self.start))


_READING: Any = Header(0, {}, 0)  # ScriptReader.header while the header is being read


@attrs.frozen
class Script:
    """A whole script in memory (see `read_script`)."""

    source: str
    header: Header
    ops: list[ScriptOp]


class ScriptReader:
    """Streams a script: the header is read on construction, then iterate for ops.

    `lines` is any iterable of raw byte lines (a file opened in binary mode);
    `source` names it in errors.  Use `open_script` for a path; as a context
    manager the reader closes what it opened.

    `ops_only`: the header is optional (``run --from-state`` takes its start
    from a state file); `header` is None when the first line is an op.
    `salvage`: a last line cut short (no line break and not valid JSON: a
    crash or kill -9 while recording) ends the ops instead of being an error;
    `salvaged` then says so in one line.  `line` is the physical line number
    of the line read last: during iteration, the line of the op just yielded.
    """

    def __init__(
        self,
        lines: Iterable[bytes],
        source: str,
        *,
        closer: BinaryIO | None = None,
        ops_only: bool = False,
        salvage: bool = False,
    ):
        self.source = source
        self._lines = iter(lines)
        self._closer = closer
        self._line_no = 0
        self._salvage = salvage
        self.salvaged: str | None = None
        self._first: tuple[int, Any] | None = None  # an op line read in place of a header
        self._ops_read = 0
        self.header: Header | None = _READING
        self.header = self._read_header(ops_only)

    @property
    def line(self) -> int:
        return self._line_no

    def __enter__(self) -> ScriptReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closer is not None:
            self._closer.close()
            self._closer = None

    def _error(self, line: int | None, message: str) -> ScriptError:
        return ScriptError(self.source, line, message)

    def _cut(self, line_no: int, why: str) -> bool:
        """A last line without a line break failed to read: True to stop (salvage)."""
        if not self._salvage or self.header is _READING:
            return False
        count = self._ops_read
        self.salvaged = (
            f"{self.source}:{line_no}: warning: the last line is cut short ({why}); "
            f"replayed the {count} complete op line{'s' if count != 1 else ''} before it"
        )
        return True

    def _cut_error(self, line_no: int, why: str) -> ScriptError:
        return ScriptError(
            self.source,
            line_no,
            f"{why}; the last line is cut short (no line break): the recording was "
            "interrupted (a crash, kill -9?). Replay its complete lines with "
            "`imemviz run --salvage`; the app opens it up to there",
        )

    def _objects(self) -> Iterator[tuple[int, Any]]:
        """(line number, decoded JSON value) of every line that is not blank or a comment."""
        line_no = self._line_no
        try:
            for raw in self._lines:
                line_no += 1
                self._line_no = line_no
                value = self._decode(raw, line_no)
                if value is _SKIP:
                    continue
                if value is _STOP:
                    return
                yield line_no, value
        except OSError as e:
            raise ScriptError(self.source, line_no + 1, f"cannot read: {e.strerror or e}") from None

    def _decode(self, raw: bytes, line_no: int) -> Any:
        """The JSON value of one raw line; _SKIP for a blank or comment line, _STOP for a
        last line cut short when salvaging.  Raises ScriptError."""
        source = self.source
        last = not raw.endswith(b"\n")  # only the file's last line lacks one
        if line_no == 1 and raw.startswith((_GZIP_MAGIC, _ZSTD_MAGIC)):
            raise ScriptError(source, None, _STATE_HINT)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            why = f"invalid UTF-8 (byte {e.start + 1} of the line)"
            if last and raw.strip():
                if self._cut(line_no, why):
                    return _STOP
                raise self._cut_error(line_no, why) from None
            raise ScriptError(source, line_no, why) from None
        if line_no == 1 and text.startswith("\ufeff"):
            text = text[1:]  # editors on Windows start UTF-8 files with a BOM
        # Op lines start with "{": only other lines need the comment test.
        if text[:1] != "{":
            stripped = text.strip().strip("\x00")
            if not stripped or stripped[0] == "#":
                return _SKIP
        try:
            return _fast_loads(text)
        except json.JSONDecodeError as e:
            # Columns count within the line, without its line break.
            column = min(e.pos, len(text.rstrip("\r\n"))) + 1
            why = f"invalid JSON: {e.msg} (column {column})"
            if last:
                if self._cut(line_no, why):
                    return _STOP
                raise self._cut_error(line_no, why) from None
            raise ScriptError(source, line_no, why) from None
        except RecursionError:
            raise ScriptError(source, line_no, "invalid JSON: nested too deeply") from None
        except ValueError as e:  # an integer of more than 4,300 digits
            raise ScriptError(source, line_no, f"invalid JSON: {_short_reason(e)}") from None

    def _read_header(self, ops_only: bool) -> Header | None:
        for line_no, value in self._objects():
            if ops_only and type(value) is dict and "format" not in value and "op" in value:
                self._first = (line_no, value)
                return None
            return _parse_header(value, self.source, line_no)
        if ops_only:
            return None
        raise self._error(max(self._line_no, 1), "no header: the script is empty")

    def __iter__(self) -> Iterator[ScriptOp]:
        if self._first is not None:
            line_no, value = self._first
            self._first = None
            yield self._op(line_no, value)
        # Each line is tried against the pre-compiled form of the common ops first (one
        # regular expression, the field converted by the op's own converter); any other
        # line, or one whose field the converter refuses, is decoded and parsed in full.
        match = _FAST_LINE.fullmatch
        line_no = self._line_no
        try:
            for raw in self._lines:
                line_no += 1
                self._line_no = line_no
                m = match(raw)
                if m is not None:
                    op = _fast_op(m)
                    if op is not None:
                        self._ops_read += 1
                        yield line_no, op, None
                        continue
                value = self._decode(raw, line_no)
                if value is _SKIP:
                    continue
                if value is _STOP:
                    return
                yield self._op(line_no, value)
        except OSError as e:
            raise ScriptError(self.source, line_no + 1, f"cannot read: {e.strerror or e}") from None

    def runs(self, size: int = 1024) -> Iterator[ScriptOp | PlainRun]:
        """The ops as iteration gives them, except that consecutive lines of the
        pre-compiled plain forms (`_FAST_LINE`) come as one `PlainRun` of up to `size`
        ops, for `fault_batch.apply_plain`.  A run ends before any other line, so an
        error, a comment or a general op comes out exactly where it stands."""
        if self._first is not None:
            line_no, value = self._first
            self._first = None
            yield self._op(line_no, value)
        match = _FAST_LINE.fullmatch
        kinds = _PLAIN_KINDS
        line_no = self._line_no
        ops: list[PlainOp] = []
        first = 0
        try:
            for raw in self._lines:
                line_no += 1
                m = match(raw)
                if m is not None:
                    kind, conv = kinds[m[1]]
                    token = m[2]
                    try:
                        if token[0] == 34:  # '"': a hex string, for the converter
                            gpa = conv(token[1:-1].decode())
                        else:  # what the u64 converter does with a decimal of the pattern
                            gpa = int(token)
                            if gpa > U64_MAX:
                                raise ValueError
                    except Exception:  # refused: parse_op says why, with the line
                        pass
                    else:
                        if not ops:
                            first = line_no
                        ops.append((kind, gpa))
                        if len(ops) == size:
                            self._line_no = line_no
                            self._ops_read += size
                            yield PlainRun(first, ops)
                            ops = []
                        continue
                if ops:
                    self._line_no = line_no - 1
                    self._ops_read += len(ops)
                    yield PlainRun(first, ops)
                    ops = []
                self._line_no = line_no
                value = self._decode(raw, line_no)
                if value is _SKIP:
                    continue
                if value is _STOP:
                    return
                yield self._op(line_no, value)
        except OSError as e:
            if ops:  # the ops read before the error are applied first, as by iteration
                self._line_no = line_no - 1
                self._ops_read += len(ops)
                yield PlainRun(first, ops)
            raise ScriptError(self.source, line_no + 1, f"cannot read: {e.strerror or e}") from None
        if ops:
            self._line_no = line_no
            self._ops_read += len(ops)
            yield PlainRun(first, ops)

    def _op(self, line_no: int, value: Any) -> ScriptOp:
        self._line_no = line_no
        try:
            op = parse_op(value)
        except OpError as e:
            where = f"{e.op}.{e.field}: " if e.op else ""
            raise ScriptError(self.source, line_no, where + e.message) from None
        self._ops_read += 1
        t = _check_t(value["t"], self.source, line_no) if "t" in value else None
        return line_no, op, t


# What `_decode` returns for a line without an op, and for a cut last line when salvaging.
_SKIP: Any = object()
_STOP: Any = object()

# The common op lines, as `imemviz run` of a fault trace reads a million of them:
# {"op": "guest_access" or "guest_accept", "gpa": N or "0x..."} with nothing else,
# compact or with json.dumps' spaces.  Such a line is valid JSON of exactly that
# object (no escapes, no duplicate key, a plain decimal or hex string), so the op
# is its class called with the field its own converter gives; a line that does not
# match, or whose converter refuses the field, goes through json and parse_op.
_FAST_LINE = re.compile(
    rb'\{"op": ?"(guest_access|guest_accept)", ?"gpa": ?(0|[1-9][0-9]{0,19}|"0x[0-9a-fA-F]{1,16}")'
    rb"\}\r?\n"
)
_FAST_OPS: dict[bytes, tuple[type[Op], Any]] = {
    name.encode(): (OPS[name], next(f.parse for f in op_fields(name) if f.name == "gpa"))
    for name in ("guest_access", "guest_accept")
}


@attrs.define(slots=True)
class PlainRun:
    """Consecutive plain fault lines (`ScriptReader.runs`): `ops` are (kind, gpa) pairs as
    `fault_batch.apply_plain` takes them, `line` is the first one's physical line (the
    others follow it, one a line)."""

    line: int
    ops: list[PlainOp]


# A `_FAST_LINE` op name -> its fault_batch kind and the gpa field's converter (the u64
# one: `runs` checks a decimal's range itself, which is all it does with one).
_PLAIN_KINDS: dict[bytes, tuple[int, Any]] = {
    b"guest_access": (ACCESS, _FAST_OPS[b"guest_access"][1]),
    b"guest_accept": (LEVEL_4K, _FAST_OPS[b"guest_accept"][1]),
}


def _fast_op(m: re.Match[bytes]) -> Op | None:
    """The op of a `_FAST_LINE` match, or None when its converter refuses the field."""
    cls, conv = _FAST_OPS[m[1]]
    token = m[2]
    try:
        gpa = conv(token[1:-1].decode() if token[:1] == b'"' else int(token))
    except Exception:  # refused (or not a number): parse_op says why, with the line
        return None
    return cls(gpa)  # type: ignore[call-arg]  # both take gpa first


def _short_reason(e: ValueError) -> str:
    text = str(e).split(";")[0]  # "Exceeds the limit (4300 digits) ...; use sys.set_..."
    if "digits" in text:
        return "an integer with more than 4,300 digits"
    return text[:120]


def _fast_loads(text: str) -> Any:
    """json.loads(text), faster for a line that starts with "{" and parses cleanly."""
    if text[:1] == "{":
        try:
            value, end = _scan_value(text, 0)
        except (StopIteration, json.JSONDecodeError, RecursionError):
            pass  # json.loads names the error
        else:
            if end == len(text) or not text[end:].strip():
                return value
    return json.loads(text)


def _check_t(t: Any, source: str, line_no: int) -> float:
    if type(t) in (int, float) and math.isfinite(t) and t >= 0:
        return float(t)
    raise ScriptError(source, line_no, f"t: expected a non-negative number of seconds, got {t!r}")


def _parse_header(value: Any, source: str, line_no: int) -> Header:
    def fail(message: str) -> ScriptError:
        return ScriptError(source, line_no, message)

    example = '{"format": "imemviz-recording", "version": 1, "start": ...}'
    if type(value) is not dict:
        raise fail(f"the header must be a JSON object like {example}")
    if "format" not in value:
        if "op" in value:
            raise fail(f"the first line must be the header {example}, not an op")
        raise fail(f'header: missing "format" (expected {example})')
    fmt = value["format"]
    if fmt != FORMAT:
        hint = "; " + _STATE_HINT if fmt == "imemviz-state" else ""
        raise fail(f'header.format: expected "{FORMAT}", got {json.dumps(fmt)}{hint}')
    version = value.get("version")
    if type(version) is not int:
        raise fail(f"header.version: {expectation('an integer', version)}")
    if version > VERSION:
        raise fail(
            f"recording format version {version} is newer than this imemviz reads "
            f"(version {VERSION}); update imemviz"
        )
    if version < 1:
        raise fail(f"header.version: must be {VERSION}, got {version}")
    for key in value:
        if key not in HEADER_FIELDS:
            raise fail(f"header.{key}: unknown field (fields: {', '.join(HEADER_FIELDS)})")
    if "start" not in value:
        raise fail('header: missing "start"')
    start = value["start"]
    if type(start) is not dict or len(start) != 1 or next(iter(start)) not in START_KINDS:
        got = ", ".join(f'"{k}"' for k in start) if type(start) is dict else json.dumps(start)
        raise fail(
            'header.start: expected an object with exactly one of "vm", "scene", "state", '
            f"got {got or 'an empty object'}"
        )
    return Header(version, start, line_no)


# ------------------------------------------------------------------ API


def open_script(
    path: str | os.PathLike[str], *, ops_only: bool = False, salvage: bool = False
) -> ScriptReader:
    """A reader over a script file; the header is checked before this returns
    (see ScriptReader for `ops_only` and `salvage`)."""
    source = os.fspath(path)
    try:
        f = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - the reader closes it
    except OSError as e:
        raise ScriptError(source, None, f"cannot open: {e.strerror or e}") from None
    try:
        return ScriptReader(f, source, closer=f, ops_only=ops_only, salvage=salvage)
    except BaseException:
        f.close()
        raise


def read_header(path: str | os.PathLike[str]) -> Header:
    """Only the header of a script file."""
    with open_script(path) as reader:
        assert reader.header is not None  # open_script() without ops_only always reads one
        return reader.header


def iter_ops(path: str | os.PathLike[str]) -> Iterator[ScriptOp]:
    """The ops of a script file, one at a time, after checking its header."""
    with open_script(path) as reader:
        yield from reader


def read_script(path: str | os.PathLike[str]) -> Script:
    """A whole script in memory: for small files (scenes, tests, the app's open)."""
    with open_script(path) as reader:
        assert reader.header is not None  # open_script() without ops_only always reads one
        return Script(reader.source, reader.header, list(reader))


def start_vm(start: Mapping[str, Any], source: str = "<script>", line: int = 1) -> VM:
    """The VM a header's START describes; errors name `source` and `line` (the header's).

    ``vm``: a fresh VM from VMCONFIG.  ``scene``: the built-in recording of
    that name, replayed.  ``state``: an embedded state document.
    """
    return _start_vm(start, os.fspath(source), line, 0)


def _start_vm(start: Mapping[str, Any], source: str, line: int, depth: int) -> VM:
    if len(start) != 1:
        raise ScriptError(
            source, line, 'header.start: expected exactly one of "vm", "scene", "state"'
        )
    ((kind, value),) = start.items()
    if kind == "vm":
        try:
            return VM(VMConfig.from_dict(value, path="start.vm"))
        except ConfigError as e:
            raise ScriptError(source, line, f"header.{e.path}: {e.message}") from None
    if kind == "scene":
        return _scene_vm(value, source, line, depth)
    if kind == "state":
        # Imported here: the state module is heavier and scripts rarely embed one.
        from imemviz.io.state import StateError, vm_from_document

        try:
            return vm_from_document(value)
        except StateError as e:
            raise ScriptError(source, line, f"header.start.state: {e}") from None
    raise ScriptError(source, line, f'header.start: unknown start "{kind}"')


def _scene_vm(name: Any, source: str, line: int, depth: int) -> VM:
    from imemviz import resources

    if type(name) is not str:
        raise ScriptError(
            source, line, f"header.start.scene: expected a name, got {json.dumps(name)}"
        )
    path = resources.scene_path(name)
    if path is None:
        known = ", ".join(resources.scene_names()) or "none are installed"
        raise ScriptError(source, line, f'unknown scene "{name}" (scenes: {known})')
    if depth >= MAX_SCENE_DEPTH:
        raise ScriptError(source, line, f'scene "{name}": scenes start from scenes too deeply')
    try:
        with open_script(path) as reader:
            h = reader.header
            assert h is not None  # open_script() without ops_only always reads one
            vm = _start_vm(h.start, reader.source, h.line, depth + 1)
            for _line, op, _t in reader:
                vm.apply(op)
    except ScriptError as e:
        # Keep it one line: the outer header, then where the scene itself is broken.
        raise ScriptError(source, line, f'scene "{name}": {e}') from None
    return vm
