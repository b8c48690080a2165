"""'What am I looking at?' (F1): the panes, the colours, the mouse and the keys."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QTextBrowser, QVBoxLayout, QWidget

from imemviz.app.palette import LEGEND
from imemviz.model.raster import Code


def legend_html() -> str:
    rows = []
    for e in LEGEND:
        if e.code == Code.OUTSIDE:
            continue
        colour = "#{:02x}{:02x}{:02x}".format(*e.rgb)
        pattern = "" if e.pattern.value == "none" else e.pattern.value
        rows.append(
            f"<tr><td bgcolor='{colour}' width='28'>&nbsp;</td><td>{pattern}</td>"
            f"<td><b>{e.name}</b></td><td>{e.description}</td></tr>"
        )
    return "<table cellspacing=2 cellpadding=2>" + "".join(rows) + "</table>"


def help_html() -> str:
    return f"""
<h2>What am I looking at?</h2>
<p><b>imemviz</b> simulates one VM's private memory the way upstream KVM handles it:
memslots, <code>KVM_SET_MEMORY_ATTRIBUTES</code>, guest_memfd folios, the TDP MMU's
private and shared leaves and, for a TDX TD, the Secure EPT states. Every action is a
contract op (the same ops scripts and recordings hold); the log pane lists each one.</p>

<h3>The GPA map (centre)</h3>
<p>The guest physical address space, one row after the other (row size in the header, e.g.
<i>row = 8M</i>). The left axis gives the guest physical address of each row, the bottom axis
the offset inside the row. Black outlines are <b>memslots</b> with their labels (id, base,
size, bound guest_memfd); grey areas are holes (no memslot: the guest's accesses are MMIO).
When one pixel stands for many pages it shows the most significant state among them:
mapped beats unmapped, private beats shared, 4K beats 2M, PENDING and poison beat
everything. Zoomed in far enough, every page carries its address and state.</p>
<ul>
<li><b>Click</b> a page: the default action: <i>accept and touch</i> on a TDX private page
(TDG.MEM.PAGE.ACCEPT, then an access), a guest read elsewhere.</li>
<li><b>Ctrl+click</b> selects without acting; <b>Shift+click</b> or a <b>drag</b> selects a
range; <b>right click</b> opens the actions for the page or range.</li>
<li><b>Wheel</b> scrolls, <b>Ctrl+wheel</b> (or <b>+</b>/<b>-</b>) zooms, <b>0</b> shows the
whole guest, a <b>middle drag</b> pans.</li>
<li><b>Arrows</b> move the selection (Shift extends it), <b>PageUp/PageDown</b> scroll,
<b>Enter</b> runs the default action on the selection.</li>
<li>Hover a page for its whole chain (attribute, memslot, folio, leaves, contents).</li>
</ul>

<h3>Colours</h3>
{legend_html()}

<h3>The other panes</h3>
<p><b>Inspector</b>: the selected page as <code>inspect</code> reports it: attributes,
memslot, guest_memfd fd and index, folio (order, pfn, hwpoison), the private leaf and its
S-EPT state, the shared leaf, the byte each backing page holds, and whether a huge page
could map it. <b>Log</b>: every action (in bold, with its outcome), then every op with its
result; a refused op shows its errno and the kernel rule behind it. <b>Legend</b>: the
colours.</p>
<p><b>What changed</b>: after every action, undo, redo or step of the timeline, what it
changed is outlined for a moment with black dashes on a white halo (no colour of the
legend is an outline): on the map (a ring when the change is too small to see), in the
host folios, the entries and the event log. A killed TD, EHWPOISON or a memory-fault exit
gets a banner above the map and a red disc pointing at the page.</p>
<p><b>Host folios</b>: the host's pfn space (or one guest_memfd's offset space): folios by
order, free memory, the VMM's shared pages, S-EPT pages and poisoned pages; click a folio
to highlight the gfns it backs. <b>S-EPT / EPT entries</b>: every leaf of both roots
(gfn, level, pfn, state), sortable and searchable by gfn or pfn, with a level tree that
also lists the non-leaf S-EPT pages. <b>Event log</b>: every event the kernel would show
(tracepoints, SEAMCALLs, guest_memfd invalidations), filterable by kind; click one to
highlight what it touched, right-click to step through its op. <b>Counters</b>: leaves,
folios, <code>mmu_invalidate_seq</code> and exits over the op count. <b>Step through</b>
(F8): the last action's protocol one step at a time, with the kernel function behind each
step; the map and the entries draw the state at that step (BLOCKED leaves at BLOCK), Esc
brings the present back. <b>Timeline</b>: every action of the session; go back and forth
(like undo, keeping redo), or replay a recording with its captions (Replay menu,
Scenarios menu); <b>Ctrl+R</b> records what you do.</p>

<h3>Actions</h3>
<p>Guest: read/write (as the attribute says, or forced private/shared), accept, accept and
touch, touch without accept (a TD that touches an unaccepted page is killed). VMM: convert
the selection to private/shared with <code>KVM_SET_MEMORY_ATTRIBUTES</code>, optionally
discarding the old backing as QEMU does (PUNCH_HOLE on guest_memfd when going shared,
madvise(DONTNEED) on the shared memory when going private), punch holes, madvise, memory
failure, memslots and guest_memfd files. <b>Fault vs invalidation race</b> walks through
the retry protocol step by step. Undo (Ctrl+Z) and redo (Ctrl+Shift+Z) work on whole
actions; File saves the state or the recording (a script that replays to the same state).</p>
"""


class HelpDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("help")
        self.setWindowTitle("What am I looking at?")
        self.browser = QTextBrowser()
        self.browser.setHtml(help_html())
        self.browser.setOpenExternalLinks(True)
        lay = QVBoxLayout(self)
        lay.addWidget(self.browser)
        self.resize(760, 720)
