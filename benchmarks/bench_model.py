"""Engine benchmarks of issue 2: run as `python benchmarks/bench_model.py [--quick]`.

1. A 4 TiB TD (one 4 TiB memslot bound to a 4 TiB guest_memfd, 8 TiB host):
   set_memory_attributes PRIVATE over all of it, then converting 1 TiB back to
   shared while 100,000 scattered 4K leaves exist (target: each op <= 100 ms).
2. `imemviz run` end to end on 1,000,000 private faults on distinct gfns, for TDX
   (accept) and sw_protected (target >= 50,000 ops/s, peak RSS <= 2 GiB).
3. Engine memory of a fresh 4 TiB TD versus a fresh 4 GiB one.

Medians over several runs; results go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

from imemviz.model import VM, VMConfig
from imemviz.model import ops as O

T = 1 << 40
G = 1 << 30
HVA = 0x100000000000


def td(size: int, host: str) -> VM:
    vm = VM(VMConfig.from_dict({"type": "tdx", "host_memory": host}))
    vm.apply(O.CreateGuestMemfd(size=size, flags=0))
    vm.apply(
        O.SetUserMemoryRegion2(
            slot=0,
            flags=4,
            guest_phys_addr=0,
            memory_size=size,
            userspace_addr=HVA,
            guest_memfd=3,
            guest_memfd_offset=0,
        )
    )
    return vm


def bench_conversion(runs: int, leaves: int) -> dict[str, float]:
    set_ms, conv_ms = [], []
    for r in range(runs):
        vm = td(4 * T, "8T")
        t = time.perf_counter()
        assert vm.apply(O.SetMemoryAttributes(address=0, size=4 * T, attributes=8, flags=0)).ok
        set_ms.append((time.perf_counter() - t) * 1e3)
        vm.apply(O.TdxFinalizeVm())
        rng = random.Random(r)
        for gfn in rng.sample(range(4 * T >> 12), leaves):
            assert vm.apply(O.GuestAccept(gpa=gfn << 12, level=1)).ok
        t = time.perf_counter()
        assert vm.apply(O.SetMemoryAttributes(address=T, size=T, attributes=0, flags=0)).ok
        conv_ms.append((time.perf_counter() - t) * 1e3)
        zapped = sum(1 for e in vm.last_events if e[1] == "TDH.MEM.PAGE.REMOVE")
    return {
        "set_private_4T_ms": statistics.median(set_ms),
        "convert_1T_ms": statistics.median(conv_ms),
        "leaves_zapped": zapped,
    }


def write_fault_script(path: str, vm_type: str, n: int) -> None:
    rng = random.Random(7)
    size = 64 * G
    with open(path, "w") as f:
        f.write(
            json.dumps(
                {
                    "format": "imemviz-recording",
                    "version": 1,
                    "start": {"vm": {"type": vm_type, "host_memory": "64G"}},
                }
            )
            + "\n"
        )
        f.write(json.dumps({"op": "create_guest_memfd", "size": size}) + "\n")
        f.write(
            json.dumps(
                {
                    "op": "set_user_memory_region2",
                    "slot": 0,
                    "flags": 4,
                    "guest_phys_addr": 0,
                    "memory_size": size,
                    "userspace_addr": HVA,
                    "guest_memfd": 3,
                }
            )
            + "\n"
        )
        f.write(
            json.dumps({"op": "set_memory_attributes", "address": 0, "size": size, "attributes": 8})
            + "\n"
        )
        if vm_type == "tdx":
            f.write('{"op": "tdx_finalize_vm"}\n')
        op = "guest_accept" if vm_type == "tdx" else "guest_access"
        for gfn in rng.sample(range(size >> 12), n):
            f.write(f'{{"op": "{op}", "gpa": {gfn << 12}}}\n')


def bench_run(vm_type: str, n: int, runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        script = os.path.join(d, "faults.jsonl")
        write_fault_script(script, vm_type, n)
        rates, rss = [], []
        for _ in range(runs):
            t = time.perf_counter()
            p = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import resource, sys; from imemviz.cli import main; rc = main(sys.argv[1:]);"
                    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr);"
                    "sys.exit(rc)",
                    "run",
                    script,
                    "--results-out",
                    os.path.join(d, "r.jsonl"),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            dt = time.perf_counter() - t
            rates.append(n / dt)
            rss.append(int(p.stderr.strip().splitlines()[-1]) / 1024)
    return {f"{vm_type}_ops_per_s": statistics.median(rates), f"{vm_type}_peak_rss_mib": max(rss)}


def bench_memory() -> dict[str, float]:
    out = {}
    for name, size, host in (
        ("4G", 4 * G, "8T"),
        ("4T", 4 * T, "8T"),
        ("4G_16G_host", 4 * G, "16G"),
    ):
        tracemalloc.start()
        vm = td(size, host)
        vm.apply(O.SetMemoryAttributes(address=0, size=size, attributes=8, flags=0))
        cur, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[f"fresh_{name}_td_kib"] = cur / 1024
        del vm
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    results: dict[str, float] = {}
    results.update(bench_conversion(runs=1 if quick else 3, leaves=10_000 if quick else 100_000))
    n = 100_000 if quick else 1_000_000
    for vm_type in ("tdx", "sw_protected"):
        results.update(bench_run(vm_type, n, runs=1 if quick else 3))
    results.update(bench_memory())
    for k, v in results.items():
        print(f"{k:28s} {v:12.1f}")


if __name__ == "__main__":
    main()
