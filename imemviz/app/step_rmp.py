"""The RMP's part in a stepped protocol (SEV-SNP): what each step does to the RMP.

An SNP action (a conversion, a punch hole, a PSMASH on an RMP fault, the launch)
changes the RMP as well as the NPT: RMPUPDATE makes host pages guest-owned or
gives them back, PSMASH splits a 2M entry, the firmware's launch commands and the
guest's PVALIDATE change their state.  The step panel narrates the kernel steps;
this adds, under the step's text, which RMP entries the step changes ("RMP:
RMPUPDATE pfn 0x1a00 -> guest-owned, gpa 0x200000, 2M") or, at the protocol's
other steps, at which steps the RMP changes; a link brings the RMP (SEV-SNP) tab
forward, and F8 after an action whose protocol changes the RMP brings that tab
forward itself (the RMP pane draws the RMP at the step: step_view.py).

`rmp_lines` and `rmp_steps` are Qt-free (tested headless); `install` wires the
step panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from imemviz.model.events import format_event
from imemviz.model.protocols import Step

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow

# Events that change an RMP entry (the others of the SNP group only read it or flush).
RMP_CHANGES: dict[str, str] = {
    "rmp_make_private": "RMPUPDATE: the page becomes guest-owned",
    "rmp_make_shared": "RMPUPDATE: the pages go back to the hypervisor",
    "psmash": "PSMASH: the 2M entry becomes 512 4K entries",
    "kvm_rmp_fault": "RMP fault: KVM PSMASHes the 2M entry",
    "SNP_LAUNCH_UPDATE": "the firmware makes the page Pre-Guest (validated, immutable)",
    "SNP_PAGE_RECLAIM": "the firmware gives the page back",
    "SNP_LAUNCH_FINISH": "Pre-Guest pages become Guest-Valid",
    "pvalidate": "PVALIDATE: the guest validates or rescinds its page",
}
MAX_LINES = 4  # a step of hundreds of RMPUPDATEs names its first ones and counts the rest
LINK = "#rmp"


def rmp_lines(events: Sequence[tuple], step: Step) -> list[str]:
    """What `step` does to the RMP, one plain line per event (at most MAX_LINES, then a
    count); empty when the step changes no RMP entry."""
    evs = [events[p] for p in step.positions if events[p][1] in RMP_CHANGES]
    out = [f"{RMP_CHANGES[ev[1]]} ({format_event(ev)})" for ev in evs[:MAX_LINES]]
    if len(evs) > MAX_LINES:
        out.append(f"... and {len(evs) - MAX_LINES} more RMP changes")
    return out


def rmp_steps(events: Sequence[tuple], steps: Sequence[Step]) -> list[int]:
    """Indices of the steps that change the RMP."""
    return [
        k for k, st in enumerate(steps) if any(events[p][1] in RMP_CHANGES for p in st.positions)
    ]


def note_html(events: Sequence[tuple], steps: Sequence[Step], k: int) -> str:
    """The RMP note under step k's text ("" when the protocol changes no RMP entry)."""
    at = rmp_steps(events, steps)
    if not at:
        return ""
    link = f'<a href="{LINK}">the RMP (SEV-SNP) tab</a>'
    if k in at:
        lines = "<br>".join(escape(x) for x in rmp_lines(events, steps[k]))
        return f"<br><b>RMP:</b> this step changes the RMP ({link} shows it):<br>{lines}"
    where = ", ".join(str(i + 1) for i in at)
    return (
        f"<br><b>RMP:</b> this protocol changes the RMP at step{'s' if len(at) > 1 else ''} "
        f"{where} ({link} shows it at each step)"
    )


class StepRmp:
    """Adds the RMP note to the step panel and brings the RMP tab forward."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        p2: Any = window.panes2
        self.stepper = p2.stepper
        self.stepper.stepChanged.connect(self._on_step)
        self.stepper.text.linkActivated.connect(self._on_link)

    def _dock(self) -> Any:
        dock = self.window.docks.get("rmp")
        # Only an SNP guest has an RMP (the tab is hidden on other VMs: panes/rmp.py).
        return dock if dock is not None and dock.toggleViewAction().isChecked() else None

    def touches_rmp(self) -> bool:
        st = self.stepper
        return bool(st.steps) and bool(rmp_steps(st.events, st.steps))

    def _on_step(self, k: int) -> None:
        st = self.stepper
        note = note_html(st.events, st.steps, k)
        if note:
            st.text.setText(st.text.text() + note)

    def _on_link(self, href: str) -> None:
        if href == LINK:
            self.show_rmp()

    def show_rmp(self) -> bool:
        dock = self._dock()
        if dock is None:
            return False
        dock.show()
        dock.raise_()
        return True

    def after_step_op(self) -> None:
        """F8 / Step through just loaded an op: its protocol changes the RMP on an SNP
        guest, so the RMP tab (which draws the RMP at each step) comes forward."""
        if self.touches_rmp():
            self.show_rmp()


def install(window: MainWindow) -> StepRmp | None:
    if getattr(window, "panes2", None) is None:
        return None
    return StepRmp(window)
