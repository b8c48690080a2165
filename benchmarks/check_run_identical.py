"""`imemviz run` gives byte-identical output before and after a change to the run path.

    python benchmarks/check_run_identical.py BEFORE_TREE [SCRIPT ...]

BEFORE_TREE is a source tree of the version to compare against (for example
``git archive main | tar -x -C /tmp/before``); this checkout is "after".  For
every shipped scene (resources/scenes/*.jsonl) and every SCRIPT given, both
versions run ``imemviz run SCRIPT --results-out R --state-out S`` in a child
process (the same interpreter, PYTHONPATH pointing at each tree) and the check
compares the exit code, stdout, stderr, the results file and the state file
(with its event log) byte for byte.  Prints one line per script and exits 1 on
any difference.  Used for issue 14's fault fast path (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _run(tree: Path, script: Path, out: Path) -> tuple[int, bytes, bytes, bytes, bytes]:
    results, state = out / "results.jsonl", out / "state.json.zst"
    for p in (results, state):
        if p.exists():
            p.unlink()
    env = dict(os.environ, PYTHONPATH=str(tree))
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from imemviz.cli import main; sys.exit(main(sys.argv[1:]))",
            "run",
            str(script),
            "--results-out",
            str(results),
            "--state-out",
            str(state),
        ],
        capture_output=True,
        env=env,
        cwd=out,
        check=False,
    )
    read = lambda f: f.read_bytes() if f.exists() else b""  # noqa: E731
    return p.returncode, p.stdout, p.stderr, read(results), read(state)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    before = Path(argv[0]).resolve()
    scripts = sorted((HERE / "resources" / "scenes").glob("*.jsonl")) + [Path(a) for a in argv[1:]]
    bad = 0
    with tempfile.TemporaryDirectory(prefix="imemviz-identical-") as d:
        out = Path(d)
        for script in scripts:
            a = _run(before, script, out)
            b = _run(HERE, script, out)
            names = ("exit code", "stdout", "stderr", "results", "state file")
            diff = [n for n, x, y in zip(names, a, b, strict=True) if x != y]
            lines = a[3].count(b"\n")
            status = "identical" if not diff else "DIFFERS in " + ", ".join(diff)
            print(f"{script.name}: {lines} result lines, {len(a[4])} state bytes: {status}")
            bad += bool(diff)
    print(f"{len(scripts) - bad} of {len(scripts)} identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
