"""The scenario library (resources/scenes/): every scene runs headless, with its captions,
and every op does what its caption says (the ``# expect`` comments after the ops that fail)."""

from __future__ import annotations

import json
import re

import pytest

from imemviz import resources
from imemviz.cli import main
from imemviz.io.replay import Timeline

SCENES = [n for n in resources.scene_names() if n != "default"]
REQUIRED = {
    "td-boot",
    "qemu-conversion",
    "gmem-order-0",
    "gmem-order-9",
    "mixed-2m",
    "fault-race",
    "memory-failure",
    "gmem-close",
    "memslot-delete",
    "touch-before-accept",
    # issue 11: kernel profiles, the 2022 design, the part-2 uAPI
    "design-2022-upm-v8",
    "design-2022-mainline",
    "qemu-ovmf-pflash",
    "td-pre-fault",
    "virtio-gpu-blob-6.12",
    "virtio-gpu-blob-6.16",
    "gmem-mmap-in-place",
    "accept-4k-fallback",
    "accept-2m-huge-series",
    # issue 15: SEV-SNP
    "snp-launch",
    "snp-psmash",
    "snp-unvalidated",
}
EXPECT_RE = re.compile(r"^#\s*expect\s+(\{.*\})\s*$")


def run_scene(tmp_path, name: str) -> list[dict]:
    out = tmp_path / f"{name}.results.jsonl"
    assert main(["run", str(resources.scene_path(name)), "--results-out", str(out)]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def expectations(name: str) -> dict[int, dict]:
    """op index -> the expectation written after it."""
    found: dict[int, dict] = {}
    index = -1
    header = False
    for line in resources.scene_path(name).read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            m = EXPECT_RE.match(s)
            if m:
                found[index] = json.loads(m.group(1))
            continue
        if not header:
            header = True
            continue
        index += 1
    return found


def test_the_library_is_complete() -> None:
    assert set(SCENES) >= REQUIRED
    assert "default" in resources.scene_names()


@pytest.mark.parametrize("name", SCENES)
def test_scene_runs_as_its_captions_say(tmp_path, name: str) -> None:
    results = run_scene(tmp_path, name)
    expect = expectations(name)
    for r in results:
        want = expect.get(r["index"], {"ok": True})
        got = {k: r[k] for k in want}
        assert got == want, f"{name} op #{r['index']} {r['op']}: {r}"
    tl = Timeline.load(resources.scene_path(name))
    assert len(results) == len(tl)
    # Captioned, timed, and titled for the Scenarios menu.
    assert len(tl.note_indexes) >= 3
    assert tl.has_times
    first = resources.scene_path(name).read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and len(first) > 10


def test_memory_failure_hits_a_gmem_folio(tmp_path) -> None:
    results = run_scene(tmp_path, "memory-failure")
    tl = Timeline.load(resources.scene_path("memory-failure"))
    k = next(i for i, op in enumerate(tl.ops) if op.NAME == "memory_failure")
    assert results[k]["ok"]
    vm = tl.start_vm()
    for op in tl.ops[:k]:
        vm.apply(op)
    from imemviz.model.query import inspect_gfn

    pfn = tl.ops[k].pfn
    hits = [g for g in range(0x800, 0x810) if (inspect_gfn(vm, g)["folio"] or {}).get("pfn") == pfn]
    assert hits, "the scene's pfn is no longer a guest_memfd folio: regenerate the scenes"
    vm.apply(tl.ops[k])
    assert inspect_gfn(vm, hits[0])["folio"]["hwpoison"]


def test_gmem_order_debate(tmp_path) -> None:
    def last_stats(name):
        tl = Timeline.load(resources.scene_path(name))
        vm = tl.start_vm()
        for op in tl.ops:
            vm.apply(op)
        from imemviz.model.query import stats_dict

        return stats_dict(vm)

    small, huge = last_stats("gmem-order-0"), last_stats("gmem-order-9")
    assert small["mappings"]["private"]["4K"] == 512 and small["mappings"]["private"]["2M"] == 0
    assert huge["mappings"]["private"]["2M"] == 1 and huge["mappings"]["private"]["4K"] == 0


def test_every_scene_has_a_key_op_for_the_gallery() -> None:
    """docs/app.md's scene gallery shows each scene at its key op (scripts/
    make_scene_gallery.py's KEY_OPS): a new scene needs one, and the op must exist."""
    import importlib.util
    from pathlib import Path

    from imemviz.io.replay import Timeline

    path = Path(__file__).resolve().parent.parent / "scripts" / "make_scene_gallery.py"
    spec = importlib.util.spec_from_file_location("make_scene_gallery", path)
    assert spec is not None and spec.loader is not None
    gallery = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gallery)
    docs = (path.parent.parent / "docs" / "app.md").read_text()
    for name in resources.scene_names():
        if name in gallery.SKIP:
            continue
        assert name in gallery.KEY_OPS, f"{name}: add its key op to KEY_OPS"
        k, _what = gallery.KEY_OPS[name]
        ops = Timeline.load(str(resources.scene_path(name))).ops
        assert 0 <= k < len(ops) and ops[k].NAME != "note", name
        for suffix in gallery.SIZES.values():  # both sizes linked, and there
            link = f"screenshots/scenes/{name}{suffix}.png"
            assert link in docs, f"{name}: {link} not in docs/app.md"
            assert (path.parent.parent / "docs" / link).is_file(), f"{link}: missing"
