"""Small helpers for engine tests: build VMs and apply contract-level ops by name."""

from __future__ import annotations

from typing import Any

from imemviz.model import VM, VMConfig
from imemviz.model.invariants import check_invariants
from imemviz.model.ops import parse_op
from imemviz.model.result import Result

HVA = 0x7F0000000000
G = 1 << 30
M = 1 << 20


def vm_of(vm_type: str, **cfg: Any) -> VM:
    return VM(VMConfig.from_dict({"type": vm_type, **cfg}))


def do(vm: VM, op: str, **fields: Any) -> Result:
    """Apply one op given as contract fields, then check every invariant."""
    result = vm.apply(parse_op({"op": op, **fields}))
    violations = check_invariants(vm)
    assert not violations, [str(v) for v in violations]
    return result


def ok(vm: VM, op: str, **fields: Any) -> dict[str, Any]:
    r = do(vm, op, **fields)
    assert r.ok, (op, fields, r)
    return r.ret


def gmem_slot(
    vm: VM,
    gpa: int,
    size: int,
    *,
    slot: int = 0,
    uaddr: int | None = None,
    offset: int = 0,
    fd: int | None = None,
    private: bool = True,
    gmem_size: int | None = None,
    flags: int = 0,
) -> int:
    """A guest_memfd-backed memslot (and its file unless `fd` is given); returns the fd."""
    if fd is None:
        fd = ok(vm, "create_guest_memfd", size=gmem_size or offset + size, flags=flags)["fd"]
    ok(
        vm,
        "set_user_memory_region2",
        slot=slot,
        flags=4,
        guest_phys_addr=gpa,
        memory_size=size,
        userspace_addr=HVA + gpa if uaddr is None else uaddr,
        guest_memfd=fd,
        guest_memfd_offset=offset,
    )
    if private:
        ok(vm, "set_memory_attributes", address=gpa, size=size, attributes=8)
    return fd


def stats(vm: VM) -> dict[str, Any]:
    return ok(vm, "stats")


def inspect(vm: VM, gpa: int) -> dict[str, Any]:
    return ok(vm, "inspect", gpa=gpa)


def names(vm: VM) -> list[str]:
    """Event names of the last op."""
    return [e[1] for e in vm.last_events]


def td(**cfg: Any) -> VM:
    """A finalized TDX VM with 1 GiB of private memory at 0 (fd 3, slot 0)."""
    vm = vm_of("tdx", **cfg)
    gmem_slot(vm, 0, G)
    ok(vm, "tdx_finalize_vm")
    return vm
