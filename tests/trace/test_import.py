"""`imemviz import`: files, skips, merging, reconstruction of real-looking sequences,
the summary's fields, exit codes, and the check against the model."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from imemviz.cli import main
from imemviz.io.trace.formats import BY_EVENT, c_printf
from imemviz.io.trace.importer import ImportError_, ImportOptions, import_traces
from imemviz.io.trace.kernel_export import export_lines, leaf_spte, table_spte
from imemviz.io.trace.reader import MAX_LINE
from imemviz.io.trace.timeline import ObservedTimeline
from imemviz.model import ops as O
from imemviz.model.config import VMConfig
from imemviz.model.vm import VM

NP = 1 << 63  # SHADOW_NONPRESENT_VALUE


class Trace:
    """Lines in tracefs framing, written from the table's format strings."""

    def __init__(self, t0: float = 100.0) -> None:
        self.t = t0
        self.lines: list[str] = []

    def k(self, event: str, *args, vcpu: int | None = 0, row: int = 0) -> Trace:
        self.t += 0.000001
        comm = f"CPU {vcpu}/KVM-{4100 + vcpu}" if vcpu is not None else "qemu-system-x86-4000"
        payload = c_printf(BY_EVENT[event][row].printk, *args)
        self.lines.append(f"{comm:>24} [001] ..... {self.t:.6f}: {event}: {payload}")
        return self

    def spte(self, gfn: int, level: int, old: int, new: int) -> Trace:
        return self.k("kvm_tdp_mmu_spte_changed", 0, gfn, level, old, new)

    def fault(self, gpa: int, code: int, vcpu: int = 0) -> Trace:
        return self.k("kvm_page_fault", vcpu, 0, gpa, code, vcpu=vcpu)

    def attr(self, start: int, end: int, private: bool) -> Trace:
        return self.k("kvm_vm_set_mem_attributes", start, end, 8 if private else 0, vcpu=None)

    def raw(self, line: str) -> Trace:
        self.lines.append(line)
        return self

    def write(self, path: Path) -> str:
        path.write_text("\n".join(self.lines) + "\n")
        return str(path)


def run_import(tmp_path: Path, *paths: str, opts: ImportOptions | None = None) -> dict:
    out = tmp_path / "out.jsonl"
    summary = tmp_path / "summary.json"
    import_traces(list(paths), str(out), str(summary), opts)
    return json.loads(summary.read_text())


def leaves(summary: dict) -> list[tuple]:
    return [(lf["gfn"], lf["level"], lf["pfn"]) for lf in summary["leaves"]]


# ------------------------------------------------------------------ summary and files
def test_summary_has_the_contract_fields(tmp_path: Path) -> None:
    t = Trace().fault(0x200000, 0x182).spte(0x200, 1, NP, leaf_spte(0x1234, 1))
    t.raw("some program output").attr(0x400, 0x600, True)
    t.raw("     CPU 0/KVM-4100 [001] ..... 101.0: sched_switch: prev_comm=x")
    s = run_import(tmp_path, t.write(tmp_path / "a.txt"))
    for key in (
        "lines",
        "recognised",
        "skipped",
        "events",
        "leaves",
        "faults",
        "conversions",
        "launch_updates",
    ):
        assert key in s
    assert s["lines"] == 5 and s["recognised"] == 3
    assert s["skipped"] == {"not_a_trace_line": 1, "unknown_event": 1}
    assert s["events"] == {
        "kvm_page_fault": 1,
        "kvm_tdp_mmu_spte_changed": 1,
        "kvm_vm_set_mem_attributes": 1,
    }
    assert s["leaves"] == [
        {"as_id": 0, "gfn": 0x200, "level": "4K", "pfn": 0x1234, "private": None, "root": "direct"}
    ]
    assert [(f["vcpu"], f["gpa"], f["error_code"]) for f in s["faults"]] == [(0, 0x200000, 0x182)]
    assert [(c["gpa"], c["size"], c["to"]) for c in s["conversions"]] == [
        (0x400000, 0x200000, "private")
    ]
    assert s["launch_updates"] == []


def test_old_page_fault_format_has_no_vcpu(tmp_path: Path) -> None:
    t = Trace().raw(
        "VCPU-0-61883   [078] ..... 72276.115679: kvm_page_fault: address 84d000 error_code 4"
    )
    s = run_import(tmp_path, t.write(tmp_path / "a.txt"))
    assert s["faults"][0]["vcpu"] is None and s["faults"][0]["gpa"] == 0x84D000


def test_truncated_bad_encoding_and_huge_lines_are_counted(tmp_path: Path) -> None:
    good = Trace().fault(0x1000, 0x181).lines[0]
    p = tmp_path / "t.txt"
    with open(p, "wb") as f:
        f.write(good.encode() + b"\n")
        f.write(b"\xff\xfe garbage \x80\x81\n")  # not UTF-8, not a trace line
        f.write(good.replace("CPU 0/KVM", "CPU 0/K\xe9M").encode("latin-1") + b"\n")  # bad comm
        f.write(b"x" * (MAX_LINE * 3) + b"\n")  # far longer than a line may be
        f.write(good.encode() + b"\n")
        f.write(good[:-6].encode())  # cut off while the trace was written
    s = run_import(tmp_path, str(p))
    assert s["recognised"] == 3  # the bad comm still frames: its payload is fine
    assert s["skipped"] == {
        "bad_encoding": 1,
        "not_a_trace_line": 1,
        "too_long": 1,
        "truncated": 1,
    } or s["skipped"] == {"bad_encoding": 1, "too_long": 1, "truncated": 1}
    assert s["lines"] == 6


def test_files_are_merged_by_time(tmp_path: Path) -> None:
    a = Trace(100.0)
    b = Trace(100.0000005)
    for i in range(5):
        a.fault((0x100 + i) << 12, 0x181)
        b.fault((0x200 + i) << 12, 0x181, vcpu=1)
    out = tmp_path / "o.jsonl"
    import_traces([a.write(tmp_path / "a"), b.write(tmp_path / "b")], str(out))
    tl = ObservedTimeline.load(str(out))
    try:
        assert len(tl) == 10
        assert list(tl.ts) == sorted(tl.ts)
        assert [int(v) for v in tl.vcpu] == [0, 1] * 5
    finally:
        tl.close()


def test_large_file_streams(tmp_path: Path, slow_scale: int) -> None:
    """A big trace, written lazily, goes through with the state and memory it needs."""
    n = 20_000 * slow_scale
    p = tmp_path / "big.txt"
    payload = BY_EVENT["kvm_tdp_mmu_spte_changed"][0].printk
    with open(p, "w") as f:
        for i in range(n):
            gfn = i % 4096
            new = leaf_spte(0x10000 + gfn, 1) if (i // 4096) % 2 == 0 else NP
            old = NP if (i // 4096) % 2 == 0 else leaf_spte(0x10000 + gfn, 1)
            f.write(
                f"CPU 0/KVM-1 [000] ..... {i * 1e-6 + 1:.6f}: kvm_tdp_mmu_spte_changed: "
                + c_printf(payload, 0, gfn, 1, old, new)
                + "\n"
            )
    s = run_import(tmp_path, str(p))
    assert s["recognised"] == n and s["skipped"] == {}
    expected = 4096 if (n // 4096) % 2 else n % 4096
    assert len(s["leaves"]) == expected


# ------------------------------------------------------------------ sequences
def test_2m_mapping_over_zapped_4k_leaves(tmp_path: Path) -> None:
    """Vishal's 2022 trace: a 2M leaf replaces a page table of 4K leaves."""
    t = Trace()
    for i in range(4):  # four 4K leaves under the 2M range at gfn 0x800
        t.spte(0x800 + i, 1, NP, leaf_spte(0x3EB27 + i, 1))
    t.spte(0x800, 2, NP, table_spte(0x100B1B16))
    t.fault(0x84D000, 0x4)
    t.k("kvm_mmu_spte_requested", 0x84D, 0x100B4A4D, 2)
    t.spte(0x800, 2, table_spte(0x100B1B16), leaf_spte(0x100B4A00, 2))
    t.raw(
        "VCPU-0-61883   [078] ..... 72276.127009: kvm_mmu_prepare_zap_page: sp gen 0 gfn 800 l1 8-byte q0 direct wux nxe ad root 0 sync"
    )
    t.spte(0x800, 1, leaf_spte(0x3EB27, 1), 0x5A0)  # only one child is traced here
    s = run_import(tmp_path, t.write(tmp_path / "a.txt"))
    assert leaves(s) == [(0x800, "2M", 0x100B4A00)]


def test_huge_page_split(tmp_path: Path) -> None:
    t = Trace().spte(0x200, 2, NP, leaf_spte(0x400, 2))
    t.spte(0x200, 2, leaf_spte(0x400, 2), table_spte(0x9999))
    t.k("kvm_mmu_split_huge_page", 0x200, leaf_spte(0x400, 2), 2, 0)
    s = run_import(tmp_path, t.write(tmp_path / "a.txt"))
    got = leaves(s)
    assert len(got) == 512 and got[0] == (0x200, "4K", 0x400) and got[-1] == (0x3FF, "4K", 0x5FF)


def test_td_teardown(tmp_path: Path) -> None:
    """A TD's private (mirror) leaves, then its roots torn down: nothing is left."""
    t = Trace()
    t.attr(0, 0x100000, True)
    for lv, g in ((4, 0), (3, 0), (2, 0)):
        t.spte(g, lv, NP, table_spte(0x5000 + lv))
    for i in range(8):
        t.fault((0x10 + i) << 12, 0x2)
        t.spte(0x10 + i, 1, NP, leaf_spte(0x9000 + i, 1))
    s = run_import(tmp_path, t.write(tmp_path / "a.txt"), opts=ImportOptions(vm_type="tdx"))
    assert [lf["root"] for lf in s["leaves"]] == ["mirror"] * 8
    # Teardown: the root's top entry goes away with everything below it (traced or not).
    t.spte(0, 4, table_spte(0x5004), 0x80000000000005A0)
    s = run_import(tmp_path, t.write(tmp_path / "a.txt"), opts=ImportOptions(vm_type="tdx"))
    assert s["leaves"] == []


def test_conversion_storm(tmp_path: Path) -> None:
    """Thousands of conversions: each listed once (QEMU's report and the kernel's are one)."""
    t = Trace()
    want = []
    for i in range(2000):
        gfn = 0x1000 + (i * 7919) % 4096
        private = i % 3 != 0
        if i % 2:
            msg = "shared_to_private" if private else "private_to_shared"
            t.raw(
                f"qemu-system-x86-4000 [000] ..... {t.t:.6f}: tracing_mark_write: kvm_convert_memory "
                f"start 0x{gfn << 12:x} size 0x1000 {msg}"
            )
        t.attr(gfn, gfn + 1, private)
        want.append((gfn << 12, 4096, "private" if private else "shared"))
    s = run_import(tmp_path, t.write(tmp_path / "a.txt"))
    assert [(c["gpa"], c["size"], c["to"]) for c in s["conversions"]] == want
    tl = ObservedTimeline.load(str(tmp_path / "out.jsonl"))
    try:
        st = tl.state_at(len(tl) - 1)["attrs"]
        final = {}
        for g, _sz, to in want:
            final[g >> 12] = 1 if to == "private" else 0
        got = {
            int(g): int(v)
            for s_, e_, v in zip(st["start"], st["end"], st["private"], strict=True)
            for g in range(int(s_), int(e_))
        }
        assert got == final
    finally:
        tl.close()


# ------------------------------------------------------------------ exit codes
def test_exit_2_only_when_nothing_is_readable(tmp_path: Path, capsys) -> None:
    noise = tmp_path / "noise.txt"
    noise.write_text("hello\nworld\n")
    assert main(["import", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.txt" in err[0]
    assert main(["import", str(noise), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "noise.txt" in err[0] and "no recognised" in err[0]
    assert not (tmp_path / "o").exists()
    good = Trace().fault(0x1000, 0x181).write(tmp_path / "g.txt")
    # One unreadable file among readable ones is not fatal.
    assert main(["import", str(tmp_path / "missing.txt"), good, "-o", str(tmp_path / "o")]) == 0


def test_outputs_never_replace_inputs_or_non_files(tmp_path: Path) -> None:
    good = Trace().fault(0x1000, 0x181).write(tmp_path / "g.txt")
    before = Path(good).read_text()
    with pytest.raises(ImportError_, match="input"):
        import_traces([good], good)
    assert Path(good).read_text() == before
    (tmp_path / "d").mkdir()
    with pytest.raises(ImportError_, match="folder"):
        import_traces([good], str(tmp_path / "d"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".imemviz-")] == []


def test_a_device_as_output_is_written_in_place_with_no_index_beside_it(tmp_path: Path) -> None:
    good = Trace().fault(0x1000, 0x181).write(tmp_path / "g.txt")
    link = tmp_path / "sink"
    link.symlink_to("/dev/null")
    before = os.stat("/dev/null")
    import_traces([good], str(link))
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert not (tmp_path / "sink.index").exists() and not os.path.exists("/dev/null.index")


def test_trace_dat_without_trace_cmd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    dat = tmp_path / "trace.dat"
    dat.write_bytes(b"\x17\x08\x44tracing6\0" + b"\0" * 100)
    with pytest.raises(ImportError_, match="trace-cmd"):
        import_traces([str(dat)], str(tmp_path / "o"))


# ------------------------------------------------------------------ check against the model
def _export(config: dict, ops: list, path: Path) -> str:
    vm = VM(VMConfig.from_dict(config))
    path.write_text("\n".join(export_lines(vm, ops)) + "\n")
    return str(path)


SW_OPS = [
    O.CreateGuestMemfd(64 << 20),
    O.SetUserMemoryRegion2(
        0,
        flags=4,
        guest_phys_addr=0,
        memory_size=64 << 20,
        userspace_addr=0x7F0000000000,
        guest_memfd=3,
    ),
    O.GuestAccess(0x200000, write=True, value=1),
    O.SetMemoryAttributes(0x400000, 2 << 20, 8),
    O.GuestAccess(0x400000),
    O.GuestAccess(0x401000),
    O.SetMemoryAttributes(0x401000, 4096, 0),
    O.GuestAccess(0x401000),
    O.GuestAccess(0x402000, private=False),
]
SW_CONFIG = {
    "type": "sw_protected",
    "host_memory": "4G",
    "gmem_max_order": 9,
    "shared_page_size": "2M",
}


def test_check_is_silent_on_the_models_own_trace(tmp_path: Path) -> None:
    trace = _export(SW_CONFIG, SW_OPS, tmp_path / "model.trace")
    opts = ImportOptions(
        check=True,
        from_vm_start=True,
        vm_config={"gmem_max_order": 9, "shared_page_size": "2M", "host_memory": "4G"},
    )
    s = run_import(tmp_path, trace, opts=opts)
    assert s["check"]["disagreements"] == 0, s["check"]["marks"]
    assert s["check"]["ops"] >= 8


def test_check_is_silent_on_a_tdx_trace_of_the_model(tmp_path: Path) -> None:
    ops = [
        O.CreateGuestMemfd(16 << 20),
        O.SetUserMemoryRegion2(
            0,
            flags=4,
            guest_phys_addr=0,
            memory_size=16 << 20,
            userspace_addr=0x7F0000000000,
            guest_memfd=3,
        ),
        O.SetMemoryAttributes(0, 16 << 20, 8),
        O.TdxInitMemRegion(0x800000, 4),
        O.TdxFinalizeVm(),
        O.GuestAccept(0x810000),
        O.GuestAccess(0x811000 | (1 << 51)),  # shared alias: exits, not mapped
        O.SetMemoryAttributes(0x820000, 4096, 0),
        O.GuestAccess(0x820000 | (1 << 51), write=True, value=5),
    ]
    trace = _export({"type": "tdx", "host_memory": "4G"}, ops, tmp_path / "td.trace")
    s = run_import(tmp_path, trace, opts=ImportOptions(check=True, from_vm_start=True))
    assert s["settings"]["vm_type"] == "tdx"
    assert s["check"]["disagreements"] == 0, s["check"]["marks"]
    roots = {lf["gfn"]: lf["root"] for lf in s["leaves"]}
    assert roots[0x810] == "mirror" and roots[0x820] == "direct"


def planted_trace(tmp_path: Path) -> tuple[str, ImportOptions]:
    """The model's own trace with one kernel decision changed (two marks: a 2M leaf at
    gfn 0x400 over mixed attributes), and the options its check needs."""
    trace = Path(_export(SW_CONFIG, SW_OPS, tmp_path / "model.trace"))
    lines = trace.read_text().splitlines()
    # Plant a kernel that maps the shared gfn 0x401 with the 2M leaf the private fault at
    # 0x400000 got: drop the attribute change, then claim a 2M leaf over mixed attributes.
    planted = []
    for ln in lines:
        if (
            "kvm_tdp_mmu_spte_changed" in ln
            and "gfn 401 level 1" in ln
            and "new_spte 8000000000000000" not in ln
        ):
            ln = ln.replace("gfn 401 level 1", "gfn 400 level 2").replace(
                "new_spte e01807", "new_spte e00887"
            )
        planted.append(ln)
    trace.write_text("\n".join(planted) + "\n")
    opts = ImportOptions(
        check=True,
        from_vm_start=True,
        vm_config={"gmem_max_order": 9, "shared_page_size": "2M", "host_memory": "4G"},
    )
    return str(trace), opts


def test_check_flags_a_planted_disagreement(tmp_path: Path) -> None:
    trace, opts = planted_trace(tmp_path)
    s = run_import(tmp_path, trace, opts=opts)
    kinds = s["check"]["by_kind"]
    assert kinds.get("huge_across_attributes") == 1, s["check"]["marks"]
    assert kinds.get("level_differs") == 1
    tl = ObservedTimeline.load(str(tmp_path / "out.jsonl"))
    try:
        assert {m["what"] for m in tl.marks} == {"huge_across_attributes", "level_differs"}
    finally:
        tl.close()


def test_check_exports_a_recording_that_replays(tmp_path: Path) -> None:
    trace = _export(SW_CONFIG, SW_OPS, tmp_path / "model.trace")
    rec = tmp_path / "derived.jsonl"
    opts = ImportOptions(check=True, from_vm_start=True, recording_out=str(rec))
    run_import(tmp_path, trace, opts=opts)
    assert main(["run", str(rec), "--results-out", str(tmp_path / "r.jsonl")]) == 0
    results = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert results[0]["op"] == "create_guest_memfd" and len(results) >= 8


def test_kernel_profile_reaches_the_check_and_a_kernel_without_the_vm_type_is_refused(
    tmp_path: Path,
) -> None:
    from imemviz.io.trace.model_check import vm_config

    cfg, _notes = vm_config("sw_protected", "6.12", 1 << 30)
    assert cfg.kernel == "6.12"
    # TDX came with 6.16 (kvm_is_vm_type_supported): a 6.12 host cannot have made a TD.
    with pytest.raises(ValueError, match=r"6\.12"):
        vm_config("tdx", "6.12", 1 << 30)
    with pytest.raises(ValueError, match=r"--kernel 5\.4"):
        vm_config("sw_protected", "5.4", 1 << 30)
    # A trace of a 6.12 host, checked under 6.12, agrees.
    trace = _export({**SW_CONFIG, "kernel": "6.12"}, SW_OPS, tmp_path / "model.trace")
    host = {"gmem_max_order": 9, "shared_page_size": "2M", "host_memory": "4G"}
    opts = ImportOptions(check=True, from_vm_start=True, vm_config=host, kernel="6.12")
    s = run_import(tmp_path, trace, opts=opts)
    assert s["check"]["disagreements"] == 0, s["check"]["marks"]


# A scene whose trace cannot show everything the kernel did: its reason.
_UNTRACEABLE = {
    # The VMM's 4K hole punch splits the 2M folio; no tracepoint shows a punch of a
    # page no leaf maps, so the check's folio stays 2M and maps 2M where the kernel
    # mapped 4K (docs/traces.md: ops no trace shows).
    "mixed-2m": {"level_differs": 1},
}


def _scene_trace(tmp_path: Path, scene: str) -> tuple[Path, dict, str]:
    from imemviz import resources
    from imemviz.io.trace.kernel_export import export_recording

    path = resources.scene_path(scene)
    trace = tmp_path / f"{scene}.trace"
    trace.write_text("\n".join(export_recording(str(path))) + "\n")
    header = next(json.loads(x) for x in Path(path).read_text().splitlines() if x.startswith("{"))
    vm = dict(header["start"]["vm"])
    vm.pop("type")
    return trace, vm, vm.pop("kernel", "mainline")


def _all_scenes() -> list[str]:
    from imemviz import resources

    return sorted(p.stem for p in Path(resources.scene_path("default")).parent.glob("*.jsonl"))


@pytest.mark.parametrize("scene", _all_scenes())
def test_check_is_silent_on_the_scene_library(tmp_path: Path, scene: str) -> None:
    """Every built-in scene, printed as a host would trace it and imported with the
    scene's host settings and kernel, agrees with the model (but where the trace
    cannot show what the kernel did: _UNTRACEABLE)."""
    trace, vm, kernel = _scene_trace(tmp_path, scene)
    opts = ImportOptions(check=True, from_vm_start=True, vm_config=vm, kernel=kernel)
    s = run_import(tmp_path, str(trace), opts=opts)
    assert s["check"]["by_kind"] == _UNTRACEABLE.get(scene, {}), s["check"]["marks"]


@pytest.mark.parametrize("scene", ["default", "gmem-order-9", "accept-2m-huge-series"])
def test_check_infers_the_host_page_sizes_the_huge_leaves_prove(tmp_path: Path, scene: str) -> None:
    """Without --vm-config, a shared 2M leaf means the host mapped that memory 2M
    (host_pfn_mapping_level) and a private 2M leaf a 2M guest_memfd folio: the check
    runs with those and says so; a setting the user gives wins."""
    trace, _vm, _kernel = _scene_trace(tmp_path, scene)
    s = run_import(tmp_path, str(trace), opts=ImportOptions(check=True, from_vm_start=True))
    assert s["check"]["disagreements"] == 0, s["check"]["marks"]
    assert any("inferred from a" in n for n in s["check"]["notes"]), s["check"]["notes"]
    if scene == "default":
        assert s["check"]["vm"]["shared_page_size"] == "2M"
        pinned = {"shared_page_size": "4K"}
        opts = ImportOptions(check=True, from_vm_start=True, vm_config=pinned)
        s = run_import(tmp_path, str(trace), opts=opts)
        assert [(m["what"], m["gfn"]) for m in s["check"]["marks"]] == [("level_differs", 0x7C000)]
        assert not any("shared_page_size" in n for n in s["check"]["notes"])


def test_check_takes_a_tdx_accept_level_from_its_leaf(tmp_path: Path) -> None:
    """No tracepoint prints a TD's accept level (it is in the exit's extended
    qualification); the 2M private leaf the kernel installs for the fault says it,
    and the derived recording replays the 2M accepts."""
    trace, vm, _kernel = _scene_trace(tmp_path, "accept-2m-huge-series")
    rec = tmp_path / "derived.jsonl"
    opts = ImportOptions(check=True, from_vm_start=True, vm_config=vm, recording_out=str(rec))
    s = run_import(tmp_path, str(trace), opts=opts)
    assert s["check"]["disagreements"] == 0
    accepts = [json.loads(x) for x in rec.read_text().splitlines() if '"guest_accept"' in x]
    assert [(a["gpa"], a.get("level")) for a in accepts][:2] == [
        ("0x400000", "2M"),
        ("0x600000", "2M"),
    ]
