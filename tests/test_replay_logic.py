"""The Qt-free replay timeline: pacing, frame counts, captions and states at any op."""

from __future__ import annotations

import json

import pytest

from imemviz import resources
from imemviz.io.diff import diff_vms
from imemviz.io.replay import (
    DEFAULT_PACE_S,
    LEAD_S,
    NOTE_HOLD_S,
    TAIL_S,
    StateCache,
    Timeline,
    run_timeline,
)
from imemviz.io.state import state_document

HEADER = {"format": "imemviz-recording", "version": 1, "start": {"vm": {"type": "sw_protected"}}}
OPS = [
    {"op": "note", "text": "first"},
    {"op": "create_guest_memfd", "size": "16M"},
    {
        "op": "set_user_memory_region2",
        "slot": 0,
        "flags": ["GUEST_MEMFD"],
        "guest_phys_addr": 0,
        "memory_size": "16M",
        "userspace_addr": "0x7f0000000000",
        "guest_memfd": 3,
    },
    {"op": "set_memory_attributes", "address": 0, "size": "16M", "attributes": ["PRIVATE"]},
    {"op": "note", "text": "second"},
    {"op": "guest_access", "gpa": "0x100000", "write": True, "value": 7},
]


def write(tmp_path, ops, times=None, name="r.jsonl"):
    lines = [json.dumps(HEADER)]
    for i, op in enumerate(ops):
        d = dict(op)
        if times is not None:
            d["t"] = times[i]
        lines.append(json.dumps(d))
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_captions_follow_the_last_note(tmp_path) -> None:
    tl = Timeline.load(write(tmp_path, OPS))
    assert len(tl) == 6 and tl.note_indexes == [0, 4]
    assert [tl.caption_at(k) for k in range(7)] == [
        None, "first", "first", "first", "first", "second", "second",
    ]  # fmt: skip


def test_default_pace_without_t(tmp_path) -> None:
    tl = Timeline.load(write(tmp_path, OPS))
    assert not tl.has_times
    d = tl.durations()
    assert len(d) == len(tl) + 1
    assert d[0] == LEAD_S
    assert d[1] == NOTE_HOLD_S  # after the first note: held long enough to read
    assert d[2:5] == [DEFAULT_PACE_S] * 3
    assert d[5] == NOTE_HOLD_S
    assert d[6] == TAIL_S


def test_as_recorded_pace_uses_t(tmp_path) -> None:
    times = [1.0, 4.0, 4.5, 4.5, 5.0, 9.0]
    tl = Timeline.load(write(tmp_path, OPS, times))
    assert tl.has_times
    assert tl.durations() == [1.0, 3.0, 0.5, 0.0, 0.5, 4.0, TAIL_S]
    # Without "as recorded" the fixed pace applies even to a timed recording.
    assert tl.durations(as_recorded=False)[1] == NOTE_HOLD_S


def test_frame_counts_are_predictable(tmp_path) -> None:
    times = [1.0, 4.0, 4.5, 4.5, 5.0, 9.0]
    tl = Timeline.load(write(tmp_path, OPS, times))
    counts = tl.frame_counts(10)
    assert counts == [10, 30, 5, 0, 5, 40, 20]  # a burst (0 s) gets no frame of its own
    assert sum(counts) == round(10 * sum(tl.durations()))
    assert sum(tl.frame_counts(3)) == round(3 * sum(tl.durations()))


def test_empty_recording_has_one_frame(tmp_path) -> None:
    tl = Timeline.load(write(tmp_path, []))
    assert tl.durations() == [TAIL_S]
    assert sum(tl.frame_counts(0.1)) == 1


def test_state_cache_matches_straight_replay(tmp_path) -> None:
    tl = Timeline.load(write(tmp_path, OPS))
    cache = StateCache(tl, interval=2)
    final = run_timeline(tl)
    assert state_document(cache.vm_at(len(tl))) == state_document(final)
    # Backwards and forwards again, through the checkpoints it took.
    assert cache.checkpoints == [0, 2, 4, 6]
    assert diff_vms(cache.vm_at(3), cache.vm_at(3))["equal"]
    assert not diff_vms(cache.vm_at(2), final)["equal"]
    assert diff_vms(cache.vm_at(6), final)["equal"]
    with pytest.raises(IndexError):
        cache.vm_at(7)


def test_default_scene_as_a_timeline() -> None:
    tl = Timeline.load(resources.scene_path("default"))
    assert tl.has_times and len(tl.note_indexes) >= 5
    assert all(c >= 0 for c in tl.frame_counts(10))
