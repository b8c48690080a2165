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


def test_hypervisor_pieces_match_a_page_by_page_reading() -> None:
    """The vectorised folio-spans-minus-assigned-runs against a per-pfn reference, on
    random spans (bound and unbound) and assigned runs."""
    import random

    import numpy as np

    from imemviz.model.rmp_rows import _hypervisor_pieces

    rng = random.Random(7)
    for _ in range(200):
        spans, pfn = [], rng.randrange(0, 40)
        for _k in range(rng.randrange(0, 6)):
            n = rng.randrange(1, 30)
            spans.append((pfn, pfn + n, rng.choice([-1, rng.randrange(0, 1000)])))
            pfn += n + rng.randrange(0, 10)
        runs, p = [], rng.randrange(0, 20)
        for _k in range(rng.randrange(0, 6)):
            n = rng.randrange(1, 20)
            runs.append((p, p + n))
            p += n + rng.randrange(1, 15)
        sa = np.asarray([a for a, _ in runs], np.int64)
        sb = np.asarray([b for _, b in runs], np.int64)
        lo, cnt, g = _hypervisor_pieces(spans, sa, sb)
        got = {}
        for a, n, gg in zip(lo.tolist(), cnt.tolist(), g.tolist(), strict=True):
            for k in range(n):
                got[a + k] = -1 if gg < 0 else gg + k
        want = {}
        for a, b, gg in spans:
            for q in range(a, b):
                if not any(x <= q < y for x, y in runs):
                    want[q] = -1 if gg < 0 else gg + q - a
        assert got == want
