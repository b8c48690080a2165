"""The ``imemviz`` command line (contract section 1).

``run`` lives here; ``check``, ``diff`` and ``export-video`` are handed to
their modules, and every other form starts the desktop app.  Everything is
imported where it is needed: ``run``, ``check`` and ``diff`` never import
Qt, and ``--version`` imports next to nothing.

Unusable input ends with exit code 2 and exactly one line on stderr, never a
traceback; argparse is made to follow that rule too.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, NoReturn

import imemviz

if TYPE_CHECKING:
    from imemviz.io.atomic import AtomicFile
    from imemviz.io.script import ScriptReader
    from imemviz.model.vm import VM

# Subcommands implemented in other modules: name -> (module, function(argv) -> int).
DELEGATED = {
    "check": ("imemviz.io.check", "main_check"),
    "diff": ("imemviz.io.diff", "main_diff"),
    "import": ("imemviz.io.trace.importer", "main_import"),
    "export-video": ("imemviz.app.video", "main_export"),
}
APP = ("imemviz.app.main", "run_app")
QT_MODULES = ("PySide6", "pyqtgraph", "shiboken6")

# Results of a run to stdout stay in memory up to this size, then go to a temp file.
_SPOOL_BYTES = 32 << 20


class UsageError(Exception):
    """The command line or its input is unusable: exit 2 with this one line."""


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line and never calls sys.exit itself."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "run":
            return _cmd_run(args[1:])
        if args and args[0] in DELEGATED:
            module, func = DELEGATED[args[0]]
            return _delegate(f"imemviz {args[0]}", module, func, args[1:])
        return _cmd_app(args)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except _Exit as e:
        return e.status
    except KeyboardInterrupt:
        print("imemviz: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The console script."""
    sys.exit(main())


# ------------------------------------------------------------ delegation


def _load(prog: str, module: str, func: str, what: str = "this command") -> Callable[..., int]:
    """`module.func`, or a UsageError if this installation lacks it (or Qt)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        ours = module == missing or module.startswith(missing + ".")
        if ours or missing.split(".")[0] in QT_MODULES:
            raise UsageError(
                f"{prog}: {what} is not available in this installation ({e})"
            ) from None
        raise
    fn: Callable[..., int] = getattr(mod, func)
    return fn


def _delegate(prog: str, module: str, func: str, argv: list[str]) -> int:
    command = _load(prog, module, func)
    try:
        return int(command(argv) or 0)
    except SystemExit as e:  # a subcommand that lets its own argparse exit
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


def _cmd_app(argv: list[str]) -> int:
    parser = _Parser(
        prog="imemviz",
        usage="imemviz [--screenshot PNG [--size WxH] [--at N]] [FILE]\n"
        "       imemviz {run,check,diff,import,export-video} ...  (each with --help)",
        description="Visualizer and simulator of KVM private memory. Without a "
        "command, opens the desktop app on FILE (a state file or a recording) "
        "or on the default scene.",
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help="state file or recording to open")
    parser.add_argument(
        "--screenshot",
        metavar="PNG",
        help="open without showing a window, save a PNG of the main window and exit",
    )
    parser.add_argument(
        "--size", metavar="WxH", help="with --screenshot: the window's size (default 1600x1000)"
    )
    parser.add_argument(
        "--at",
        metavar="N",
        help="with --screenshot and a recording: show it as replay does right after its "
        "first N ops (N >= 1): the state after op N, framed on what op N changed",
    )
    parser.add_argument("--version", action="version", version=f"imemviz {imemviz.__version__}")
    ns = parser.parse_args(argv)
    if ns.file is not None and not os.path.exists(ns.file):
        # Most likely a mistyped command: say so before starting Qt.
        raise UsageError(
            f"imemviz: {ns.file}: no such file (commands: run, {', '.join(DELEGATED)})"
        )
    if (ns.size is not None or ns.at is not None) and ns.screenshot is None:
        raise UsageError("imemviz: --size and --at go with --screenshot PNG")
    size = None if ns.size is None else parse_size(ns.size, "--size")
    at = None if ns.at is None else _check_at(ns.at, ns.file)
    run_app = _load("imemviz", *APP, what="the desktop app")
    if size is None and at is None:
        return int(run_app(ns.file, ns.screenshot) or 0)
    return int(run_app(ns.file, ns.screenshot, size=size, at=at) or 0)


SIZE_MIN, SIZE_MAX = (640, 400), (7680, 4320)


def parse_size(text: str, option: str) -> tuple[int, int]:
    """'1920x1080' -> (1920, 1080); a UsageError naming `option` otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"imemviz: {option} {text!r}: expected WxH in pixels, e.g. 1920x1080")
    w, h = (int(p) for p in parts)
    if not (SIZE_MIN[0] <= w <= SIZE_MAX[0] and SIZE_MIN[1] <= h <= SIZE_MAX[1]):
        raise UsageError(
            f"imemviz: {option} {text}: from {SIZE_MIN[0]}x{SIZE_MIN[1]} "
            f"to {SIZE_MAX[0]}x{SIZE_MAX[1]}"
        )
    return w, h


def _check_at(text: str, file: str | None) -> int:
    """--at N: FILE must be a recording with at least N ops (Qt-free check)."""
    try:
        n = int(text, 0)
    except ValueError:
        raise UsageError(f"imemviz: --at {text!r}: expected an op count N >= 1") from None
    if n < 1:
        raise UsageError(f"imemviz: --at {n}: N counts ops applied, from 1")
    if file is None:
        raise UsageError("imemviz: --at needs FILE, a recording (.jsonl)")
    from imemviz.io.replay import Timeline
    from imemviz.io.script import ScriptError
    from imemviz.io.session import STATE_SUFFIXES
    from imemviz.io.trace.timeline import is_observed

    if is_observed(file):
        return n  # an observed timeline: N counts its events (checked once it is loaded)
    if file.endswith(STATE_SUFFIXES):
        raise UsageError(f"imemviz: --at needs a recording (.jsonl); {file} is a state file")
    try:
        ops = len(Timeline.load(file))
    except ScriptError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"{file}: cannot read: {e.strerror or e}") from None
    if ops == 0:
        raise UsageError(f"imemviz: --at {n}: {file} has no ops")
    if n > ops:
        raise UsageError(f"imemviz: --at {n}: {file} has {ops} ops (N from 1 to {ops})")
    return n


# -------------------------------------------------------------------- run


def _cmd_run(argv: list[str]) -> int:
    parser = _Parser(
        prog="imemviz run",
        description="Apply every op of a script or recording in order and write one "
        "JSON result line per op. Never imports Qt.",
    )
    parser.add_argument("script", metavar="SCRIPT", help="script or recording (.jsonl)")
    parser.add_argument(
        "--results-out", metavar="RESULTS", help="write the results here instead of stdout"
    )
    parser.add_argument("--state-out", metavar="STATE", help="save the final state file here")
    parser.add_argument(
        "--from-state",
        metavar="STATE",
        help="start from this state file instead of the script header's start "
        "(the script may then be ops only, without a header)",
    )
    parser.add_argument(
        "--salvage",
        action="store_true",
        help="a recording cut short (a crash, kill -9): replay it up to its last "
        "complete line, with a warning on stderr, instead of refusing it",
    )
    ns = parser.parse_intermixed_args(argv)
    from imemviz.io.script import ScriptError

    try:
        run_script(
            ns.script,
            results_out=ns.results_out,
            state_out=ns.state_out,
            from_state=ns.from_state,
            salvage=ns.salvage,
        )
    except ScriptError as e:
        raise UsageError(str(e)) from None
    except BrokenPipeError:
        # The reader of stdout went away (`| head`): nothing left to say to it.
        _quiet_stdout()
        return 1
    return 0


def run_script(
    script: str,
    *,
    results_out: str | None = None,
    state_out: str | None = None,
    from_state: str | None = None,
    stdout: IO[str] | None = None,
    salvage: bool = False,
) -> int:
    """Apply a script headlessly; returns the number of ops applied.

    Results go to `results_out`, or to `stdout` (default sys.stdout) once
    every line has been applied: a script that turns out to be malformed at
    its last line prints nothing.  Output files appear only on success, are
    written by the one atomic writer (imemviz.io.atomic) and never name an
    input.  Raises ScriptError or UsageError for unusable input or outputs.
    """
    from imemviz.io.atomic import AtomicFile, OutputError
    from imemviz.io.script import open_script

    to_stdout = results_out is None or results_out == "-"
    outputs: list[AtomicFile] = []
    inputs = (script, from_state)
    try:
        # Claim the outputs first: an unwritable folder fails before the work.
        results = (
            None if to_stdout or results_out is None else AtomicFile(results_out, inputs=inputs)
        )
        if results is not None:
            outputs.append(results)
        state = None
        if state_out is not None:
            state = AtomicFile(state_out, inputs=inputs)
            outputs.append(state)
            if results is not None and state.same_target(results):
                raise UsageError(
                    f"{state_out}: cannot write: it is also --results-out "
                    "(two outputs cannot share one file)"
                )
        if results is not None:
            sink: IO[str] = results.open("w")
        else:
            sink = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed below
                max_size=_SPOOL_BYTES, mode="w+", encoding="utf-8", newline="\n"
            )
        try:
            with open_script(script, ops_only=from_state is not None, salvage=salvage) as reader:
                vm = _start(reader, from_state)
                try:
                    count = _apply_all(reader, vm, sink.write)
                    sink.flush()
                except OSError as e:  # the sink's disk is full, or gone
                    if isinstance(e, OutputError):
                        raise
                    where = results_out if results is not None else "temp file for stdout"
                    raise UsageError(f"{where}: cannot write: {e.strerror or e}") from None
                if reader.salvaged is not None:
                    print(f"imemviz run: {reader.salvaged}", file=sys.stderr)
            if state is not None:
                _save_state(vm, state)
            if to_stdout:
                sink.seek(0)
                _copy_stdout(sink, sys.stdout if stdout is None else stdout)
        finally:
            sink.close()
        for f in outputs:
            f.commit()
        return count
    except OutputError as e:
        raise UsageError(str(e)) from None
    finally:
        for f in outputs:
            f.discard()


def _start(reader: ScriptReader, from_state: str | None) -> VM:
    """The VM the ops apply to: the state file, or the script header's start."""
    from imemviz.io.script import start_vm

    if from_state is not None:
        return _load_state(from_state)
    h = reader.header
    assert h is not None
    return start_vm(h.start, reader.source, h.line)


def _copy_stdout(src: IO[str], out: IO[str]) -> None:
    """The staged results to stdout; a full disk or a closed stdout is exit 2, one line."""
    try:
        shutil.copyfileobj(src, out, 1 << 20)
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        _quiet_stdout()
        raise UsageError(f"stdout: cannot write: {e.strerror or e}") from None


def _quiet_stdout() -> None:
    """Point fd 1 at /dev/null: what is still buffered for stdout is dropped at exit,
    instead of a second error (and a traceback) from the interpreter's final flush."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _apply_all(reader: ScriptReader, vm: VM, write: Callable[[str], object]) -> int:
    index = 0
    apply = vm.apply
    # Ops make no reference cycles (VM.apply pauses the cyclic GC per op for that
    # reason): pausing it for the whole loop saves two calls per op.
    gc_on = gc.isenabled()
    gc.disable()
    # Result lines are written 1,024 at a time (one write instead of a thousand); the
    # sink is a temp file or an atomic output that appears only on success, so
    # when they are written is invisible.
    lines: list[str] = []
    add = lines.append
    # Runs of plain fault lines are applied in one call each (model/fault_batch.py).
    from imemviz.io.script import PlainRun
    from imemviz.model import fault_batch

    line: int | None = None  # the op's line when a run fails (the reader is past it)
    try:
        for item in reader.runs() if fault_batch.ENABLED else reader:
            if isinstance(item, PlainRun):
                start = vm.op_index
                try:
                    index = fault_batch.apply_plain(vm, item.ops, index, add)
                except Exception:
                    failed = vm.op_index - start - 1  # the failing op counts, as in VM.apply
                    index += failed
                    line = item.line + failed
                    raise
            else:
                op = item[1]
                add(apply(op).line_json(index, op.NAME))
                index += 1
            if len(lines) >= 1024:
                lines.append("")
                write("\n".join(lines))
                lines.clear()
        if lines:
            lines.append("")
            write("\n".join(lines))
    except Exception as e:
        from imemviz.io.script import ScriptError

        if not isinstance(e, ScriptError | OSError):
            # An engine bug: keep the traceback, and say which op hit it (the
            # reader's line is the op's own line, whichever stage failed).
            at = reader.line if line is None else line
            e.add_note(f"while applying op {index} at {reader.source}:{at}")
        raise
    finally:
        if gc_on:
            gc.enable()
    return index


def _load_state(path: str) -> VM:
    from imemviz.io.state import StateError, load_state

    try:
        return load_state(path)
    except StateError as e:
        raise UsageError(_name_file(path, str(e))) from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None


def _save_state(vm: VM, out: AtomicFile) -> None:
    from imemviz.io.state import encode_state

    try:
        out.write(encode_state(vm, out.real))
    except OSError as e:
        raise UsageError(f"{out.path}: cannot write: {e.strerror or e}") from None


def _name_file(path: str, message: str) -> str:
    """`message` prefixed with `path` unless it already names it."""
    return message if message.startswith(path) else f"{path}: {message}"
