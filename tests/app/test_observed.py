"""The observed-timeline window: map, scrubber, event log, vCPU filter, import with cancel."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt

from imemviz.app.observed import ObservedWindow, import_dialog
from imemviz.io.trace.importer import ImportOptions, import_traces
from imemviz.io.trace.kernel_export import export_lines
from imemviz.io.trace.observed_raster import ObservedCode
from imemviz.model import ops as O
from imemviz.model.config import VMConfig
from imemviz.model.raster import Code
from imemviz.model.vm import VM

pytestmark = pytest.mark.qt
WAIT_MS = 20_000


def _trace(tmp_path: Path) -> str:
    vm = VM(VMConfig.from_dict({"type": "sw_protected", "host_memory": "1G"}))
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
        O.GuestAccess(0x10000, vcpu=0),
        O.SetMemoryAttributes(0x20000, 0x4000, 8),
        O.GuestAccess(0x20000, vcpu=1),
        O.GuestAccess(0x21000, vcpu=1),
    ]
    p = tmp_path / "t.trace"
    p.write_text("\n".join(export_lines(vm, ops)) + "\n")
    return str(p)


@pytest.fixture
def observed(qtbot, tmp_path):
    out = tmp_path / "o.jsonl"
    import_traces([_trace(tmp_path)], str(out), options=ImportOptions())
    w = ObservedWindow(str(out))
    qtbot.addWidget(w)
    w.resize(1280, 860)
    w.show()
    try:
        qtbot.waitUntil(w.wait_drawn, timeout=WAIT_MS)
        yield w
    finally:
        w.engine.stop()


def test_map_shows_the_observed_state_and_unknowns(observed) -> None:
    w = observed
    # A private leaf at 0x20 (the attribute said private), a leaf of unknown kind at
    # 0x10 (no attribute event covers it, the trace does not start with the VM).
    assert w.map.code_at(0x20) == Code.PRIVATE_4K
    assert w.map.code_at(0x10) == ObservedCode.LEAF_UNKNOWN_4K
    assert w.map.code_at(0x30) == ObservedCode.UNKNOWN
    assert w.map.code_at(0x22) == Code.PRIVATE_EMPTY


def test_the_rates_key_is_above_the_plot_not_over_the_curves(observed) -> None:
    w = observed
    # No legend inside the plot area (it hid the faults/s curve along the top): a key row
    # above it names every curve in its colour.
    assert w.plot.getPlotItem().legend is None
    key = w.rates_key.text()
    curves = [c for c in w.plot.getPlotItem().listDataItems() if c.name()]
    assert curves and all(c.name() in key for c in curves)
    for c in curves:
        assert c.opts["pen"].color().name() in key
    assert w.rates_key.geometry().bottom() <= w.plot.geometry().top()


def test_rates_vcpus_and_phases_are_computed_off_the_gui_thread(qtbot, tmp_path, monkeypatch):
    import threading

    from imemviz.io.trace import observed_stats as OS

    threads = []
    real = OS.rates

    def rates(tl, bins=200, vcpu=None):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(tl, bins, vcpu)

    monkeypatch.setattr(OS, "rates", rates)
    out = tmp_path / "o.jsonl"
    import_traces([_trace(tmp_path)], str(out), options=ImportOptions())
    w = ObservedWindow(str(out))
    qtbot.addWidget(w)
    w.show()
    try:
        qtbot.waitUntil(w.wait_drawn, timeout=WAIT_MS)
        assert threads == [False]  # once, on the engine's thread; the window only draws
        assert w.rates_key.text() and w.vcpu_box.count() == 1 + len(OS.vcpus(w.tl))
        assert w.phase_label.text().startswith("Phases:")
    finally:
        w.engine.stop()


def test_scrubbing_goes_back_in_time(qtbot, observed) -> None:
    w = observed
    first_leaf = next(
        i
        for i in range(len(w.tl))
        if w.tl.event_at(i)["fx"][:1] and w.tl.event_at(i)["fx"][0][0] == "L+"
    )
    w.go(first_leaf - 1)
    qtbot.waitUntil(w.wait_drawn, timeout=WAIT_MS)
    assert w.map.code_at(0x10) == ObservedCode.UNKNOWN
    w.go(first_leaf)
    qtbot.waitUntil(w.wait_drawn, timeout=WAIT_MS)
    assert w.map.code_at(0x10) == ObservedCode.LEAF_UNKNOWN_4K
    assert "event" in w.time_label.text()


def test_vcpu_filter_and_event_log(qtbot, observed) -> None:
    w = observed
    total = w.events.rowCount()
    assert total == len(w.tl)
    w.vcpu_box.setCurrentIndex(w.vcpu_box.findData(1))
    assert 0 < w.events.rowCount() < total
    assert {w.events.data(w.events.index(r, 2)) for r in range(w.events.rowCount())} == {"1"}


def test_import_dialog_runs_off_the_gui_thread_and_opens(qtbot, tmp_path) -> None:
    trace = _trace(tmp_path)
    out = tmp_path / "imp.jsonl"
    dlg = import_dialog(None, [trace], str(out))
    try:
        qtbot.waitUntil(lambda: dlg.result_ is not None or bool(dlg.error), timeout=WAIT_MS)
        assert dlg.error == "" and out.exists()
    finally:
        dlg.close()
        from imemviz.app import observed as mod

        for win in list(mod._OPEN_WINDOWS):
            win.close()


def test_import_dialog_cancel_leaves_nothing(qtbot, tmp_path) -> None:
    big = tmp_path / "big.trace"
    line = "CPU 0/KVM-1 [000] ..... {t:.6f}: kvm_page_fault: vcpu 0 rip 0x0 address 0x0000000000001000 error_code 0x181\n"
    with open(big, "w") as f:
        for i in range(300_000):
            f.write(line.format(t=1 + i * 1e-6))
    out = tmp_path / "never.jsonl"
    dlg = import_dialog(None, [str(big)], str(out))
    try:
        dlg.cancel()
        qtbot.waitUntil(lambda: bool(dlg.error) or dlg.result_ is not None, timeout=WAIT_MS)
        assert "cancelled" in dlg.error
        assert not out.exists()
        assert [p for p in tmp_path.iterdir() if p.name.startswith(".imemviz-")] == []
    finally:
        dlg.close()


def test_disagreement_marks_are_drawn_on_the_map_and_jump_to_their_event(qtbot, tmp_path) -> None:
    from PySide6.QtCore import QPoint, Qt

    from tests.trace.test_import import planted_trace

    trace, opts = planted_trace(tmp_path)
    out = tmp_path / "checked.jsonl"
    import_traces([trace], str(out), options=opts)
    w = ObservedWindow(str(out))
    qtbot.addWidget(w)
    w.resize(1280, 860)
    w.show()
    try:
        qtbot.waitUntil(w.wait_drawn, timeout=WAIT_MS)
        marks = w.tl.marks
        assert marks and all(m["gfn"] == 0x400 for m in marks)
        layer = w.mark_layer
        # Zoomed in on the marked page so it has a cell of its own.
        w.map.show_range(0x3F0, 0x410)
        qtbot.waitUntil(w.wait_drawn, timeout=WAIT_MS)
        assert {id(g.mark) for g in layer.glyphs} == {id(m) for m in marks}
        glyph = layer.glyphs[0]
        # The disc's leader starts at the centre of the marked page's cell.
        at = w.map.view.mapFromScene(glyph.scenePos())
        centre = w.map.gfn_pos(0x400)
        assert abs(at.x() - centre.x()) <= 1 and abs(at.y() - centre.y()) <= 1
        # The outline is around the 2M leaf's range, not a fill: the path's bounds are
        # the (display) rows of gfns 0x400..0x600, folded or not.
        r = layer.ink.path().boundingRect()
        lay = w.map.layout_
        assert r.top() == lay.cell_of(0x400)[1] and r.bottom() == lay.cell_of(0x5FF)[1] + 1
        assert layer.ink.brush().style() == Qt.NoBrush
        # Scrubbed before the marked event: no mark; a click on the disc goes to it.
        first = min(int(m["i"]) for m in marks)
        w.go(first - 1)
        qtbot.waitUntil(lambda: w._drawn_index == first - 1, timeout=WAIT_MS)
        assert layer.glyphs == [] and layer.ink.path().isEmpty()
        w.go(len(w.tl) - 1)
        qtbot.waitUntil(lambda: bool(layer.glyphs), timeout=WAIT_MS)
        glyph = layer.glyphs[0]
        # The disc is drawn in pixels (it ignores the map's zoom), beside the page.
        anchor = w.map.view.mapFromScene(glyph.scenePos())
        centre = glyph.disc().center()
        at = QPoint(anchor.x() + round(centre.x()), anchor.y() + round(centre.y()))
        qtbot.mouseMove(w.map.view.viewport(), at)
        qtbot.mouseClick(w.map.view.viewport(), Qt.LeftButton, pos=at)
        qtbot.waitUntil(lambda: w.index == int(glyph.mark["i"]), timeout=WAIT_MS)
        assert w.selection.gfn == 0x400
        assert w.table.currentIndex().row() >= 0
    finally:
        w.close()


def test_rmp_dumps_show_decoded_and_a_failure_is_marked(qtbot, tmp_path) -> None:
    """dmesg's SEV-SNP lines imported beside a trace: the event log shows what the kernel
    printed and the decoded raw entry; the RMPUPDATE failure is a marked row."""
    from imemviz.io.trace.rmp_dump import encode_raw

    lo = encode_raw(gpa=0x20000, asid=1, validated=True)
    dmesg = tmp_path / "dmesg.txt"
    dmesg.write_text(
        "[    0.000100] SEV-SNP: RMPUPDATE failed for PFN 1234, pg_level: 1, ret: 3\n"
        f"[    0.000101] SEV-SNP: PFN 0x1234, RMP entry: [{lo:#018x} - 0x0000000000000000]\n"
    )
    out = tmp_path / "o.jsonl"
    import_traces([_trace(tmp_path), str(dmesg)], str(out), options=ImportOptions())
    w = ObservedWindow(str(out))
    qtbot.addWidget(w)
    w.resize(1280, 860)
    w.show()
    try:
        qtbot.waitUntil(w.wait_drawn, timeout=WAIT_MS)
        m = w.events
        rows = {m.data(m.index(r, 3)): r for r in range(m.rowCount())}
        texts = [m.data(m.index(r, 4)) for r in range(m.rowCount())]
        dump = next(t for t in texts if t.startswith("PFN 0x1234, RMP entry"))
        assert "⇒  guest-valid: 4K gpa 0x20000 asid 1 validated" in dump
        assert "non-architectural" in dump
        failed = next(r for r in range(m.rowCount()) if texts[r].startswith("RMPUPDATE failed"))
        assert m.data(m.index(failed, 0), Qt.BackgroundRole) is not None
        assert "FAIL_INUSE" in m.data(m.index(failed, 0), Qt.ToolTipRole)
        assert "1 RMPUPDATE failures" in w.status.text()
        assert "0 disagreements" in w.status.text()
        assert "SEV-SNP" in rows
    finally:
        w.engine.stop()


def test_a_theme_change_keeps_the_observed_colours(observed) -> None:
    from imemviz.app import plot_theme

    for theme in (plot_theme.DARK, plot_theme.LIGHT):
        observed.map.apply_theme(theme)
        table = observed.map.img.lut
        for code in ObservedCode:
            # Not the simulator's table, where the observed codes are magenta.
            assert tuple(table[int(code)][:3]) != (255, 0, 255)


def test_the_map_folds_long_empty_runs_with_their_observed_names(qtbot, tmp_path) -> None:
    """The default scene as a host traces it: the 2 GiB hole and the untouched private
    memory fold into labelled bands (named as the observed legend names them: no leaf,
    not no folio), and the folded raster shows the leaves between them."""
    from imemviz import resources
    from imemviz.io.trace.kernel_export import export_recording

    trace = tmp_path / "default.trace"
    trace.write_text("\n".join(export_recording(str(resources.scene_path("default")))) + "\n")
    out = tmp_path / "o.jsonl"
    import_traces([str(trace)], str(out), options=ImportOptions(from_vm_start=True))
    w = ObservedWindow(str(out))
    qtbot.addWidget(w)
    w.resize(1280, 720)
    w.show()
    try:
        qtbot.waitUntil(w.wait_drawn, timeout=WAIT_MS)
        lay = w.map.layout_
        folds = lay.foldmap().folds
        labels = [w.map.fold_bands.label(f, lay.row_gfns) for f in folds]
        assert any("hole (no memslot)" in x for x in labels), labels
        assert any("private, no leaf" in x for x in labels), labels
        assert not any("no folio" in x for x in labels), labels
        codes = w.map._shown.codes
        assert (codes == Code.SHARED_2M).any()  # the swiotlb buffer at 0x7c000000
        assert (codes == Code.PRIVATE_4K).sum() > codes.size // 10  # legible, not slivers
    finally:
        w.engine.stop()
