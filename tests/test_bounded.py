"""Bounded work on any input: memory caps as tests, runs instead of pages, no endless loop.

Reproducers of issue 13: a 4 KB .json.zst describing 50M folios and a 42 KB
one holding 250M list entries ran into MemoryError; a three-line script
(host_memory 1P, fallocate 64 TiB) grew past 2.7 GB; `diff` and `check` of a
3M-row state took gigabytes; a state with an invalidation in progress made
the next guest_access retry forever.  The memory caps are RLIMIT_AS on a
subprocess (an `imemviz` needs about 110 MB of address space to start), never
a timing.
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from imemviz.io.state import StateError, encode, state_document, vm_from_document
from imemviz.model import ops as O
from imemviz.model.config import VMConfig
from imemviz.model.gmem_ops import alloc_folio
from imemviz.model.host_memory import BuddyAllocator, HostMemory
from imemviz.model.vm import VM

HEADER = {"format": "imemviz-recording", "version": 1}
CAP_MB = 512  # address space for one imemviz process in these tests


def capped(*argv: Any, cap_mb: int = CAP_MB) -> subprocess.CompletedProcess[str]:
    """`imemviz ARGV` with its address space capped (RLIMIT_AS) at `cap_mb` MiB."""
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({cap_mb << 20}, {cap_mb << 20}))\n"
        "from imemviz import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err and "MemoryError" not in err
    return err.rstrip("\n")


def script(tmp_path: Path, vm: dict[str, Any], *ops: dict[str, Any]) -> Path:
    path = tmp_path / "s.jsonl"
    lines = [json.dumps({**HEADER, "start": {"vm": vm}}), *map(json.dumps, ops)]
    path.write_text("\n".join(lines) + "\n")
    return path


FALLOCATE_64T = (
    {"op": "create_guest_memfd", "size": "64T"},
    {"op": "fallocate", "fd": 3, "mode": ["KEEP_SIZE"], "offset": 0, "len": "64T"},
    {"op": "stats"},
)


# ------------------------------------------------------------- fallocate


def test_fallocate_64_tib_on_a_1p_host_finishes_in_runs_within_512_mib(tmp_path: Path) -> None:
    path = script(tmp_path, {"type": "sw_protected", "host_memory": "1P"}, *FALLOCATE_64T)
    state = tmp_path / "big.json.zst"
    proc = capped("run", path, "--state-out", state)
    assert (proc.returncode, proc.stderr) == (0, "")
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["ok"] for r in results] == [True, True, True]
    assert results[2]["ret"]["gmem_folios"]["0"] == 64 << 28  # 16G folios of 4K
    # The saved state is runs too: it loads, checks and diffs in the same cap.
    proc = capped("check", state)
    assert proc.returncode == 0 and "invariants: OK" in proc.stdout
    assert capped("diff", state, state).returncode == 0


def test_fallocate_64_tib_on_a_16g_host_fails_with_enomem_within_512_mib(tmp_path: Path) -> None:
    path = script(tmp_path, {"type": "sw_protected", "host_memory": "16G"}, *FALLOCATE_64T)
    proc = capped("run", path)
    assert (proc.returncode, proc.stderr) == (0, "")
    r = [json.loads(line) for line in proc.stdout.splitlines()]
    # kvm_gmem_allocate(): the folios it got stay, then -ENOMEM (filemap_alloc_folio).
    assert (r[1]["ok"], r[1]["errno"]) == (False, "ENOMEM")
    assert r[2]["ret"]["host_free_bytes"] == 0


def test_a_64_tib_fallocate_is_a_few_runs_and_events_not_16g_folios() -> None:
    vm = VM(VMConfig.from_dict({"type": "sw_protected", "host_memory": "1P"}))
    assert vm.apply(O.CreateGuestMemfd(64 << 40)).ok
    assert vm.apply(O.Fallocate(3, 1, 0, 64 << 40)).ok
    inode = vm.files[3].inode
    assert inode.count(0) == 64 << 28
    assert len(inode.folios[0]) + len(inode.runs[0]) < 10_000
    assert len(vm.last_events) < 10_000
    # Punching most of it and closing it go by runs too.
    assert vm.apply(O.Fallocate(3, 3, 1 << 30, 60 << 40)).ok
    assert inode.count(0) == (4 << 28) - (1 << 18) + (1 << 18)
    assert vm.apply(O.Close(3)).ok
    assert vm.host.alloc.free_pages == HostMemory(1 << 50, 0).alloc.free_pages


ALLOC_CONFIGS = [
    {"type": "sw_protected", "host_memory": "64M", "seed": 0},
    {"type": "sw_protected", "host_memory": "64M", "gmem_max_order": 9, "seed": 1},
    {"type": "sw_protected", "host_memory": "2G", "gmem_max_order": 18, "seed": 2},
    {"type": "default", "host_memory": "1G", "gmem_max_order": 9, "seed": 3},
]


def _old_allocate(vm: VM, fd: int, start: int, end: int) -> bool:
    """kvm_gmem_allocate() one index at a time: the fallocate the engine had before runs."""
    file = vm.files[fd]
    index = start
    while index < end:
        folio = file.inode.folio_at(index)
        if folio is None:
            folio = alloc_folio(vm, file, index)
            if folio is None:
                return False
        index = folio.index + folio.npages
    return True


def _folios(vm: VM) -> list[tuple[int, int, int, int, bool]]:
    return sorted((fd, *f) for fd, file in vm.files.items() for f in file.inode.all_folios())


@pytest.mark.slow
def test_fallocate_in_runs_gives_the_folios_pfns_and_errno_of_one_fallocate_per_page(
    slow_scale: int,
) -> None:
    """The bulk allocation path is exact: the same folios (index, order, pfn), the same
    allocator state and the same errno as allocating index by index."""

    @settings(max_examples=60 * slow_scale)
    @given(
        cfg=st.sampled_from(ALLOC_CONFIGS),
        pre=st.lists(st.tuples(st.integers(0, 2047), st.integers(1, 600)), max_size=6),
        start=st.integers(0, 4095),
        length=st.integers(1, 1 << 13),
    )
    def prop(cfg: dict[str, Any], pre: list[tuple[int, int]], start: int, length: int) -> None:
        vm = VM(VMConfig.from_dict(cfg))
        assert vm.apply(O.CreateGuestMemfd(32 << 20)).ok
        for a, n in pre:  # folios already there: faults and fallocates of parts
            vm.apply(O.Fallocate(3, 1, a << 12, n << 12))
        ref = copy.deepcopy(vm)
        end = min(start + length, 8192)
        r = vm.apply(O.Fallocate(3, 1, start << 12, (end - start) << 12))
        ok = _old_allocate(ref, 3, start, end)
        assert r.ok == ok and (r.errno is None) == ok and (ok or r.errno == "ENOMEM")
        assert _folios(vm) == _folios(ref)
        assert vm.host.alloc.free_runs() == ref.host.alloc.free_runs()
        assert vm.host.free_bytes == ref.host.free_bytes

    prop()


@pytest.mark.slow
def test_alloc_many_and_free_range_equal_one_block_at_a_time(slow_scale: int) -> None:
    @settings(max_examples=100 * slow_scale)
    @given(
        seed=st.integers(0, 1 << 16),
        npages=st.sampled_from([512, 1 << 12, 1 << 19, (1 << 19) + 1536]),
        order=st.sampled_from([0, 0, 9, 18]),
        count=st.integers(1, 1 << 13),  # past the end of the small hosts
        held=st.lists(st.sampled_from([0, 0, 1, 3, 9, 18]), max_size=40),
    )
    def prop(seed: int, npages: int, order: int, count: int, held: list[int]) -> None:
        host = HostMemory(npages << 12, seed)
        a = host.alloc
        taken = [(p, o) for o in held if (p := a.alloc(o)) is not None]
        random.Random(seed).shuffle(taken)
        for p, o in taken[: len(taken) // 2]:
            a.free(p, o)
        b = copy.deepcopy(a)
        seq = []
        for _ in range(count):
            p = b.alloc(order)
            if p is None:
                break
            seq.append(p)
        runs = a.alloc_many(order, count)
        assert [p + (k << order) for p, n in runs for k in range(n)] == seq
        assert (a.free_runs(), a.free_pages) == (b.free_runs(), b.free_pages)
        if runs:
            p, n = runs[-1]
            for k in range(n):
                b.free(p + (k << order), order)
            a.free_range(p, n << order)
            assert (a.free_runs(), a.free_pages) == (b.free_runs(), b.free_pages)

    prop()


def test_a_1p_host_starts_as_one_interval_of_1g_blocks() -> None:
    a = BuddyAllocator(1 << 38)
    assert a.free_runs() == [(0, 18, 1 << 20)]
    assert a.alloc(0) == 0 and a.free_pages == (1 << 38) - 1


# ------------------------------------------------------------- state files


def small_doc() -> dict[str, Any]:
    vm = VM(VMConfig.from_dict({"type": "sw_protected", "host_memory": "256G"}))
    return json.loads(encode(state_document(vm)))


def test_a_4kb_state_of_50m_folios_loads_as_one_run_within_512_mib(tmp_path: Path) -> None:
    doc = small_doc()
    doc["next_ino"] = 2
    doc["host"]["free"] = doc["host"]["other"] = []
    doc["gmem_files"] = [
        {
            "fd": 3,
            "ino": 1,
            "size": 200 << 30,
            "flags": 0,
            "bindings": [],
            "folios": [["0x0", 0, "0x1000000", 50_000_000]],
        }
    ]
    path = tmp_path / "folios.json.zst"
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(json.dumps(doc).encode()))
    assert path.stat().st_size < 1500
    proc = capped("check", path)
    assert proc.returncode == 1 and proc.stderr == ""
    assert "fd 3: size 200G, flags none, folios order 0: 50000000" in proc.stdout
    assert "HOST:" in proc.stdout  # the free list says nothing of these pages


def list_bomb(path: Path, entries: int = 250_000_000) -> None:
    """A state file whose JSON is a list of `entries` zeros (about 512 MiB of text)."""
    head = b'{"format":"imemviz-state","version":1,"poisoned_hva":['
    buf = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(buf, closefd=False) as w:
        w.write(head)
        chunk = b"0," * (1 << 20)
        for _ in range(entries >> 20):
            w.write(chunk)
        w.write(b"0]}")
    path.write_bytes(buf.getvalue())


def test_a_zst_of_250m_list_entries_is_refused_before_parsing_within_512_mib(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bomb.json.zst"
    list_bomb(path)
    assert path.stat().st_size < 1 << 20
    ops = tmp_path / "ops.jsonl"
    ops.write_text('{"op": "stats"}\n')
    for argv in (["check", path], ["diff", path, path], ["run", ops, "--from-state", path]):
        proc = capped(*argv)
        assert proc.returncode == 2, proc.stderr
        assert "more than 32,000,000 JSON values" in one_line(proc.stderr)


def test_row_counts_are_checked_against_the_entry_budget_before_anything_is_built() -> None:
    doc = small_doc()
    doc["mappings"]["private"] = [["0x0", "4K", "0x0", 20_000_000]]
    with pytest.raises(StateError, match="more than 10,000,000 leaves"):
        vm_from_document(doc)


def rows_doc(n: int, shift: int) -> dict[str, Any]:
    """A state with `n` scattered 4K leaves (none continues another: n rows)."""
    doc = small_doc()
    doc["mappings"]["private"] = [
        [hex(2 * g), "4K", hex((7 * g + shift) % (1 << 24))] for g in range(n)
    ]
    return doc


@pytest.mark.slow
def test_diff_and_check_of_big_states_stay_within_one_states_memory(
    tmp_path: Path, slow_scale: int
) -> None:
    """Before: diff of a 3M-row state took 4.8 GB (every difference became a dict: 200k rows
    already ran out of 384 MiB) and check kept a message per violation.  Now the listing is
    capped and one state is held at a time: 200k rows (2M with IMEMVIZ_SLOW=1) in 384 MiB
    of address space (1.5 GiB), about 640 bytes a row over what imemviz needs to start."""
    n = 200_000 * slow_scale
    cap = 256 + (n * 640 >> 20)
    a, b = tmp_path / "a.json.zst", tmp_path / "b.json.zst"
    a.write_bytes(encode(rows_doc(n, 0), "zstd"))
    b.write_bytes(encode(rows_doc(n, 1), "zstd"))
    proc = capped("diff", a, b, cap_mb=cap)
    assert proc.returncode == 1 and proc.stderr == "", proc.stderr[-500:]
    assert f"... and {n - 1000:,} more ranges" in proc.stdout
    proc = capped("check", a, cap_mb=cap)
    assert proc.returncode == 1 and proc.stderr == ""
    assert proc.stdout.rstrip().endswith(f"... and {2 * n - 1000} more")


# ------------------------------------------------------------- no endless loop


def test_a_state_with_an_invalidation_in_progress_is_refused_naming_i6() -> None:
    doc = json.loads(encode(state_document(_held_vm())))
    doc["invalidate"]["in_progress"] = 1
    doc["invalidate"]["range"] = ["0x0", "0x100000"]
    with pytest.raises(StateError, match=r"in_progress: is 1, must be 0 \(invariant I6"):
        vm_from_document(doc)


def _held_vm() -> VM:
    vm = VM(VMConfig.from_dict({"type": "sw_protected", "host_memory": "64M"}))
    for op in (
        O.CreateGuestMemfd(4 << 20),
        O.SetUserMemoryRegion2(
            0,
            flags=4,
            guest_phys_addr=0,
            memory_size=4 << 20,
            userspace_addr=0x7F0000000000,
            guest_memfd=3,
        ),
    ):
        assert vm.apply(op).ok
    return vm


def test_a_fault_that_cannot_make_progress_ends_with_eintr_not_a_hang() -> None:
    """Should an invalidation ever stay in progress (no state loads with one now), the
    fault retries as RET_PF_RETRY does and KVM_RUN ends with -EINTR (KVM_EXIT_INTR), as
    when the VMM signals a vCPU that spins in the guest."""
    vm = _held_vm()
    vm.inv.in_progress = 1
    vm.inv.range_start, vm.inv.range_end = 0, 1 << 20
    r = vm.apply(O.GuestAccess(0x1000))
    assert (r.ok, r.errno, r.ret["exit"]["reason"]) == (False, "EINTR", "KVM_EXIT_INTR")
    assert r.ret["retried"] is True


def test_a_binding_whose_memslot_does_not_point_back_is_refused_naming_i5() -> None:
    doc = json.loads(encode(state_document(_held_vm())))
    doc["memslots"][0]["gmem_file"] = None
    with pytest.raises(StateError, match=r"invariant I5"):
        vm_from_document(doc)
