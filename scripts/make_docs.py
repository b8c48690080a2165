#!/usr/bin/env python3
"""Write docs/scripts.md from the op table (imemviz.io.scripts_doc.render()).

.venv/bin/python scripts/make_docs.py          # write it
.venv/bin/python scripts/make_docs.py --check  # exit 1 when it is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

from imemviz.io.scripts_doc import render

OUT = Path(__file__).resolve().parent.parent / "docs" / "scripts.md"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run .venv/bin/python scripts/make_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
