"""The engine thread's records and logic, headless: records.py, outcomes.py, raster_codes.py."""

from __future__ import annotations

import numpy as np
import pytest

from imemviz.app.outcomes import action_record, log_tail, op_info, title, undone_record
from imemviz.app.raster_codes import EMPTY_EXTENT, drawn_extent, request_codes
from imemviz.app.records import RasterRequest, SlotInfo, Snapshot, freeze, slot_infos
from imemviz.io import plans
from imemviz.io.session import Session
from imemviz.model import ops as O
from imemviz.model.raster import StepCache

MB = 1 << 20


def td() -> Session:
    s = Session.new({"type": "tdx", "host_memory": "1G"})
    s.annotate = op_info  # as the worker does: the session keeps an OpInfo per op
    s.apply_group(plans.qemu_layout("tdx", 64 * MB), "layout")
    return s


def test_freeze_makes_json_values_immutable() -> None:
    v = freeze({"a": [1, {"b": [2]}], "c": "x"})
    assert v["a"] == (1, {"b": (2,)}) and v["c"] == "x"
    with pytest.raises(TypeError):
        v["c"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError):
        v["a"][1]["b"] = ()  # type: ignore[index]


def test_raster_request_window_and_touches() -> None:
    plain = RasterRequest("k", 0x100, 16, 4, 16)
    assert plain.window == (0x100, 0x140)
    assert plain.touches(None)
    assert plain.touches(((0x13F, 0x200),))
    assert not plain.touches(((0x140, 0x200), (0, 0x100)))
    # Folded: a band of code 3 between two stretches of the guest; a change inside the
    # folded run is not drawn (the band is one code whatever it holds).
    folded = RasterRequest("k", 0, 16, 3, 16, ((0, 1, -1), (16, 1, 3), (0x1000, 1, -1)))
    assert folded.window == (0, 0x1010)
    assert folded.touches(((0x1005, 0x1006),))
    assert not folded.touches(((0x20, 0x30),))


def test_snapshot_slot_at_and_slot_infos() -> None:
    s = td()
    slots = slot_infos(s.vm)
    assert slots and all(isinstance(x, SlotInfo) and x.npages for x in slots)
    snap = Snapshot(
        1, s.vm.config, slots, (), drawn_extent(s.vm), {}, 0, False, False, "", "", None, None
    )
    first = slots[0]
    assert snap.slot_at(first.base_gfn) == first
    assert snap.slot_at(first.end_gfn - 1) == first
    assert snap.slot_at(max(x.end_gfn for x in slots) + 10**9) is None


def test_drawn_extent() -> None:
    assert drawn_extent(Session.new({"type": "tdx", "host_memory": "1G"}).vm) == EMPTY_EXTENT
    ext = drawn_extent(td().vm)
    assert ext % 512 == 0 and ext >= (64 * MB) >> 12


def test_request_codes_folded_equals_plain_rows() -> None:
    s = td()
    for g in range(0x810, 0x818):
        s.apply_group(plans.accept_and_touch(s.vm, g).ops, "accept")
    cache = StepCache(s.vm, drawn_extent(s.vm))
    plain = request_codes(cache, RasterRequest("k", 0x800, 32, 4, 32))
    assert plain.shape == (4, 32) and plain.dtype == np.uint8
    # The same rows as two stretches with a band of code 7 between them.
    pieces = ((0x800, 2, -1), (0, 1, 7), (0x840, 2, -1))
    folded = request_codes(cache, RasterRequest("k", 0x800, 32, 5, 32, pieces))
    assert (folded[:2] == plain[:2]).all()
    assert (folded[2] == 7).all()
    assert (folded[3:] == plain[2:]).all()
    assert len(set(plain[0, 16:24].tolist())) == 1 and plain[0, 16] != plain[0, 0]


def test_action_and_undone_records() -> None:
    s = td()
    first = len(s.ops)
    s.apply_group(plans.accept_and_touch(s.vm, 0x810).ops, "accept 0x810")
    rec = action_record("action", "accept 0x810", s, first, len(s.ops) - first)
    assert rec.label == "Accept 0x810" and rec.ok
    assert rec.first == first and rec.count == len(s.ops) - first
    assert rec.changes.gfns and rec.text.startswith("Accept 0x810")
    n = s.groups[-1]
    s.undo()
    undone = undone_record("undo", "Undo: Accept 0x810", s, n)
    assert undone.first == first and undone.count == n and undone.ok
    assert "undone" in undone.text and undone.changes.gfns == rec.changes.gfns


def test_a_refused_op_is_named_in_the_record() -> None:
    s = td()
    first = len(s.ops)
    # TDG.MEM.PAGE.ACCEPT at a gpa no memslot covers: refused.
    s.apply_group([O.GuestAccept(gpa=1 << 40)], "accept far")
    rec = action_record("action", "accept far", s, first, 1)
    assert not s.results[first].ok
    assert not rec.ok and rec.rule  # the kernel rule that refused it
    assert s.results[first].errno in rec.text


def test_title_and_log_tail() -> None:
    assert title("accept") == "Accept" and title("") == "Action"
    s = td()
    tail = log_tail(s.vm, 3)
    assert len(tail) == min(3, len(s.vm.events.log)) and tail[-1] == s.vm.events.log[-1]
