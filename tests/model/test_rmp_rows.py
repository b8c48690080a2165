"""model/rmp_rows.py (the RMP pane's rows) and Changes.rmp (its change marks)."""

from __future__ import annotations

from imemviz import resources
from imemviz.io.replay import Timeline
from imemviz.model.changes import op_changes
from imemviz.model.rmp_rows import FIRMWARE, GUEST_INVALID, GUEST_VALID, HYPERVISOR, rmp_rows


def _run(name: str, upto: str | None = None):
    tl = Timeline.load(resources.scene_path(name))
    vm = tl.start_vm()
    out = []
    for op in tl.ops:
        r = vm.apply(op)
        out.append((op.NAME, op_changes(vm, op, r, vm.last_events)))
    return vm, out


def test_rows_are_the_rmp_runs_and_the_unassigned_folio_pages() -> None:
    vm, _ = _run("snp-unvalidated")
    rows = rmp_rows(vm)
    assigned = list(vm.snp.rmp.runs())
    got = [(int(p), int(n)) for p, n, s in zip(rows.pfn, rows.count, rows.state, strict=True) if s]
    assert got == [(r.pfn, r.count) for r in assigned]
    states = set(rows.state.tolist())
    assert {FIRMWARE, GUEST_VALID, GUEST_INVALID} <= states
    # A gfn range maps to the rows behind it and back.
    for r in range(len(rows)):
        g = int(rows.gfn[r])
        if g >= 0 and not rows.vmsa[r]:
            assert r in rows.rows_of_gfns(g, g + 1).tolist()


def test_a_converted_page_is_a_hypervisor_row_with_its_bound_gfn() -> None:
    """A guest_memfd folio page the RMP gives back to the hypervisor (rmp_make_shared())
    while its folio stays is listed as a hypervisor row, with the gfn its file offset is
    bound at (so a map selection still finds it)."""
    vm, _ = _run("snp-launch")
    row = next(r for r in vm.snp.rmp.runs() if not r.flags & 16)  # not the VMSA
    vm.snp.rmp.make_shared(row.pfn, 1)
    rows = rmp_rows(vm)
    (i,) = rows.rows_of_pfns(row.pfn, row.pfn + 1).tolist()
    assert rows.state[i] == HYPERVISOR and rows.count[i] == 1
    assert rows.gfn[i] == row.gfn  # through the guest_memfd binding, not the RMP


def test_changes_name_the_rmp_pfns_an_op_changed() -> None:
    vm, ch = _run("snp-psmash")
    by = {}
    for name, c in ch:
        by.setdefault(name, []).append(c.rmp)
    # SNP_LAUNCH_FINISH: the VMSA page; PVALIDATE 2M: the whole 2M entry; the punch:
    # PSMASH over the 2M range (rmp_make_shared of one page inside it).
    assert len(by["snp_launch_finish"][0]) == 1
    ((a, b),) = by["guest_pvalidate"][0]
    assert b - a == 512 and a % 512 == 0
    assert by["fallocate"][0] == ((a, b),)
    assert by["guest_access"] == [(), ()]
    assert not rmp_rows(vm).size_2m.any()
