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
import re
from typing import Any

import attrs

from imemviz.model import ops as O
from imemviz.model.config import ConfigError, VMConfig
from imemviz.model.query import inspect_gfn
from imemviz.model.uapi import KVM_MEM_GUEST_MEMFD, MFD_INACCESSIBLE
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
    if vm_type == "sw_protected" and _upm(kernel):
        notes.append(
            f"kernel {kernel}: the 2022 design had no VM types; checked as a default VM "
            "with KVM_MEM_PRIVATE slots on inaccessible memfds"
        )
        vm_type = "default"
    d: dict[str, Any] = {"type": vm_type, "host_memory": host_memory}
    if vm_type == "tdx":
        d["gpaw"] = gpaw
    d.update(extra or {})  # what the trace cannot tell: folio orders, host page size
    d["kernel"] = kernel
    try:
        return VMConfig.from_dict(d), notes
    except ConfigError as e:
        raise ValueError(f"--kernel {kernel}: {e.message}") from None


def _upm(kernel: str) -> bool:
    from imemviz.model.kernels import profile

    try:
        return profile(kernel).upm
    except (KeyError, ValueError):
        return False  # an unknown name: VMConfig says so


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
        self.upm = self.vm.kernel.upm
        self.report = CheckReport(notes=notes, config=self.config.to_dict())
        self.gmem_size = {
            fd: -(-size // (2 << 20)) * (2 << 20) for fd, size in state.gmem_extent.items()
        }
        self.fds: dict[int, int] = {}
        self.finalized = False
        self.attr: dict[int, int] = {}
        self.last_fault: dict[Any, tuple[int, Any, Any]] = {}  # pid -> (gfn, result, event i)
        # pid -> (gpa, gfn, t, event i): a TDX private fault whose accept level is not known yet
        self.pending_accept: dict[Any, tuple[int, int, float, int]] = {}

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
        if self.pending_accept:
            self._settle_accept(d)
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
                create = (
                    O.MemfdCreate(size, MFD_INACCESSIBLE) if self.upm else O.CreateGuestMemfd(size)
                )
                r = self.apply(create, t)
                model_fd = self.fds[fd] = r.ret.get("fd", 0) if r.ok else 0
        slot_args: dict[str, Any] = {
            "flags": flags if fd is not None else flags & ~KVM_MEM_GUEST_MEMFD,
            "guest_phys_addr": base << 12,
            "memory_size": npages << 12,
            "userspace_addr": 0x7F0000000000 + (base << 12) if npages else 0,
        }
        offset = off if fd is not None else 0
        if self.upm:  # v8: KVM_MEM_PRIVATE (bit 2) with private_fd through the v1 ioctl
            op: Any = O.SetUserMemoryRegion(
                (as_id << 16) | slot, private_fd=model_fd, private_offset=offset, **slot_args
            )
        else:
            op = O.SetUserMemoryRegion2(
                (as_id << 16) | slot, guest_memfd=model_fd, guest_memfd_offset=offset, **slot_args
            )
        self.apply(op, t)

    def _attributes(self, e: list[Any], t: float) -> None:
        _, start, end, private = e
        if self.upm:  # v8 5/8: the encrypt-region ioctls set the attributes
            op = O.MemoryEncryptRegRegion if private else O.MemoryEncryptUnregRegion
            self.apply(op(start << 12, (end - start) << 12), t)
            return
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
            # violation an accept takes is what the trace shows (tdx.c forces 0x2).  The
            # accept's level is in the TDX exit's extended qualification, which no
            # tracepoint prints: the leaf the kernel installs for it tells, so the accept
            # waits for the vCPU thread's next events (_settle_accept).
            self.pending_accept[d.get("pid")] = (gpa & ~0xFFF, fault.gfn, t, d["i"])
            return
        if self.snp and fault.private and not self._validated(fault.gfn):
            # An SNP guest's first private touch of a page is its PVALIDATE (the #NPF the
            # trace shows); the model's RMP needs it before a plain access may proceed.
            op: Any = O.GuestPvalidate(gpa & ~0xFFF)
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

    def _settle_accept(self, d: dict[str, Any]) -> None:
        """Apply the accept a vCPU thread's private fault stands for, at the level of the
        private leaf its next events install (a 2M accept gets a 2M leaf on a kernel
        that maps them), else at 4K once that thread does anything else."""
        pid = d.get("pid")
        pend = self.pending_accept.get(pid)
        if pend is None:
            return
        gpa, gfn, t, i = pend
        level = 1
        for e in d.get("fx", ()):
            if e[0] == "L+" and e[5] == 1 and e[2] <= gfn < e[2] + (1 << (9 * (e[3] - 1))):
                level = e[3]
                break
        else:
            if not d.get("fx") and d["k"] not in ("fault", "entry", "vmexit"):
                return  # kvm_mmu_spte_requested and the like: the leaf is still to come
        del self.pending_accept[pid]
        size = 1 << (12 + 9 * (level - 1))
        r = self.apply(O.GuestAccept(gpa & ~(size - 1), level), t)
        self.last_fault[pid] = (gfn, r, i)

    def flush(self) -> None:
        """The end of the trace: accepts still waiting for their leaf are applied at 4K."""
        for pid in list(self.pending_accept):
            gpa, gfn, t, i = self.pending_accept.pop(pid)
            self.last_fault[pid] = (gfn, self.apply(O.GuestAccept(gpa), t), i)

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


# A huge leaf in the timeline's effects: ["L+",as_id,gfn,level,pfn,private].
_HUGE_LEAF = re.compile(rb'\["L\+",\d+,(\d+),([23]),\d+,(0|1)\]')
_SIZES = {2: "2M", 3: "1G"}


def huge_leaves(path: str) -> dict[int, tuple[int, int]]:
    """The largest leaf level the kernel installed, shared (0) and private (1), with the
    first gfn it was seen at: {private: (level, gfn)}.  One regex pass over the text."""
    found: dict[int, tuple[int, int]] = {}
    with open(path, "rb") as f:
        tail = b""
        while True:
            more = f.read(1 << 22)
            block = tail + more
            cut = block.rfind(b"\n") + 1 if more else len(block)  # whole lines only
            block, tail = block[:cut], block[cut:]
            for m in _HUGE_LEAF.finditer(block):
                pv, level = int(m[3]), int(m[2])
                if level > found.get(pv, (1, 0))[0]:
                    found[pv] = (level, int(m[1]))
            if not more:
                return found


def infer_host(
    path: str, vm_type: str, given: dict[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """What a trace does not record about the host but its huge leaves prove: KVM maps
    shared memory no larger than the host maps it (host_pfn_mapping_level), private
    memory no larger than guest_memfd's folio (kvm_gmem_get_pfn's max_order).  Settings
    the user gave (`--vm-config`) are kept; the rest default to what the leaves need."""
    extra = dict(given or {})
    notes: list[str] = []
    found = huge_leaves(path)
    if 0 in found and "shared_page_size" not in extra:
        level, gfn = found[0]
        extra["shared_page_size"] = _SIZES[level]
        notes.append(
            f"shared_page_size {_SIZES[level]}: inferred from a shared {_SIZES[level]} leaf "
            f"at gfn {gfn:#x} (the host page size is not in a trace; --vm-config sets it)"
        )
    if 1 in found and "gmem_max_order" not in extra:
        level, gfn = found[1]
        if vm_type == "tdx":
            level = 2  # a TD's private leaves stop at 2M
            extra.setdefault("tdx_private_max_level", "2M")
        extra["gmem_max_order"] = 9 * (level - 1)
        notes.append(
            f"gmem_max_order {9 * (level - 1)}: inferred from a private {_SIZES[level]} leaf "
            f"at gfn {gfn:#x} (guest_memfd's folio size is not in a trace; --vm-config sets it)"
        )
    return extra, notes


def check_timeline(path: str, state: Any, settings: dict[str, Any], opts: Any) -> CheckReport:
    """Run the events of the (partial) observed timeline at `path` through the model."""
    extra, inferred = infer_host(path, settings["vm_type"], opts.vm_config)
    try:
        try:
            ck = _Checker(state, settings, opts.kernel, extra)
        except ValueError:
            if not inferred:
                raise
            # The reporter's kernel cannot have what the leaves suggest: check without it,
            # and let the marks say where the kernel went further than the model.
            ck = _Checker(state, settings, opts.kernel, opts.vm_config)
            inferred = []
    except ValueError as e:
        from imemviz.io.trace.importer import ImportError_

        raise ImportError_(str(e)) from None
    ck.report.notes.extend(inferred)
    with open(path, encoding="utf-8") as f:
        f.readline()  # the header
        for raw in f:
            d = json.loads(raw)
            if "i" in d:
                ck.event(d)
    ck.flush()
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
