"""`imemviz diff A B [--json]`: what changed between two states, grouped and coalesced.

Sections: config, counters, memslots (added/removed/changed), attributes
(gfn ranges whose value changed, from walking both extent maps' runs
together: a 1 TiB conversion is one range), guest_memfd files and their
folios, leaves per root, S-EPT state changes, shared host pages, poisoned
pages and page contents, held faults.  Ranges are coalesced: a change that
covers neighbouring folios or leaves the same way is one range.

Costs what the states hold (runs, leaves, folios), never the guest's size:
leaves and folios are compared as sorted numpy arrays.  The event log and
the op count are history, not state: diff ignores them.

Exit 0 when the states are equal, 1 when they differ, 2 on unusable input.

The comparison is state_diff.py's and its text diff_text.py's; both are
re-exported here.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Sequence

from imemviz.io.cmdline import CommandExit, Parser, load, output
from imemviz.io.diff_text import _cluster_text, format_diff
from imemviz.io.state_diff import (
    LEVEL_LABELS,
    MAX_RANGES,
    Items,
    Side,
    attribute_changes,
    clusters,
    diff_sides,
    diff_vms,
    folio_items,
    hva_items,
    leaf_items,
    side,
    split,
)

__all__ = [
    "LEVEL_LABELS",
    "MAX_RANGES",
    "Items",
    "Side",
    "_cluster_text",
    "attribute_changes",
    "clusters",
    "diff_sides",
    "diff_vms",
    "folio_items",
    "format_diff",
    "hva_items",
    "leaf_items",
    "main_diff",
    "side",
    "split",
]


def main_diff(argv: Sequence[str]) -> int:
    """The `imemviz diff` command; returns the exit code."""
    parser = Parser(
        prog="imemviz diff",
        description="What differs between two state files: "
        "config, counters, memslots, attributes, guest_memfd folios, mappings, S-EPT states "
        "and pages, host memory, held faults: every field that changes what the next op "
        "does. Exit 0: equal; 1: different; 2: unusable input.",
    )
    parser.add_argument("a", metavar="A", help="the state before (or a script, which is run)")
    parser.add_argument("b", metavar="B", nargs="?", help="the state after (or a script)")
    parser.add_argument(
        "--kernels",
        metavar="K1,K2",
        help="run the script A under two kernels and show what changed (results and states)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    parser.add_argument(
        "--max-ranges",
        metavar="N",
        type=int,
        default=MAX_RANGES,
        help=f"ranges listed per section (default {MAX_RANGES}; 0: all of them)",
    )
    from imemviz.io.run_diff import format_results, is_recording, load_pair

    results = kernels = None
    try:
        ns = parser.parse(argv)
        if ns.max_ranges < 0:
            parser.error("--max-ranges: expected 0 or more")
        name_a, name_b = ns.a, ns.b
        if (
            ns.kernels is None
            and ns.b is not None
            and not (is_recording(ns.a) or is_recording(ns.b))
        ):
            # Two state files: one state's engine at a time: only the columns diff
            # needs of A are kept while B loads, so the peak is one loaded state, not two.
            a = side(load(ns.a))
            gc.collect()
            b = side(load(ns.b))
        else:
            vm_a, vm_b, results, kernels, name_a, name_b = load_pair(
                ns.a, ns.b, ns.kernels, parser.error
            )
            a, b = side(vm_a), side(vm_b)
            del vm_a, vm_b
    except CommandExit as e:
        return e.status
    d = diff_sides(a, b, ns.max_ranges or None)
    text = format_diff(d, name_a, name_b)
    if results is not None:  # scripts were run: their results are compared too
        if results and d["equal"]:
            text = f"--- {name_a}\n+++ {name_b}\nstate: the same"
        if results:
            text += "\n" + format_results(results, kernels)
        d["results"] = results
        d["equal"] = d["equal"] and not results
    output(json.dumps(d, indent=1) if ns.json else text)
    return 0 if d["equal"] else 1
