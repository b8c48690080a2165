"""Check a trace against the model: run the uAPI ops the trace shows through the engine.

From the observed timeline the check derives the ops a VMM and a guest did:
memslots (QEMU's `kvm_set_user_memory`: a `create_guest_memfd` per
guest_memfd QEMU used, sized to what its slots reach, then
`set_user_memory_region2`), conversions (`set_memory_attributes`), faults
(`guest_access` with the access type the error code says, else the
attribute's), TDX initial pages (`tdx_init_mem_region` for private leaves
added before the first vCPU ran, then `tdx_finalize_vm`).  It applies them to
a VM of the trace's type under the chosen kernel profile and marks every
point where the real kernel and the model disagree:

- `leaf_not_installed`: the kernel installed a leaf after a fault, the model's
  fault for it installed none (it exited, or refused);
- `level_differs`: both installed a leaf, at different levels;
- `fault_exit`: the model exits (KVM_EXIT_MEMORY_FAULT, MMIO, an errno) on a
  fault after which the kernel installed a leaf;
- `huge_across_attributes`: the kernel installed a 2M/1G leaf over gfns whose
  attributes the trace shows differ (KVM_LPAGE_MIXED_FLAG forbids it:
  kvm_mmu_max_mapping_level / hugepage_has_attrs in mmu.c).

Leaves installed without a traced fault on the same thread (prefetch,
KVM_PRE_FAULT_MEMORY) are not compared.  The derived ops can be written as a
recording (contract section 2) that `imemviz run` replays.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from imemviz.model import ops as O
from imemviz.model.config import ConfigError, VMConfig
from imemviz.model.query import inspect_gfn
from imemviz.model.vm import VM

LEVEL_NAMES = {1: "4K", 2: "2M", 3: "1G"}


def vm_config(
    vm_type: str, kernel: str, host_memory: int, gpaw: int = 52, extra: dict[str, Any] | None = None
) -> tuple[VMConfig, list[str]]:
    """The VMCONFIG for the check (under the reporter's `kernel` profile), and notes
    on what could not be honoured.  A kernel that cannot create the VM (TDX before
    6.16, an unknown name) is a ValueError naming it."""
    notes: list[str] = []
    if vm_type == "snp" and "snp" not in _vm_types():
        notes.append("this build does not model SNP: checked as sw_protected")
        vm_type = "sw_protected"
    d: dict[str, Any] = {"type": vm_type, "host_memory": host_memory}
    if vm_type == "tdx":
        d["gpaw"] = gpaw
    d.update(extra or {})  # what the trace cannot tell: folio orders, host page size
    d["kernel"] = kernel
    try:
        return VMConfig.from_dict(d), notes
    except ConfigError as e:
        raise ValueError(f"--kernel {kernel}: {e.message}") from None


def _vm_types() -> tuple[str, ...]:
    from imemviz.model import config

    return tuple(getattr(config, "VM_TYPES", ()))


@attrs.define
class CheckReport:
    marks: list[dict[str, Any]] = attrs.Factory(list)
    ops: list[tuple[float, Any]] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    config: dict[str, Any] = attrs.Factory(dict)
    refused: int = 0

    def summary(self) -> dict[str, Any]:
        by: dict[str, int] = {}
        for m in self.marks:
            by[m["what"]] = by.get(m["what"], 0) + 1
        return {
            "vm": self.config,
            "ops": len(self.ops),
            "refused_ops": self.refused,
            "disagreements": len(self.marks),
            "by_kind": by,
            "notes": self.notes,
            "marks": self.marks[:1000],
        }


class _Checker:
    def __init__(
        self, state: Any, settings: dict[str, Any], kernel: str, extra: dict[str, Any] | None = None
    ) -> None:
        self.settings = settings
        self.vendor = settings["vendor"]
        self.tdx = settings["vm_type"] == "tdx"
        self.snp = settings["vm_type"] == "snp"
        self.shared_bit = 1 << (51 if settings["gpaw"] == 52 else 47)
        total = sum(s[1] for s in state.slots.values()) << 12
        host = max(16 << 30, -(-(2 * total + (1 << 30)) // (2 << 20)) * (2 << 20))
        self.config, notes = vm_config(settings["vm_type"], kernel, host, settings["gpaw"], extra)
        self.vm = VM(self.config)
        self.report = CheckReport(notes=notes, config=self.config.to_dict())
        self.gmem_size = {
            fd: -(-size // (2 << 20)) * (2 << 20) for fd, size in state.gmem_extent.items()
        }
        self.fds: dict[int, int] = {}
        self.finalized = False
        self.attr: dict[int, int] = {}
        self.last_fault: dict[Any, tuple[int, Any, Any]] = {}  # pid -> (gfn, result, event i)

    def apply(self, op: Any, t: float) -> Any:
        r = self.vm.apply(op)
        self.report.ops.append((t, op))
        if not r.ok:
            self.report.refused += 1
        return r

    def mark(
        self, d: dict[str, Any], what: str, gfn: int, level: int, kernel: str, model: str
    ) -> None:
        self.report.marks.append(
            {
                "i": d["i"],
                "t": d["t"],
                "vcpu": d.get("vcpu"),
                "what": what,
                "gfn": gfn,
                "level": LEVEL_NAMES.get(level, str(level)),
                "kernel": kernel,
                "model": model,
            }
        )

    def _finalize(self, t: float) -> None:
        if (self.tdx or self.snp) and not self.finalized:
            self.finalized = True
            self.apply(O.TdxFinalizeVm() if self.tdx else O.SnpLaunchFinish(), t)

    # ------------------------------------------------------------------ events
    def event(self, d: dict[str, Any]) -> None:
        t = d["t"]
        k = d["k"]
        for e in d.get("fx", ()):
            if e[0] == "S":
                self._memslot(e, t)
            elif e[0] == "A":
                self._attributes(e, t)
        if k == "fault":
            self._fault(d, t)
        elif k in ("entry", "vmexit") and (self.tdx or self.snp):
            self._finalize(t)
        for e in d.get("fx", ()):
            if e[0] == "L+":
                self._leaf(d, e, t)

    def _memslot(self, e: list[Any], t: float) -> None:
        _, as_id, slot, base, npages, flags, fd, off = e
        model_fd = 0
        if fd is not None:
            model_fd = self.fds.get(fd, -1)
            if model_fd < 0:
                size = self.gmem_size.get(fd, (off + (npages << 12)))
                r = self.apply(O.CreateGuestMemfd(size), t)
                model_fd = self.fds[fd] = r.ret.get("fd", 0) if r.ok else 0
        self.apply(
            O.SetUserMemoryRegion2(
                (as_id << 16) | slot,
                flags=flags if fd is not None else flags & ~4,
                guest_phys_addr=base << 12,
                memory_size=npages << 12,
                userspace_addr=0x7F0000000000 + (base << 12) if npages else 0,
                guest_memfd=model_fd,
                guest_memfd_offset=off if fd is not None else 0,
            ),
            t,
        )

    def _attributes(self, e: list[Any], t: float) -> None:
        _, start, end, private = e
        self.apply(O.SetMemoryAttributes(start << 12, (end - start) << 12, 8 if private else 0), t)

    def _fault(self, d: dict[str, Any], t: float) -> None:
        from imemviz.io.trace.decode import decode_fault
        from imemviz.io.trace.formats import parse_payload

        parsed = parse_payload(d["e"], d["p"])
        if parsed is None:
            return
        f = parsed[1]
        fault = decode_fault(self.vendor, f["gpa"], f["error_code"], self.shared_bit)
        self._finalize(t)
        vcpu = d.get("vcpu") or 0
        gpa = f["gpa"]
        if not self.tdx:
            gpa &= ~0xFFF
        if self.tdx and fault.private:
            # A TD touches new private memory through TDG.MEM.PAGE.ACCEPT: the EPT
            # violation an accept takes is what the trace shows (tdx.c forces 0x2).
            op: Any = O.GuestAccept(gpa & ~0xFFF)
        elif self.snp and fault.private and not self._validated(fault.gfn):
            # An SNP guest's first private touch of a page is its PVALIDATE (the #NPF the
            # trace shows); the model's RMP needs it before a plain access may proceed.
            op = O.GuestPvalidate(gpa & ~0xFFF)
        else:
            private = fault.private if self.vendor == "snp" else None
            op = O.GuestAccess(
                gpa & ~0xFFF if self.tdx else gpa,
                vcpu=vcpu,
                write=fault.write,
                value=0 if fault.write else None,
                private=private,
            )
        r = self.apply(op, t)
        self.last_fault[d.get("pid")] = (fault.gfn, r, d["i"])

    def _validated(self, gfn: int) -> bool:
        rmp = inspect_gfn(self.vm, gfn).get("rmp")
        return bool(rmp and rmp["validated"])

    def _leaf(self, d: dict[str, Any], e: list[Any], t: float) -> None:
        _, _as_id, gfn, level, _pfn, private = e
        n = 1 << (9 * (level - 1))
        if level > 1:
            vals = {v for _s, _e, v in self.vm.attributes.iter_range(gfn, gfn + n)}
            if len(vals) > 1:
                self.mark(
                    d,
                    "huge_across_attributes",
                    gfn,
                    level,
                    f"{LEVEL_NAMES[level]} leaf over private and shared gfns",
                    "KVM_LPAGE_MIXED_FLAG: no huge leaf over mixed attributes",
                )
        if self.tdx and not self.finalized and private == 1:
            # Initial TD memory: TDH.MEM.PAGE.ADD through KVM_TDX_INIT_MEM_REGION.
            self.apply(O.TdxInitMemRegion(gfn << 12, n, measure=False), t)
            return
        lf = self.last_fault.get(d.get("pid"))
        if lf is None or not gfn <= lf[0] < gfn + n:
            return  # no traced fault led here: nothing to compare
        fgfn, result, _i = lf
        info = inspect_gfn(self.vm, fgfn)
        maps = [m for m in (info.get("private_mapping"), info.get("shared_mapping")) if m]
        if private == 1 and info.get("private_mapping"):
            maps = [info["private_mapping"]]
        elif private == 0 and info.get("shared_mapping"):
            maps = [info["shared_mapping"]]
        if not maps:
            ex = result.ret.get("exit") if result.ret else None
            if ex or not result.ok:
                why = ex["reason"] if ex else f"errno {result.errno}"
                self.mark(
                    d,
                    "fault_exit",
                    gfn,
                    level,
                    f"{LEVEL_NAMES[level]} leaf installed",
                    f"the fault ends with {why}",
                )
            else:
                self.mark(
                    d,
                    "leaf_not_installed",
                    gfn,
                    level,
                    f"{LEVEL_NAMES[level]} leaf installed",
                    "no leaf",
                )
            return
        mlevel = maps[0]["level"]
        if mlevel != LEVEL_NAMES[level]:
            self.mark(
                d, "level_differs", gfn, level, f"{LEVEL_NAMES[level]} leaf", f"{mlevel} leaf"
            )


def check_timeline(path: str, state: Any, settings: dict[str, Any], opts: Any) -> CheckReport:
    """Run the events of the (partial) observed timeline at `path` through the model."""
    try:
        ck = _Checker(state, settings, opts.kernel, opts.vm_config)
    except ValueError as e:
        from imemviz.io.trace.importer import ImportError_

        raise ImportError_(str(e)) from None
    with open(path, encoding="utf-8") as f:
        f.readline()  # the header
        for raw in f:
            d = json.loads(raw)
            if "i" in d:
                ck.event(d)
    if opts.recording_out:
        _write_recording(opts.recording_out, ck.report, (path,))
    return ck.report


def _write_recording(path: str, report: CheckReport, inputs: tuple[str, ...]) -> None:
    from imemviz.io.recording import header_line, op_line
    from imemviz.io.trace.importer import atomic_output

    t0 = report.ops[0][0] if report.ops else 0.0
    with atomic_output(path, inputs) as f:
        f.write(header_line({"vm": report.config}) + "\n")
        for t, op in report.ops:
            f.write(op_line(op, max(0.0, t - t0)) + "\n")
