"""State files at scale: save and load times and file sizes (docs/benchmarks.md, "State files").

Two states, built through the engine's op path:

1. ``sw_protected``: a 4 GiB guest_memfd slot, all private, faulted in 4K by
   one guest access per gfn in a shuffled order: 1,048,576 distinct 4K leaves
   and folios with scattered pfns.  Targets: save <= 3 s, load <= 3 s,
   file <= 60 MB (``.json.zst``).
2. ``tdx``: a 4 TiB TD backed by 2M folios (``gmem_max_order`` 9,
   ``tdx_private_max_level`` 2M, 8 TiB host), every 2M page accepted with
   ``guest_accept`` level 2M: 2,097,152 ops.  Target: file <= 5 MB.

Run: ``.venv/bin/python benchmarks/bench_state.py [--runs N] [--only sw|tdx]``.
Prints medians over N runs (default 3).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

from imemviz.io.state import load_state, save_state
from imemviz.model import ops as O
from imemviz.model.config import VMConfig
from imemviz.model.fault_batch import apply_plain
from imemviz.model.units import LEVEL_2M
from imemviz.model.vm import VM

GIB = 1 << 30
TIB = 1 << 40
HVA = 0x7F0000000000
HVA_4T = 0x100000000000  # 4 TiB of userspace range below TASK_SIZE_MAX


def build_sw(pages: int = 1 << 20) -> VM:
    vm = VM(VMConfig.from_dict({"type": "sw_protected"}))
    size = pages << 12
    for op in (
        O.CreateGuestMemfd(size),
        O.SetUserMemoryRegion2(
            0, flags=4, guest_phys_addr=GIB, memory_size=size, userspace_addr=HVA, guest_memfd=3
        ),
        O.SetMemoryAttributes(GIB, size, 8),
    ):
        assert vm.apply(op).ok, op
    gfns = list(range(GIB >> 12, (GIB >> 12) + pages))
    random.Random(0).shuffle(gfns)
    apply, access = vm.apply, O.GuestAccess
    for gfn in gfns:
        apply(access(gfn << 12))
    return vm


def build_tdx(size: int = 4 * TIB, batched: bool = True) -> VM:
    """The TD of `size` bytes, all of it accepted in 2M pages.  `batched`: the accepts go
    through fault_batch.apply_plain (as `imemviz run` applies a trace of them), else one
    VM.apply each; the TD is the same either way (tests/model/test_fault_batch.py)."""
    vm = VM(
        VMConfig.from_dict(
            {"type": "tdx", "host_memory": "8T", "gmem_max_order": 9, "tdx_private_max_level": "2M"}
        )
    )
    for op in (
        O.CreateGuestMemfd(size),
        O.SetUserMemoryRegion2(
            0, flags=4, guest_phys_addr=0, memory_size=size, userspace_addr=HVA_4T, guest_memfd=3
        ),
        O.SetMemoryAttributes(0, size, 8),
        O.TdxFinalizeVm(),
    ):
        assert vm.apply(op).ok, op
    if batched:
        apply_plain(vm, ((LEVEL_2M, gpa) for gpa in range(0, size, 2 << 20)))
        return vm
    apply, accept = vm.apply, O.GuestAccept
    for gpa in range(0, size, 2 << 20):
        apply(accept(gpa, 2))
    return vm


def measure(name: str, vm: VM, runs: int, suffix: str = ".json.zst") -> dict[str, float]:
    folder = tempfile.mkdtemp(prefix="imemviz-bench-")
    path = os.path.join(folder, f"state{suffix}")
    saves, loads = [], []
    try:
        for _ in range(runs):
            t = time.perf_counter()
            save_state(vm, path)
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            load_state(path)
            loads.append(time.perf_counter() - t)
        size = os.path.getsize(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(folder)
    out = {
        "save_s": statistics.median(saves),
        "load_s": statistics.median(loads),
        "file_mb": size / 1e6,
    }
    print(
        f"{name}: save {out['save_s']:.2f} s, load {out['load_s']:.2f} s (medians of {runs}), "
        f"file {out['file_mb']:.2f} MB ({suffix})",
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("sw", "tdx"))
    ns = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus", flush=True)
    if ns.only in (None, "sw"):
        t = time.perf_counter()
        vm = build_sw()
        print(
            f"sw_protected: built 1,048,576 4K faults in {time.perf_counter() - t:.1f} s "
            f"({len(vm.private.leaves[1]):,} leaves)",
            flush=True,
        )
        measure("sw_protected 1M 4K leaves", vm, ns.runs)
        del vm
    if ns.only in (None, "tdx"):
        t = time.perf_counter()
        vm = build_tdx()
        print(
            f"tdx: built a 4 TiB TD with 2,097,152 guest_accept ops in "
            f"{time.perf_counter() - t:.1f} s ({len(vm.private.leaves[2]):,} 2M leaves)",
            flush=True,
        )
        measure("tdx 4 TiB of 2M folios", vm, ns.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
