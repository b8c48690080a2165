"""What a bug-report reader needs in the app, installed into a `MainWindow` in one call:
the State summary (with its banner and held-fault marks), File > Compare with... and
copy as text / op JSON (state_summary.py, compare.py, copy_text.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from imemviz.app import compare, copy_text, state_summary

if TYPE_CHECKING:
    from imemviz.app.window import MainWindow


@attrs.define
class ReportTools:
    summary: state_summary.StateSummary_
    compare: compare.Compare
    copy: copy_text.CopyText


def install(w: MainWindow) -> ReportTools:
    return ReportTools(state_summary.install(w), compare.install(w), copy_text.install(w))
