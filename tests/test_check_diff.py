"""`imemviz check` and `imemviz diff` on real state files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from statecases import CASES, build, case_vm

from imemviz import cli
from imemviz.io.diff import diff_vms
from imemviz.io.state import encode, save_state, state_document
from imemviz.model import ops as O
from imemviz.model.config import VMConfig
from imemviz.model.vm import VM

T = 1 << 40


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def saved(tmp_path: Path, name: str, vm: VM) -> Path:
    path = tmp_path / name
    save_state(vm, path)
    return path


def edited(tmp_path: Path, case: str, edit: Any) -> Path:
    doc = json.loads(encode(state_document(case_vm(case))))
    edit(doc)
    path = tmp_path / f"{case}-edited.json"
    path.write_bytes(encode(doc))
    return path


# ------------------------------------------------------------------ check


def test_check_clean_tdx_state(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = saved(tmp_path, "tdx.json.zst", case_vm("tdx"))
    code, out, err = run(capsys, "check", path)
    assert (code, err) == (0, "")
    for text in (
        "VM: tdx, host_memory 1G, gmem_max_order 9",
        "td_state RUNNABLE",
        "dead: no",
        "memslots: 2",
        "slot 0: gpa 0x0-0x3ffffff (64M), hva 0x7f0000000000, flags GUEST_MEMFD, "
        "guest_memfd fd 3 + 0x0",
        "slot 1: gpa 0x80000000-0x801fffff (2M)",
        "guest_memfd fd 4 (closed)",
        "guest_memfd files: 1",
        "fd 3: size 64M, flags none, folios order 0:",
        "private (mirror root): 4K:",
        "S-EPT MAPPED:",
        "S-EPT table pages",
        "shared (direct root)",
        "folios by order: 0:",
        "host memory:",
        "free of 1G",
        "mmu_invalidate_seq",
        "in-flight fault: vCPU 1",
        "invariants: OK",
    ):
        assert text in out, text


def test_check_counts_pending_leaves(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg, steps = CASES["tdx"]()
    vm, _ops = build(cfg, [*steps, O.GuestAccess(20 << 20)])  # AUG: PENDING, then the TD dies
    code, out, _err = run(capsys, "check", saved(tmp_path, "dead.json", vm))
    assert code == 0 and "dead: yes" in out and "PENDING: 1" in out


def test_check_finds_a_wrong_pfn(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        row = doc["mappings"]["private"][0]  # a 4K leaf of the sw case
        assert row[:2] == ["0x100202", "4K"], row
        row[2] = hex(int(row[2], 16) + 1)

    code, out, err = run(capsys, "check", edited(tmp_path, "sw", edit))
    assert code == 1 and err == ""
    assert "invariants: 1 violation\n" in out
    assert "I2: leaf maps pfn" in out and "(gfn 0x100202, pfn" in out


def test_check_finds_a_private_leaf_over_shared_gfns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["attributes"] = []

    code, out, _err = run(capsys, "check", edited(tmp_path, "sw", edit))
    assert code == 1
    assert "I1: private 4K leaf over gfns whose attribute is not PRIVATE (gfn 0x100202" in out


def test_check_unusable_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "imemviz-state", "version": 1}')
    code, out, err = run(capsys, "check", bad)
    assert (code, out) == (2, "")
    assert err == f"{bad}: $.vm: missing field\n"
    code, out, err = run(capsys, "check", tmp_path / "none.json")
    assert code == 2 and err.count("\n") == 1 and "cannot read" in err
    code, out, err = run(capsys, "check")
    assert code == 2 and err.count("\n") == 1 and "STATE" in err


def test_check_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "check", "--help")
    assert code == 0 and "STATE" in out


# ------------------------------------------------------------------- diff


def test_diff_identical(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = saved(tmp_path, "a.json.gz", case_vm("sw"))
    b = saved(tmp_path, "b.json", case_vm("sw"))
    code, out, err = run(capsys, "diff", a, b)
    assert (code, err) == (0, "")
    assert out == f"{a} and {b} hold the same state\n"
    code, out, _err = run(capsys, "diff", "--json", a, b)
    assert code == 0 and json.loads(out)["equal"] is True


def one_tib_vm() -> VM:
    vm = VM(VMConfig.from_dict({"type": "sw_protected", "host_memory": "64M"}))
    for op in (
        O.CreateGuestMemfd(T),
        O.SetUserMemoryRegion2(
            0,
            flags=4,
            guest_phys_addr=0,
            memory_size=T,
            userspace_addr=0x100000000000,
            guest_memfd=3,
        ),
        O.GuestAccess(0x1000, write=True, value=1),
    ):
        assert vm.apply(op).ok
    return vm


def test_diff_of_a_1tib_conversion_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    vm = one_tib_vm()
    a = saved(tmp_path, "before.json.zst", vm)
    assert vm.apply(O.SetMemoryAttributes(0, T, 8)).ok
    b = saved(tmp_path, "after.json.zst", vm)
    code, out, err = run(capsys, "diff", a, b)
    assert (code, err) == (1, "")
    lines = out.splitlines()
    attr = lines.index("attributes:")
    assert lines[attr + 1] == "  0x0-0xfffffff: shared -> PRIVATE"
    assert not lines[attr + 2].startswith("  0x")
    assert "  mmu_invalidate_seq: 0 -> 1" in lines
    shared = lines.index("shared mappings (gfn ranges):")
    assert lines[shared + 1].startswith("  0x1: unmapped (1 x 4K pfn 0x")
    code, out, _err = run(capsys, "diff", a, b, "--json")
    d = json.loads(out)
    assert code == 1 and d["equal"] is False
    assert d["attributes"] == [{"start": "0x0", "end": "0xfffffff", "a": "shared", "b": "PRIVATE"}]
    assert d["counters"]["mmu_invalidate_seq"] == [0, 1]
    assert d["mappings"]["shared"][0]["change"] == "unmapped"
    assert set(d) == {
        "equal",
        "config",
        "counters",
        "memslots",
        "attributes",
        "gmem_files",
        "folios",
        "mappings",
        "sept_states",
        "host_pages",
        "host",
        "host_blocks",
        "process",
        "in_flight",
        "truncated",
    }


def test_diff_sections(tmp_path: Path) -> None:
    """Memslots, files, folio ranges and S-EPT states, coalesced."""
    cfg = {"type": "tdx", "host_memory": "256M"}
    base = [
        O.CreateGuestMemfd(8 << 20),
        O.SetUserMemoryRegion2(
            0,
            flags=4,
            guest_phys_addr=0,
            memory_size=8 << 20,
            userspace_addr=0x7F0000000000,
            guest_memfd=3,
        ),
        O.SetMemoryAttributes(0, 8 << 20, 8),
        O.TdxFinalizeVm(),
    ]
    a, _ = build(cfg, base)
    b, _ = build(
        cfg,
        [
            *base,
            *(O.GuestAccept(g << 12) for g in range(16)),
            O.CreateGuestMemfd(2 << 20),
            O.SetUserMemoryRegion(
                1, guest_phys_addr=1 << 30, memory_size=2 << 20, userspace_addr=0x7F1000000000
            ),
        ],
    )
    d = diff_vms(a, b)
    assert [s["id"] for s in d["memslots"]["added"]] == [1]
    assert [f["fd"] for f in d["gmem_files"]["added"]] == [4]
    (folios,) = d["folios"]["3"]["ranges"]
    assert folios["start"] == "0x0" and folios["end"] == "0xf" and folios["change"] == "allocated"
    assert folios["b"]["count"] == 16
    (leaves,) = d["mappings"]["private"]
    assert leaves["change"] == "mapped" and leaves["b"]["flags"] == {"MAPPED": 16}
    assert d["sept_states"] == []
    # PENDING -> MAPPED: the same leaves, only the state changed.
    c, _ = build(
        {**cfg, "tdx_private_max_level": "2M", "gmem_max_order": 9},
        [*base[:3], O.TdxInitMemRegion(0, 1), O.TdxFinalizeVm(), O.GuestAccept(2 << 20, 2)],
    )
    leaf = c.private.lookup(512)
    assert leaf is not None
    c.private.set_state(leaf, 1)  # PENDING, as TDH.MEM.PAGE.AUG left it
    before = json.loads(encode(state_document(c)))
    c.private.set_state(leaf, 0)
    from imemviz.io.state import vm_from_document

    d = diff_vms(vm_from_document(before), c)
    assert d["sept_states"] == [
        {"start": "0x200", "end": "0x3ff", "a": "PENDING", "b": "MAPPED", "count": 1}
    ]
    assert d["mappings"]["private"] == []


def test_diff_unusable_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = saved(tmp_path, "a.json", case_vm("default"))
    code, out, err = run(capsys, "diff", a)
    assert code == 2 and out == "" and err.count("\n") == 1
    code, out, err = run(capsys, "diff", a, tmp_path / "missing.json.gz")
    assert code == 2 and out == "" and "missing.json.gz: cannot read" in err


def items(*leaves: tuple[int, int, int]) -> Any:
    """Items of (gfn, level, pfn) leaves, MAPPED."""
    import numpy as np

    from imemviz.io.diff import Items

    a = np.array(leaves or np.zeros((0, 3)), np.int64).reshape(-1, 3)
    return Items(
        a[:, 0], np.left_shift(1, 9 * (a[:, 1] - 1)), a[:, 1], a[:, 2], np.zeros(len(a), np.int64)
    )


def test_clusters_coalesce_by_kind_and_contiguity() -> None:
    from imemviz.io.diff import LEVEL_LABELS, clusters, split

    def diff(a: Any, b: Any) -> list[tuple[str, str, str]]:
        only_a, only_b, _f = split(a, b)
        return [
            (r["start"], r["end"], r["change"])
            for r in clusters(only_a, only_b, LEVEL_LABELS, "mapped", "unmapped")
        ]

    huge = items((0, 2, 0x200))
    small = items(*((g, 1, 0x200 + g) for g in range(512)))
    (r,) = clusters(*split(huge, small)[:2], LEVEL_LABELS, "mapped", "unmapped")
    assert (r["start"], r["end"], r["change"]) == ("0x0", "0x1ff", "changed")
    assert r["a"] == {"count": 1, "sizes": {"2M": 1}, "pfn": "0x200"}
    assert r["b"] == {"count": 512, "sizes": {"4K": 512}}
    assert diff(items(), items(*((g, 1, g) for g in [*range(10), *range(20, 30)]))) == [
        ("0x0", "0x9", "mapped"),
        ("0x14", "0x1d", "mapped"),
    ]
    assert diff(
        items(*((g, 1, g) for g in range(10))), items(*((g, 1, g) for g in range(10, 20)))
    ) == [("0x0", "0x9", "unmapped"), ("0xa", "0x13", "mapped")]
    assert diff(
        items(*((g, 1, g) for g in range(10))), items(*((g, 1, g + 1) for g in range(10)))
    ) == [("0x0", "0x9", "changed")]
    assert diff(small, small) == []
