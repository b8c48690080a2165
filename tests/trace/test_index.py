"""The timeline's index (OUT.index): opening a timeline from it gives what parsing every
line gives; an index that does not match its timeline, or is damaged, is not used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imemviz import resources
from imemviz.io.trace.importer import ImportOptions, import_traces
from imemviz.io.trace.kernel_export import export_recording, leaf_spte, table_spte
from imemviz.io.trace.timeline import ObservedTimeline
from imemviz.io.trace.timeline_index import index_path, leaf_instances

NP = 1 << 63


def _same(a: ObservedTimeline, b: ObservedTimeline) -> None:
    for name in ("ts", "kind", "vcpu", "offset", "gfn"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    for tab in ("leaves", "attrs", "slots"):
        x, y = getattr(a, tab), getattr(b, tab)
        assert x.keys() == y.keys(), tab
        for k in x:
            assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), (tab, k)
    assert (a.marks, a.end, a.header) == (b.marks, b.end, b.header)


def _load_both(path: str) -> tuple[ObservedTimeline, ObservedTimeline]:
    a = ObservedTimeline.load(path, use_index=False)
    b = ObservedTimeline.load(path)
    return a, b


def _churn_trace(path: Path) -> str:
    """Leaves replaced, split, dropped with their table, zapped 4K under a 2M leaf."""
    t = 50.0
    out = []

    def spte(gfn, level, old, new):
        nonlocal t
        t += 1e-6
        out.append(
            f"  CPU 0/KVM-4100 [000] ..... {t:.6f}: kvm_tdp_mmu_spte_changed: as id 0 "
            f"gfn {gfn:x} level {level} old_spte {old:x} new_spte {new:x}"
        )

    for g in range(16):
        spte(0x400 + g, 1, NP, leaf_spte(0x1000 + g, 1))
    spte(0x400, 1, leaf_spte(0x1000, 1), leaf_spte(0x2000, 1))  # replaced
    spte(0x400, 2, NP, table_spte(0x7777))
    spte(0x400, 2, table_spte(0x7777), leaf_spte(0x3000, 2))  # 2M over the 4K ones
    spte(0x400, 2, leaf_spte(0x3000, 2), table_spte(0x8888))  # split again
    spte(0x401, 1, leaf_spte(0x3001, 1), NP)
    spte(0x800, 1, NP, leaf_spte(0x9000, 1))
    path.write_text("\n".join(out) + "\n")
    return str(path)


@pytest.mark.parametrize("scene", ["td-boot", "qemu-conversion", "memslot-delete"])
def test_index_opens_what_parsing_opens(tmp_path: Path, scene: str) -> None:
    trace = tmp_path / "s.trace"
    trace.write_text("\n".join(export_recording(str(resources.scene_path(scene)))) + "\n")
    out = tmp_path / "o.jsonl"
    import_traces(
        [str(trace), _churn_trace(tmp_path / "c.trace")],
        str(out),
        options=ImportOptions(check=True, from_vm_start=True),
    )
    assert Path(index_path(str(out))).exists()
    a, b = _load_both(str(out))
    try:
        assert len(a) > 10 and len(a.slots["born"]) and len(a.attrs["born"])
        _same(a, b)
        assert b.event_at(len(b) - 1) == a.event_at(len(a) - 1)
    finally:
        a.close()
        b.close()


def test_a_stale_or_damaged_index_is_not_used(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    first = _churn_trace(tmp_path / "c.trace")
    import_traces([first], str(out))
    idx = Path(index_path(str(out)))
    kept = idx.read_bytes()
    # Another import to the same place: the old index does not match the new timeline.
    second = tmp_path / "d.trace"
    second.write_text(Path(first).read_text().replace("gfn 800", "gfn 900"))
    import_traces([str(second)], str(out))
    idx.write_bytes(kept)
    a, b = _load_both(str(out))
    _same(a, b)
    assert 0x900 in b.leaves["gfn"].tolist()
    # Damaged: cut short, or a header that lies.
    import_traces([str(second)], str(out))
    whole = idx.read_bytes()
    idx.write_bytes(whole[: len(whole) - 16])
    _same(*_load_both(str(out)))
    line, rest = whole.split(b"\n", 1)
    head = json.loads(line)
    head["sections"]["leaf"][1] += 7
    idx.write_bytes(json.dumps(head).encode().ljust(len(line)) + b"\n" + rest)
    _same(*_load_both(str(out)))


def test_leaf_instances_pair_births_and_deaths() -> None:
    # i, sign, as_id, gfn, level, pfn, private
    log = np.array(
        [
            (0, 1, 0, 5, 1, 100, -1),
            (1, 1, 0, 3, 1, 101, 1),
            (2, -1, 0, 5, 1, 100, -1),
            (2, 1, 0, 5, 1, 102, 0),
            (4, -1, 0, 3, 1, 101, 1),
        ],
        dtype=np.int64,
    )
    got = leaf_instances(log)
    assert got["gfn"].tolist() == [3, 5, 5]
    assert got["born"].tolist() == [1, 0, 2]
    assert got["died"].tolist() == [4, 2, np.iinfo(np.int64).max]
    assert got["pfn"].tolist() == [101, 100, 102]
