"""`import_traces` in a child process, for the app's File > Import trace.

The import is pure Python: run on a thread of the app's process, it shares the
GIL with the GUI thread, which then waits for it (the interpreter hands the GIL
over only every switch interval, and not at all during a long C call), and the
app stalls for tens of milliseconds at a time under load.  In a child process
the GUI thread only ever waits for its own work; the thread that runs
`import_in_child` sleeps in `poll` (no GIL held) between messages.

The child is started clean (`spawn`: the app's process has threads) and talks
over one pipe, at a lower priority (`NICE`): the machines are small and often
busy, and the GUI's process waking every few milliseconds must not queue behind
the import's processes.  Progress (at most every `PROGRESS_S`), then the result or the one
line of its ImportError_.  Cancel is a message the child's `stop()` sees at its
next block; the child then ends as `import_traces` does when cancelled (nothing
written).  A child that dies (killed, out of memory) is an error line, never a
hang; a child still running when the caller leaves is terminated.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

import attrs

from imemviz.io.trace.import_types import ImportError_, ImportOptions, ImportResult

PROGRESS_S = 0.05  # the child sends progress at most this often
POLL_S = 0.05  # how often the waiting thread looks at stop()
NICE = 10  # the child's niceness: below the app's own threads


def _child(conn: Any, paths: list[str], out: str, summary: str | None, opts: Any) -> None:
    # Background work: on a busy machine the GUI's process must win the CPU, not wait
    # behind the import (and its parsing processes, which inherit this).
    with contextlib.suppress(OSError, AttributeError):
        os.nice(NICE)
    last = [0.0]
    stopped = [False]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_S or done >= total:
            last[0] = now
            conn.send(("progress", done, total))

    def stop() -> bool:
        while not stopped[0] and conn.poll():
            if conn.recv() == "stop":
                stopped[0] = True
        return stopped[0]

    # The importer loads here, in the child: the app's process never needs it.
    from imemviz.io.trace.importer import import_traces

    try:
        res = import_traces(paths, out, summary, opts, progress, stop)
    except ImportError_ as e:
        conn.send(("error", str(e)))
    except Exception as e:  # an importer bug: one line, not a traceback
        conn.send(("error", f"import: internal error: {e!r}"))
    else:
        conn.send(("done", res))
    finally:
        conn.close()


def app_processes() -> int:
    """Parsing processes for the app's import: one core is the GUI's.  On 2 cores the
    import child and two workers kept both busy and the GUI thread's timer saw 27-30 ms
    gaps (13-15 ms with the child alone, docs/benchmarks.md): none there, one on 3
    cores, two from 4."""
    return max(0, min(2, (os.cpu_count() or 1) - 2))


def import_in_child(
    paths: list[str],
    out: str,
    summary_path: str | None = None,
    options: ImportOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> ImportResult:
    """`import_traces` with the same arguments, run in a child process; blocks until it
    ends.  Raises ImportError_ as import_traces does (and when the child dies).

    Unless `options` say how many, the child uses parsing processes only where a core
    is left for the app (`app_processes`)."""
    opts = options or ImportOptions()
    if opts.processes is None:
        opts = attrs.evolve(opts, processes=app_processes())
    options = opts
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    proc = ctx.Process(
        target=_child,
        args=(there, list(paths), out, summary_path, options),
        name="imemviz-import",
    )
    proc.start()
    there.close()
    asked_stop = False
    try:
        while True:
            if not asked_stop and stop is not None and stop():
                asked_stop = True
                with contextlib.suppress(OSError):
                    here.send("stop")
            if not here.poll(POLL_S):
                if not proc.is_alive() and not here.poll(0):
                    break
                continue
            try:
                msg = here.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "progress":
                if progress is not None:
                    progress(msg[1], msg[2])
            elif msg[0] == "done":
                result: ImportResult = msg[1]
                return result
            else:
                raise ImportError_(msg[1])
        proc.join(5)
        raise ImportError_(
            f"import: the import process ended without a result (exit code {proc.exitcode})"
        )
    finally:
        here.close()
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
