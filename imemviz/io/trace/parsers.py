"""Where the import's blocks are parsed: in this process, or in parsing processes.

`Parsers(n)` runs `scanner.parse_block` over a file's blocks, in order, in `n`
worker processes (none: here).  Each worker has its own pipe; block k goes to
worker k mod n, and the results are read back in the same order, so no sorting
and no threads are needed (a `multiprocessing.Pool` costs a third of a core in
its task and result threads, fighting the committing thread for the GIL).

What crosses the pipes is kept small.  A block of a regular, uncompressed file is
sent as (path, offset, length): the worker reads those bytes itself (`os.pread`),
so sending a task never blocks and up to `WINDOW` blocks per worker are in
flight.  A block of a stream (gzip, zstd, trace-cmd's output, a FIFO) is sent
with its bytes, one at a time per worker: a worker then waits for its task
while the importing process writes it, never both sending at once.  The result
is the block packed (`scanner.Block.pack`: the texts as one string, only the
ops that are not None), one pickle.

Workers ignore SIGINT (Ctrl-C reaches the importing process, which ends them),
die with their parent (Linux `PR_SET_PDEATHSIG`, and EOF on their pipe
elsewhere), and `close()` ends them at once: a cancelled or failed import
leaves no process behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from imemviz.io.trace.scanner import Block, parse_block

WINDOW = 3  # blocks in flight per worker, when they are sent as (path, offset, length)

# One block to parse: its bytes, its file's number, the number of its first line, the
# parsing's settings, and where the bytes are in the file (path, offset) when the
# worker may read them there itself (None: send them).
Task = tuple[bytes, int, int, dict[str, Any], tuple[str, int] | None]


class ParseError(Exception):
    """A parsing process failed or died: one line saying so."""


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (no orphan, even when
    the parent is killed with SIGKILL)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _worker(conn: Any, parent: int) -> None:
    """A parsing process: tasks in, packed blocks out, until None or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent
    _die_with_parent()
    if os.getppid() != parent:
        return  # the parent died before the death signal was asked for
    files: dict[str, int] = {}
    try:
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            data, src, first, settings, where = task
            try:
                if where is not None:
                    path, offset, length = where
                    fd = files.get(path)
                    if fd is None:
                        fd = files[path] = os.open(path, os.O_RDONLY)
                    data = os.pread(fd, length, offset)
                    if len(data) != length:
                        conn.send_bytes(pickle.dumps(("short", None), -1))
                        continue
                b = parse_block((data, src, first, settings))
                out = pickle.dumps(("ok", b), -1)
            except Exception as e:  # a parser bug: reported, the import fails with it
                out = pickle.dumps(("error", repr(e)), -1)
            try:
                conn.send_bytes(out)
            except OSError:
                return
    finally:
        for fd in files.values():
            os.close(fd)


class Parsers:
    """Where blocks are parsed: `n` processes, or this one (n = 0)."""

    def __init__(self, n: int = 0) -> None:
        self.procs: list[Any] = []
        self.conns: list[Any] = []
        self.order: list[deque[int]] = []  # per worker: the ids of its tasks in flight
        self.ready: dict[int, bytes] = {}  # results received, not yet claimed
        self.turn = 0  # the worker the next task goes to
        self.next_id = 0
        if n <= 0:
            return
        # fork is instant and safe in a process with one thread (the command line,
        # the app's import process); elsewhere start clean processes.
        method = "fork" if threading.active_count() == 1 and _has_fork() else "spawn"
        ctx: Any = multiprocessing.get_context(method)
        # SIGINT blocked while the workers start: a Ctrl-C then waits for this process
        # (which ends them), instead of reaching a worker before it ignores it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for k in range(n):
                here, there = ctx.Pipe()
                p = ctx.Process(
                    target=_worker,
                    args=(there, os.getpid()),
                    name=f"imemviz-parse-{k}",
                    daemon=True,
                )
                p.start()
                there.close()
                self.procs.append(p)
                self.conns.append(here)
                self.order.append(deque())
        except BaseException:
            self.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def map(self, tasks: Iterator[Task]) -> Iterator[tuple[Block, bytes]]:
        """parse_block over `tasks`, in order, with the data of each.  Several maps may
        run interleaved (the files of a merge): the workers are shared, each result
        is claimed by the map that sent its task."""
        if not self.procs:
            for data, src, first, settings, _where in tasks:
                yield parse_block((data, src, first, settings)), data
            return
        pending: deque[tuple[int, int, Task]] = deque()  # (worker, task id, task)
        for t in tasks:
            pending.append((*self._submit(t), t))
            if len(pending) >= len(self.procs) * (WINDOW if t[4] is not None else 1):
                yield self._claim(*pending.popleft())
        while pending:
            yield self._claim(*pending.popleft())

    def _submit(self, t: Task) -> tuple[int, int]:
        """Send one task to the next worker (once it has room): (worker, task id)."""
        w = self.turn
        self.turn = (w + 1) % len(self.procs)
        data, src, first, settings, where = t
        window = WINDOW if where is not None else 1
        while len(self.order[w]) >= window:
            self._pull(w)
        msg = (None if where else data, src, first, settings, where and (*where, len(data)))
        try:
            self.conns[w].send(msg)
        except OSError:
            raise ParseError(self._died(w)) from None
        tid = self.next_id
        self.next_id += 1
        self.order[w].append(tid)
        return w, tid

    def _pull(self, w: int) -> None:
        """Receive worker w's oldest result (it works in the order it was sent)."""
        try:
            raw = self.conns[w].recv_bytes()
        except (EOFError, OSError):
            raise ParseError(self._died(w)) from None
        self.ready[self.order[w].popleft()] = raw

    def _claim(self, w: int, tid: int, t: Task) -> tuple[Block, bytes]:
        while tid not in self.ready:
            self._pull(w)
        what, b = pickle.loads(self.ready.pop(tid))
        data = t[0]
        if what == "short":  # the file changed under the worker: read what this one read
            return parse_block((data, t[1], t[2], t[3])), data
        if what != "ok":
            raise ParseError(f"import: a parsing process failed: {b}")
        return b, data

    def _died(self, w: int) -> str:
        p = self.procs[w]
        p.join(1)
        return f"import: a parsing process ended (exit code {p.exitcode})"

    def close(self) -> None:
        """End the workers now (their work is not needed any more, or is done)."""
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(2)
            if p.is_alive():
                p.kill()
                p.join(2)
        self.procs, self.conns = [], []


def _has_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()
