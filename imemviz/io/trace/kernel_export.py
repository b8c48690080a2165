"""The model's own events printed as a real host would trace them.

`export_lines(vm, ops)` applies ops to a VM and yields, for each, the lines a
host running upstream KVM and QEMU would have traced: kernel tracepoints in
tracefs `trace` framing (vCPU threads named `CPU n/KVM`, as QEMU names them)
and QEMU's events through its ftrace backend (`tracing_mark_write: EVENT
ARGS`, so both share one clock), each formatted with the verbatim format of
the FORMATS table.  Importing that text with `--check` must find no
disagreement: it is how the tests hold the importer and the check to the
model, and a way to see what a scenario looks like in a trace.

SPTE values are made the way spte.h lays them out (modern layout, EPT):
present bit 11, RWX, the large bit on huge leaves, pfn in bits 12..51;
removed entries become `SHADOW_NONPRESENT_VALUE`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from imemviz.io.trace.decode import PT_PAGE_SIZE, SHADOW_NONPRESENT_VALUE, SPTE_MMU_PRESENT
from imemviz.io.trace.formats import BY_EVENT, c_printf, qemu_format
from imemviz.model import ops as O
from imemviz.model.events import Event

ERRNO = {"EFAULT": 14, "EHWPOISON": 133, "EIO": 5, "EINTR": 4}
EXIT_REASONS = {"KVM_EXIT_MMIO": 6, "KVM_EXIT_HYPERCALL": 2}


def _fmt(event: str, index: int = 0) -> str:
    row = BY_EVENT[event][index]
    return qemu_format(row.printk) if row.source == "qemu" else row.printk


def leaf_spte(pfn: int, level: int) -> int:
    return (pfn << 12) | SPTE_MMU_PRESENT | 0x7 | (PT_PAGE_SIZE if level > 1 else 0)


def table_spte(pfn: int) -> int:
    return (pfn << 12) | SPTE_MMU_PRESENT | 0x7


class _Clock:
    def __init__(self, t0: float) -> None:
        self.t = t0

    def next(self) -> float:
        self.t += 1e-6
        return self.t


def _line(clock: _Clock, comm: str, pid: int, cpu: int, event: str, payload: str) -> str:
    return f"{comm:>16}-{pid:<7} [{cpu:03d}] ..... {clock.next():.6f}: {event}: {payload}"


def _kernel(clock: _Clock, vcpu: int | None, event: str, payload: str) -> str:
    if vcpu is None:
        return _line(clock, "qemu-system-x86", 4000, 0, event, payload)
    return _line(clock, f"CPU {vcpu}/KVM", 4100 + vcpu, vcpu % 64, event, payload)


def _qemu(clock: _Clock, event: str, payload: str) -> str:
    return _line(clock, "qemu-system-x86", 4000, 0, "tracing_mark_write", f"{event} {payload}")


def _tdx_shared(evs: list[Event], k: int, exit_flags: int | None) -> bool:
    """Whether the TDX fault at evs[k] was a shared access: the leaf it made is in the
    direct root, or its memory-fault exit says shared."""
    for ev in evs[k + 1 :]:
        if ev[1] == "kvm_page_fault":
            break
        if ev[1] in ("kvm_tdp_mmu_spte_changed", "kvm_mmu_set_spte"):
            return bool(ev[2] == "direct")
        if ev[1] == "kvm_mmio":
            return True
    return exit_flags == 0


def event_lines(
    clock: _Clock,
    events: Iterable[Event],
    vcpu: int | None,
    tdx: bool,
    shared_bit_gpa: int = 0,
    exit_flags: int | None = None,
) -> Iterator[str]:
    evs = list(events)
    for k, ev in enumerate(evs):
        name, f = ev[1], ev[2:]
        if name == "kvm_page_fault":
            v, gpa, code = f
            if tdx and (gpa & shared_bit_gpa or _tdx_shared(evs, k, exit_flags)):
                # tdx_handle_ept_violation(): a shared GPA keeps its shared bit and
                # traces the real exit qualification.
                gpa |= shared_bit_gpa
                code = 0x182 if code & 2 else 0x181
            elif not tdx:
                # What handle_ept_violation traces: the exit qualification (read 0x181,
                # write 0x182, as on real hosts), not KVM's internal error code.
                code = 0x182 if code & 2 else 0x181
            yield _kernel(clock, v, name, c_printf(_fmt(name), v, 0, gpa, code))
        elif name == "kvm_mmu_spte_requested":
            gfn, pfn, level = f
            yield _kernel(clock, vcpu, name, c_printf(_fmt(name), gfn, pfn, level))
        elif name == "kvm_tdp_mmu_spte_changed":
            _root, gfn, level, old_pfn, new_pfn = f
            prev = evs[k - 1] if k else None
            table = level > 3 or (
                prev is not None
                and prev[1] == "TDH.MEM.SEPT.ADD"
                and prev[2] == gfn
                and prev[3] == level
            )
            old = SHADOW_NONPRESENT_VALUE if old_pfn == -1 else leaf_spte(old_pfn, level)
            if new_pfn == -1:
                new = SHADOW_NONPRESENT_VALUE
            else:
                new = table_spte(new_pfn) if table else leaf_spte(new_pfn, level)
            yield _kernel(clock, vcpu, name, c_printf(_fmt(name), 0, gfn, level, old, new))
        elif name == "kvm_mmu_set_spte":
            _root, gfn, pfn, level = f
            yield _kernel(
                clock,
                vcpu,
                name,
                c_printf(_fmt(name), gfn, leaf_spte(pfn, level), "r", "w", "x", "u", level, 0),
            )
        elif name == "kvm_vm_set_mem_attributes":
            start, end, attributes = f
            yield _kernel(clock, None, name, c_printf(_fmt(name), start, end, attributes))
        elif name == "kvm_userspace_exit":
            v, reason, errno = f
            if errno:
                text = c_printf(_fmt(name), "error", ERRNO.get(errno, 14))
            else:
                text = c_printf(_fmt(name), reason, EXIT_REASONS.get(reason, 0))
            yield _kernel(clock, v, name, text)
        elif name == "TDH.MEM.PAGE.ADD":
            gfn, _pfn = f
            yield _kernel(
                clock, None, "tdh_mem_page_add", f"(tdh_mem_page_add+0x4/0x80) gpa=0x{gfn << 12:x}"
            )


def op_lines(clock: _Clock, op: Any, result: Any, events: list[Event], vm: Any) -> Iterator[str]:
    """The lines of one applied op: QEMU's view of the ioctl, then the kernel's events."""
    # QEMU traces kvm_set_user_memory after either ioctl (kvm_set_user_memory_region
    # picks KVM_SET_USER_MEMORY_REGION2 only where guest_memfd is supported).
    if isinstance(op, O.SetUserMemoryRegion2 | O.SetUserMemoryRegion) and result.ok:
        if isinstance(op, O.SetUserMemoryRegion2):
            gmem, gmem_off = (op.guest_memfd if op.flags & 4 else -1), op.guest_memfd_offset
        else:
            gmem, gmem_off = (op.private_fd if op.flags & 4 else -1), op.private_offset
        yield _qemu(
            clock,
            "kvm_set_user_memory",
            c_printf(
                _fmt("kvm_set_user_memory"),
                op.slot >> 16,
                op.slot & 0xFFFF,
                op.flags,
                op.guest_phys_addr,
                op.memory_size,
                op.userspace_addr,
                gmem,
                gmem_off,
                0,
            ),
        )
    vcpu = getattr(op, "vcpu", None)
    if isinstance(op, O.GuestAccept | O.TdxInitMemRegion):
        vcpu = 0
    ex = result.ret.get("exit") if isinstance(result.ret, dict) else None
    flags = ex.get("flags") if ex and ex.get("reason") == "KVM_EXIT_MEMORY_FAULT" else None
    yield from event_lines(clock, events, vcpu, vm.is_tdx, vm.shared_bit << 12, flags)
    if ex and ex.get("reason") == "KVM_EXIT_MEMORY_FAULT":
        yield _qemu(
            clock,
            "kvm_memory_fault",
            c_printf(_fmt("kvm_memory_fault"), ex["gpa"], ex["size"], ex["flags"]),
        )


def export_lines(vm: Any, ops: Iterable[Any], t0: float = 1000.0) -> Iterator[str]:
    """Apply `ops` to `vm`, yielding the trace lines a real host would have written."""
    clock = _Clock(t0)
    for op in ops:
        result = vm.apply(op)
        yield from op_lines(clock, op, result, list(vm.last_events), vm)


def export_recording(path: str) -> Iterator[str]:
    """The trace lines of a script or recording file, from its start."""
    from imemviz.io.script import open_script, start_vm

    with open_script(path) as reader:
        h = reader.header
        assert h is not None  # open_script() without ops_only always reads one
        vm = start_vm(h.start, reader.source, h.line)
        yield from export_lines(vm, (op for _line, op, _t in reader))
