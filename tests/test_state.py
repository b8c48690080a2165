"""State files: exact round trips, canonical bytes, atomic writes, and refusing bad input
with a message naming the JSON path."""

from __future__ import annotations

import copy
import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
import zstandard
from statecases import CASES, DATA, answers, build, case_vm

from imemviz import cli
from imemviz.io import state as state_mod
from imemviz.io.script import start_vm
from imemviz.io.state import (
    MIGRATIONS,
    VERSION,
    StateError,
    encode,
    load_state,
    migrate,
    save_state,
    state_document,
    vm_from_document,
)
from imemviz.model import ops as O
from imemviz.model.config import VMConfig
from imemviz.model.query import inspect_gfn, stats_dict
from imemviz.model.vm import VM

SUFFIXES = (".json", ".json.gz", ".json.zst")


def doc_of(name: str) -> dict[str, Any]:
    return json.loads(encode(state_document(case_vm(name))))


def same_state(a: VM, b: VM) -> None:
    assert state_document(a) == state_document(b)
    assert answers(a) == answers(b)


# ------------------------------------------------------------ round trips


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_every_vm_type(name: str, tmp_path: Path) -> None:
    vm = case_vm(name)
    path = tmp_path / "s.json.zst"
    save_state(vm, path)
    loaded = load_state(path)
    same_state(vm, loaded)
    assert loaded is not vm and loaded.host is not vm.host


def test_round_trip_keeps_what_the_cases_set_up() -> None:
    """The cases do reach held faults, hwpoison, a closed guest_memfd and poisoned pages."""
    tdx, sw = vm_from_document(doc_of("tdx")), vm_from_document(doc_of("sw"))
    assert sorted(tdx.in_flight) == [1] and sorted(sw.in_flight) == [2]
    assert tdx.td_state == "RUNNABLE"
    slot1 = tdx.memslots.by_id[1]
    assert slot1.gmem_file is None and slot1.gmem_fd == 4 and 4 not in tdx.files
    assert any(f.hwpoison for f in tdx.files[3].inode.all_folios())
    assert sw.poisoned_hva and sw.host.poisoned and sw.closed_std_fds == {1}
    assert len(tdx.private.tables) > 0


@pytest.mark.parametrize("name", ["tdx", "sw"])
def test_held_fault_resumes_the_same(name: str) -> None:
    vm = case_vm(name)
    loaded = vm_from_document(doc_of(name))
    (vcpu,) = vm.in_flight
    a, b = vm.apply(O.VcpuResume(vcpu)), loaded.apply(O.VcpuResume(vcpu))
    assert a == b and a.ok and a.ret.get("retried")  # later ops invalidated its snapshot
    same_state(vm, loaded)


def test_held_fault_whose_slot_was_deleted() -> None:
    """A held fault keeps the identity of its memslot: deleted while held, it retries."""
    cfg, steps = CASES["sw"]()
    steps = [
        *steps[:4],
        O.GuestAccess(4 << 30, vcpu=3, hold=True),
        O.SetUserMemoryRegion2(0, guest_phys_addr=4 << 30, memory_size=0),
    ]
    vm, _ops = build(cfg, steps)
    doc = json.loads(encode(state_document(vm)))
    assert doc["in_flight"][0]["slot_live"] is False
    loaded = vm_from_document(doc)
    assert vm.apply(O.VcpuResume(3)) == loaded.apply(O.VcpuResume(3))
    same_state(vm, loaded)


def test_dead_td_stays_dead() -> None:
    cfg, steps = CASES["tdx"]()
    vm, _ops = build(cfg, [*steps, O.GuestAccess(20 << 20)])  # private, never accepted
    assert vm.dead
    loaded = vm_from_document(json.loads(encode(state_document(vm))))
    assert loaded.dead
    for op in (O.GuestAccess(0), O.CreateGuestMemfd(1 << 21), O.GuestAccept(0)):
        assert vm.apply(op) == loaded.apply(op)
    same_state(vm, loaded)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_load_save_is_byte_identical(suffix: str, tmp_path: Path) -> None:
    vm = case_vm("tdx")
    first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    save_state(vm, first)
    save_state(load_state(first), second)
    assert first.read_bytes() == second.read_bytes()
    raw = first.read_bytes()
    if suffix == ".json.gz":
        assert raw[:2] == b"\x1f\x8b"
    elif suffix == ".json.zst":
        assert raw[:4] == b"\x28\xb5\x2f\xfd"
    else:
        text = raw.decode("ascii")
        assert text.endswith("\n") and text.count("\n") == 1
        assert text.startswith('{"format":"imemviz-state","version":1,"vm":')


def test_compression_is_sniffed_not_trusted(tmp_path: Path) -> None:
    """A gzip file named .json still opens (the magic bytes decide)."""
    vm = case_vm("default")
    path = tmp_path / "s.json"
    path.write_bytes(encode(state_document(vm), "gzip"))
    same_state(vm, load_state(path))


def test_loading_never_touches_another_vm() -> None:
    vm = case_vm("sw")
    before = state_document(vm)
    loaded = vm_from_document(copy.deepcopy(before))
    loaded.apply(O.GuestAccess(4 << 30, write=True, value=99))
    loaded.apply(O.Fallocate(3, 3, 0, 16 << 20))
    assert state_document(vm) == before


def test_embedded_state_starts_a_script() -> None:
    doc = doc_of("sw")
    vm = start_vm({"state": doc}, "bug.jsonl", 1)
    same_state(vm, vm_from_document(doc))
    with pytest.raises(Exception, match=r"^bug.jsonl:1: header.start.state: \$.version: "):
        start_vm({"state": {**doc, "version": "1"}}, "bug.jsonl", 1)


def test_every_vm_attribute_is_saved() -> None:
    """Guard: engine state added to VM must be added to the state file (and this list)."""
    known = {
        "config",
        "is_tdx",
        "has_private_mem",
        "shared_bit",  # derived from config
        "kernel",  # derived from config (config.kernel)
        "pfnmap",
        "snp",  # the "snp" section (io/state_snp.py)
        "host",
        "attributes",
        "memslots",
        "files",
        "closed_std_fds",
        "next_ino",
        "private",
        "shared",
        "inv",
        "in_flight",
        "events",
        "op_index",
        "dead",
        "td_state",
        "tdx_epoch",
        "hva_pages",
        "poisoned_hva",
        "last_events",
    }
    new = set(vars(VM(VMConfig("tdx")))) - known
    assert not new, f"VM has new state {sorted(new)}: save it in imemviz/io/state_doc.py"


def test_last_events_come_back() -> None:
    vm = case_vm("sw")
    assert vm_from_document(doc_of("sw")).last_events == vm.last_events


# ------------------------------------------------------------ atomic write


def test_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.json.gz"
    path.write_bytes(b"old")

    def boom(*a: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        save_state(case_vm("default"), path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["s.json.gz"]


def test_failed_encode_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.json"
    path.write_text("old")

    class Broken:
        def encode(self, doc: Any) -> str:
            raise RuntimeError("encoder bug")

    monkeypatch.setattr(state_mod, "_ENCODER", Broken())
    with pytest.raises(RuntimeError):
        save_state(case_vm("default"), path)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["s.json"]


def test_failed_fsync_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        save_state(case_vm("default"), tmp_path / "new.json.zst")
    assert os.listdir(tmp_path) == []


def test_new_file_permissions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        save_state(case_vm("default"), tmp_path / "new.json")
    finally:
        os.umask(old)
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o640


def test_replacing_keeps_permissions(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("old")
    path.chmod(0o640)
    save_state(case_vm("default"), path)
    assert path.stat().st_mode & 0o777 == 0o640


# ------------------------------------------------------------- bad input


def refused(doc: Any, path: str, *words: str) -> StateError:
    with pytest.raises(StateError) as info:
        vm_from_document(doc)
    e = info.value
    assert e.path == path, str(e)
    assert "\n" not in str(e) and str(e) == f"{e.path}: {e.message}"
    for w in words:
        assert w in e.message, e.message
    return e


def edited(name: str, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = doc_of(name)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


DELETE = object()


@pytest.mark.parametrize(
    ("edit", "path", "words"),
    [
        ((("op_index",), "7"), "$.op_index", ["expected an integer", "string"]),
        ((("dead",), 0), "$.dead", ["true or false"]),
        ((("vm",), DELETE), "$.vm", ["missing field"]),
        ((("vm", "type"), "sev"), "$.vm.type", ["sev"]),
        ((("snp",), {"launched": True, "rmp": []}), "$.snp", ["only SNP VMs"]),
        ((("extra",), 1), "$.extra", ["unknown field"]),
        ((("td_state",), "PAUSED"), "$.td_state", ["PAUSED"]),
        ((("memslots", 0, "base_gfn"), "0x1" + "0" * 20), "$.memslots[0].base_gfn", ["beyond"]),
        ((("memslots", 0, "npages"), -5), "$.memslots[0].npages", ["at least 1"]),
        (
            (("memslots", 0, "userspace_addr"), "0x7f0000000800"),
            "$.memslots[0].userspace_addr",
            ["not page aligned"],
        ),
        ((("memslots", 0, "gmem_file"), 9), "$.memslots[0].gmem_file", ["no guest_memfd", "9"]),
        ((("gmem_files", 0, "size"), -4096), "$.gmem_files[0].size", ["at least 1"]),
        ((("gmem_files", 0, "size"), 4097), "$.gmem_files[0].size", ["multiple of 4096"]),
        ((("gmem_files", 0, "flags"), 64), "$.gmem_files[0].flags", ["beyond"]),
        (
            (("gmem_files", 0, "bindings", 0, "slot"), 77),
            "$.gmem_files[0].bindings[0].slot",
            ["no memslot"],
        ),
        (
            (("gmem_files", 0, "folios", 0, 1), 5),
            "$.gmem_files[0].folios[0][1]",
            ["expected one of 0, 9, 18, got the integer 5"],
        ),
        (
            (("gmem_files", 0, "folios", 0, 0), "0x3"),
            "$.gmem_files[0].folios[0][0]",
            ["not aligned"],
        ),
        (
            (("gmem_files", 0, "folios", 0, 2), "0xfffffffff"),
            "$.gmem_files[0].folios[0][2]",
            ["beyond host memory"],
        ),
        ((("gmem_files", 0, "folios", 0, 2), 5.5), "$.gmem_files[0].folios[0][2]", ["hex"]),
        (
            (("mappings", "private", 0, 1), "3M"),
            "$.mappings.private[0][1]",
            ['expected one of 4K, 2M, 1G, got the string "3M"'],
        ),
        ((("mappings", "private", 0, 3), 10**30), "$.mappings.private[0][3]", ["absurd"]),
        ((("mappings", "private", 0, 3), 0), "$.mappings.private[0][3]", ["at least 1"]),
        (
            (("mappings", "private", 0), ["0x0", "4K", "0x200", 1, "SHINY"]),
            "$.mappings.private[0][4]",
            ["SHINY"],
        ),
        ((("mappings", "private", 0), "0x0"), "$.mappings.private[0]", ["row"]),
        (
            (("host", "free", 0, 1), 19),
            "$.host.free[0][1]",
            ["expected one of 0, ", "got the integer 19"],
        ),
        ((("host", "content", 0, 1), 0), "$.host.content[0][1]", ["at least 1"]),
        ((("host", "content", 0, 1), 256), "$.host.content[0][1]", ["1-255"]),
        ((("invalidate", "range"), ["0x5", "0x1"]), "$.invalidate.range", ["below start"]),
        ((("events", "log", 0, 1), "kvm_exploded"), "$.events.log[0][1]", ["kvm_exploded"]),
        ((("events", "log", 0), [0, "note"]), "$.events.log[0]", ["1 fields"]),
        ((("in_flight", 0, "vcpu"), 5000), "$.in_flight[0].vcpu", ["beyond"]),
        ((("in_flight", 0, "host_level"), "5G"), "$.in_flight[0].host_level", ["5G"]),
        ((("attributes", 0, 2), 16), "$.attributes[0][2]", ["unknown attributes"]),
    ],
)
def test_bad_fields_name_their_path(edit: tuple[Any, ...], path: str, words: list[str]) -> None:
    keys, value = edit
    refused(edited("tdx", keys, value), path, *words)


def test_overlapping_leaves_and_folios_are_refused() -> None:
    doc = doc_of("tdx")
    rows = doc["mappings"]["private"]
    rows.insert(1, [rows[0][0], "4K", rows[0][2]])
    refused(doc, "$.mappings.private[1]", "overlaps")
    doc = doc_of("tdx")
    folios = doc["gmem_files"][0]["folios"]
    folios.append(list(folios[0]))
    refused(doc, f"$.gmem_files[0].folios[{len(folios) - 1}]", "overlaps")


def test_overlapping_memslots_are_refused() -> None:
    doc = doc_of("default")
    doc["memslots"][1]["base_gfn"] = doc["memslots"][0]["base_gfn"]
    refused(doc, "$.memslots[1].base_gfn", "overlaps slot 0")


def test_hand_edits_of_consistency_are_left_to_check() -> None:
    """A leaf pointing at the wrong pfn is well-formed: it loads (and `check` reports it)."""
    doc = doc_of("sw")
    doc["mappings"]["private"][0][2] = "0x1000"
    assert vm_from_document(doc).private.all_leaves()[0].pfn == 0x1000


def test_absurd_totals_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from imemviz.io import state_build

    monkeypatch.setattr(state_build, "MAX_ENTRIES", 100)
    doc = doc_of("sw")
    e = refused(doc, doc_path_of_budget(doc))
    assert "more than 100" in e.message


def doc_path_of_budget(doc: dict[str, Any]) -> str:
    # With a budget of 100 the first big list to cross it is the free list or the events.
    try:
        vm_from_document(doc)
    except StateError as e:
        return e.path
    raise AssertionError("not refused")


def test_deep_nesting_is_refused() -> None:
    doc = doc_of("default")
    deep: Any = 0
    for _ in range(100):
        deep = [deep]
    doc["op_index"] = deep
    refused(doc, "$.op_index", "nested deeper than 64")


@pytest.mark.parametrize(
    ("doc", "path", "words"),
    [
        ({"hello": "world"}, "$", ['no "format"']),
        ([1, 2, 3], "$", ["JSON object"]),
        ({"format": "imemviz-recording", "version": 1}, "$.format", ["recording"]),
        (
            {"format": "imemviz-state", "version": 7},
            "$.version",
            ["state file version 7 is newer than this imemviz (reads up to 1)"],
        ),
        ({"format": "imemviz-state", "version": 0}, "$.version", ["version 0 is not supported"]),
        ({"format": "imemviz-state", "version": "1"}, "$.version", ["expected an integer"]),
    ],
)
def test_foreign_and_future_documents(doc: Any, path: str, words: list[str]) -> None:
    refused(doc, path, *words)


def test_migrations_run_in_one_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """A synthetic version 0 (never released) renames a field: the chain brings it to 1."""
    current = doc_of("default")
    old = {**current, "version": 0, "operations": current["op_index"]}
    del old["op_index"]
    seen = []

    def v0_to_v1(d: dict[str, Any]) -> dict[str, Any]:
        seen.append(d["version"])
        d = dict(d)
        d["op_index"] = d.pop("operations")
        d["version"] = 1
        return d

    monkeypatch.setitem(MIGRATIONS, 0, v0_to_v1)
    assert migrate(old) == {**current, "op_index": current["op_index"]}
    assert seen == [0]
    same_state(vm_from_document(old), vm_from_document(current))
    assert VERSION == 1 and set(MIGRATIONS) == {0}


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def load_error(path: Path) -> StateError:
    with pytest.raises(StateError) as info:
        load_state(path)
    assert "\n" not in str(info.value)
    return info.value


def test_truncated_files(tmp_path: Path) -> None:
    data = encode(state_document(case_vm("sw")))
    e = load_error(write(tmp_path / "t.json", data[: len(data) // 2]))
    assert e.path == str(tmp_path / "t.json") and "truncated JSON" in e.message
    gz = encode(state_document(case_vm("sw")), "gzip")
    e = load_error(write(tmp_path / "t.json.gz", gz[: len(gz) // 2]))
    assert "corrupt or truncated gzip" in e.message
    zst = encode(state_document(case_vm("sw")), "zstd")
    e = load_error(write(tmp_path / "t.json.zst", zst[: len(zst) // 2]))
    assert "truncated" in e.message


def test_garbage_and_empty_files(tmp_path: Path) -> None:
    e = load_error(write(tmp_path / "g.json", bytes(range(256)) * 4))
    assert "not UTF-8" in e.message
    e = load_error(write(tmp_path / "e.json", b""))
    assert e.message == "empty file"
    e = load_error(write(tmp_path / "r.json", (DATA / "state-v1-sw.jsonl").read_bytes()))
    assert "this is a recording" in e.message
    e = load_error(write(tmp_path / "g.json.gz", b"\x1f\x8b" + os.urandom(64)))
    assert "gzip" in e.message
    e = load_error(write(tmp_path / "g.json.zst", b"\x28\xb5\x2f\xfd" + bytes(64)))
    assert "zstd" in e.message
    e = load_error(write(tmp_path / "n.json", b'{"format": NaN}'))
    assert "invalid JSON" in e.message


def test_huge_integer_literal(tmp_path: Path) -> None:
    doc = encode(state_document(case_vm("default"))).replace(
        b'"op_index":9', b'"op_index":9' + b"9" * 5000
    )
    e = load_error(write(tmp_path / "h.json", doc))
    assert "invalid JSON" in e.message


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_decompression_bomb(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small file that expands past the limit is refused as it streams, not after."""
    monkeypatch.setattr(state_mod, "MAX_DECOMPRESSED", 1 << 20)
    payload = b" " * (64 << 20)  # 64 MiB of spaces: a few KiB compressed
    data = (
        gzip.compress(payload, mtime=0)
        if kind == "gzip"
        else zstandard.ZstdCompressor().compress(payload)
    )
    assert len(data) < 1 << 20
    path = write(tmp_path / f"bomb.json.{'gz' if kind == 'gzip' else 'zst'}", data)
    e = load_error(path)
    assert "more than 1 MiB" in e.message


def test_plain_file_over_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_mod, "MAX_DECOMPRESSED", 1000)
    path = write(tmp_path / "big.json", encode(state_document(case_vm("default"))))
    assert "more than 1000 bytes" in load_error(path).message


# ------------------------------------------------------------------- CLI


def run_cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"format": "imemviz-recording", "version": 1, "start": {"vm": '
        '{"type": "sw_protected"}}}\n{"op": "create_guest_memfd", "size": "2M"}\n'
    )
    return path


def test_run_from_a_broken_state(
    capsys: pytest.CaptureFixture[str], script: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json.gz"
    doc = doc_of("sw")
    doc["memslots"][0]["npages"] = "lots"
    bad.write_bytes(encode(doc, "gzip"))
    code, out, err = run_cli(capsys, "run", script, "--from-state", bad)
    assert (code, out) == (2, "")
    assert err == f'{bad}: $.memslots[0].npages: expected an integer, got the string "lots"\n'
    newer = tmp_path / "newer.json"
    newer.write_text('{"format": "imemviz-state", "version": 2}')
    code, out, err = run_cli(capsys, "run", script, "--from-state", newer)
    assert code == 2 and err.count("\n") == 1 and "version 2 is newer" in err


def test_run_state_out_and_from_state(
    capsys: pytest.CaptureFixture[str], script: Path, tmp_path: Path
) -> None:
    out_state = tmp_path / "final.json.zst"
    assert run_cli(capsys, "run", script, "--state-out", out_state)[0] == 0
    code, out, _err = run_cli(capsys, "run", script, "--from-state", out_state)
    assert code == 0 and json.loads(out)["ret"] == {"fd": 4}
    broken = tmp_path / "broken.jsonl"
    broken.write_text(script.read_text() + '{"op": "close", "fd": "x"}\n')
    before = out_state.read_bytes()
    code, _out, err = run_cli(capsys, "run", broken, "--state-out", out_state)
    assert code == 2 and err.startswith(f"{broken}:3:") and out_state.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["broken.jsonl", "final.json.zst", "s.jsonl"]


# ---------------------------------------------------------- frozen samples


SAMPLES = sorted(
    p
    for p in DATA.glob("state-v*")
    if p.name.endswith(state_mod.SUFFIXES) and ".answers." not in p.name
)


def test_there_is_a_sample_of_every_version() -> None:
    versions = {int(p.name.split("-")[1][1:]) for p in SAMPLES}
    assert versions == set(range(1, VERSION + 1))


def subset(expected: Any, actual: Any, where: str = "") -> None:
    """Every key recorded is still answered the same (new keys may appear)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        for k, v in expected.items():
            assert k in actual, f"{where}.{k} missing"
            subset(v, actual[k], f"{where}.{k}")
    else:
        assert expected == actual, where


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_frozen_sample_still_loads(path: Path) -> None:
    vm = load_state(path)
    recorded = json.loads(Path(str(path).split(".json")[0] + ".answers.json").read_text())
    subset(recorded["stats"], stats_dict(vm), "stats")
    for gfn, answer in recorded["inspect"].items():
        subset(answer, inspect_gfn(vm, int(gfn, 16)), f"inspect {gfn}")


def test_recording_that_starts_from_a_state(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A self-contained bug report: a recording whose header embeds the state, replayed by
    `imemviz run`, answers like the live engine."""
    from imemviz.io.recording import RecordingWriter

    vm = case_vm("sw")
    more = [
        O.VcpuResume(2),
        O.GuestAccess((4 << 30) + (3 << 20), write=True, value=7),
        O.Fallocate(3, 3, 0, 2 << 20),
        O.Inspect(4 << 30),
        O.Stats(),
    ]
    path = tmp_path / "bug.jsonl"
    with RecordingWriter(path, {"state": state_document(vm)}, clock=None) as rec:
        for op in more:
            rec.write(op)
    code, out, err = run_cli(capsys, "run", path, "--state-out", tmp_path / "end.json.gz")
    assert (code, err) == (0, "")
    expected = [vm.apply(op).line(i, op.NAME) for i, op in enumerate(more)]
    assert [json.loads(line) for line in out.splitlines()] == json.loads(json.dumps(expected))
    same_state(load_state(tmp_path / "end.json.gz"), vm)
