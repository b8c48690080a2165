"""guest_map_gpa_range: the guest asks the host to convert a range, and KVM exits to the
VMM with KVM_EXIT_HYPERCALL (nr KVM_HC_MAP_GPA_RANGE, 12); the VMM answers with
set_memory_attributes (or, under upm-v8, memory_encrypt_(un)reg_region).

A TD's TDG.VP.VMCALL<MapGPA> goes through tdx_map_gpa() (vmx/tdx.c): the shared
bit of the GPA says the direction, and KVM exits once per 2 MiB chunk
(TDX_MAP_GPA_MAX_LEN) as the VMM completes each.  Other guests' VMCALL goes
through kvm_emulate_hypercall() (x86.c) and exits once for the whole range.
The VMM is assumed to have enabled KVM_CAP_EXIT_HYPERCALL for it (QEMU does).
A request KVM refuses goes back to the guest (`guest_ret`), not to the VMM.
The op changes no state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imemviz.model.fault import _vcpu_check
from imemviz.model.result import Result

if TYPE_CHECKING:
    from imemviz.model.ops import GuestMapGpaRange
    from imemviz.model.vm import VM

KVM_HC_MAP_GPA_RANGE = 12
KVM_MAP_GPA_RANGE_ENCRYPTED = 1 << 4
KVM_MAP_GPA_RANGE_DECRYPTED = 0
TDX_MAP_GPA_MAX_LEN = 2 << 20
U64 = 1 << 64


def guest_map_gpa_range(vm: VM, op: GuestMapGpaRange) -> Result:
    refused = _vcpu_check(vm, op.vcpu)
    if refused:
        return refused
    gpa, size, private = op.gpa, op.size, op.private
    attrs = KVM_MAP_GPA_RANGE_ENCRYPTED if private else KVM_MAP_GPA_RANGE_DECRYPTED
    if vm.is_tdx:
        return _tdx_map_gpa(vm, op.vcpu, gpa, size, private, attrs)
    if vm.snp is not None:
        return _snp_psc(vm, op.vcpu, gpa, size, private, attrs)
    # kvm_emulate_hypercall(), KVM_HC_MAP_GPA_RANGE(a0 = gpa, a1 = npages, a2 = attrs)
    # !PAGE_ALIGNED(gpa) || !npages || gfn + npages wraps (u64) -> -KVM_EINVAL to the guest.
    # A size that is not whole pages cannot be said in npages: refused the same way.
    npages = size >> 12
    gfn = gpa >> 12
    if gpa & 0xFFF or size & 0xFFF or not npages or (gfn + npages) % U64 <= gfn:
        return _guest_error(vm, op.vcpu, "KVM_EINVAL")
    vm.emit("kvm_hypercall", KVM_HC_MAP_GPA_RANGE, gpa, npages, attrs)
    return _exit(vm, op.vcpu, [gpa, npages, attrs])


def _tdx_map_gpa(vm: VM, vcpu: int, gpa: int, size: int, private: bool, attrs: int) -> Result:
    bit = vm.shared_bit << 12
    if gpa & bit and private:
        return _guest_error(vm, vcpu, "TDVMCALL_STATUS_INVALID_OPERAND")
    if not private:
        gpa |= bit  # the guest asks for shared memory with the shared-bit GPA
    limit = 1 << vm.config.gpaw
    end = gpa + size
    if end <= gpa or gpa >= limit or end - 1 >= limit or (gpa & bit) != ((end - 1) & bit):
        return _guest_error(vm, vcpu, "TDVMCALL_STATUS_INVALID_OPERAND")
    if gpa & 0xFFF or size & 0xFFF:
        return _guest_error(vm, vcpu, "TDVMCALL_STATUS_ALIGN_ERROR")
    chunks = []
    nxt = gpa
    while nxt < end:
        n = min(TDX_MAP_GPA_MAX_LEN, end - nxt)
        chunks.append([nxt & ~bit, n >> 12])
        nxt += TDX_MAP_GPA_MAX_LEN
    vm.emit("tdx_map_gpa", gpa & ~bit, size, int(private))
    ret = _exit(vm, vcpu, [chunks[0][0], chunks[0][1], attrs])
    if len(chunks) > 1:
        # tdx_complete_vmcall_map_gpa(): each completed chunk re-enters KVM, which exits
        # again for the next one (unless an interrupt is pending: TDVMCALL_STATUS_RETRY).
        ret.ret["chunks"] = chunks
    return ret


def _snp_psc(vm: VM, vcpu: int, gpa: int, size: int, private: bool, attrs: int) -> Result:
    """An SNP guest's page-state change through the GHCB (SVM_VMGEXIT_PSC, snp_begin_psc()).

    The guest (Linux's set_pages_state()) describes the range with 2M entries where it
    is 2M aligned and 4K entries elsewhere; KVM coalesces adjacent entries of one
    operation and page size into one KVM_HC_MAP_GPA_RANGE exit each
    (args[2] |= KVM_MAP_GPA_RANGE_PAGE_SZ_2M/4K) and re-enters the guest for the next
    after the VMM completed one.  A malformed entry goes back to the guest."""
    if gpa & 0xFFF or size & 0xFFF or (gpa + size) >> 12 > 1 << 40:
        return _guest_error(vm, vcpu, "VMGEXIT_PSC_ERROR_INVALID_ENTRY")  # psc_entry.gfn:40
    if not size:
        return Result.success(guest_ret="0")  # no entry: snp_complete_psc(svm, 0)
    gfn, end = gpa >> 12, (gpa + size) >> 12
    head = min(end, -(-gfn // 512) * 512)
    tail = max(head, end // 512 * 512)
    runs = [
        (g, n, sz)
        for g, n, sz in ((gfn, head - gfn, 0), (head, tail - head, 1), (tail, end - tail, 0))
        if n
    ]
    vm.emit("snp_psc", gpa, size, int(private))
    chunks = [[g << 12, n] for g, n, _sz in runs]
    ret = _exit(vm, vcpu, [chunks[0][0], chunks[0][1], attrs | runs[0][2]])
    if len(chunks) > 1:
        ret.ret["chunks"] = chunks
    return ret


def _exit(vm: VM, vcpu: int, args: list[int]) -> Result:
    vm.emit("kvm_userspace_exit", vcpu, "KVM_EXIT_HYPERCALL", "")
    return Result.success(
        exit={"reason": "KVM_EXIT_HYPERCALL", "nr": KVM_HC_MAP_GPA_RANGE, "args": args}
    )


def _guest_error(vm: VM, vcpu: int, status: str) -> Result:
    """KVM answers the guest itself: no exit, KVM_RUN goes on."""
    vm.emit("kvm_hypercall_refused", vcpu, status)
    return Result.success(guest_ret=status)
