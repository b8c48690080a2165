"""Screenshots of the part-2 panes for docs/app.md (offscreen, 1600x1000).

    .venv/bin/python scripts/make_pane_screenshots.py [OUTDIR]   # default docs/screenshots

On the default scene (after a few accepted pages and a conversion with discard):
  panes-events.png    the event log, stepping through the conversion's zap
  panes-entries.png   the S-EPT / EPT entries with the level summary
  panes-folios.png    the host pfn space, a folio selected
  panes-counters.png  the counters over the ops
On a TD with 2M folios and 2M S-EPT leaves (gmem_max_order 9, tdx_private_max_level 2M):
  huge-folios.png     the guest_memfd offset space: 2M folios, a split one, a hole
  huge-entries.png    the entries: 2M leaves next to 4K ones after a conversion
  huge-events.png     stepping through that conversion: the DEMOTE of the 2M leaf
  huge-counters.png   the counters over those ops
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qt_wait import pump as _pump
from qt_wait import wait as _wait

SIZE = (1600, 1000)
MB = 1 << 20


def default_actions(engine) -> None:
    """Actions as a user would make them (through the engine: the counters see each op)."""
    from imemviz.io import plans

    for g in range(0x810, 0x818):
        engine.submit(lambda vm, g=g: plans.accept_and_touch(vm, g))
    engine.submit(lambda vm: plans.convert(vm, 0x810, 0x814, private=False, discard=True))
    engine.submit(lambda vm: plans.guest_access(0x811, write=True, value=0x11))
    engine.submit(lambda vm: plans.allocate(vm, 0x820, 0x830))
    for g in range(0x840, 0x848):
        engine.submit(lambda vm, g=g: plans.accept_and_touch(vm, g))
    engine.submit(lambda vm: plans.punch_hole(vm, 0x820, 0x824))
    engine.submit(lambda vm: plans.memory_failure(vm, 0x846))


def huge_session():
    from imemviz.io import plans
    from imemviz.io.session import Session

    s = Session.new(
        {"type": "tdx", "host_memory": "4G", "gmem_max_order": 9, "tdx_private_max_level": "2M"}
    )
    s.apply_group(plans.qemu_layout("tdx", 1024 * MB), "layout")
    return s


def huge_actions(engine) -> None:
    """2M accepts, 4K accepts, preallocation, a 4K conversion inside a 2M leaf (DEMOTE),
    a hole punch and a memory error, each through the engine (the counters see them)."""
    from imemviz.io import plans
    from imemviz.model import ops as O

    for g in range(0x10000, 0x10000 + 16 * 512, 512):  # 16 huge pages accepted at 2M
        engine.apply_ops([O.GuestAccept(gpa=g << 12, level=2)])
    for g in range(0x20000, 0x20020):  # 4K accepts inside one 2M range
        engine.apply_ops([O.GuestAccept(gpa=g << 12)])
    engine.submit(lambda vm: plans.allocate(vm, 0x30000, 0x34000))  # preallocated 2M folios
    engine.submit(lambda vm: plans.punch_hole(vm, 0x32000, 0x32400))
    engine.submit(lambda vm: plans.memory_failure(vm, 0x10400))
    engine.submit(lambda vm: plans.convert(vm, 0x10200, 0x10201, private=False, discard=True))


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"
    os.makedirs(out, exist_ok=True)
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtWidgets import QApplication

    from imemviz.app.panes.folios import PFN_MODE
    from imemviz.app.window import MainWindow
    from imemviz.app.worker import Engine

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    engine = Engine()
    engine.start()
    w = MainWindow(
        engine, QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.IniFormat)
    )
    w.resize(*SIZE)
    w.show()
    p = w.panes2
    p.feed.always = True

    def show(dock: str, height: int = 470) -> None:
        w.docks[dock].raise_()
        w.resizeDocks([w.docks[dock]], [height], Qt.Vertical)
        _pump(app)

    def shot(name: str) -> None:
        _pump(app, 0.5)
        w.grab().save(os.path.join(out, name))
        print("wrote", name)

    try:
        engine.load_scene("default")
        _wait(app, lambda: w.wait_drawn() and p.folios.spaces is not None)
        default_actions(engine)
        _wait(app, lambda: engine.idle and w.wait_drawn())
        _pump(app)
        w.map.show_range(0x800, 0x840)
        # The conversion with discard: step to its S-EPT removal.
        ops = p.events.model.op_first
        conv = max(
            op
            for op, pos in ops.items()
            if p.events.model.events[pos][1] == "kvm_vm_set_mem_attributes"
        )
        p.step_op(conv - p.events.model.base)  # op_first is keyed by the VM's op number
        names = [st.name for st in p.stepper.steps]
        p.stepper.go(names.index("TDH.MEM.PAGE.REMOVE"))
        w.resizeDocks([w.docks["stepper"]], [360], Qt.Vertical)
        show("event_log")
        shot("panes-events.png")
        w.docks["legend"].raise_()
        w.selection.set_gfn(0x815)
        show("entries")
        shot("panes-entries.png")
        show("folios")
        p.folios.set_mode(PFN_MODE)
        inode = engine.worker.session.vm.files[3].inode
        folio = inode.folio_at(0x816)
        p.folios.set_zoom(8, folio.pfn)
        p.folios.click_page(folio.pfn)
        shot("panes-folios.png")
        show("counters")
        shot("panes-counters.png")

        engine.set_session(huge_session())
        _wait(app, lambda: w.wait_drawn() and engine.idle)
        huge_actions(engine)
        _wait(app, lambda: w.wait_drawn() and engine.idle)
        _pump(app, 1.0)
        # The 4K conversion inside a 2M leaf: step to the DEMOTE that splits it.
        p.step_action.trigger()
        names = [st.name for st in p.stepper.steps]
        if "kvm_vm_set_mem_attributes" not in names:  # the discard's punch came last
            ops = p.events.model.op_first
            conv = max(
                op
                for op, pos in ops.items()
                if p.events.model.events[pos][1] == "kvm_vm_set_mem_attributes"
            )
            p.step_op(conv - p.events.model.base)  # op_first is keyed by the VM's op number
            names = [st.name for st in p.stepper.steps]
        if "TDH.MEM.PAGE.DEMOTE" in names:
            p.stepper.go(names.index("TDH.MEM.PAGE.DEMOTE"))
        w.resizeDocks([w.docks["stepper"]], [360], Qt.Vertical)
        show("event_log")
        shot("huge-events.png")
        show("counters")
        shot("huge-counters.png")
        w.docks["legend"].raise_()
        show("folios")
        p.folios.set_mode(3)
        p.folios.set_zoom(3, 0x10000)
        p.folios.click_page(0x10000)
        shot("huge-folios.png")
        show("entries")
        w.selection.set_gfn(0x10201)
        # The address tree: the 1G region, its 2M regions, the split one's 4K leaves.
        top = p.entries.tree.topLevelItem(0)
        top.child(3).setExpanded(False)
        addr = top.child(top.childCount() - 1)
        addr.setExpanded(True)
        addr.child(0).setExpanded(True)
        r1 = addr.child(0)
        for k in range(r1.childCount()):
            if r1.child(k).text(0) == "2M @ gfn 0x10200":
                r1.child(k).setExpanded(True)
        p.entries.tree.resizeColumnToContents(0)
        shot("huge-entries.png")
    finally:
        w.close()
        engine.stop()


if __name__ == "__main__":
    main()
