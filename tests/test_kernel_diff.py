"""`imemviz diff SCRIPT --kernels K1,K2`: one script under two kernels shows what changed
(imemviz/io/run_diff.py; the rules behind each change are in docs/kernels.md)."""

from __future__ import annotations

import json
from pathlib import Path

from imemviz.cli import main

HEADER = '{"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "%s"}}}\n'

# set_memory_region_test.c test_add_overlapping_private_memory_regions(), shortened: the second
# binding overlaps the first in the guest_memfd, not in GPA space.
OVERLAP = [
    {"op": "create_guest_memfd", "size": "8M"},
    {"op": "set_user_memory_region2", "slot": 10, "flags": ["GUEST_MEMFD"],
     "guest_phys_addr": "0xc0000000", "memory_size": "4M", "guest_memfd": 3},
    {"op": "set_user_memory_region2", "slot": 11, "flags": ["GUEST_MEMFD"],
     "guest_phys_addr": "0x180000000", "memory_size": "4M", "guest_memfd": 3,
     "guest_memfd_offset": "2M"},
]  # fmt: skip

# guest_memfd_test.c test_guest_memfd_guest(): the VMM writes through its mmap of the
# guest_memfd, the guest reads the same page.
MMAP = [
    {"op": "create_guest_memfd", "size": "4K", "flags": ["MMAP", "INIT_SHARED"]},
    {"op": "set_user_memory_region2", "slot": 1, "flags": ["GUEST_MEMFD"],
     "guest_phys_addr": "0x100000000", "memory_size": "4K", "userspace_addr": "0x7f0000000000",
     "guest_memfd": 3},
    {"op": "host_access", "hva": "0x7f0000000000", "write": True, "value": 170},
    {"op": "guest_access", "gpa": "0x100000000"},
]  # fmt: skip


def script(tmp_path: Path, name: str, ops: list[dict], vm_type: str = "sw_protected") -> str:
    path = tmp_path / name
    path.write_text(HEADER % vm_type + "".join(json.dumps(o) + "\n" for o in ops))
    return str(path)


def test_overlapping_binding_errno_7_1_vs_mainline(tmp_path, capsys) -> None:
    """kvm_gmem_bind(): EINVAL in 7.1 (5192419cb62d), EEXIST from 7.2 (7ea987a90585)."""
    s = script(tmp_path, "overlap.jsonl", OVERLAP)
    assert main(["diff", s, "--kernels", "7.1,mainline"]) == 1
    out = capsys.readouterr().out
    assert "config:\n  kernel: 7.1 -> mainline" in out
    assert (
        "results (7.1 -> mainline):\n  #2 set_user_memory_region2 (line 4): EINVAL -> EEXIST" in out
    )
    # the two runs hold the same memslots: only the errno and the kernel differ
    assert "memslots:" not in out
    assert main(["diff", s, "--kernels", "7.1,mainline", "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["config"] == {"kernel": ["7.1", "mainline"]}
    assert [(r["index"], r["a"]["errno"], r["b"]["errno"]) for r in d["results"]] == [
        (2, "EINVAL", "EEXIST")
    ]
    assert main(["diff", s, "--kernels", "6.8,7.1"]) == 1  # the kernel differs, nothing else
    assert "results" not in capsys.readouterr().out


def test_mmap_guest_memfd_6_16_vs_6_18(tmp_path, capsys) -> None:
    """GUEST_MEMFD_FLAG_MMAP / INIT_SHARED and guest_memfd for DEFAULT VMs (6.18): on 6.16
    the create is EINVAL, and so is the binding (check_memory_region_flags()), and nothing
    after it works; on 6.18 the host and the guest share the guest_memfd's page."""
    s = script(tmp_path, "mmap.jsonl", MMAP, vm_type="default")
    assert main(["diff", s, "--kernels", "6.16,6.18"]) == 1
    out = capsys.readouterr().out
    assert "  #0 create_guest_memfd (line 2): EINVAL -> ok" in out
    assert "  #1 set_user_memory_region2 (line 3): EINVAL -> ok" in out  # no GUEST_MEMFD on DEFAULT
    assert "  #2 host_access (line 4): EFAULT -> ok" in out
    assert "  #3 guest_access (line 5): ok KVM_EXIT_MMIO -> ok" in out
    assert "memslots:\n  + slot 1" in out
    assert "guest_memfd files:\n  + fd 3" in out


def test_two_recordings_are_run_and_compared(tmp_path, capsys) -> None:
    a = script(tmp_path, "a.jsonl", OVERLAP[:2])
    b = script(tmp_path, "b.jsonl", OVERLAP[:2])
    assert main(["diff", a, b]) == 0
    assert "hold the same state" in capsys.readouterr().out
    c = script(tmp_path, "c.jsonl", [*OVERLAP[:1], {**OVERLAP[1], "memory_size": "2M"}])
    assert main(["diff", a, c]) == 1
    assert "memslots:" in capsys.readouterr().out


def test_unusable_kernel_diffs_are_exit_2(tmp_path, capsys) -> None:
    s = script(tmp_path, "s.jsonl", OVERLAP)
    state = tmp_path / "s.json"
    assert main(["run", s, "--state-out", str(state), "--results-out", str(tmp_path / "r")]) == 0
    for argv, what in (
        ([s, "--kernels", "7.1"], "--kernels takes two kernels"),
        ([s, "--kernels", "7.1,5.4"], "unknown kernel '5.4'"),
        ([s, s, "--kernels", "7.1,mainline"], "--kernels takes one script"),
        ([str(state), "--kernels", "7.1,mainline"], "needs a script (a recording)"),
        ([s], "required: B"),
        ([script(tmp_path, "t.jsonl", [], "tdx"), "--kernels", "6.12,mainline"],
         'kernel "6.12" cannot create a tdx VM'),
    ):  # fmt: skip
        assert main(["diff", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and what in err, (argv, err)
    scene = tmp_path / "scene.jsonl"
    scene.write_text(
        '{"format": "imemviz-recording", "version": 1, "start": {"scene": "default"}}\n'
    )
    assert main(["diff", str(scene), "--kernels", "7.1,mainline"]) == 2
    assert "starts from a VMCONFIG" in capsys.readouterr().err
