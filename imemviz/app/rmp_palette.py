"""The RMP pane's state colours and glyphs (no Qt).

Four AMD page states, two channels: a colour and a glyph written before the state's
name.  The colours were picked with `colour_vision` (CIEDE2000 under the simulations
of protanopia, deuteranopia and tritanopia) so that any two differ by at least 20 in
every vision (`tests/test_palette.py`); hypervisor-owned rows keep the table's own
background (white), the state nobody needs to look at.
"""

from __future__ import annotations

from imemviz.model.rmp_rows import FIRMWARE, GUEST_INVALID, GUEST_VALID, HYPERVISOR

# state -> (fill, text colour on it)
COLOURS: dict[int, tuple[str, str]] = {
    HYPERVISOR: ("#ffffff", "#000000"),
    FIRMWARE: ("#6a3d9a", "#ffffff"),  # purple: only the firmware changes these pages
    GUEST_INVALID: ("#fdb863", "#000000"),  # light orange: assigned, not validated yet
    GUEST_VALID: ("#117733", "#ffffff"),  # green: the guest's validated pages
}
GLYPHS: dict[int, str] = {
    HYPERVISOR: "○",  # empty: owned by nobody but the host
    FIRMWARE: "■",  # locked
    GUEST_INVALID: "△",  # warning: a guest access raises #VC
    GUEST_VALID: "●",  # the guest's, in use
}
MEANING: dict[int, str] = {
    HYPERVISOR: "hypervisor-owned (RMP entry all zeros): the host may use the page",
    FIRMWARE: "firmware page (immutable: a launch page before SNP_LAUNCH_FINISH, or a VMSA)",
    GUEST_INVALID: "assigned to the guest, not validated: a guest access raises #VC",
    GUEST_VALID: "assigned to the guest and validated (PVALIDATE or the launch)",
}
