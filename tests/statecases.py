"""Rich VM states for the state-file tests, built through the op path.

A case is a VMCONFIG and a list of steps; a step is an op, or a function of
the VM that returns the op (for values the kernel does not fix, such as the
pfn behind a gfn for memory_failure).  `build` applies them and returns the
VM with the ops it applied, so the same case can be written out as a script.

Run ``python tests/statecases.py --freeze`` ONLY when adding a new state
format version: it writes ``tests/data/state-vN-*.json.gz`` with the script
that made each and the inspect/stats answers recorded next to it.  Files of
released versions are never regenerated.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imemviz.model import ops as O
from imemviz.model.config import VMConfig
from imemviz.model.query import inspect_gfn, stats_dict
from imemviz.model.vm import VM

Step = O.Op | Callable[[VM], O.Op]
HVA = 0x7F0000000000
PRIVATE, KEEP, PUNCH, GMEM = 8, 1, 3, 4
G, M, K = 1 << 30, 1 << 20, 1 << 10
DATA = Path(__file__).parent / "data"


def folio_pfn(gpa: int, offset: int = 0) -> Callable[[VM], O.Op]:
    """memory_failure on the host page backing the private page at `gpa` (+ offset pages)."""

    def step(vm: VM) -> O.Op:
        folio = inspect_gfn(vm, gpa >> 12)["folio"]
        assert folio is not None, hex(gpa)
        return O.MemoryFailure(folio["pfn"] + offset)

    return step


def shared_pfn(gpa: int) -> Callable[[VM], O.Op]:
    """memory_failure on the host page behind the shared mapping of `gpa`."""

    def step(vm: VM) -> O.Op:
        m = inspect_gfn(vm, gpa >> 12)["shared_mapping"]
        assert m is not None, hex(gpa)
        return O.MemoryFailure(m["pfn"])

    return step


def tdx_case() -> tuple[dict[str, Any], list[Step]]:
    """A TD built, finalized and running: S-EPT leaves at 4K and 2M, a conversion back
    to shared, a punched hole, a held fault, shared pages, a hwpoisoned folio and a
    closed guest_memfd whose memslot survives."""
    cfg = {
        "type": "tdx",
        "host_memory": "1G",
        "gmem_max_order": 9,
        "tdx_private_max_level": "2M",
        "seed": 7,
    }
    steps: list[Step] = [
        O.CreateGuestMemfd(64 * M),
        O.CreateGuestMemfd(2 * M),
        O.SetUserMemoryRegion2(
            0, flags=GMEM, guest_phys_addr=0, memory_size=64 * M, userspace_addr=HVA, guest_memfd=3
        ),
        O.SetUserMemoryRegion2(
            1,
            flags=GMEM,
            guest_phys_addr=2 * G,
            memory_size=2 * M,
            userspace_addr=HVA + G,
            guest_memfd=4,
        ),
        O.SetMemoryAttributes(0, 32 * M, PRIVATE),
        O.SetMemoryAttributes(2 * G, 2 * M, PRIVATE),
        O.TdxInitMemRegion(0, 16, value=0x5A),
        O.TdxFinalizeVm(),
        O.GuestAccept(2 * M, 2),
        O.GuestAccept(4 * M),
        O.GuestAccept(4 * M + 4 * K),
        O.GuestAccept(4 * M + 8 * K),
        O.GuestAccess(2 * M + 4 * K, write=True, value=0x11),
        O.GuestAccess(32 * M, write=True, value=0x22),
        O.GuestAccess((1 << 51) | (32 * M + 4 * K), write=True, value=0x23),
        O.SetMemoryAttributes(4 * M + 4 * K, 4 * K, 0),
        O.Fallocate(3, PUNCH, 6 * M, 2 * M),
        O.GuestAccept(8 * M, 2),
        O.GuestAccess(40 * M, vcpu=1, write=True, value=0x44, hold=True),
        O.HostAccess(HVA + 32 * M + 8 * K, write=True, value=0x33),
        O.Madvise(HVA + 32 * M + 4 * K, 4 * K),
        folio_pfn(8 * M, 7),
        O.GuestAccept(2 * G),
        O.Close(4),
        O.Note("frozen TDX sample"),
    ]
    return cfg, steps


def sw_case() -> tuple[dict[str, Any], list[Step]]:
    """sw_protected with 2M folios and THP shared pages: private and shared faults, a split
    conversion, fallocate and punch, a held fault that an invalidation made stale, a
    hwpoisoned folio, a poisoned shared page, madvise and a closed standard fd."""
    base = 4 * G
    cfg = {
        "type": "sw_protected",
        "host_memory": "1G",
        "gmem_max_order": 9,
        "shared_page_size": "2M",
        "seed": 3,
    }
    steps: list[Step] = [
        O.CreateGuestMemfd(16 * M),
        O.SetUserMemoryRegion2(
            0,
            flags=GMEM,
            guest_phys_addr=base,
            memory_size=16 * M,
            userspace_addr=HVA,
            guest_memfd=3,
        ),
        O.SetUserMemoryRegion2(1, guest_phys_addr=0, memory_size=2 * M, userspace_addr=HVA - G),
        O.SetMemoryAttributes(base, 8 * M, PRIVATE),
        O.GuestAccess(base, write=True, value=1),
        O.GuestAccess(base + 2 * M + 12 * K, write=True, value=2),
        O.GuestAccess(base + 9 * M, write=True, value=3),
        O.GuestAccess(base + 11 * M),
        O.GuestAccess(16 * K, write=True, value=4),
        O.SetMemoryAttributes(base + 2 * M + 4 * K, 4 * K, 0),
        O.GuestAccess(base + 2 * M + 4 * K, write=True, value=5),
        O.GuestAccess(base + 2 * M + 8 * K),
        O.Fallocate(3, KEEP, 4 * M, 2 * M),
        O.Fallocate(3, PUNCH, 5 * M, 4 * K),
        O.GuestAccess(base + 6 * M, vcpu=2, write=True, value=6, hold=True),
        O.SetMemoryAttributes(base + 7 * M, 4 * K, 0),
        folio_pfn(base, 3),
        shared_pfn(base + 11 * M + 4 * K),
        O.Madvise(HVA + 9 * M, 4 * K),
        O.Close(1),
        O.Note("frozen sw_protected sample"),
    ]
    return cfg, steps


def default_case() -> tuple[dict[str, Any], list[Step]]:
    """A plain VM: shared memory only, a guest_memfd with MMAP|INIT_SHARED, a deleted slot."""
    cfg = {"type": "default", "host_memory": "256M", "seed": 1}
    steps: list[Step] = [
        O.CreateGuestMemfd(4 * M, 3),
        O.SetUserMemoryRegion2(
            0, flags=GMEM, guest_phys_addr=0, memory_size=4 * M, userspace_addr=HVA, guest_memfd=3
        ),
        O.SetUserMemoryRegion(1, guest_phys_addr=G, memory_size=2 * M, userspace_addr=HVA + G),
        O.SetUserMemoryRegion(
            2, guest_phys_addr=2 * G, memory_size=2 * M, userspace_addr=HVA + 2 * G
        ),
        O.GuestAccess(0, write=True, value=9),
        O.GuestAccess(G + 4 * K, write=True, value=8),
        O.GuestAccess(2 * G),
        O.SetUserMemoryRegion(2, guest_phys_addr=2 * G, memory_size=0),
        O.HostAccess(HVA + G + 8 * K, write=True, value=7),
    ]
    return cfg, steps


def upm_case() -> tuple[dict[str, Any], list[Step]]:
    """The 2022 design (kernel upm-v8): an inaccessible memfd closed while its private slot
    holds it (kept under -ino), a second one bound twice (v8 allows it), a plain memfd,
    a stale leaf from v8's notifier, and device memory (VM_PFNMAP) over shared RAM."""
    cfg = {"type": "default", "host_memory": "256M", "seed": 2, "kernel": "upm-v8"}
    steps: list[Step] = [
        O.MemfdCreate(4 * M, 8),
        O.MemfdCreate(2 * M, 8),
        O.MemfdCreate(5000, 0),
        O.SetUserMemoryRegion(
            0, flags=GMEM, guest_phys_addr=0, memory_size=4 * M, userspace_addr=HVA, private_fd=3
        ),
        O.SetUserMemoryRegion(
            1,
            flags=GMEM,
            guest_phys_addr=G,
            memory_size=2 * M,
            userspace_addr=HVA + G,
            private_fd=4,
        ),
        O.SetUserMemoryRegion(
            2,
            flags=GMEM,
            guest_phys_addr=2 * G,
            memory_size=2 * M,
            userspace_addr=HVA + 2 * G,
            private_fd=4,
        ),
        O.MemoryEncryptUnregRegion(2 * M, 2 * M),
        O.GuestAccess(8 * K, write=True, value=5),
        O.GuestAccess(G + 8 * K, write=True, value=6),
        O.GuestAccess(2 * M + 4 * K, write=True, value=7),
        O.Fallocate(4, PUNCH, 8 * K, 4 * K),  # the notifier misses it: a stale leaf
        O.Close(3),
        O.HostMmapPfnmap(HVA + 3 * M, 64 * K, False),
        O.HostMmapPfnmap(HVA + 3 * M + 64 * K, 8 * K, True),
    ]
    return cfg, steps


def snp_case() -> tuple[dict[str, Any], list[Step]]:
    """An SEV-SNP guest with 2M folios: launch pages of every type (Pre-Guest), the
    finish (Guest-Valid, the VMSA a firmware page), a 2M PVALIDATE (one 2M RMP entry),
    a 4K conversion and punch inside it (PSMASH), a rescinded page (guest-invalid), a
    page faulted in but never validated, and shared memory."""
    cfg = {"type": "snp", "host_memory": "1G", "gmem_max_order": 9, "seed": 5}
    steps: list[Step] = [
        O.CreateGuestMemfd(16 * M),
        O.SetUserMemoryRegion2(
            0, flags=GMEM, guest_phys_addr=0, memory_size=16 * M, userspace_addr=HVA, guest_memfd=3
        ),
        O.SetMemoryAttributes(0, 12 * M, PRIVATE),
        O.SnpLaunchUpdate(0xF00000 - 4 * M, 16 * K, "NORMAL", 0x90),
        O.SnpLaunchUpdate(0x809000, 4 * K, "ZERO"),
        O.SnpLaunchUpdate(0x80A000, 8 * K, "UNMEASURED", 0x11),
        O.SnpLaunchUpdate(0x80D000, 4 * K, "SECRETS"),
        O.SnpLaunchUpdate(0x80E000, 4 * K, "CPUID", 6),
        O.SnpLaunchFinish(),
        O.GuestPvalidate(0x200000, 2),
        O.GuestAccess(0x201000, write=True, value=0x42),
        O.GuestMapGpaRange(0x203000, 4 * K, False),
        O.SetMemoryAttributes(0x203000, 4 * K, 0),
        O.Fallocate(3, PUNCH, 0x203000, 4 * K),
        O.GuestPvalidate(0x205000, 1, False),
        O.GuestAccess(0x400000),  # faulted in, never validated: #VC, the guest terminates
        O.GuestAccess(13 * M, write=True, value=7),  # shared
        O.Note("snp sample"),
    ]
    return cfg, steps


CASES = {
    "tdx": tdx_case,
    "sw": sw_case,
    "default": default_case,
    "upm": upm_case,
    "snp": snp_case,
}


def build(cfg: dict[str, Any], steps: list[Step]) -> tuple[VM, list[O.Op]]:
    vm = VM(VMConfig.from_dict(cfg))
    applied = []
    for step in steps:
        op = step if isinstance(step, O.Op) else step(vm)
        vm.apply(op)
        applied.append(op)
    return vm, applied


def case_vm(name: str) -> VM:
    return build(*CASES[name]())[0]


def sample_gfns(vm: VM) -> list[int]:
    """Gfns worth asking about: the first and last of every slot, every leaf's and
    folio's first gfn, and the gfns around them (bounded)."""
    gfns: set[int] = set()
    for s in vm.memslots.all():
        gfns.update((s.base_gfn, s.end_gfn - 1, s.base_gfn + 1))
    for table in (vm.private, vm.shared):
        for lf in table.all_leaves()[:200]:
            gfns.update((lf.gfn, lf.gfn + lf.npages - 1, lf.gfn + lf.npages))
    return sorted(g for g in gfns if g >= 0)


def answers(vm: VM) -> dict[str, Any]:
    """What a frozen sample is checked against: stats, and inspect of sample gfns."""
    return {
        "stats": stats_dict(vm),
        "inspect": {hex(g): inspect_gfn(vm, g) for g in sample_gfns(vm)},
    }


def freeze(version: int) -> None:
    """Write tests/data/state-v{version}-{case}.json.gz, its script and its answers."""
    from imemviz.io.recording import header_line, op_line
    from imemviz.io.state import save_state

    DATA.mkdir(exist_ok=True)
    for name in ("tdx", "sw"):
        cfg, steps = CASES[name]()
        vm, applied = build(cfg, steps)
        stem = DATA / f"state-v{version}-{name}"
        lines = [header_line({"vm": cfg}), *(op_line(op) for op in applied)]
        Path(f"{stem}.jsonl").write_text("\n".join(lines) + "\n")
        save_state(vm, f"{stem}.json.gz")
        Path(f"{stem}.answers.json").write_text(json.dumps(answers(vm), indent=1) + "\n")
        print(f"wrote {stem}.json.gz")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--freeze"]:
        from imemviz.io.state import VERSION

        freeze(VERSION)
    else:
        print(__doc__)
