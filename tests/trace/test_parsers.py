"""parsers.Parsers, the import's parsing processes: results in order whatever the
number of workers, a worker's failure is one error, and no worker outlives the
import: when it ends, fails, is cancelled, gets Ctrl-C or is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imemviz.io.trace import pipeline
from imemviz.io.trace.importer import ImportError_, ImportOptions, import_traces
from imemviz.io.trace.parsers import ParseError, Parsers
from imemviz.io.trace.reader import FileStats
from imemviz.io.trace.scanner import parse_block

LINE = (
    "CPU {v}/KVM-{pid} [00{v}] ..... {t:.6f}: kvm_page_fault: vcpu {v} rip 0x0 "
    "address 0x{a:016x} error_code 0x181\n"
)
SETTINGS = {"vendor": "intel", "vm_type": "default", "spte_layout": "modern", "gpaw": 52}


def _trace(path: Path, n: int) -> str:
    path.write_text(
        "".join(LINE.format(v=i % 4, pid=100 + i % 4, t=1 + i * 1e-6, a=i << 12) for i in range(n))
    )
    return str(path)


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(d))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait(cond, limit: float = 30.0) -> bool:
    """Poll `cond` until it holds (a bound against hangs, not a timed assertion)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.mark.parametrize("stream", [False, True])
def test_results_come_in_order_from_the_workers(tmp_path: Path, stream: bool) -> None:
    """Blocks read by the workers themselves (a regular file: path and offset) or sent
    to them (a stream), from two maps interleaved (a merge), are what this process
    reads, in order."""
    paths = [_trace(tmp_path / f"{k}.trace", 3000) for k in range(2)]
    tasks = [
        [
            (data, src, first, SETTINGS, None if stream or at is None else (p, at))
            for data, first, at in pipeline.blocks_of(p, FileStats(p), block=7000)
        ]
        for src, p in enumerate(paths)
    ]
    ps = Parsers(2)
    try:
        maps = [ps.map(iter(t)) for t in tasks]
        got: list[list[str]] = [[], []]
        for a, b in zip(*maps, strict=True):  # interleaved, as heapq.merge takes them
            got[0].append(a[0].form)
            got[1].append(b[0].form)
        for t, g in zip(tasks, got, strict=True):
            assert g == [parse_block(x[:4]).form for x in t]
    finally:
        ps.close()


def test_a_failing_worker_is_one_error_and_no_worker_is_left(tmp_path: Path) -> None:
    ps = Parsers(2)
    workers = [p.pid for p in ps.procs]
    try:
        with pytest.raises(ParseError, match="a parsing process failed"):
            list(ps.map(iter([(b"x\n", 0, 1, {"vendor": "intel"}, None)])))  # no settings
    finally:
        ps.close()
    assert not any(_alive(w) for w in workers)


def test_a_killed_worker_is_one_error(tmp_path: Path) -> None:
    p = _trace(tmp_path / "t.trace", 3000)
    ps = Parsers(2)
    try:
        os.kill(ps.procs[1].pid, signal.SIGKILL)
        tasks = (
            (d, 0, f, SETTINGS, (p, at))
            for d, f, at in pipeline.blocks_of(p, FileStats(p), block=7000)
        )
        with pytest.raises(ParseError, match="a parsing process ended"):
            for _ in ps.map(tasks):
                pass
    finally:
        ps.close()


def test_cancel_ends_the_workers_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("imemviz.io.trace.importer.SMALL_INPUT", 0)
    monkeypatch.setattr(pipeline, "BLOCK", 4096)
    p = _trace(tmp_path / "t.trace", 20000)
    out = tmp_path / "o.jsonl"
    workers: list[int] = []

    class Seen(Parsers):
        def __init__(self, n: int = 0) -> None:
            super().__init__(n)
            workers.extend(w.pid for w in self.procs)

    monkeypatch.setattr(pipeline, "Parsers", Seen)
    polls = []

    def stop() -> bool:
        polls.append([_alive(w) for w in workers])
        return len(polls) > 3

    with pytest.raises(ImportError_, match="cancelled"):
        import_traces([p], str(out), options=ImportOptions(processes=2), stop=stop)
    assert len(workers) == 2 and all(all(a) for a in polls)  # they ran until the cancel
    assert not any(_alive(w) for w in workers)
    assert not out.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_ctrl_c_or_kill_leaves_no_worker(tmp_path: Path, sig: int) -> None:
    """`imemviz import` on a big trace: Ctrl-C (SIGINT to its process group, as a
    terminal sends it) ends it with its workers and writes nothing; killed with
    SIGKILL, its workers die with it."""
    p = _trace(tmp_path / "t.trace", 300_000)
    out = tmp_path / "o.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "imemviz", "import", p, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert _wait(lambda: len(_children(proc.pid)) >= 2 or proc.poll() is not None)
        workers = _children(proc.pid)
        if proc.poll() is not None:
            pytest.skip("the import ended before it could be interrupted")
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.kill()
        _, err = proc.communicate(timeout=60)
        if sig == signal.SIGINT:
            assert proc.returncode == 130 and b"interrupted" in err
            assert b"Traceback" not in err  # neither the importer's nor a worker's
            assert not out.exists()
        assert _wait(lambda: not any(_alive(w) for w in workers))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
