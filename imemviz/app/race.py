"""The fault-vs-invalidation race as a guided action: hold a fault, invalidate, resume.

Each step is a plan from `imemviz.io.plans.race_step`, applied like any action
(so it is recorded and undoable); the dialog explains what the kernel does at
that step and shows what the step's ops returned.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from imemviz.app.records import OpRecord, Snapshot
from imemviz.app.selection import SelectionModel
from imemviz.app.worker import Engine
from imemviz.io.plans import RACE_STEPS, race_step

HOW = (
    ("convert", "convert the page to the other attribute (KVM_SET_MEMORY_ATTRIBUTES)"),
    ("punch", "punch the guest_memfd page (fallocate PUNCH_HOLE)"),
    ("dontneed", "drop the shared page (madvise DONTNEED: mmu notifier)"),
)

WHAT = {
    "hold": (
        "Step 1 of 3: hold a fault",
        "vCPU 0 accesses gpa {gpa}. KVM's fault path (kvm_mmu_faultin_pfn) snapshots "
        "mmu_invalidate_seq (now {seq}), resolves the pfn (kvm_gmem_get_pfn for a private "
        "gfn, GUP of the hva for a shared one) and would now take mmu_lock to install the "
        "leaf. The model stops it right there: the op returns in_flight.",
    ),
    "invalidate": (
        "Step 2 of 3: invalidate while the fault holds its pfn",
        "The VMM runs an invalidation over the page: kvm_mmu_invalidate_begin() "
        "raises mmu_invalidate_in_progress, the range is zapped and the primary "
        "change made (attribute stored / folio freed / host page dropped), then "
        "kvm_mmu_invalidate_end() bumps mmu_invalidate_seq. The pfn the held fault "
        "took may now be stale.",
    ),
    "resume": (
        "Step 3 of 3: resume the fault",
        "The fault takes mmu_lock and calls mmu_invalidate_retry_gfn(): "
        "mmu_invalidate_seq moved since its snapshot, so installing its pfn could map "
        "freed or converted memory. It returns RET_PF_RETRY; the vCPU re-executes the "
        "access and faults again from the start, against the new state (ret.retried).",
    ),
}


class RaceDialog(QDialog):
    stepDone = Signal(str)

    def __init__(
        self, engine: Engine, selection: SelectionModel, note=None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("race")
        self.setWindowTitle("Fault vs invalidation race")
        self.setModal(False)
        self.engine, self.selection = engine, selection
        self._note = note or (lambda text, level="step": None)
        self.step = 0
        self.gfn: int | None = selection.gfn
        self._active: str | None = None
        self.records: list[OpRecord] = []
        self.page = QLabel()
        self.page.setObjectName("race_page")
        self.use_sel = QPushButton("Use the selected page")
        self.use_sel.setToolTip("Run the race on the page selected on the map")
        self.use_sel.clicked.connect(self._use_selection)
        self.how = QComboBox()
        self.how.setObjectName("race_how")
        for key, text in HOW:
            self.how.addItem(text, key)
        self.how.setToolTip("Which invalidation races with the fault in step 2")
        self.text = QTextBrowser()
        self.text.setObjectName("race_text")
        self.next = QPushButton()
        self.next.setObjectName("race_next")
        self.next.setToolTip("Run the next step (its ops are applied and recorded)")
        self.next.clicked.connect(self.run_next)
        self.restart = QPushButton("Start over")
        self.restart.setToolTip("Back to step 1 (undo removes steps already applied)")
        self.restart.clicked.connect(self.reset)
        top = QHBoxLayout()
        top.addWidget(self.page, 1)
        top.addWidget(self.use_sel)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.restart)
        buttons.addWidget(self.next)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.how)
        lay.addWidget(self.text, 1)
        lay.addLayout(buttons)
        engine.opApplied.connect(self._on_op)
        engine.snapshotReady.connect(self._on_snapshot)
        self.resize(620, 460)
        self.reset()

    def _use_selection(self) -> None:
        self.gfn = self.selection.gfn
        self.reset()

    def reset(self) -> None:
        self.step = 0
        self._active = None
        self.text.setHtml(self._intro())
        self._update()

    def _intro(self) -> str:
        return (
            "<p>A page fault resolves its pfn <i>before</i> it takes mmu_lock. If an "
            "invalidation (a conversion, a hole punch, an munmap) runs in between, the pfn "
            "may be stale. KVM catches this with <b>mmu_invalidate_seq</b>: the fault "
            "snapshots it first and re-checks it under mmu_lock. Step through it.</p>"
        )

    def _update(self) -> None:
        self.page.setText(
            "page: none selected" if self.gfn is None else f"page: gpa {self.gfn << 12:#x}"
        )
        self.next.setEnabled(
            self.gfn is not None and self.step < len(RACE_STEPS) and self._active is None
        )
        self.next.setText(
            "Done"
            if self.step >= len(RACE_STEPS)
            else WHAT[RACE_STEPS[self.step]][0].split(": ", 1)[1].capitalize()
        )
        self.how.setEnabled(self.step <= 1)

    def run_next(self) -> None:
        if self.gfn is None or self.step >= len(RACE_STEPS) or self._active is not None:
            return
        step = RACE_STEPS[self.step]
        gfn, how = self.gfn, self.how.currentData()
        title, body = WHAT[step]
        snap = self.engine.snapshot
        seq = snap.stats.get("mmu_invalidate_seq") if snap is not None else "?"
        text = body.format(gpa=f"{gfn << 12:#x}", seq=seq)
        self.text.append(f"<h4>{html.escape(title)}</h4><p>{html.escape(text)}</p>")
        self._note(f"{title}: {text}", "step")
        self._active = step
        self.records = []
        self.engine.submit(lambda vm: race_step(vm, step, gfn, how), f"race: {step}")
        self.step += 1
        self._update()

    def _on_op(self, rec: OpRecord) -> None:
        if self._active is None:
            return
        self.records.append(rec)
        line = rec.line
        ret = {
            k: v
            for k, v in dict(line["ret"]).items()
            if k in ("in_flight", "retried", "value", "level", "exit")
        }
        res = "ok" if rec.ok else line["errno"]
        self.text.append(
            f"<p style='color:#555'>→ {html.escape(rec.op.NAME)}: {res} "
            f"{html.escape(str(ret) if ret else '')}</p>"
        )

    def _on_snapshot(self, snap: Snapshot) -> None:
        if self._active is None:
            return
        step, self._active = self._active, None
        seq = snap.stats.get("mmu_invalidate_seq")
        self.text.append(f"<p style='color:#555'>mmu_invalidate_seq is now {seq}.</p>")
        held = any(dict(r.line["ret"]).get("in_flight") for r in self.records)
        if step == "hold" and not held:
            first = self.records[0] if self.records else None
            why = (
                "the page is already mapped, so the access completed without a fault"
                if first is not None and first.ok
                else f"the access ended at once ({first.line['errno'] if first else 'no op'})"
            )
            verdict = (
                f"No fault is held: {why}. Pick a page with no mapping (select it "
                "on the map, then 'Use the selected page')."
            )
            self.text.append(f"<p><b>{html.escape(verdict)}</b></p>")
            self._note(verdict, "step")
            self.step = 0
        if step == "resume":
            retried = any(dict(r.line["ret"]).get("retried") for r in self.records)
            verdict = (
                "The fault was retried, as the kernel does."
                if retried
                else "The fault was not retried: the invalidation did not cover this page "
                "(nothing was mapped or bound there). Try another page or another "
                "invalidation."
            )
            self.text.append(f"<p><b>{html.escape(verdict)}</b></p>")
            self._note(verdict, "step")
        self._update()
        self.stepDone.emit(step)
