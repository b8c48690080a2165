"""model/step_state.py: the state after each protocol step of an op."""

from __future__ import annotations

import pytest

from imemviz import resources
from imemviz.io import plans
from imemviz.io.replay import Timeline
from imemviz.io.session import Session, deepcopy_vm
from imemviz.model.mmu import BLOCKED, MAPPED, PENDING
from imemviz.model.protocols import steps
from imemviz.model.raster import Code, guest_extent, step_function
from imemviz.model.rmp import SIZE_2M
from imemviz.model.step_state import StepReplayer
from imemviz.model.units import LEVEL_2M, LEVEL_4K

MB = 1 << 20


def replayer(s: Session, plan) -> tuple[StepReplayer, list]:
    before = deepcopy_vm(s.vm)
    s.apply_group(plan.ops[:1], plan.label)
    events = list(s.vm.last_events)
    st = steps(events)
    return StepReplayer(before, s.vm, events, st, deepcopy_vm), st


def td() -> Session:
    s = Session.new({"type": "tdx", "host_memory": "1G"})
    s.apply_group(plans.qemu_layout("tdx", 64 * MB), "layout")
    return s


def test_zap_steps_block_then_remove() -> None:
    s = td()
    for g in (0x10, 0x11, 0x12):
        s.apply_group(plans.accept_and_touch(s.vm, g).ops)
    r, st = replayer(s, plans.convert(s.vm, 0x10, 0x13, private=False, discard=True))
    names = [x.name for x in st]
    k_block, k_remove = names.index("TDH.MEM.RANGE.BLOCK"), names.index("TDH.MEM.PAGE.REMOVE")
    before = r.state(-1)
    assert all(before.vm.private.lookup(g).state == MAPPED for g in (0x10, 0x11, 0x12))
    at_block = r.state(k_block)
    assert at_block.exact
    assert [at_block.vm.private.lookup(g).state for g in (0x10, 0x11, 0x12)] == [BLOCKED] * 3
    # The attribute is stored at the invalidation's end: still private at the BLOCK step,
    # so the map draws those leaves BLOCKED.
    assert at_block.vm.attr_private(0x11)
    ext = 0x40
    b, c = step_function(at_block.vm, 0, ext)
    assert all(c[(b[:-1] <= g).nonzero()[0][-1]] == Code.BLOCKED for g in (0x10, 0x11, 0x12))
    assert at_block.in_progress and at_block.in_progress[0][0] <= 0x10  # invalidation open
    at_remove = r.state(k_remove)
    assert all(at_remove.vm.private.lookup(g) is None for g in (0x10, 0x11, 0x12))
    # Back again: rebuilt from the state before.
    assert r.state(k_block).vm.private.lookup(0x11).state == BLOCKED
    end = r.state(len(st) - 1)
    assert not end.in_progress and not end.vm.attr_private(0x11)


def test_fault_steps_aug_pending_then_accept_mapped() -> None:
    s = td()
    r, st = replayer(s, plans.accept(0x20))
    names = [x.name for x in st]
    aug, acc = names.index("TDH.MEM.PAGE.AUG"), names.index("TDG.MEM.PAGE.ACCEPT")
    assert r.state(aug - 1).vm.private.lookup(0x20) is None
    assert r.state(aug).vm.private.lookup(0x20).state == PENDING
    assert r.state(acc).vm.private.lookup(0x20).state == MAPPED


def test_punch_steps_folios_present_then_freed() -> None:
    s = td()
    s.apply_group(plans.allocate(s.vm, 0x30, 0x34).ops)
    r, st = replayer(s, plans.punch_hole(s.vm, 0x30, 0x34))
    # The four folios fallocated together leave as one run (kvm_gmem_folios_free).
    free = [x.name for x in st].index("kvm_gmem_folios_free")
    inode = r.state(free - 1).vm.files[3].inode
    assert all(inode.folio_at(g) is not None for g in range(0x30, 0x34))
    after = r.state(free).vm.files[3].inode
    assert all(after.folio_at(g) is None for g in range(0x30, 0x34))
    assert inode.folio_at(0x34) is after.folio_at(0x34) is None


def test_punch_inside_a_huge_folio_steps_to_the_split() -> None:
    """An 8K punch in a 2M folio: at the free step the folio is split, its other pages
    stay as 4K folios (truncate_inode_partial_folio())."""
    s = Session.new({"type": "sw_protected", "host_memory": "1G", "gmem_max_order": 9})
    s.apply_group(plans.qemu_layout("sw_protected", 64 << 20))
    s.apply_group(plans.allocate(s.vm, 0x200, 0x400).ops)
    r, st = replayer(s, plans.punch_hole(s.vm, 0x210, 0x212))
    free = [x.name for x in st].index("kvm_gmem_folios_free")
    before = r.state(free - 1).vm.files[3].inode.folio_at(0x210)
    assert before is not None and before.order == 9
    inode = r.state(free).vm.files[3].inode
    assert inode.folio_at(0x210) is None and inode.folio_at(0x211) is None
    assert inode.folio_at(0x20F).order == 0 and inode.folio_at(0x212).order == 0
    assert inode.folio_at(0x212).pfn == before.pfn + 0x12


def _fingerprint(vm) -> tuple:
    ext = guest_extent(vm, 512)
    b, c = step_function(vm, 0, ext)
    rmp = None
    if vm.snp is not None:  # the RMP pane's rows, and what the finish changed
        rmp = (list(vm.snp.rmp.runs()), vm.snp.launched, vm.snp.vmsa_pfn)
    return b.tobytes(), c.tobytes(), rmp


@pytest.mark.parametrize("name", resources.scene_names())
def test_all_steps_of_every_scene_op_give_the_state_after(name) -> None:
    tl = Timeline.load(resources.scene_path(name))
    vm = tl.start_vm()
    exact = total = 0
    for k, op in enumerate(tl.ops):
        before = deepcopy_vm(vm) if k < 300 or k % 40 == 0 else None
        vm.apply(op)
        if before is None or not vm.last_events:
            continue
        st = steps(vm.last_events)
        r = StepReplayer(before, vm, vm.last_events, st, deepcopy_vm)
        end = r.state(len(st) - 1)
        total += 1
        if end.exact:
            exact += 1
            assert _fingerprint(end.vm) == _fingerprint(vm), f"{name} op #{k} {op.NAME}"
    # Only memslot and file changes (created, deleted, closed) are not replayed.
    assert exact >= total * 0.6, (exact, total)


def test_snp_psmash_step_splits_the_2m_rmp_entry() -> None:
    """snp-psmash's hole punch: sev_gmem_invalidate() PSMASHes the 2M RMP entry
    (snp_rmptable_psmash()) before rmp_make_shared() of the one 4K page: one 2M entry
    before the PSMASH step, 512 4K entries at it, the punched page shared after."""
    tl = Timeline.load(resources.scene_path("snp-psmash"))
    vm = tl.start_vm()
    for op in tl.ops:
        before = deepcopy_vm(vm)
        vm.apply(op)
        if any(ev[1] == "psmash" for ev in vm.last_events):
            break
    else:
        raise AssertionError("no psmash in snp-psmash")
    st = steps(vm.last_events)
    r = StepReplayer(before, vm, vm.last_events, st, deepcopy_vm)
    k = [x.name for x in st].index("psmash")
    head = next(e[2] for e in vm.last_events if e[1] == "psmash")
    pre = r.state(k - 1)
    assert pre.exact
    runs = list(pre.vm.snp.rmp.runs(head, head + 512))
    assert len(runs) == 1 and runs[0].count == 512 and runs[0].flags & SIZE_2M
    assert pre.vm.snp.rmp.lookup(head + 3).level == LEVEL_2M
    at = r.state(k)
    assert at.exact
    e = at.vm.snp.rmp.lookup(head + 3)
    assert e is not None and e.level == LEVEL_4K and e.validated  # PSMASH keeps Validated
    runs = list(at.vm.snp.rmp.runs(head, head + 512))
    assert sum(x.count for x in runs) == 512 and not any(x.flags & SIZE_2M for x in runs)
    # The rmp_make_shared step after it: the punched page (gpa 0x203000) is the host's.
    end = r.state(len(st) - 1)
    assert end.vm.snp.rmp.lookup(head + 3) is None
    assert end.vm.snp.rmp.lookup(head + 2).level == LEVEL_4K
