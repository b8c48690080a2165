"""The import's options, result and error: what a caller needs without the importer.

Kept apart from `importer.py` so that the app's process, which only starts the import
in a child (`import_process`), does not load the scanner, its compiled format table
and the pipeline: loading them on the import's waiting thread held the GIL long
enough to stall the GUI ~15-25 ms when File > Import trace started.
"""

from __future__ import annotations

from typing import Any

import attrs


class ImportError_(Exception):
    """Unusable input or output: exit 2 with this one line."""


@attrs.define
class ImportOptions:
    vendor: str = "auto"
    vm_type: str = "auto"
    spte_layout: str = "auto"
    gpaw: int = 0
    from_vm_start: bool = False
    check: bool = False
    kernel: str = "mainline"
    recording_out: str | None = None
    vm_config: dict[str, Any] | None = None  # VMCONFIG fields for the check
    processes: int | None = None  # parsing processes (None: pipeline.processes_wanted)


@attrs.define
class ImportResult:
    out: str
    summary: dict[str, Any]  # without the long lists
    disagreements: int = 0
