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
import mmap
import multiprocessing
import os
import pickle
import signal
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from imemviz.io.trace.scanner import Block, parse_block

WINDOW = 6  # blocks in flight per worker, when they are sent as (path, offset, length)

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


def _worker(conn: Any, parent: int, slots: Any = None) -> None:
    """A parsing process: tasks in, packed blocks out, until None or EOF.  `slots`: this
    worker's part of the shared memory (`Slots`), or None."""
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
                if where is not None and len(data) != where[2]:  # the file changed
                    out = pickle.dumps(("short", None), -1)
                else:
                    out = pickle.dumps(("ok", parse_block((data, src, first, settings))), -1)
            except Exception as e:  # a parser bug: reported, the import fails with it
                out = pickle.dumps(("error", repr(e)), -1)
            try:
                if slots is not None:
                    conn.send_bytes(slots.put(out))
                else:
                    conn.send_bytes(b"P" + out)
            except OSError:
                return
    finally:
        for fd in files.values():
            os.close(fd)


class Slots:
    """A worker's results through shared memory (an anonymous shared mapping made before
    the fork): a result is written into the next of `SLOTS` slots and only its place
    crosses the pipe.  A result sent whole through the pipe (64-200 KB of buffer)
    goes over in pieces, each a switch between the worker and the importing process:
    with three processes on two cores, each of those waits for a time slice, and the
    workers spent a quarter of their time blocked in sending.

    A slot is free again once the importing process has copied its result out
    (`Parsers._pull`): at most WINDOW tasks are in flight per worker, so by the time
    a worker gets the task that reuses a slot, that slot's result was copied."""

    SLOTS = WINDOW + 1
    SIZE = 8 << 20  # bytes a slot holds; a larger result is sent through the pipe

    def __init__(self, mem: Any, base: int) -> None:
        self.mem = mem
        self.base = base
        self.k = 0

    def put(self, out: bytes) -> bytes:
        """Where `out` went: b"M" + offset + length, or b"P" + out itself."""
        if len(out) > self.SIZE:
            self.k += 1
            return b"P" + out
        off = self.base + self.k % self.SLOTS * self.SIZE
        self.k += 1
        self.mem[off : off + len(out)] = out
        return b"M" + off.to_bytes(8, "little") + len(out).to_bytes(8, "little")


class Parsers:
    """Where blocks are parsed: `n` processes, or this one (n = 0)."""

    def __init__(self, n: int = 0) -> None:
        self.procs: list[Any] = []
        self.conns: list[Any] = []
        self.order: list[deque[int]] = []  # per worker: the ids of its tasks in flight
        self.ready: dict[int, Any] = {}  # results received, not yet claimed
        self.mem: Any = None
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
        # Shared memory for the results, when the workers are forked (spawned ones
        # would need a named mapping: they send results through the pipe).
        if method == "fork":
            with contextlib.suppress(OSError):
                self.mem = mmap.mmap(-1, n * Slots.SLOTS * Slots.SIZE)
        try:
            for k in range(n):
                here, there = ctx.Pipe()
                slots = None
                if self.mem is not None:
                    slots = Slots(self.mem, k * Slots.SLOTS * Slots.SIZE)
                p = ctx.Process(
                    target=_worker,
                    args=(there, os.getpid(), slots),
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
        if raw[:1] == b"M":  # in shared memory: copied out now, so its slot is free
            off = int.from_bytes(raw[1:9], "little")
            size = int.from_bytes(raw[9:17], "little")
            assert self.mem is not None
            out: Any = self.mem[off : off + size]
        else:
            out = memoryview(raw)[1:]
        self.ready[self.order[w].popleft()] = out

    def _claim(self, w: int, tid: int, t: Task) -> tuple[Block, bytes]:
        # Take in every result already waiting, not only this one: a worker whose
        # result is not read waits (a result is larger than the pipe holds), and it
        # would otherwise wait until its block's turn to be committed.
        for k, conn in enumerate(self.conns):
            while self.order[k] and conn.poll(0):
                self._pull(k)
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
        self.ready.clear()
        if self.mem is not None:
            self.mem.close()
            self.mem = None


def _has_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()
