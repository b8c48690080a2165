"""Kernel profiles (imemviz/model/kernels.py, contract 3.5): the rule table, docs/kernels.md,
the VM types each kernel can create, and every rule under every profile.

Each test names the kernel source of its rule; the expected values per profile are written
out here, not read back from the table, so a wrong table entry fails a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imemviz.cli import main
from imemviz.model import ConfigError, VMConfig
from imemviz.model.kernels import PROFILES, RULES, changes, markdown, profile
from imemviz.model.ops import parse_op

from .kit import HVA, M, do, gmem_slot, inspect, names, ok, stats, vm_of

ROOT = Path(__file__).resolve().parents[2]
GMEM_KERNELS = ("mainline", "7.1", "6.18", "6.16", "6.12", "6.8")  # guest_memfd exists


def apply(vm, op: str, **fields):
    """One op without the invariant check (upm-v8's notifier leaves stale leaves on purpose)."""
    return vm.apply(parse_op({"op": op, **fields}))


# ------------------------------------------------------------------ the table and its doc


def test_docs_kernels_md_is_current() -> None:
    """docs/kernels.md is generated from the rule table (scripts/make_kernels_doc.py)."""
    assert (ROOT / "docs" / "kernels.md").read_text(encoding="utf-8") == markdown()


def test_profiles_are_the_contracts() -> None:
    assert PROFILES == ("mainline", "7.1", "6.18", "6.16", "6.12", "6.8", "upm-v8")
    assert VMConfig("default").kernel == "mainline"
    assert VMConfig.from_dict({"type": "default"}).to_dict()["kernel"] == "mainline"


def test_every_rule_names_its_source_and_every_profile_has_a_value() -> None:
    for rule in RULES:
        assert rule.source and rule.summary, rule.name
        assert rule.steps[0][0] == "upm-v8"
        for p in PROFILES:
            assert rule.name in profile(p).values


def test_changes_between_7_1_and_mainline_is_the_binding_errno() -> None:
    """7.2 merge window, 7ea987a90585 (kvm_gmem_bind): the only rule that moved."""
    assert [(r.name, a, b) for r, a, b in changes("7.1", "mainline")] == [
        ("bind_overlap_errno", "EINVAL", "EEXIST")
    ]


# ------------------------------------------------------------------ VM types


@pytest.mark.parametrize(
    ("kernel", "creatable"),
    [
        ("mainline", {"default", "sw_protected", "tdx"}),
        ("7.1", {"default", "sw_protected", "tdx"}),
        ("6.18", {"default", "sw_protected", "tdx"}),
        ("6.16", {"default", "sw_protected", "tdx"}),
        ("6.12", {"default", "sw_protected"}),
        ("6.8", {"default", "sw_protected"}),
        ("upm-v8", {"default"}),
    ],
)
def test_vm_types_per_kernel(kernel: str, creatable: set[str]) -> None:
    """6.8 89ea60c2c7b5 (SW_PROTECTED), 6.16 TDX host support (tdx_vm_init)."""
    for vm_type in ("default", "sw_protected", "tdx"):
        if vm_type in creatable:
            VMConfig.from_dict({"type": vm_type, "kernel": kernel})
        else:
            with pytest.raises(ConfigError, match=f'kernel "{kernel}" cannot create a {vm_type}'):
                VMConfig.from_dict({"type": vm_type, "kernel": kernel})


def test_snp_is_ready_in_the_table_from_6_11() -> None:
    """6.11 SNP host series: the table knows when SNP came (the VM type itself is issue 15)."""
    assert [profile(p)["vm_type_snp"] for p in PROFILES] == [True] * 5 + [False, False]
    assert profile("6.12").vm_type_refusal("snp") is None
    assert "6.11" in profile("6.8").vm_type_refusal("snp")


def test_a_vm_the_kernel_cannot_create_is_exit_2_naming_the_kernel(tmp_path, capsys) -> None:
    script = tmp_path / "s.jsonl"
    script.write_text(
        '{"format": "imemviz-recording", "version": 1, '
        '"start": {"vm": {"type": "tdx", "kernel": "6.12"}}}\n'
    )
    assert main(["run", str(script)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert 'kernel "6.12" cannot create a tdx VM (tdx needs 6.16 or later)' in err
    script.write_text(
        '{"format": "imemviz-recording", "version": 1, '
        '"start": {"vm": {"type": "default", "kernel": "5.15"}}}\n'
    )
    assert main(["run", str(script)]) == 2
    assert "start.vm.kernel: expected one of mainline, 7.1" in capsys.readouterr().err


# ------------------------------------------------------------------ each rule, each profile


@pytest.mark.parametrize("kernel", PROFILES)
def test_guest_memfd_ioctls(kernel: str) -> None:
    """6.8 a7800aa80ea4: KVM_CREATE_GUEST_MEMFD, _REGION2, SET_MEMORY_ATTRIBUTES; without them
    kvm_vm_ioctl() falls to kvm_arch_vm_ioctl()'s default -ENOTTY."""
    vm = vm_of("default", kernel=kernel)
    r = [
        apply(vm, "create_guest_memfd", size=4096),
        apply(vm, "set_user_memory_region2", slot=0, guest_phys_addr=0, memory_size=4096),
        apply(vm, "set_memory_attributes", address=0, size=4096, attributes=0),
    ]
    want = "ENOTTY" if kernel == "upm-v8" else None
    assert [x.errno for x in r] == [want] * 3


@pytest.mark.parametrize("kernel", GMEM_KERNELS)
def test_gmem_flags(kernel: str) -> None:
    """6.18 (GUEST_MEMFD_FLAG_MMAP / INIT_SHARED, kvm_gmem_get_supported_flags()): before, no
    flag is supported and create_guest_memfd with one is EINVAL."""
    vm = vm_of("default", kernel=kernel)
    has = kernel in ("mainline", "7.1", "6.18")
    for flags in (["MMAP"], ["MMAP", "INIT_SHARED"]):
        r = apply(vm, "create_guest_memfd", size=4096, flags=flags)
        assert r.ok == has and (has or r.errno == "EINVAL")
    assert apply(vm, "create_guest_memfd", size=4096).ok


@pytest.mark.parametrize("kernel", GMEM_KERNELS)
def test_overlapping_binding_errno(kernel: str) -> None:
    """kvm_gmem_bind(): -EEXIST from 7.2 (7ea987a90585), -EINVAL before (7.1: 5192419cb62d)."""
    vm = vm_of("sw_protected", kernel=kernel)
    fd = ok(vm, "create_guest_memfd", size=8 * M)["fd"]
    gmem_slot(vm, 0, 4 * M, fd=fd, private=False)
    r = do(vm, "set_user_memory_region2", slot=1, flags=4, guest_phys_addr=1 << 32,
           memory_size=4 * M, guest_memfd=fd, guest_memfd_offset=2 * M)  # fmt: skip
    assert r.errno == ("EEXIST" if kernel == "mainline" else "EINVAL")


@pytest.mark.parametrize("kernel", PROFILES)
def test_pre_fault_memory_exists_from_6_10(kernel: str) -> None:
    """6.10 KVM_PRE_FAULT_MEMORY; before, kvm_arch_vcpu_ioctl()'s default is -EINVAL."""
    vm = vm_of("default", kernel=kernel)
    ok(vm, "set_user_memory_region", slot=0, guest_phys_addr=0, memory_size=2 * M,
       userspace_addr=HVA)  # fmt: skip
    r = do(vm, "pre_fault_memory", gpa=0, size=8192)
    if kernel in ("6.8", "upm-v8"):
        assert (r.ok, r.errno, r.ret) == (False, "EINVAL", {})
    else:
        assert r.ret == {"gpa": 8192, "size": 0}


@pytest.mark.parametrize("kernel", PROFILES)
def test_slot_zap_on_delete(kernel: str) -> None:
    """kvm_arch_flush_shadow_memslot(): kvm_mmu_zap_all_fast() always before 6.12; from 6.12 only
    on DEFAULT VMs with KVM_X86_QUIRK_SLOT_ZAP_ALL, else kvm_mmu_zap_memslot_leafs()."""
    vm_type = "default" if kernel == "upm-v8" else "sw_protected"
    vm = vm_of(vm_type, kernel=kernel)
    for slot in (0, 1):
        ok(vm, "set_user_memory_region", slot=slot, guest_phys_addr=slot << 30,
           memory_size=2 * M, userspace_addr=HVA + (slot << 30))  # fmt: skip
        ok(vm, "guest_access", gpa=slot << 30, write=True, value=1)
    ok(vm, "set_user_memory_region", slot=0, guest_phys_addr=0, memory_size=0)
    zap_all = kernel in ("6.8", "upm-v8")
    assert ("kvm_mmu_zap_all_fast" in names(vm)) == zap_all
    assert (inspect(vm, 1 << 30)["shared_mapping"] is None) == zap_all


@pytest.mark.parametrize("kernel", PROFILES)
def test_pfnmap_pages_without_refcount(kernel: str) -> None:
    """6.13 "Stop grabbing references to PFNMAP'd pages" (hva_to_pfn_remapped(), kvm_follow_pfn);
    before: kvm_try_get_pfn() refuses a refcount-0 page -> KVM_PFN_ERR_FAULT -> -EFAULT."""
    vm = vm_of("default", kernel=kernel)
    ok(vm, "set_user_memory_region", slot=0, guest_phys_addr=0, memory_size=8 * M,
       userspace_addr=HVA)  # fmt: skip
    ok(vm, "host_mmap_pfnmap", hva=HVA + 2 * M, size=M)
    ok(vm, "host_mmap_pfnmap", hva=HVA + 4 * M, size=M, refcounted=True)
    r = do(vm, "guest_access", gpa=2 * M)
    if kernel in ("mainline", "7.1", "6.18", "6.16"):
        assert r.ok and r.ret["level"] == "4K"
    else:
        assert (r.ok, r.errno, r.ret) == (False, "EFAULT", {})
        assert inspect(vm, 2 * M)["shared_mapping"] is None
    # a refcounted device page was always mapped
    assert ok(vm, "guest_access", gpa=4 * M)["level"] == "4K"


@pytest.mark.parametrize("kernel", PROFILES)
def test_memfd_inaccessible(kernel: str) -> None:
    """v8 1/8 memfd_create(MFD_INACCESSIBLE); merged kernels: bit 8 is MFD_NOEXEC_SEAL (6.3) and
    the fd is a plain memfd, which KVM cannot bind (kvm_gmem_bind(): not kvm_gmem_fops)."""
    vm = vm_of("default", kernel=kernel)
    fd = ok(vm, "memfd_create", size=4 * M, flags=["INACCESSIBLE"])["fd"]
    assert vm.files[fd].kind == ("inaccessible" if kernel == "upm-v8" else "memfd")
    if kernel != "upm-v8":
        r = do(vm, "set_user_memory_region2", slot=0, flags=4, guest_phys_addr=0,
               memory_size=4 * M, guest_memfd=fd)  # fmt: skip
        assert r.errno == "EINVAL"


@pytest.mark.parametrize("kernel", PROFILES)
def test_private_memslot_through_v1(kernel: str) -> None:
    """v8 2/8 + 8/8: KVM_MEM_PRIVATE with private_fd/private_offset via v1; merged v1 refuses
    bit 2 (kvm_vm_ioctl_set_memory_region(): only LOG_DIRTY_PAGES and READONLY)."""
    vm = vm_of("default", kernel=kernel)
    fd = ok(vm, "memfd_create", size=4 * M, flags=["INACCESSIBLE"])["fd"]
    r = do(vm, "set_user_memory_region", slot=0, flags=["PRIVATE"], guest_phys_addr=0,
           memory_size=4 * M, userspace_addr=HVA, private_fd=fd)  # fmt: skip
    assert (r.ok, r.errno) == ((True, None) if kernel == "upm-v8" else (False, "EINVAL"))


@pytest.mark.parametrize("kernel", PROFILES)
def test_enc_region_ioctls(kernel: str) -> None:
    """v8 5/8 kvm_vm_ioctl_set_mem_attr(); merged kernels: SEV's ioctl, kvm_arch_vm_ioctl() returns
    -ENOTTY without mem_enc_register_region (every VM here is not SEV)."""
    vm = vm_of("default", kernel=kernel)
    for op in ("memory_encrypt_reg_region", "memory_encrypt_unreg_region"):
        r = apply(vm, op, address=0, size=4096)
        assert r.errno == (None if kernel == "upm-v8" else "ENOTTY")


@pytest.mark.parametrize("kernel", PROFILES)
def test_default_private(kernel: str) -> None:
    """v8 5/8: "Guest memory defaults to private"; merged: every gfn starts shared."""
    vm = vm_of("default", kernel=kernel)
    assert inspect(vm, 0x1234000)["attributes"] == (8 if kernel == "upm-v8" else 0)


@pytest.mark.parametrize("kernel", PROFILES)
def test_memory_fault_exit_format(kernel: str) -> None:
    """v8 3/8 (exit 38, flags bit 0, RET_PF_USER: KVM_RUN returns 0); merged:
    kvm_prepare_memory_fault_exit(), KVM_RUN -EFAULT, flags bit 3."""
    if kernel == "upm-v8":
        vm = vm_of("default", kernel=kernel)
        fd = ok(vm, "memfd_create", size=4 * M, flags=["INACCESSIBLE"])["fd"]
        ok(vm, "set_user_memory_region", slot=0, flags=["PRIVATE"], guest_phys_addr=0,
           memory_size=4 * M, userspace_addr=HVA, private_fd=fd)  # fmt: skip
        ok(vm, "memory_encrypt_unreg_region", address=0, size=4 * M)
    else:
        vm = vm_of("sw_protected", kernel=kernel)
        gmem_slot(vm, 0, 4 * M, private=False)
    r = do(vm, "guest_access", gpa=0x3000, private=True)
    exit_ = {"reason": "KVM_EXIT_MEMORY_FAULT", "gpa": 0x3000, "size": 4096}
    if kernel == "upm-v8":
        assert (r.ok, r.errno, r.ret) == (True, None, {"exit": {**exit_, "flags": 1}})
    else:
        assert (r.ok, r.errno, r.ret) == (False, "EFAULT", {"exit": {**exit_, "flags": 8}})


@pytest.mark.parametrize("kernel", PROFILES)
def test_private_fault_scope(kernel: str) -> None:
    """v8 7/8 kvm_faultin_pfn(): the private check only for kvm_slot_can_be_private() slots, a
    gfn without a slot is MMIO; merged kvm_mmu_faultin_pfn(): mismatch first, then
    kvm_handle_noslot_fault() exits on a private access."""
    vm_type = "default" if kernel == "upm-v8" else "sw_protected"
    vm = vm_of(vm_type, kernel=kernel)
    if kernel != "upm-v8":
        ok(vm, "set_memory_attributes", address=1 << 32, size=4096, attributes=8)
    r = do(vm, "guest_access", gpa=1 << 32, private=True)
    if kernel == "upm-v8":
        assert r.ret == {"exit": {"reason": "KVM_EXIT_MMIO", "gpa": 1 << 32}}
    else:
        assert r.errno == "EFAULT" and r.ret["exit"]["flags"] == 8


@pytest.mark.parametrize("kernel", PROFILES)
def test_memfile_notifier(kernel: str) -> None:
    """v8 1/8 inaccessible_fallocate(): shmem frees first, then every notifier gets (offset,
    offset + len) in bytes, read as pgoff_t by 8/8 kvm_private_notifier_invalidate(); merged
    kvm_gmem_punch_hole(): invalidate begin/end around the truncation, in pages."""
    if kernel == "upm-v8":
        vm = vm_of("default", kernel=kernel)
        fd = ok(vm, "memfd_create", size=4 * M, flags=["INACCESSIBLE"])["fd"]
        ok(vm, "set_user_memory_region", slot=0, flags=["PRIVATE"], guest_phys_addr=0,
           memory_size=4 * M, userspace_addr=HVA, private_fd=fd)  # fmt: skip
    else:
        vm = vm_of("sw_protected", kernel=kernel)
        fd = gmem_slot(vm, 0, 4 * M)
    ok(vm, "guest_access", gpa=M, write=True, value=7)
    seq = stats(vm)["mmu_invalidate_seq"]
    apply(vm, "fallocate", fd=fd, mode=3, offset=M, len=4096)
    evs = names(vm)
    pm = apply(vm, "inspect", gpa=M).ret
    if kernel == "upm-v8":
        # byte offset 1M is read as page 0x100000, past the slot's 1024 pages: the clipped
        # range is empty, nothing is zapped, and the leaf keeps mapping the freed page.
        assert evs == [
            "shmem_fallocate",
            "kvm_gmem_folio_free",
            "inaccessible_notifier_invalidate",
        ]
        assert pm["private_mapping"] is not None and pm["folio"] is None
        assert apply(vm, "stats").ret["mmu_invalidate_seq"] == seq
    else:
        assert evs.index("kvm_mmu_invalidate_begin") < evs.index("kvm_gmem_folio_free")
        assert pm["private_mapping"] is None
        assert stats(vm)["mmu_invalidate_seq"] == seq + 1


@pytest.mark.parametrize("kernel", PROFILES)
def test_private_mem_address_spaces(kernel: str) -> None:
    """6.8 eed52e434bc3 kvm_arch_nr_memslot_as_ids(): no SMM address space for VMs with private
    memory; v8 predates it (KVM_ADDRESS_SPACE_NUM is 2)."""
    vm_type = "default" if kernel == "upm-v8" else "sw_protected"
    vm = vm_of(vm_type, kernel=kernel)
    r = do(vm, "set_user_memory_region", slot=(1 << 16) | 1, guest_phys_addr=0,
           memory_size=4096, userspace_addr=HVA)  # fmt: skip
    assert (r.ok, r.errno) == ((True, None) if kernel == "upm-v8" else (False, "EINVAL"))


@pytest.mark.parametrize("kernel", GMEM_KERNELS)
def test_default_vm_binds_guest_memfd_from_6_18(kernel: str) -> None:
    """check_memory_region_flags(): KVM_MEM_GUEST_MEMFD valid only with
    kvm_arch_has_private_mem() until 6.18 ("KVM: x86: Enable KVM_GUEST_MEMFD for all 64-bit
    builds"); KVM_CREATE_GUEST_MEMFD itself never checked the VM type."""
    vm = vm_of("default", kernel=kernel)
    fd = ok(vm, "create_guest_memfd", size=4 * M)["fd"]
    r = do(vm, "set_user_memory_region2", slot=0, flags=4, guest_phys_addr=0,
           memory_size=4 * M, userspace_addr=HVA, guest_memfd=fd)  # fmt: skip
    new = kernel in ("mainline", "7.1", "6.18")
    assert (r.ok, r.errno) == ((True, None) if new else (False, "EINVAL"))
