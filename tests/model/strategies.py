"""Hypothesis strategies for random but meaningful op sequences on every VM type.

Addresses come from a small world (two memslots, one guest_memfd, a few huge
pages) so that ops collide: conversions hit mapped pages, punches hit folios,
resumes find held faults.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

HVA = 0x7F0000000000
M = 1 << 20
SLOT0 = (0, 32 * M)  # gmem-backed, file offset 0
SLOT1 = (64 * M, 8 * M)  # shared-only (no guest_memfd)
GMEM_SIZE = 64 * M


# Every kernel profile with the VM types it can create (contract 3.5).
KERNELS = {
    "default": ["mainline", "7.1", "6.18", "6.16", "6.12", "6.8", "upm-v8"],
    "sw_protected": ["mainline", "7.1", "6.18", "6.16", "6.12", "6.8"],
    "tdx": ["mainline", "7.1", "6.18", "6.16"],
    "snp": ["mainline", "7.1", "6.18", "6.16", "6.12"],
}


def upm_prologue() -> list[dict[str, Any]]:
    """The 2022 design: an inaccessible memfd behind a KVM_MEM_PRIVATE slot (v1 + private_fd),
    a shared-only slot; memory starts private under v8."""
    return [
        {"op": "memfd_create", "size": GMEM_SIZE, "flags": ["INACCESSIBLE"]},
        {
            "op": "set_user_memory_region",
            "slot": 0,
            "flags": ["PRIVATE"],
            "guest_phys_addr": SLOT0[0],
            "memory_size": SLOT0[1],
            "userspace_addr": HVA,
            "private_fd": 3,
        },
        {
            "op": "set_user_memory_region",
            "slot": 1,
            "guest_phys_addr": SLOT1[0],
            "memory_size": SLOT1[1],
            "userspace_addr": HVA + SLOT1[0],
        },
    ]


def prologue(vm_type: str, kernel: str = "mainline") -> list[dict[str, Any]]:
    if kernel == "upm-v8":
        return upm_prologue()
    ops: list[dict[str, Any]] = [
        {"op": "create_guest_memfd", "size": GMEM_SIZE},
        {
            "op": "set_user_memory_region2",
            "slot": 0,
            "flags": 4,
            "guest_phys_addr": SLOT0[0],
            "memory_size": SLOT0[1],
            "userspace_addr": HVA,
            "guest_memfd": 3,
        },
        {
            "op": "set_user_memory_region2",
            "slot": 1,
            "guest_phys_addr": SLOT1[0],
            "memory_size": SLOT1[1],
            "userspace_addr": HVA + SLOT1[0],
        },
    ]
    if vm_type != "default":
        ops.append({"op": "set_memory_attributes", "address": 0, "size": SLOT0[1], "attributes": 8})
    if vm_type == "tdx":
        ops.append({"op": "tdx_init_mem_region", "gpa": 0x100000, "nr_pages": 4, "value": 7})
        ops.append({"op": "tdx_finalize_vm"})
    if vm_type == "snp":
        # As QEMU launches OVMF: a few measured pages, a CPUID and a SECRETS page, finish.
        ops.append({"op": "snp_launch_update", "gpa": 0x100000, "size": 0x3000, "value": 7})
        ops.append({"op": "snp_launch_update", "gpa": 0x103000, "size": 0x1000, "type": "CPUID"})
        ops.append({"op": "snp_launch_update", "gpa": 0x104000, "size": 0x1000, "type": "SECRETS"})
        ops.append({"op": "snp_launch_finish"})
    return ops


configs = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["default", "sw_protected", "tdx", "snp"]),
        "kernel": st.just("mainline"),
        "host_memory": st.sampled_from(["256M", "1G"]),
        "gmem_max_order": st.sampled_from([0, 9]),
        "shared_page_size": st.sampled_from(["4K", "2M"]),
        "tdx_private_max_level": st.sampled_from(["4K", "2M"]),
        "seed": st.integers(0, 3),
    }
)

# Pages near the interesting places: the start of each 2M page, slot edges, anywhere.
pages = st.one_of(
    st.integers(0, 15).map(lambda k: k * 512),
    st.integers(0, 15).map(lambda k: k * 512 + 1),
    st.integers(0, (80 * M >> 12) - 1),
    st.sampled_from([(SLOT0[1] >> 12) - 1, SLOT1[0] >> 12, (SLOT1[0] + SLOT1[1]) >> 12]),
)
lengths = st.sampled_from([1, 2, 511, 512, 513, 1024]).map(lambda n: n << 12)
bytes_ = st.integers(0, 255)


def _gpa(page: int, alias: bool) -> int:
    return (page << 12) | ((1 << 51) if alias else 0)


def ops_for(vm_type: str, kernel: str = "mainline") -> st.SearchStrategy[dict[str, Any]]:
    access = st.builds(
        lambda p, w, v, priv, hold, alias: {
            "op": "guest_access",
            "gpa": _gpa(p, alias and vm_type == "tdx"),
            "write": w,
            **({"value": v} if w else {}),
            **({"private": priv} if priv is not None else {}),
            "hold": hold,
        },
        pages,
        st.booleans(),
        bytes_,
        st.sampled_from([None, None, True, False]),
        st.sampled_from([False, False, False, True]),
        st.booleans(),
    )
    choices = [
        access,
        access,
        st.builds(
            lambda p, n, a: {
                "op": "set_memory_attributes",
                "address": p << 12,
                "size": n,
                "attributes": a,
            },
            pages,
            lengths,
            st.sampled_from([0, 8] if vm_type != "default" else [0]),
        ),
        st.builds(
            lambda p, n, mode: {
                "op": "fallocate",
                "fd": 3,
                "mode": mode,
                "offset": p << 12,
                "len": n,
            },
            pages,
            lengths,
            st.sampled_from([1, 3, 3]),
        ),
        st.builds(
            lambda p, n: {"op": "madvise", "hva": HVA + (p << 12), "len": n, "advice": "DONTNEED"},
            pages,
            lengths,
        ),
        st.builds(
            lambda p, w, v: {
                "op": "host_access",
                "hva": HVA + (p << 12),
                "write": w,
                **({"value": v} if w else {}),
            },
            pages,
            st.booleans(),
            bytes_,
        ),
        st.just({"op": "vcpu_resume"}),
        st.builds(
            lambda p, n, f: {"op": "pre_fault_memory", "gpa": p << 12, "size": n, "flags": f},
            pages,
            lengths,
            st.sampled_from([0, 0, 0, 1]),
        ),
        st.builds(
            lambda p, n, priv: {
                "op": "guest_map_gpa_range",
                "gpa": p << 12,
                "size": n,
                "private": priv,
            },
            pages,
            lengths,
            st.booleans(),
        ),
        st.builds(
            lambda p, n, ref: {
                "op": "host_mmap_pfnmap",
                "hva": HVA + SLOT1[0] + (p << 12),
                "size": n,
                "refcounted": ref,
            },
            st.integers(0, (SLOT1[1] >> 12) - 1),
            lengths,
            st.booleans(),
        ),
        st.builds(lambda pfn: {"op": "memory_failure", "pfn": pfn}, st.integers(0, 4096)),
        st.builds(lambda p: {"op": "inspect", "gpa": p << 12}, pages),
        st.just({"op": "stats"}),
        st.sampled_from(
            [
                {
                    "op": "set_user_memory_region2",
                    "slot": 1,
                    "guest_phys_addr": 0,
                    "memory_size": 0,
                },
                {"op": "close", "fd": 3},
                {"op": "create_guest_memfd", "size": 8 * M},
                {
                    "op": "set_user_memory_region2",
                    "slot": 2,
                    "flags": 4,
                    "guest_phys_addr": 96 * M,
                    "memory_size": 4 * M,
                    "userspace_addr": HVA + 96 * M,
                    "guest_memfd": 4,
                },
            ]
        ),
    ]
    if kernel == "upm-v8":
        choices += [
            st.builds(
                lambda p, n, reg: {
                    "op": "memory_encrypt_reg_region" if reg else "memory_encrypt_unreg_region",
                    "address": p << 12,
                    "size": n,
                },
                pages,
                lengths,
                st.booleans(),
            ),
            st.sampled_from(
                [
                    {"op": "memfd_create", "size": 8 * M, "flags": ["INACCESSIBLE"]},
                    {
                        "op": "set_user_memory_region",
                        "slot": 2,
                        "flags": ["PRIVATE"],
                        "guest_phys_addr": 96 * M,
                        "memory_size": 4 * M,
                        "userspace_addr": HVA + 96 * M,
                        "private_fd": 4,
                    },
                    {
                        "op": "set_user_memory_region",
                        "slot": 0,
                        "guest_phys_addr": 0,
                        "memory_size": 0,
                    },
                ]
            ),
        ]
    snp_ops = [
        st.builds(
            lambda p, lv, val: {
                "op": "guest_pvalidate",
                "gpa": p << 12,
                "level": lv,
                "validate": val,
            },
            pages,
            st.sampled_from(["4K", "4K", "2M", "1G"]),
            st.sampled_from([True, True, True, False]),
        ),
        st.builds(
            lambda p, n, t: {"op": "snp_launch_update", "gpa": p << 12, "size": n, "type": t},
            pages,
            lengths,
            st.sampled_from(["NORMAL", "ZERO", "UNMEASURED", "SECRETS", "CPUID"]),
        ),
        st.just({"op": "snp_launch_finish"}),
    ]
    if vm_type == "snp":
        choices += snp_ops + snp_ops[:1] * 2
    elif kernel != "upm-v8":
        choices += snp_ops  # refused on other guests, as KVM refuses them
    if vm_type == "tdx":
        accept = st.builds(
            lambda p, lv: {"op": "guest_accept", "gpa": p << 12, "level": lv},
            pages,
            st.sampled_from(["4K", "4K", "2M"]),
        )
        choices += [accept, accept, accept]
    return st.one_of(choices)


@st.composite
def scenarios(
    draw: Any, max_ops: int = 40, kernel: str | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A config and ops; `kernel` fixes the profile (else any profile the type allows)."""
    cfg = dict(draw(configs))
    if kernel is not None:
        cfg["type"] = draw(st.sampled_from([t for t, ks in KERNELS.items() if kernel in ks]))
        cfg["kernel"] = kernel
    else:
        cfg["kernel"] = draw(st.sampled_from(KERNELS[cfg["type"]]))
    ops = draw(st.lists(ops_for(cfg["type"], cfg["kernel"]), min_size=1, max_size=max_ops))
    return cfg, prologue(cfg["type"], cfg["kernel"]) + ops
