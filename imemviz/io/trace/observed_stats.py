"""Rates and phases of an observed timeline: what the app's rate plot and phase list show.

Rates are event counts per second in equal time bins (faults/s from
`kvm_page_fault`, conversions/s from `kvm_vm_set_mem_attributes` and QEMU's
`kvm_convert_memory`, leaves installed/s), optionally for one vCPU.  Phases
are the stretches a confidential VM's life falls into, as far as the events
show them: setup (memslots and attributes before any vCPU ran), launch
(SNP launch updates, TDX initial pages), then run; each with its wall time.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from imemviz.io.trace.events import KIND_CODE
from imemviz.io.trace.timeline import ObservedTimeline

RATE_KINDS = {
    "faults/s": ("fault",),
    "conversions/s": ("attributes", "convert"),
    "memory faults/s": ("memory_fault",),
}
VCPU_KINDS = ("fault", "entry", "vmexit", "rmp_fault")
SETUP_KINDS = ("memslot", "attributes", "convert")
LAUNCH_KINDS = ("launch_start", "launch_update", "launch_finish", "tdx_page_add")


def rates(
    tl: ObservedTimeline, bins: int = 200, vcpu: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bin centres (seconds from the first event) and events per second per rate."""
    if not len(tl):
        return np.zeros(0), {k: np.zeros(0) for k in RATE_KINDS}
    t0, t1 = float(tl.ts[0]), float(tl.ts[-1])
    width = max((t1 - t0) / bins, 1e-6)
    edges = t0 + width * np.arange(bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2 - t0
    sel = np.ones(len(tl), dtype=bool) if vcpu is None else tl.vcpu == vcpu
    out = {}
    for name, kinds in RATE_KINDS.items():
        m = sel & np.isin(tl.kind, [KIND_CODE[k] for k in kinds])
        counts, _ = np.histogram(tl.ts[m], bins=edges)
        out[name] = counts / width
    return centres, out


def phases(tl: ObservedTimeline) -> list[tuple[str, float, float]]:
    """(name, start, end) in seconds from the first event, for the phases the trace shows."""
    if not len(tl):
        return []
    t0 = float(tl.ts[0])
    end = float(tl.ts[-1]) - t0

    def first(kinds: Iterable[str]) -> float | None:
        idx = np.flatnonzero(np.isin(tl.kind, [KIND_CODE[k] for k in kinds]))
        return float(tl.ts[idx[0]]) - t0 if len(idx) else None

    def last(kinds: Iterable[str]) -> float | None:
        idx = np.flatnonzero(np.isin(tl.kind, [KIND_CODE[k] for k in kinds]))
        return float(tl.ts[idx[-1]]) - t0 if len(idx) else None

    run = first(VCPU_KINDS)
    launch_a, launch_b = first(LAUNCH_KINDS), last(LAUNCH_KINDS)
    out: list[tuple[str, float, float]] = []
    setup_end = min(x for x in (run, launch_a, end) if x is not None)
    if setup_end > 0:
        out.append(("setup", 0.0, setup_end))
    if launch_a is not None:
        out.append(("launch", launch_a, max(launch_b or launch_a, launch_a)))
    if run is not None:
        out.append(("run", max(run, launch_b or run) if launch_b and launch_b < end else run, end))
    return out


def vcpus(tl: ObservedTimeline) -> list[int]:
    return sorted(int(v) for v in np.unique(tl.vcpu) if v >= 0)


class Overview(NamedTuple):
    """What the app shows of a whole timeline once it is loaded."""

    vcpus: list[int]
    rates: tuple[np.ndarray, dict[str, np.ndarray]]  # for all vCPUs
    phases: list[tuple[str, float, float]]


_OVERVIEWS: weakref.WeakKeyDictionary[ObservedTimeline, Overview] = weakref.WeakKeyDictionary()


def overview(tl: ObservedTimeline) -> Overview:
    """vcpus, rates and phases of `tl`, computed once per timeline: the app's loading
    thread computes them (a 1M-event timeline: tens of milliseconds of numpy, and numpy's
    first np.unique imports numpy.ma) so that the GUI thread only draws them."""
    got = _OVERVIEWS.get(tl)
    if got is None:
        got = _OVERVIEWS[tl] = Overview(vcpus(tl), rates(tl), phases(tl))
    return got
