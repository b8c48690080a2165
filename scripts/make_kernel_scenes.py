"""Regenerate the kernel-profile scenes in resources/scenes/ (issue 11): the 2022 design
next to mainline, QEMU + OVMF pflash (READONLY), a TD built with pre-fault, a virtio-gpu
blob before and after 6.13, in-place conversion with an MMAP guest_memfd, and a Linux
guest accepting memory on a 4K-only KVM and on the TDX huge-page series.

    .venv/bin/python scripts/make_kernel_scenes.py

Uses the Scene builder of make_scenes.py: every op is applied as it is written, its
outcome checked against its caption (``expect=`` for the ones that fail).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_scenes import HVA, MB, Scene, layout, pages

from imemviz.model.host_ops import host_lookup

KB = 1 << 10


# ------------------------------------------------------------------ the 2022 design
def design_2022(kernel: str) -> Scene:
    v8 = kernel == "upm-v8"
    part = "1/2" if v8 else "2/2"
    other = "design-2022-mainline" if v8 else "design-2022-upm-v8"
    s = Scene(
        "design-2022-upm-v8" if v8 else "design-2022-mainline",
        f"The 2022 design ({part}): "
        + (
            "v8's inaccessible memfd, KVM_MEM_PRIVATE and the memfile notifier"
            if v8
            else "the same guest on mainline guest_memfd"
        ),
        [
            "One guest story told twice: private RAM, an implicit conversion of one page to",
            "shared and back, and a hole punched in private memory. "
            + ("This part runs the v8 patches" if v8 else "This part runs mainline")
            + f"; replay {other} for the other.",
        ],
        {"type": "default" if v8 else "sw_protected", "host_memory": "1G", "seed": 4,
         "kernel": kernel},
    )  # fmt: skip
    ram = 16 * MB
    if v8:
        s.note(
            "upm-v8: Chao Peng's v8 series (Sept 2022), as it was tested without TDX hardware: "
            "a default VM whose private memory comes from an fd. Docs: docs/kernels.md."
        )
        s.note("memfd_create(MFD_INACCESSIBLE): a memfd userspace cannot read, write or mmap.")
        s.op("memfd_create", size=ram, flags=["INACCESSIBLE"])
        s.note(
            "KVM_SET_USER_MEMORY_REGION with KVM_MEM_PRIVATE, private_fd 3, private_offset 0: "
            "one slot, private memory from the fd, shared memory from userspace_addr."
        )
        s.op("set_user_memory_region", slot=0, flags=["PRIVATE"], guest_phys_addr=0,
             memory_size=ram, userspace_addr=hex(HVA), private_fd=3)  # fmt: skip
        s.note(
            "v8 stores only SHARED in mem_attr_array: all memory is private from the start, "
            "no ioctl needed. (Mainline: everything starts shared, KVM_SET_MEMORY_ATTRIBUTES.)"
        )
    else:
        s.note(
            "Mainline: a KVM_X86_SW_PROTECTED_VM. Private memory is a guest_memfd "
            "(KVM_CREATE_GUEST_MEMFD), bound with KVM_SET_USER_MEMORY_REGION2."
        )
        layout(s, ram)
        s.note(
            "Memory starts shared: KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) made it private. "
            "(v8: private by default, no such ioctl.)"
        )
    s.note("The guest writes 64 private pages at 4 MiB.")
    s.burst("guest_access", pages(4 * MB, 64, write=True, value="0x11"))
    s.note("It touches 5 MiB as SHARED (a bounce buffer) without asking for a conversion.")
    if v8:
        r = s.op("guest_access", gpa=hex(5 * MB), private=False)
        s.note(
            f"v8 exit: KVM_RUN returns 0 (RET_PF_USER) with exit 38, KVM_EXIT_MEMORY_FAULT, "
            f"flags {r.ret['exit']['flags']} (bit 0 would mean private). Mainline returns "
            "-EFAULT with exit 39 and uses bit 3."
        )
        s.note("The VMM converts: KVM_MEMORY_ENCRYPT_UNREG_REGION(gpa 5 MiB, 4K) = 'shared'.")
        s.op("memory_encrypt_unreg_region", address=hex(5 * MB), size="4K")
        s.note(
            "kvm_vm_ioctl_set_mem_attr() stores SHARED and calls kvm_zap_gfn_range(): one "
            "invalidation, always, even where nothing changes."
        )
    else:
        s.op("guest_access", gpa=hex(5 * MB), expect="EFAULT", private=False)
        s.note(
            "Mainline exit: KVM_RUN fails with EFAULT, exit 39 KVM_EXIT_MEMORY_FAULT, flags 0 "
            "(a shared access). The mismatch is checked before the memslot lookup."
        )
        s.note("The VMM converts with KVM_SET_MEMORY_ATTRIBUTES(gpa 5 MiB, 4K, 0).")
        s.op("set_memory_attributes", address=hex(5 * MB), size="4K", attributes=0)
    r = s.op("guest_access", gpa=hex(5 * MB), write=True, value="0x22", private=False)
    s.note(f"The shared access now maps the VMM's memory (pfn {r.ret['pfn']:#x}).")
    s.note(
        "Now the VMM punches a hole in PRIVATE memory at 4 MiB + 8K "
        "(fallocate PUNCH_HOLE|KEEP_SIZE), a page the guest has mapped."
    )
    before = s.inspect(4 * MB + 8 * KB)
    s.op("fallocate", fd=3, mode=["KEEP_SIZE", "PUNCH_HOLE"], offset=hex(4 * MB + 8 * KB),
         len="4K")  # fmt: skip
    after = s.inspect(4 * MB + 8 * KB)
    if v8:
        s.note(
            "v8: shmem frees the page FIRST, then the notifier gets (offset, offset+len) in "
            "BYTES and reads them as page offsets: 0x402000 pages is past the slot, so "
            "nothing is zapped."
        )
        s.note(
            f"The guest still maps pfn {after['private_mapping']['pfn']:#x}, which the host "
            "freed (the memfd has no page there any more). v9 fixed the units; restrictedmem "
            "added begin/end around the truncation."
        )
    else:
        s.note(
            "Mainline: kvm_gmem_punch_hole() invalidates (begin, zap) BEFORE truncating and "
            f"ends after: the leaf to pfn {before['private_mapping']['pfn']:#x} is gone "
            "before the page is freed."
        )
    s.op("host_access", hva=hex(HVA + 8 * MB), write=True, value="0x99")
    _lv, _head, pfn = host_lookup(s.vm, (HVA + 8 * MB) >> 12)
    s.note(
        "The host reuses free memory: QEMU writes 0x99 into a new page of its own RAM, "
        f"which the allocator takes from the lowest free pfn, {pfn:#x}."
    )
    r = s.op("guest_access", gpa=hex(4 * MB + 8 * KB))
    s.note(
        f"The guest reads its page at 4 MiB + 8K: value {r.ret['value']:#x}, pfn "
        f"{r.ret['pfn']:#x}"
        + (
            " - QEMU's data, through the stale leaf: a use-after-free across the boundary "
            "the design was meant to draw."
            if v8
            else " - a fresh zeroed folio, faulted in again."
        )
    )
    return s


# ------------------------------------------------------------------ QEMU + OVMF pflash
def ovmf_pflash() -> Scene:
    s = Scene(
        "qemu-ovmf-pflash",
        "QEMU + OVMF pflash: READONLY memslots, reads map, writes exit as MMIO",
        [
            "QEMU maps both OVMF flash devices in ROM mode as KVM_MEM_READONLY memslots:",
            "the guest reads them directly and every write is emulated (KVM_EXIT_MMIO),",
            "which QEMU's pflash device turns into flash commands on its own copy.",
        ],
        {"type": "default", "host_memory": "1G", "seed": 6},
    )
    code, vars_ = 0xFFC84000, 0xFFC00000
    s.note("A default VM: 16 MiB of RAM at 0, and OVMF's two flash chips just below 4 GiB.")
    s.op("set_user_memory_region", slot=0, guest_phys_addr=0, memory_size="16M",
         userspace_addr=hex(HVA))  # fmt: skip
    s.op("set_user_memory_region", slot=1, flags=["READONLY"], guest_phys_addr=hex(vars_),
         memory_size="528K", userspace_addr=hex(HVA + 0x10000000))  # fmt: skip
    s.op("set_user_memory_region", slot=2, flags=["READONLY"], guest_phys_addr=hex(code),
         memory_size="3568K", userspace_addr=hex(HVA + 0x10084000))  # fmt: skip
    s.note(
        "pflash1 (OVMF_VARS, 528K) and pflash0 (OVMF_CODE, 3.5M at 0xffc84000): both "
        "KVM_MEM_READONLY. QEMU fills them through its own mapping, which READONLY does not limit."
    )
    s.op("host_access", hva=hex(HVA + 0x10084000 + 0x37B000), write=True, value="0xe9")
    s.op("host_access", hva=hex(HVA + 0x10000000), write=True, value="0x5f")
    s.note("The vCPU starts at the reset vector near 4 GiB: a read maps the page read-only.")
    r = s.op("guest_access", gpa=hex(0xFFFFF000))
    s.note(f"It reads {r.ret['value']:#x} (QEMU's byte) through a {r.ret['level']} leaf.")
    s.note("OVMF writes a UEFI variable: a write to pflash1 ...")
    r = s.op("guest_access", gpa=hex(vars_ + 0x40), write=True, value="0x40")
    s.note(
        f"... is {r.ret['exit']['reason']} at {r.ret['exit']['gpa']:#x}: __gfn_to_hva_many() "
        "gives KVM_HVA_ERR_RO_BAD, kvm_handle_error_pfn() returns RET_PF_EMULATE. Memory "
        "is unchanged."
    )
    s.note("QEMU's pflash device programs the word in its own copy of the flash ...")
    s.op("host_access", hva=hex(HVA + 0x10000000), write=True, value="0x40")
    r = s.op("guest_access", gpa=hex(vars_))
    s.note(f"... and the guest reads it back through its read-only leaf: {r.ret['value']:#x}.")
    r = s.op("guest_access", gpa=hex(vars_), write=True, value="0x41")
    s.note(
        f"A write to the mapped page faults on the read-only leaf: {r.ret['exit']['reason']} "
        "again. RAM at 0 takes writes as usual:"
    )
    s.op("guest_access", gpa="0x1000", write=True, value="0x01")
    s.note("The READONLY flag cannot be dropped on a live slot (MODIFY toggling it is EINVAL).")
    s.op("set_user_memory_region", expect="EINVAL", slot=1, guest_phys_addr=hex(vars_),
         memory_size="528K", userspace_addr=hex(HVA + 0x10000000))  # fmt: skip
    return s


# ------------------------------------------------------------------ TD with pre-fault
def td_prefault() -> Scene:
    s = Scene(
        "td-pre-fault",
        "A TD built with KVM_PRE_FAULT_MEMORY: PENDING pages before the guest runs",
        [
            "KVM_PRE_FAULT_MEMORY maps private memory ahead of the guest. A TD allows it only",
            "once finalized; the pages come PENDING (TDH.MEM.PAGE.AUG) and the guest still",
            "accepts each one, but without an EPT violation per page.",
        ],
        {"type": "tdx", "host_memory": "1G", "seed": 7},
    )
    s.note("A 16 MiB TD: TDVF's 16 pages are added and measured (TDH.MEM.PAGE.ADD).")
    layout(s)
    s.op("tdx_init_mem_region", gpa=hex(15 * MB), nr_pages=16, measure=True, value="0x90")
    s.note("Pre-faulting while the TD is still being built is refused: EOPNOTSUPP.")
    s.op("pre_fault_memory", expect="EOPNOTSUPP", gpa=hex(4 * MB), size="256K")
    s.op("tdx_finalize_vm")
    s.note("Finalized: the VMM pre-faults 256K at 4 MiB (kvm_arch_vcpu_pre_fault_memory()).")
    r = s.op("pre_fault_memory", gpa=hex(4 * MB), size="256K")
    s.note(
        f"Done, {r.ret['size']} bytes left: "
        f"{s.stats()['mappings']['private']['4K'] - 16} new 4K S-EPT leaves, AUGed PENDING "
        "(green), before the guest ran."
    )
    s.note("A range that runs past the end of RAM maps what it can and stops at the MMIO:")
    r = s.op("pre_fault_memory", gpa=hex(16 * MB - 8 * KB), size="16K")
    s.note(f"Success with {r.ret['size'] // 4096} pages left at {r.ret['gpa']:#x} (ENOENT next).")
    s.note("The guest boots and accepts the pre-faulted pages: PENDING -> MAPPED, no fault.")
    s.burst("guest_accept", pages(4 * MB, 64))
    s.note("Touching a pre-faulted page it never accepted would kill the TD, as any AUGed page:")
    s.op("guest_access", expect="EIO", gpa=hex(16 * MB - 8 * KB))
    return s


# ------------------------------------------------------------------ virtio-gpu blob
def virtio_gpu_blob(kernel: str) -> Scene:
    old = kernel == "6.12"
    s = Scene(
        f"virtio-gpu-blob-{kernel}",
        f"A virtio-gpu blob on {kernel}: "
        + ("KVM refuses non-refcounted pages" if old else "mapped since 6.13"),
        [
            "Venus maps GPU buffers (TTM pages without a refcount) into guest RAM as a",
            "VM_PFNMAP range. Before 6.13 KVM refuses such pages (kvm_try_get_pfn(), the",
            "CVE-2021-22543 fix); 6.13's kvm_follow_pfn series maps them without a reference."
            + (" Replay virtio-gpu-blob-6.16 for after." if old else ""),
        ],
        {"type": "default", "host_memory": "1G", "seed": 8, "kernel": kernel},
    )
    s.note(f"A default VM on kernel {kernel} with 64 MiB of RAM; the guest uses some of it.")
    s.op("set_user_memory_region", slot=0, guest_phys_addr=0, memory_size="64M",
         userspace_addr=hex(HVA))  # fmt: skip
    s.burst("guest_access", pages(32 * MB, 8, write=True, value="0x11"))
    s.note(
        "QEMU maps a 1 MiB blob at 32 MiB (host_mmap_pfnmap, VM_PFNMAP): the old pages are "
        "unmapped (mmu notifier: KVM's leaves go) and device memory takes their place."
    )
    s.op("host_mmap_pfnmap", hva=hex(HVA + 32 * MB), size="1M", refcounted=False)
    s.op("host_access", hva=hex(HVA + 32 * MB), write=True, value="0x77")
    s.note("The GPU wrote 0x77 into the buffer. The guest reads it:")
    if old:
        s.op("guest_access", expect="EFAULT", gpa=hex(32 * MB))
        s.note(
            "6.12: hva_to_pfn_remapped() finds a struct page with refcount 0; kvm_try_get_pfn() "
            "refuses it, the fault gets KVM_PFN_ERR_FAULT and KVM_RUN fails with EFAULT "
            "(no memory-fault exit). The guest cannot use the blob."
        )
    else:
        r = s.op("guest_access", gpa=hex(32 * MB))
        s.note(
            f"6.13+: the fault maps pfn {r.ret['pfn']:#x} without taking a reference "
            f"(refcounted_page NULL) and reads {r.ret['value']:#x}. Correctness rests on the "
            "mmu notifier alone."
        )
    s.note("A blob whose pages ARE refcounted was always mapped:")
    s.op("host_mmap_pfnmap", hva=hex(HVA + 40 * MB), size="64K", refcounted=True)
    s.op("guest_access", gpa=hex(40 * MB))
    s.note("madvise(DONTNEED) on device memory is refused (VM_PFNMAP vma): EINVAL.")
    s.op("madvise", expect="EINVAL", hva=hex(HVA + 32 * MB), len="1M", advice="DONTNEED")
    return s


# ------------------------------------------------------------------ MMAP guest_memfd
def gmem_mmap_in_place() -> Scene:
    s = Scene(
        "gmem-mmap-in-place",
        "In-place conversion with an MMAP guest_memfd: one page, shared and private",
        [
            "With GUEST_MEMFD_FLAG_MMAP (6.18) the memslot is gmem-only: shared faults come",
            "from guest_memfd too, so converting keeps the page and its content. The host's",
            "mmap of a private-memory VM's guest_memfd is SIGBUS.",
        ],
        {"type": "sw_protected", "host_memory": "1G", "seed": 10},
    )
    s.note("A SW_PROTECTED VM; its guest_memfd is created with MMAP (INIT_SHARED is for VMs "
           "without private memory).")  # fmt: skip
    s.op("create_guest_memfd", size="16M", flags=["MMAP"])
    s.op("set_user_memory_region2", slot=0, flags=["GUEST_MEMFD"], guest_phys_addr=0,
         memory_size="16M", userspace_addr=hex(HVA), guest_memfd=3)  # fmt: skip
    s.note("Memory starts shared. The guest writes 16 pages at 2 MiB: guest_memfd folios.")
    s.burst("guest_access", pages(2 * MB, 16, write=True, value="0x5a"))
    pfn = s.inspect(2 * MB)["shared_mapping"]["pfn"]
    s.note(f"The shared leaf of 2 MiB maps pfn {pfn:#x}, a guest_memfd folio, not QEMU's memory.")
    s.note("The guest converts the 16 pages to private: KVM_SET_MEMORY_ATTRIBUTES(PRIVATE).")
    s.op("set_memory_attributes", address=hex(2 * MB), size="64K", attributes=["PRIVATE"])
    r = s.op("guest_access", gpa=hex(2 * MB))
    s.note(
        f"The private fault maps the same pfn {r.ret['pfn']:#x}, content {r.ret['value']:#x} "
        "kept: the conversion happened in place, no copy, no discard."
    )
    s.note("QEMU touches the page through its mmap of the guest_memfd:")
    s.op("host_access", expect="SIGBUS", hva=hex(HVA + 2 * MB))
    s.note(
        "kvm_gmem_fault_user_mapping(): without INIT_SHARED the memory belongs to the guest; "
        "the host gets SIGBUS. (In-place sharing with the host is in flight upstream.)"
    )
    return s


# ------------------------------------------------------------------ accept paths
def accept(huge: bool) -> Scene:
    s = Scene(
        "accept-2m-huge-series" if huge else "accept-4k-fallback",
        "Linux guest accepting memory "
        + (
            "on the TDX huge-page series: 2M accepts succeed"
            if huge
            else "on a 4K-only KVM: 2M tries, 4K fallback"
        ),
        [
            "Linux accepts unaccepted memory in 2M chunks first (tdx_accept_memory()). Upstream",
            "KVM maps TD private memory at 4K only: each 2M accept takes the EPT violation,",
            "gets a 4K PENDING page and fails TDX_PAGE_SIZE_MISMATCH; the guest falls back",
            "to 512 4K accepts. "
            + (
                "Here: the huge-page series, 2M S-EPT leaves."
                if huge
                else "Replay accept-2m-huge-series for the series."
            ),
        ],
        {
            "type": "tdx",
            "host_memory": "1G",
            "seed": 11,
            **({"gmem_max_order": 9, "tdx_private_max_level": "2M"} if huge else {}),
        },
    )
    layout(s)
    s.op("tdx_init_mem_region", gpa=hex(15 * MB), nr_pages=16, measure=True, value="0x90")
    s.op("tdx_finalize_vm")
    s.note("The guest accepts 4 MiB at 4 MiB, trying 2M first.")
    for chunk in (4 * MB, 6 * MB):
        if huge:
            s.op("guest_accept", gpa=hex(chunk), level="2M")
            s.note(f"2M accept at {chunk // MB} MiB: one TDH.MEM.PAGE.AUG of a 2M leaf, accepted.")
        else:
            s.op("guest_accept", expect="EINVAL", gpa=hex(chunk), level="2M")
            s.note(
                f"2M accept at {chunk // MB} MiB: KVM AUGed a 4K page (green), the re-executed "
                "accept got TDX_PAGE_SIZE_MISMATCH. The guest falls back to 4K ..."
            )
            s.burst("guest_accept", pages(chunk, 512))
    st = s.stats()["mappings"]["private"]
    s.note(
        f"Private leaves now: {st['4K']} x 4K (16 of them TDVF's), {st['2M']} x 2M. "
        + (
            "Two accepts, two leaves."
            if huge
            else "1026 accept calls and 1024 EPT violations for 4 MiB: why large TDs boot slowly."
        )
    )
    return s


BUILDERS = (
    lambda: design_2022("upm-v8"),
    lambda: design_2022("mainline"),
    ovmf_pflash,
    td_prefault,
    lambda: virtio_gpu_blob("6.12"),
    lambda: virtio_gpu_blob("6.16"),
    gmem_mmap_in_place,
    lambda: accept(False),
    lambda: accept(True),
)


def main() -> int:
    for build in BUILDERS:
        build().write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
