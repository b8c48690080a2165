"""The step gallery for docs/app.md: every step of the protocols a user steps through with
F8, each drawn as the app draws it at that step, at 1920x1080 and 1280x720 (offscreen).

    .venv/bin/python scripts/make_step_gallery.py [OUTDIR]   # default docs/screenshots/steps
    .venv/bin/python scripts/make_step_gallery.py --list     # the protocols and steps only

The actions are a user's (through the engine, as the menus make them), then
Memory > Step through the last action (F8), or the event log's "Step through
op #N" for a scene's op, then every step of the panel, one picture each:

  conversion   default TDX scene: four accepted pages converted to shared with discard
               (the conversion: BLOCK -> TRACK -> REMOVE -> WBINVD inside the invalidation)
  accept       the same TD: a page the guest accepts (the fault: AUG, then ACCEPT)
  punch        the same TD: a hole punched under two accepted pages (gmem invalidate
               begin -> mmu invalidation -> zap -> folios freed -> end)
  demote       a TD with 2M folios and 2M S-EPT leaves: a 4K conversion inside a 2M leaf
               (BLOCK and TRACK the 2M leaf, DEMOTE, then the 4K page removed)
  snp-punch    the shipped snp-psmash scene (SEV-SNP), its hole punch (op #11): PSMASH
               of the 2M RMP entry, the page made shared, the folio freed

Files: OUTDIR/<protocol>-<NN>-<step>-<W>x<H>.png (NN from 01), 8-bit palette PNGs
(scripts/png_palette.py).  PROTOCOLS below lists each protocol's steps as
imemviz/model/protocols.py groups them; tests/test_step_gallery.py replays the
actions headless and fails when a protocol gains, loses or renames a step, so
the gallery (and docs/app.md's table of it) is regenerated with this script.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SIZES = ((1920, 1080), (1280, 720))
MB = 1 << 20
Planner = Callable[[Any], Any]  # the VM -> an imemviz.io.plans.Plan


def _plans() -> Any:
    from imemviz.io import plans

    return plans


def _accept(g: int, level: int = 1) -> Planner:
    return lambda vm: _plans().accept_and_touch(vm, g) if level == 1 else _plans().accept(g, level)


def _convert_shared(a: int, b: int) -> Planner:
    return lambda vm: _plans().convert(vm, a, b, private=False, discard=True)


def _punch(a: int, b: int) -> Planner:
    return lambda vm: _plans().punch_hole(vm, a, b)


@dataclass(frozen=True)
class Protocol:
    """One protocol of the gallery: what the user does, and the steps the panel shows."""

    slug: str
    what: str  # the action, in the docs' words
    steps: tuple[str, ...]  # the step names, as protocols.steps() groups the op's events
    before: tuple[Planner, ...] = ()  # actions first, not stepped through
    action: Planner | None = None  # stepped through with F8 (its main op: the first)
    scene_op: str = ""  # or, in a scene: the last op of this name (event log, Step through)
    dock: str = "entries"  # the tab brought forward under the map


@dataclass(frozen=True)
class Setting:
    """Where protocols run: a shipped scene, or a 2M TD; its protocols one after another."""

    name: str
    protocols: tuple[Protocol, ...] = field(default_factory=tuple)


GALLERY: tuple[Setting, ...] = (
    Setting(
        "default",
        (
            Protocol(
                "conversion",
                "Convert to shared + discard of four accepted pages (gfn 0x810-0x813)",
                (
                    "kvm_vm_set_mem_attributes",
                    "kvm_mmu_invalidate_begin",
                    "kvm_mmu_invalidate_range_add",
                    "TDH.MEM.RANGE.BLOCK",
                    "TDH.MEM.TRACK",
                    "TDH.MEM.PAGE.REMOVE",
                    "TDH.PHYMEM.PAGE.WBINVD",
                    "kvm_tdp_mmu_spte_changed",
                    "kvm_mmu_invalidate_range_add",
                    "kvm_mmu_invalidate_end",
                ),
                before=tuple(_accept(g) for g in range(0x810, 0x818)),
                action=_convert_shared(0x810, 0x814),
            ),
            Protocol(
                "accept",
                "Accept and touch a page never used (gfn 0x818): the fault AUGs it, the "
                "guest accepts it",
                (
                    "kvm_page_fault",
                    "kvm_gmem_folio_alloc",
                    "kvm_mmu_spte_requested",
                    "kvm_tdp_mmu_spte_changed",
                    "TDH.MEM.PAGE.AUG",
                    "TDG.MEM.PAGE.ACCEPT",
                ),
                action=_accept(0x818),
            ),
            Protocol(
                "punch",
                "Punch hole under two accepted private pages (gfn 0x814-0x815)",
                (
                    "kvm_gmem_fallocate",
                    "kvm_gmem_invalidate_begin",
                    "kvm_mmu_invalidate_begin",
                    "kvm_mmu_invalidate_range_add",
                    "TDH.MEM.RANGE.BLOCK",
                    "TDH.MEM.TRACK",
                    "TDH.MEM.PAGE.REMOVE",
                    "TDH.PHYMEM.PAGE.WBINVD",
                    "kvm_tdp_mmu_spte_changed",
                    "kvm_gmem_folios_free",
                    "kvm_mmu_invalidate_end",
                    "kvm_gmem_invalidate_end",
                ),
                action=_punch(0x814, 0x816),
            ),
        ),
    ),
    Setting(
        "huge",
        (
            Protocol(
                "demote",
                "On a TD with 2M folios and 2M S-EPT leaves: Convert to shared + discard of "
                "one 4K page (gfn 0x10200) inside a 2M leaf",
                (
                    "kvm_vm_set_mem_attributes",
                    "kvm_mmu_invalidate_begin",
                    "kvm_mmu_invalidate_range_add",
                    "TDH.MEM.RANGE.BLOCK",
                    "TDH.MEM.TRACK",
                    "TDH.MEM.PAGE.DEMOTE",
                    "kvm_tdp_mmu_spte_changed",
                    "TDH.MEM.RANGE.BLOCK",
                    "TDH.MEM.TRACK",
                    "TDH.MEM.PAGE.REMOVE",
                    "TDH.PHYMEM.PAGE.WBINVD",
                    "kvm_tdp_mmu_spte_changed",
                    "kvm_mmu_invalidate_range_add",
                    "kvm_mmu_invalidate_end",
                ),
                before=tuple(_accept(g, 2) for g in range(0x10000, 0x10000 + 4 * 512, 512)),
                action=_convert_shared(0x10200, 0x10201),
            ),
        ),
    ),
    Setting(
        "snp-psmash",
        (
            Protocol(
                "snp-punch",
                "The snp-psmash scene (SEV-SNP), its hole punch of one 4K page inside a 2M "
                "RMP entry (op #11)",
                (
                    "kvm_gmem_fallocate",
                    "kvm_gmem_invalidate_begin",
                    "kvm_mmu_invalidate_begin",
                    "kvm_mmu_invalidate_range_add",
                    "psmash",
                    "rmp_make_shared",
                    "clflush_cache_range",
                    "kvm_gmem_folio_free",
                    "kvm_mmu_invalidate_end",
                    "kvm_gmem_invalidate_end",
                ),
                scene_op="fallocate",
                dock="rmp",
            ),
        ),
    ),
)


def protocols() -> list[Protocol]:
    return [p for s in GALLERY for p in s.protocols]


def step_slug(name: str) -> str:
    """A step's name in a file name: TDH.MEM.RANGE.BLOCK -> block,
    kvm_mmu_invalidate_begin -> mmu-invalidate-begin."""
    if name.startswith(("TDH.", "TDG.")):
        return name.rsplit(".", 1)[1].lower()
    return name.removeprefix("kvm_").replace("_", "-").lower()


def file_name(p: Protocol, k: int, size: tuple[int, int]) -> str:
    return f"{p.slug}-{k + 1:02d}-{step_slug(p.steps[k])}-{size[0]}x{size[1]}.png"


def huge_config() -> dict[str, Any]:
    return {"type": "tdx", "host_memory": "4G", "gmem_max_order": 9, "tdx_private_max_level": "2M"}


def huge_session(annotate: Any = None) -> Any:
    """The 2M TD of docs/app.md's huge-* pictures: QEMU's layout, 1 GiB of RAM."""
    from imemviz.io.session import Session

    s = Session.new(huge_config())
    s.annotate = annotate
    s.apply_group(_plans().qemu_layout("tdx", 1024 * MB), "layout")
    return s


def scene_op(session: Any, name: str) -> int:
    return max(i for i, o in enumerate(session.ops) if name == o.NAME)


# ------------------------------------------------------------------ headless
def headless_steps() -> dict[str, list[str]]:
    """Each protocol's step names, from the engine without Qt: the actions applied to the
    setting's session, the stepped op's events grouped by protocols.steps()."""
    from imemviz import resources
    from imemviz.io.session import Session
    from imemviz.model.protocols import steps

    out: dict[str, list[str]] = {}
    for setting in GALLERY:
        events: dict[int, list[Any]] = {}

        def keep(
            vm: Any, index: int, op: Any, r: Any, evs: Sequence[Any], events: dict = events
        ) -> None:
            events[index] = list(evs)

        if setting.name == "huge":
            s = huge_session(keep)
        elif setting.name == "default":
            s = Session.scene("default")
            s.annotate = keep
        else:
            s = Session.open(str(resources.scene_path(setting.name)), annotate=keep)
        for p in setting.protocols:
            for plan in p.before:
                s.apply_group(list(plan(s.vm).ops))
            if p.action is not None:
                first = len(s.ops)
                s.apply_group(list(p.action(s.vm).ops))
                op = first
            else:
                op = scene_op(s, p.scene_op)
            out[p.slug] = [st.name for st in steps(events[op])]
    return out


# ------------------------------------------------------------------ rendering
def _window(app: Any, size: tuple[int, int]) -> Any:
    from PySide6.QtCore import QSettings, Qt

    from imemviz.app.window import MainWindow
    from imemviz.app.worker import Engine

    tmp = tempfile.mkdtemp(prefix="imemviz-steps-")
    os.environ["IMEMVIZ_CONFIG_DIR"] = tmp
    engine = Engine()
    engine.start()
    w = MainWindow(engine, QSettings(os.path.join(tmp, "s.ini"), QSettings.Format.IniFormat))
    w.resize(*size)
    w.show()
    w.resizeDocks([w.docks["log"]], [int(size[1] * 0.26)], Qt.Orientation.Vertical)
    return w


def _setting(app: Any, w: Any, setting: Setting) -> None:
    from qt_wait import wait

    from imemviz import resources

    engine = w.engine
    if setting.name == "default":
        engine.load_scene("default")
    elif setting.name == "huge":
        engine.set_session(huge_session())
    else:
        engine.open(str(resources.scene_path(setting.name)))
    wait(app, lambda: engine.idle)
    wait(app, w.wait_drawn)


def _step_through(app: Any, w: Any, p: Protocol) -> int:
    """Act, then open the protocol in the step panel as a user would; returns the op."""
    from qt_wait import pump, wait

    engine = w.engine
    panes = w.panes2
    for plan in p.before:
        engine.submit(plan)
    if p.action is not None:
        engine.submit(p.action)
    wait(app, lambda: engine.idle)
    wait(app, w.wait_drawn)
    pump(app, 0.3)
    if p.action is not None:
        panes.step_action.trigger()  # Memory > Step through the last action (F8)
    else:
        panes.step_op(scene_op(engine.worker.session, p.scene_op))
    names = tuple(st.name for st in panes.stepper.steps)
    if names != p.steps:
        raise SystemExit(f"{p.slug}: the panel shows {names}, PROTOCOLS says {p.steps}")
    return int(panes.stepper.op)


def _shoot(app: Any, w: Any, p: Protocol, op: int, size: tuple[int, int], out: str) -> list[str]:
    import png_palette
    from qt_wait import pump, wait

    st = w.panes2.stepper
    written = []
    for k in range(len(p.steps)):
        st.go(k)

        def shown(k: int = k) -> bool:
            sh = w.step_view.shown
            return sh is not None and sh.op == op and sh.step == k

        wait(app, shown)
        wait(app, w.wait_drawn)
        w.docks[p.dock].raise_()
        pump(app, 0.5)
        wait(app, w.wait_drawn)
        path = os.path.join(out, file_name(p, k, size))
        png_palette.save(w.grab(), path)
        written.append(path)
        print(path, flush=True)
    st.presentRequested.emit()
    wait(app, lambda: w.step_view.shown is None or w.step_view.shown.op is None)
    return written


def one_size(app: Any, size: tuple[int, int], out: str, only: set[str]) -> list[str]:
    w = _window(app, size)
    written: list[str] = []
    try:
        for setting in GALLERY:
            if only and not only & {p.slug for p in setting.protocols}:
                continue
            _setting(app, w, setting)
            for p in setting.protocols:
                op = _step_through(app, w, p)
                if not only or p.slug in only:
                    written += _shoot(app, w, p, op, size, out)
    finally:
        w.close()
        w.engine.stop()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=os.path.join("docs", "screenshots", "steps"))
    ap.add_argument("--list", action="store_true", help="print the protocols and steps")
    ap.add_argument("--only", action="append", default=[], help="a protocol's slug")
    ap.add_argument("--size", action="append", default=[], help="WxH (default: both)")
    ns = ap.parse_args(argv)
    if ns.list:
        for p in protocols():
            for k in range(len(p.steps)):
                print(p.slug, k + 1, p.steps[k], file_name(p, k, SIZES[1]))
        return 0
    from PySide6.QtWidgets import QApplication

    sizes = [tuple(int(v) for v in s.split("x")) for s in ns.size] or list(SIZES)
    os.makedirs(ns.out, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    for size in sizes:
        one_size(app, (size[0], size[1]), ns.out, set(ns.only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
