"""import_process.import_in_child: the app's import, in a child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imemviz.io.trace.import_process import import_in_child
from imemviz.io.trace.importer import ImportError_


def _trace(tmp_path: Path, n: int = 2000) -> str:
    line = (
        "CPU 0/KVM-1 [000] ..... {t:.6f}: kvm_page_fault: vcpu 0 rip 0x0 "
        "address 0x0000000000001000 error_code 0x181\n"
    )
    p = tmp_path / "t.trace"
    p.write_text("".join(line.format(t=1 + i * 1e-6) for i in range(n)))
    return str(p)


def test_the_child_imports_and_reports_progress(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    seen: list[tuple[int, int]] = []
    res = import_in_child([_trace(tmp_path)], str(out), progress=lambda d, t: seen.append((d, t)))
    assert res.summary["recognised"] == 2000 and out.exists()
    assert seen and seen[-1][0] == seen[-1][1]


def test_the_childs_error_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ImportError_, match=r"missing\.trace: cannot read"):
        import_in_child([str(tmp_path / "missing.trace")], str(tmp_path / "o.jsonl"))


def test_cancel_reaches_the_child_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "never.jsonl"
    with pytest.raises(ImportError_, match="cancelled"):
        import_in_child([_trace(tmp_path)], str(out), stop=lambda: True)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".imemviz-")] == []


def test_starting_an_import_does_not_load_the_importer_in_the_apps_process() -> None:
    # Loading the scanner (its compiled format table) and the pipeline on the app's
    # import thread held the GIL long enough to stall the GUI when an import started.
    code = (
        "import sys, imemviz.io.trace.import_process as p; "
        "heavy = {'imemviz.io.trace.importer', 'imemviz.io.trace.scanner', "
        "'imemviz.io.trace.pipeline'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
