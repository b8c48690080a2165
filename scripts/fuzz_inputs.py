#!/usr/bin/env python3
"""The long fuzz run: mutated scripts and states through run, check, diff and the app's open.

    .venv/bin/python scripts/fuzz_inputs.py [CASES] [--seed N] [--keep DIR]

Each case is a mutated script or state file (tests/fuzzkit.py); scripts go to
`run` (plain and --salvage) and the app's open path (Session.open, headless),
states to `check`, `diff`, `run --from-state` with a probe script, and the
open path.  Every command must end with exit 0, 1 or 2, one line on stderr
for 2, never a traceback.  Prints the outcome counts per command and the
cases that broke the contract (kept under --keep, default a temp folder).
The CI runs the same generators at a small size (tests/test_fuzz_inputs.py).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))

import fuzzkit  # noqa: E402

from imemviz.io.state import encode, state_document  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("cases", nargs="?", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", metavar="DIR", help="where to keep the inputs that broke")
    ns = ap.parse_args()
    rng = random.Random(ns.seed)
    keep = Path(ns.keep or tempfile.mkdtemp(prefix="imemviz-fuzz-"))
    keep.mkdir(parents=True, exist_ok=True)
    docs = fuzzkit.base_docs()
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    broken: list[str] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="imemviz-fuzz-") as tmp:
        work = Path(tmp)
        probe = work / "probe.jsonl"
        probe.write_text(fuzzkit.PROBE + "\n")
        base_state = work / "base.json"
        from statecases import case_vm

        base_state.write_bytes(encode(state_document(case_vm("sw"))))
        for case in range(ns.cases):
            if rng.random() < 0.5:
                data = fuzzkit.mutated_script(rng)
                path = work / "case.jsonl"
                commands = [("run", probe), ("salvage", probe), ("open", probe)]
            else:
                data = fuzzkit.mutated_state(rng, docs)
                path = work / rng.choice(["case.json", "case.json.gz", "case.json.zst"])
                commands = [
                    ("check", probe),
                    ("diff", base_state),
                    ("from-state", probe),
                    ("open", probe),
                ]
            path.write_bytes(data)
            for command, other in commands:
                try:
                    code, _err = fuzzkit.outcome(command, path, other)
                    counts[command][f"exit {code}"] += 1
                except fuzzkit.Broken as e:
                    counts[command]["BROKEN"] += 1
                    name = f"case{case}-{command}{''.join(path.suffixes)}"
                    (keep / name).write_bytes(data)
                    broken.append(f"{name}: {str(e).splitlines()[0][:300]}")
            path.unlink()
            if (case + 1) % 1000 == 0:
                print(f"{case + 1} cases, {time.monotonic() - t0:.0f} s", file=sys.stderr)
    total = sum(sum(c.values()) for c in counts.values())
    print(f"{ns.cases} cases (seed {ns.seed}), {total} command runs, {time.monotonic() - t0:.0f} s")
    for command in sorted(counts):
        c = counts[command]
        print(f"  {command:11} " + ", ".join(f"{k}: {v}" for k, v in sorted(c.items())))
    print(f"broke the contract: {len(broken)}" + (f" (inputs in {keep})" if broken else ""))
    for line in broken[:50]:
        print("  " + line)
    if not broken and not ns.keep:
        os.rmdir(keep)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
