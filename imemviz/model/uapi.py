"""The kernel's uAPI constants and flag names, in one place.

Values as include/uapi/linux/kvm.h, include/uapi/linux/memfd.h and
include/uapi/linux/falloc.h define them (plus the 2022 design's, upm-v8, where
it differs), and the name tables scripts use: a flag is written without its
prefix (contract section 3), e.g. ``["KEEP_SIZE", "PUNCH_HOLE"]``.  Every other
module takes these from here; `value_names` turns a value back into names.
"""

from __future__ import annotations

# -- KVM_SET_USER_MEMORY_REGION(2): kvm_userspace_memory_region2.flags ----------------------
KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
KVM_MEM_READONLY = 1 << 1
KVM_MEM_GUEST_MEMFD = 1 << 2
KVM_MEM_PRIVATE = 1 << 2  # upm-v8: the same bit, with private_fd/private_offset (v1 ioctl)

# -- KVM_CREATE_GUEST_MEMFD: kvm_create_guest_memfd.flags -----------------------------------
GUEST_MEMFD_FLAG_MMAP = 1 << 0
GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1

# -- KVM_SET_MEMORY_ATTRIBUTES and the memory-fault exit ------------------------------------
KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3
KVM_MEMORY_EXIT_FLAG_PRIVATE = 1 << 3  # kvm_run.memory_fault.flags (6.8+)
V8_MEMORY_EXIT_FLAG_PRIVATE = 1 << 0  # upm-v8 3/8: kvm_run.memory.flags
PFERR_PRIVATE_ACCESS = 1 << 49  # KVM's synthetic error-code bit (arch/x86/include/asm/kvm_host.h)

# -- memfd_create(2) -----------------------------------------------------------------------
MFD_CLOEXEC = 0x1
MFD_ALLOW_SEALING = 0x2
MFD_HUGETLB = 0x4
MFD_INACCESSIBLE = 0x8  # upm-v8; MFD_NOEXEC_SEAL on merged kernels (6.3)
MFD_EXEC = 0x10  # 6.3
MFD_HUGE_MASK = 0x3F << 26  # huge page size encoding with MFD_HUGETLB

# -- fallocate(2) --------------------------------------------------------------------------
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
FALLOC_FL_UNSHARE_RANGE = 0x40
FALLOC_FL_WRITE_ZEROES = 0x80

# -- the names scripts use (contract section 3), name -> value ------------------------------
GMEM_FLAGS = {"MMAP": GUEST_MEMFD_FLAG_MMAP, "INIT_SHARED": GUEST_MEMFD_FLAG_INIT_SHARED}
MEM_FLAGS = {
    "LOG_DIRTY_PAGES": KVM_MEM_LOG_DIRTY_PAGES,
    "READONLY": KVM_MEM_READONLY,
    "GUEST_MEMFD": KVM_MEM_GUEST_MEMFD,
}
# KVM_SET_USER_MEMORY_REGION (v1): bit 2 is the 2022 design's KVM_MEM_PRIVATE (upm-v8); the
# merged name GUEST_MEMFD is read as well, and written back as PRIVATE.
MEM_FLAGS_V1 = {
    "LOG_DIRTY_PAGES": KVM_MEM_LOG_DIRTY_PAGES,
    "READONLY": KVM_MEM_READONLY,
    "PRIVATE": KVM_MEM_PRIVATE,
}
MEM_FLAGS_V1_NAMES = {**MEM_FLAGS_V1, "GUEST_MEMFD": KVM_MEM_GUEST_MEMFD}
MFD_FLAGS = {"INACCESSIBLE": MFD_INACCESSIBLE}
ATTRIBUTE_FLAGS = {"PRIVATE": KVM_MEMORY_ATTRIBUTE_PRIVATE}
ATTRIBUTES_OP_FLAGS: dict[str, int] = {}  # kvm_memory_attributes.flags: none defined
FALLOC_FLAGS = {
    "KEEP_SIZE": FALLOC_FL_KEEP_SIZE,
    "PUNCH_HOLE": FALLOC_FL_PUNCH_HOLE,
    "COLLAPSE_RANGE": FALLOC_FL_COLLAPSE_RANGE,
    "ZERO_RANGE": FALLOC_FL_ZERO_RANGE,
    "INSERT_RANGE": FALLOC_FL_INSERT_RANGE,
}


def value_names(names: dict[str, int]) -> dict[int, str]:
    """A name table turned around, value -> name (the first name of a value wins)."""
    out: dict[int, str] = {}
    for name, bit in names.items():
        out.setdefault(bit, name)
    return out


def is_private_attr(attributes: int) -> bool:
    """Whether a KVM_SET_MEMORY_ATTRIBUTES value marks memory private."""
    return bool(attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE)
