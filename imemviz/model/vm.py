"""The VM aggregate: all state of one VM, and `apply(op)`, the only way to change it."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from imemviz.model import (
    attr_ops,
    fault,
    fault_fast,
    gmem_ops,
    host_ops,
    hypercall,
    memslot_ops,
    pfnmap,
    prefault,
    query,
    snp_ops,
    tdx_ops,
    upm,
)
from imemviz.model import ops as O
from imemviz.model.config import VMConfig
from imemviz.model.events import Event, EventLog
from imemviz.model.extents import ExtentMap
from imemviz.model.fault import PendingFault
from imemviz.model.guest_memfd import GmemFile
from imemviz.model.host_memory import HostMemory
from imemviz.model.memslots import Memslots
from imemviz.model.mmu import InvalidateState, LeafTable
from imemviz.model.result import Result
from imemviz.model.snp import SnpState
from imemviz.model.sparse import SparseIndex

GFN_LIMIT = 1 << 52  # gfns of the 64-bit physical address space


class VM:
    """One VM's private-memory state.  Deterministic: same config + ops = same results."""

    def __init__(self, config: VMConfig) -> None:
        self.config = config
        self.kernel = config.profile  # the kernel's rules (imemviz.model.kernels)
        self.is_tdx = config.is_tdx
        self.has_private_mem = config.has_private_mem
        self.shared_bit = config.shared_bit_gfn if self.is_tdx else 0  # TDX GPA alias bit
        self.host = HostMemory(config.host_memory, config.seed)
        # v8 stores only SHARED entries: every gfn starts private (kernel rule default_private).
        self.attributes = ExtentMap(8 if self.kernel["default_private"] else 0, GFN_LIMIT)
        self.memslots = Memslots()
        self.files: dict[int, GmemFile] = {}
        self.closed_std_fds: set[int] = set()
        self.next_ino = 1
        is_tdx = config.is_tdx
        self.private = LeafTable("mirror" if is_tdx else "direct")
        self.shared = LeafTable("direct")
        self.inv = InvalidateState()
        self.in_flight: dict[int, PendingFault] = {}  # held faults by vCPU
        self.events = EventLog()
        self.op_index = 0
        self.dead = False
        self.td_state: str | None = "BUILDING" if is_tdx else None
        self.snp: SnpState | None = SnpState() if config.is_snp else None  # the RMP, launch
        self.tdx_epoch = 0
        # The VMM's anonymous memory behind memslots' userspace_addr: level -> hva page -> pfn.
        self.hva_pages: dict[int, SparseIndex[int]] = {
            1: SparseIndex(),
            2: SparseIndex(),
            3: SparseIndex(),
        }
        self.poisoned_hva: set[int] = set()  # hva page numbers whose page was poisoned
        # Device memory the VMM mapped (host_mmap_pfnmap): hva page -> pfn << 1 | refcounted.
        self.pfnmap: SparseIndex[int] = SparseIndex()
        self.last_events: list[Event] = []

    # -- helpers shared by the op modules ------------------------------------------------
    def emit(self, name: str, *fields: Any) -> None:
        self.events.current.append((self.op_index, name, *fields))

    def attr_private(self, gfn: int) -> bool:
        return bool(self.attributes.get(gfn))

    def mixed(self, gfn: int, level: int) -> bool:
        """KVM_LPAGE_MIXED_FLAG: the huge page holding gfn has gfns of different attributes."""
        n = 1 << (9 * (level - 1))
        head = gfn & ~(n - 1)
        return not self.attributes.is_uniform(head, head + n)

    def kill(self, reason: str) -> None:
        self.dead = True
        self.emit("kvm_vm_dead", reason)

    # -- the op path -----------------------------------------------------------------------
    def apply(self, op: Any) -> Result:
        handler = _HANDLERS.get(type(op))
        if handler is None:
            raise TypeError(f"not an op: {op!r}")
        # A big zap builds ~150,000 short-lived tuples; letting the cyclic GC run a
        # few hundred times in the middle of it costs a third of the op.  Ops make no
        # reference cycles, so collection simply waits until the op is done.
        gc_on = gc.isenabled()
        if gc_on:
            gc.disable()
        try:
            result = handler(self, op)
        finally:
            self.last_events = self.events.commit()
            self.op_index += 1
            if gc_on:
                gc.enable()
        return result


_HANDLERS: dict[type, Callable[[VM, Any], Result]] = {
    O.CreateGuestMemfd: gmem_ops.create_guest_memfd,
    O.Fallocate: gmem_ops.fallocate,
    O.Close: gmem_ops.close,
    O.MemoryFailure: gmem_ops.memory_failure,
    O.SetUserMemoryRegion2: memslot_ops.set_user_memory_region2,
    O.SetUserMemoryRegion: memslot_ops.set_user_memory_region,
    O.SetMemoryAttributes: attr_ops.set_memory_attributes,
    O.GuestAccess: fault_fast.guest_access,  # the general path: fault.guest_access
    O.VcpuResume: fault.vcpu_resume,
    O.GuestAccept: fault_fast.guest_accept,  # the general path: fault.guest_accept
    O.TdxInitMemRegion: tdx_ops.tdx_init_mem_region,
    O.TdxFinalizeVm: tdx_ops.tdx_finalize_vm,
    O.SnpLaunchUpdate: snp_ops.snp_launch_update,
    O.SnpLaunchFinish: snp_ops.snp_launch_finish,
    O.GuestPvalidate: snp_ops.guest_pvalidate,
    O.HostAccess: host_ops.host_access,
    O.Madvise: host_ops.madvise,
    O.PreFaultMemory: prefault.pre_fault_memory,
    O.GuestMapGpaRange: hypercall.guest_map_gpa_range,
    O.MemfdCreate: upm.memfd_create,
    O.MemoryEncryptRegRegion: upm.memory_encrypt_reg_region,
    O.MemoryEncryptUnregRegion: upm.memory_encrypt_unreg_region,
    O.HostMmapPfnmap: pfnmap.host_mmap_pfnmap,
    O.Note: query.note,
    O.Inspect: query.inspect,
    O.Stats: query.stats,
}
