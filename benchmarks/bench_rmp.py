"""The RMP pane's rows (imemviz/model/rmp_rows.py), built on the engine thread after every
op while the pane is visible: medians over several runs.

    .venv/bin/python benchmarks/bench_rmp.py [RUNS]

An SNP guest whose RMP holds N runs (4K entries every other pfn, validated every other
one: the worst case, no two runs merge), with and without a guest_memfd of 2M folios
whose unassigned pages are hypervisor rows.
"""

from __future__ import annotations

import statistics
import sys
import time

from imemviz.model import ops as O
from imemviz.model.config import VMConfig
from imemviz.model.rmp import VALIDATED
from imemviz.model.rmp_rows import rmp_rows
from imemviz.model.vm import VM


def guest(runs: int, folios: bool) -> VM:
    vm = VM(VMConfig.from_dict({"type": "snp", "host_memory": "8G", "gmem_max_order": 9}))
    if folios:
        size = 1 << 30
        vm.apply(O.CreateGuestMemfd(size))
        vm.apply(
            O.SetUserMemoryRegion2(
                0,
                flags=4,
                guest_phys_addr=0,
                memory_size=size,
                userspace_addr=1 << 40,
                guest_memfd=3,
            )
        )
        assert vm.apply(O.Fallocate(3, 1, 0, size)).ok  # FALLOC_FL_KEEP_SIZE
    base = 1 << 21
    for i in range(runs):
        vm.snp.rmp.make_private(base + 2 * i, 2 * i, 1, False)
        if i % 2:
            vm.snp.rmp.set_flags(base + 2 * i, 1, VALIDATED, 0)
    return vm


def main(runs: int = 7) -> None:
    for n in (10_000, 100_000, 1_000_000):
        for folios in (False, True):
            vm = guest(n, folios)
            ts = []
            for _ in range(runs):
                t = time.perf_counter()
                rows = rmp_rows(vm)
                ts.append(time.perf_counter() - t)
            print(
                f"{n:>9,} RMP runs{' + 1G of 2M folios' if folios else '':<20} "
                f"{len(rows):>9,} rows  median {statistics.median(ts) * 1000:7.1f} ms"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
