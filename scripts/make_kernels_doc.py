"""Regenerate docs/kernels.md from the rule table in imemviz/model/kernels.py.

    .venv/bin/python scripts/make_kernels_doc.py

tests/model/test_kernels.py fails when the file is not current.
"""

from __future__ import annotations

from pathlib import Path

from imemviz.model.kernels import markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "kernels.md"

if __name__ == "__main__":
    DOC.write_text(markdown(), encoding="utf-8")
    print(f"wrote {DOC}")
