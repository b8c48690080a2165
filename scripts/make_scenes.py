"""Regenerate the captioned scenario recordings in resources/scenes/ (not default.jsonl).

    .venv/bin/python scripts/make_scenes.py

Each scene is written as a script: line 1 a ``# title`` comment (the Scenarios
menu shows it), more comments, the header, then ops with ``t`` stamps and
``note`` captions.  The script applies every op to a live VM as it writes it,
so captions can quote the engine's real numbers (host_free_bytes, pfns,
leaf counts) and every op's outcome is checked against what its caption says:
an op written with ``expect=...`` must fail with that errno, every other op
must succeed.  After such an op a ``# expect {...}`` comment records it (the
convention of tests/scenarios), which tests/test_scenes.py checks again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from imemviz.io.recording import header_line
from imemviz.model.config import VMConfig
from imemviz.model.ops import op_to_dict, parse_op
from imemviz.model.query import inspect_gfn, stats_dict
from imemviz.model.vm import VM

SCENES = Path(__file__).resolve().parent.parent / "resources" / "scenes"
HVA = 0x7F0000000000
MB = 1 << 20
NOTE_S = 3.5  # time after a caption before the next op: reading time at speed 1
OP_S = 0.8  # time after an op
BURST_S = 0.004  # time between the ops of a burst (a guest loop)


class Scene:
    """Builds one scene: ops are applied as they are added, with their t stamps."""

    def __init__(self, name: str, title: str, about: list[str], vm: dict[str, Any]) -> None:
        self.name = name
        self.lines = [f"# {title}", *(f"# {a}" if a else "#" for a in about)]
        self.lines.append(header_line({"vm": vm}))
        self.vm = VM(VMConfig.from_dict(vm))
        self.t = 0.0
        self.results: list[Any] = []

    # ------------------------------------------------------------------ ops
    def op(self, name: str, expect: str | None = None, gap: float = OP_S, **fields: Any) -> Any:
        d = {"op": name, **fields}
        op = parse_op(d)
        r = self.vm.apply(op)
        if (expect is None) != r.ok or (expect is not None and r.errno != expect):
            raise SystemExit(
                f"{self.name}: {name} {fields}: expected {expect or 'ok'}, got "
                f"{'ok' if r.ok else r.errno} {r.ret}"
            )
        out = op_to_dict(op)
        out["t"] = round(self.t, 3)
        self.lines.append(json.dumps(out, ensure_ascii=False))
        if expect is not None:
            self.lines.append(f'# expect {{"ok": false, "errno": "{expect}"}}')
        self.t += gap
        self.results.append(r)
        return r

    def note(self, text: str, hold: float = NOTE_S) -> None:
        self.op("note", gap=hold, text=text)

    def burst(self, name: str, items: list[dict[str, Any]]) -> None:
        for i, fields in enumerate(items):
            self.op(name, gap=BURST_S if i < len(items) - 1 else OP_S, **fields)

    # ------------------------------------------------------------------ facts
    def stats(self) -> dict[str, Any]:
        return stats_dict(self.vm)

    def free(self) -> str:
        """host_free_bytes in MiB with one decimal: a 512K difference still shows."""
        return f"{self.stats()['host_free_bytes'] / MB:,.1f} MiB"

    def inspect(self, gpa: int) -> dict[str, Any]:
        return inspect_gfn(self.vm, gpa >> 12)

    def write(self) -> None:
        path = SCENES / f"{self.name}.jsonl"
        path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")
        print(f"{path.name}: {len(self.results)} ops, {self.t:.1f} s")


def layout(s: Scene, ram: int = 16 * MB, private: bool = True) -> None:
    """One guest_memfd and one memslot at GPA 0, all private (QEMU's confidential RAM)."""
    s.op("create_guest_memfd", size=ram)
    s.op(
        "set_user_memory_region2",
        slot=0,
        flags=["GUEST_MEMFD"],
        guest_phys_addr=0,
        memory_size=ram,
        userspace_addr=hex(HVA),
        guest_memfd=3,
    )
    if private:
        s.op("set_memory_attributes", address=0, size=ram, attributes=["PRIVATE"])


def pages(gpa: int, n: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"gpa": hex(gpa + (i << 12)), **fields} for i in range(n)]


# ---------------------------------------------------------------------- scenes
def td_boot() -> Scene:
    s = Scene(
        "td-boot",
        "TD boot: TDVF pages added and measured, finalize, then lazy accept",
        [
            "A 16 MiB TDX guest: the firmware is copied in with TDH.MEM.PAGE.ADD before the",
            "TD runs; afterwards every private page arrives through TDH.MEM.PAGE.AUG and the",
            "guest's TDG.MEM.PAGE.ACCEPT, one page at a time, as the guest touches memory.",
        ],
        {"type": "tdx", "host_memory": "1G", "seed": 1},
    )
    s.note("A TDX guest (KVM_X86_TDX_VM) with 16 MiB of RAM: QEMU creates a guest_memfd for it.")
    layout(s)
    s.note(
        "All RAM is private from the start (KVM_SET_MEMORY_ATTRIBUTES PRIVATE). "
        "Nothing is allocated yet: pale orange = private, no folio."
    )
    s.note(
        "KVM_TDX_INIT_MEM_REGION: TDVF's code (1 MiB at 15 MiB) is copied in with TDH.MEM.PAGE.ADD and measured into MRTD."
    )
    s.op("tdx_init_mem_region", gpa=hex(15 * MB), nr_pages=256, measure=True, value="0x90")
    s.note("The TD HOB and the firmware's temporary memory at 8 MiB are added unmeasured.")
    s.op("tdx_init_mem_region", gpa="0x800000", nr_pages=16, measure=False, value="0x48")
    s.note("KVM_TDX_FINALIZE_VM (TDH.MR.FINALIZE) seals the measurement. The TD is runnable.")
    s.op("tdx_finalize_vm")
    s.note("Too late to add pages: KVM_TDX_INIT_MEM_REGION after finalize is refused with EINVAL.")
    s.op("tdx_init_mem_region", expect="EINVAL", gpa="0x900000", nr_pages=1)
    s.note(
        "The guest boots and accepts memory lazily, as it uses it: each TDG.MEM.PAGE.ACCEPT "
        "of a page with no S-EPT leaf exits to KVM, which AUGs a 4K page that the accept makes MAPPED."
    )
    s.burst("guest_accept", pages(4 * MB, 32))
    s.note("Then it writes the 32 pages it accepted (the kernel image it loads there).")
    s.burst("guest_access", pages(4 * MB, 32, write=True, value="0x4c"))
    s.note("Accepting a page twice: the TDX module says TDX_PAGE_ALREADY_ACCEPTED (EINVAL).")
    s.op("guest_accept", expect="EINVAL", gpa=hex(4 * MB))
    s.note(
        "More memory, accepted as the kernel needs it: 64 pages at 10 MiB. "
        f"Host memory free so far: {s.free()}."
    )
    s.burst("guest_accept", pages(10 * MB, 64))
    st = s.stats()
    s.note(
        f"td_state {st['td_state']}: {st['mappings']['private']['4K']} private 4K leaves, "
        f"all MAPPED; the rest of the guest is still unbacked. Host free: {s.free()}."
    )
    return s


def qemu_conversion() -> Scene:
    s = Scene(
        "qemu-conversion",
        "Shared<->private conversion as QEMU does it, and memory held twice without discard",
        [
            "QEMU converts with KVM_SET_MEMORY_ATTRIBUTES, then discards the old backing:",
            "fallocate(PUNCH_HOLE) on the guest_memfd when going shared, madvise(DONTNEED)",
            "on its own mapping when going private. Without the discard both copies stay.",
        ],
        {"type": "sw_protected", "host_memory": "1G", "seed": 2},
    )
    s.note("A KVM_X86_SW_PROTECTED_VM with 16 MiB of private RAM backed by one guest_memfd.")
    layout(s)
    free0 = s.free()
    s.note(f"The guest writes 256 private pages (1 MiB) at 6 MiB. Host free before: {free0}.")
    s.burst("guest_access", pages(6 * MB, 256, write=True, value="0x11"))
    s.note(f"1 MiB of guest_memfd folios now back them. Host free: {s.free()}.")
    s.note(
        "The guest asks to share the first 512K (a bounce buffer). QEMU: KVM_SET_MEMORY_ATTRIBUTES(0) ..."
    )
    s.op("set_memory_attributes", address=hex(6 * MB), size="512K", attributes=0)
    s.note(
        "... then fallocate(PUNCH_HOLE|KEEP_SIZE) on the guest_memfd: the private copy is freed."
    )
    s.op("fallocate", fd=3, mode=["KEEP_SIZE", "PUNCH_HOLE"], offset=hex(6 * MB), len="512K")
    s.burst("guest_access", pages(6 * MB, 128, write=True, value="0x22"))
    s.note(
        f"The guest used the shared pages: QEMU's memory backs them now. Host free: {s.free()} (unchanged: one copy each)."
    )
    s.note(
        "Back to private: KVM_SET_MEMORY_ATTRIBUTES(PRIVATE), then madvise(DONTNEED) drops QEMU's copy."
    )
    s.op("set_memory_attributes", address=hex(6 * MB), size="512K", attributes=["PRIVATE"])
    s.op("madvise", hva=hex(HVA + 6 * MB), len="512K", advice="DONTNEED")
    s.burst("guest_access", pages(6 * MB, 128, write=True, value="0x33"))
    before = s.free()
    s.note(
        f"Private again, one copy. Host free: {before}. Now the same conversion WITHOUT the discard ..."
    )
    s.op("set_memory_attributes", address=hex(6 * MB + 512 * 1024), size="512K", attributes=0)
    s.note(
        "Pink: shared now, but the 512K of private guest_memfd folios behind it were never "
        f"punched. They stay allocated (host free still {s.free()}) ..."
    )
    s.burst("guest_access", pages(6 * MB + 512 * 1024, 128, write=True, value="0x44"))
    s.note(
        f"... and when the guest uses the shared pages QEMU allocates its own copy: host free "
        f"{before} -> {s.free()}. The same 512K is held twice."
    )
    s.note("Punching the hole late gives the memory back.")
    s.op(
        "fallocate",
        fd=3,
        mode=["KEEP_SIZE", "PUNCH_HOLE"],
        offset=hex(6 * MB + 512 * 1024),
        len="512K",
    )
    s.note(f"Host free: {s.free()}.")
    return s


def gmem_order(order: int) -> Scene:
    other = 9 if order == 0 else 0
    s = Scene(
        f"gmem-order-{order}",
        f"guest_memfd folio order {order}: the same workload gives "
        + ("512 4K leaves" if order == 0 else "one 2M leaf"),
        [
            "The 2022 guest_memfd review debate made concrete: KVM can only map a private",
            "2M leaf when guest_memfd tells it the folio is 2M. Replay gmem-order-"
            f"{other} for the other side.",
        ],
        {"type": "sw_protected", "host_memory": "1G", "gmem_max_order": order, "seed": 3},
    )
    s.note(
        f"Same guest, same workload, gmem_max_order {order}: guest_memfd allocates "
        + (
            "4K folios only (upstream today)."
            if order == 0
            else "2M folios (the huge-page series)."
        )
    )
    layout(s)
    s.note("The guest zeroes a 2 MiB buffer at 8 MiB: 512 page writes.")
    s.burst("guest_access", pages(8 * MB, 512, write=True, value="0x00"))
    st = s.stats()
    m = st["mappings"]["private"]
    f = st["gmem_folios"]
    s.note(
        f"Private leaves: {m['4K']} x 4K, {m['2M']} x 2M. guest_memfd folios: "
        f"{f['0']} order-0, {f['9']} order-9. "
        + (
            "512 faults, 512 leaves: the TLB needs 512 entries to cover these 2 MiB."
            if order == 0
            else "One fault, one leaf: the rest of the writes needed no exit."
        )
    )
    r = s.op("guest_access", gpa=hex(9 * MB))
    s.note(
        f"A read in the middle of the buffer reaches a {r.ret['level']} leaf: "
        "the mapping level follows the folio order guest_memfd reports."
    )
    return s


def mixed_2m() -> Scene:
    s = Scene(
        "mixed-2m",
        "A 4K conversion inside a 2M mapping: MIXED, the huge leaf zapped, re-faults at 4K",
        [
            "With 2M guest_memfd folios a private 2M leaf maps the range; converting one 4K page",
            "to shared makes the 2M range MIXED (KVM_LPAGE_MIXED_FLAG): no huge leaf may map it.",
        ],
        {"type": "sw_protected", "host_memory": "1G", "gmem_max_order": 9, "seed": 4},
    )
    s.note("sw_protected VM, guest_memfd with 2M folios, 16 MiB private RAM.")
    layout(s)
    r = s.op("guest_access", gpa=hex(8 * MB), write=True, value="0x77")
    s.note(
        f"One private write at 8 MiB: a 2M folio and a {r.ret['level']} private leaf (vermillion)."
    )
    s.note("The guest shares ONE page at 8 MiB + 64K: KVM_SET_MEMORY_ATTRIBUTES(0) on 4K ...")
    s.op("set_memory_attributes", address=hex(8 * MB + 0x10000), size="4K", attributes=0)
    st = s.stats()["mappings"]["private"]
    s.note(
        f"... the 2M range is now MIXED and its huge leaf was zapped "
        f"(private leaves left: {st['4K'] + st['2M']}). A 2M leaf can no longer map it."
    )
    s.op(
        "fallocate", fd=3, mode=["KEEP_SIZE", "PUNCH_HOLE"], offset=hex(8 * MB + 0x10000), len="4K"
    )
    s.note("QEMU punches the private page out of the folio. The guest touches the range again:")
    s.burst("guest_access", pages(8 * MB, 4))
    r = s.op("guest_access", gpa=hex(8 * MB + 0x10000), write=True, value="0x55")
    st = s.stats()["mappings"]
    s.note(
        f"Every fault in the MIXED range maps 4K: private {st['private']['4K']} x 4K, "
        f"shared {st['shared']['4K']} x 4K at 8 MiB + 64K."
    )
    s.note("Converting the page back to private clears MIXED; the next zap lets a 2M leaf return.")
    s.op("set_memory_attributes", address=hex(8 * MB + 0x10000), size="4K", attributes=["PRIVATE"])
    s.op("madvise", hva=hex(HVA + 8 * MB + 0x10000), len="4K", advice="DONTNEED")
    r = s.op("guest_access", gpa=hex(8 * MB + 0x10000), write=True, value="0x66")
    s.note(
        f"Re-faulted at {r.ret['level']}: the leaves already installed stay 4K until the range is zapped."
    )
    return s


def fault_race() -> Scene:
    s = Scene(
        "fault-race",
        "Fault vs invalidation: hold a fault, punch the hole, resume, the fault retries",
        [
            "KVM's fault path snapshots mmu_invalidate_seq before kvm_faultin_pfn() and",
            "re-checks it under mmu_lock; an invalidation in between forces RET_PF_RETRY.",
        ],
        {"type": "sw_protected", "host_memory": "1G", "seed": 5},
    )
    layout(s)
    s.note("A vCPU faults on a private page at 8 MiB; we stop it after it got its pfn (hold).")
    r = s.op("guest_access", gpa=hex(8 * MB), write=True, value="0x99", hold=True)
    s.note(
        f"In flight (in_flight = {str(r.ret.get('in_flight')).lower()}): the fault has its pfn "
        f"and its snapshot of mmu_invalidate_seq = {s.stats()['mmu_invalidate_seq']}; no leaf yet."
    )
    s.note(
        "Meanwhile the VMM punches a hole over that page: the folio is freed, invalidate begin/end bumps the sequence."
    )
    s.op("fallocate", fd=3, mode=["KEEP_SIZE", "PUNCH_HOLE"], offset=hex(8 * MB), len="4K")
    s.note(f"mmu_invalidate_seq is now {s.stats()['mmu_invalidate_seq']}. The vCPU resumes ...")
    r = s.op("vcpu_resume")
    s.note(
        f"... sees the sequence moved: RET_PF_RETRY (retried = {str(r.ret.get('retried')).lower()}). "
        f"The retry faults a fresh folio (pfn {r.ret.get('pfn')}): the freed page is never mapped."
    )
    s.note("Without an invalidation in between, a held fault just installs its leaf.")
    s.op("guest_access", gpa=hex(10 * MB), hold=True)
    r = s.op("vcpu_resume")
    s.note(f"retried = {str(bool(r.ret.get('retried'))).lower()}, level {r.ret.get('level')}.")
    return s


def memory_failure() -> Scene:
    s = Scene(
        "memory-failure",
        "A memory error on a guest_memfd folio: the page is poisoned, the guest gets EHWPOISON",
        [
            "memory_failure(pfn) on a page guest_memfd owns: the folio is marked hwpoison,",
            "KVM's leaves to it are zapped and the next private access exits with EHWPOISON.",
            "The pfn below is the one this deterministic engine allocates for GPA 0x803000.",
        ],
        {"type": "sw_protected", "host_memory": "1G", "seed": 6},
    )
    layout(s)
    s.note("The guest writes 16 private pages at 8 MiB.")
    s.burst("guest_access", pages(8 * MB, 16, write=True, value="0xab"))
    pfn = s.inspect(8 * MB + 0x3000)["folio"]["pfn"]
    s.note(
        f"The host's memory controller reports an uncorrectable error in pfn {pfn:#x}: the guest_memfd page behind GPA 0x803000."
    )
    s.op("memory_failure", pfn=hex(pfn))
    s.note(
        "guest_memfd's error_remove_folio: the folio is hwpoison (black), its private leaf zapped."
    )
    s.op("guest_access", expect="EHWPOISON", gpa=hex(8 * MB + 0x3000))
    s.note(
        "The guest touches it again: KVM_EXIT_MEMORY_FAULT with EHWPOISON; the VMM injects a machine check."
    )
    s.op("guest_access", gpa=hex(8 * MB + 0x4000))
    s.note("Its neighbours (other folios) are unaffected.")
    return s


def gmem_close() -> Scene:
    s = Scene(
        "gmem-close",
        "Closing the guest_memfd: memslots survive, folios are freed, private accesses fail",
        [
            "The last close of a guest_memfd unbinds it from its memslots, zaps what it mapped",
            "(one invalidation) and frees its folios; later private accesses exit with EFAULT.",
        ],
        {"type": "sw_protected", "host_memory": "1G", "seed": 7},
    )
    layout(s)
    s.note("The guest writes 1 MiB of private memory and 64K of shared memory.")
    s.burst("guest_access", pages(6 * MB, 256, write=True, value="0x5a"))
    s.op("set_memory_attributes", address=hex(12 * MB), size="64K", attributes=0)
    s.burst("guest_access", pages(12 * MB, 16, write=True, value="0xa5"))
    s.note(f"Host free: {s.free()}. The VMM closes the guest_memfd (fd 3), its last reference ...")
    s.op("close", fd=3)
    s.note(
        f"... private leaves zapped, folios freed (host free: {s.free()}); memslot 0 survives, "
        "unbound (yellow: private with no guest_memfd)."
    )
    s.op("guest_access", expect="EFAULT", gpa=hex(6 * MB))
    s.note("A private access: KVM_EXIT_MEMORY_FAULT (EFAULT) — there is no memory behind it.")
    r = s.op("guest_access", gpa=hex(12 * MB))
    s.note(f"Shared memory still works: the read returns {r.ret['value']:#x}.")
    return s


def memslot_delete() -> Scene:
    s = Scene(
        "memslot-delete",
        "Deleting a memslot under a faulting vCPU: hold, delete, resume",
        [
            "A fault in flight on a memslot that KVM_SET_USER_MEMORY_REGION2 deletes: the",
            "delete zaps the slot (an invalidation), the fault retries and finds no memslot.",
        ],
        {"type": "sw_protected", "host_memory": "1G", "seed": 8},
    )
    layout(s, 16 * MB)
    s.note(
        "A second memslot: 8 MiB at 16 MiB with its own guest_memfd (fd 4), private; the guest uses 8 pages."
    )
    s.op("create_guest_memfd", size="8M")
    s.op(
        "set_user_memory_region2",
        slot=1,
        flags=["GUEST_MEMFD"],
        guest_phys_addr=hex(16 * MB),
        memory_size="8M",
        userspace_addr=hex(HVA + 16 * MB),
        guest_memfd=4,
    )
    s.op("set_memory_attributes", address=hex(16 * MB), size="8M", attributes=["PRIVATE"])
    s.burst("guest_access", pages(16 * MB, 8, write=True, value="0x10"))
    s.note("vCPU 0 faults on 20 MiB and is held after kvm_faultin_pfn().")
    s.op("guest_access", gpa=hex(20 * MB), write=True, value="0x20", hold=True)
    s.note("The VMM deletes memslot 1 (memory_size 0): its leaves are zapped, its binding dropped.")
    s.op("set_user_memory_region2", slot=1, guest_phys_addr=hex(16 * MB), memory_size=0)
    r = s.op("vcpu_resume", expect="EFAULT")
    s.note(
        f"The fault retries (retried = {str(r.ret.get('retried')).lower()}) and finds no memslot: "
        f"{r.ret.get('exit', {}).get('reason')} for a private access — the VMM must handle it."
    )
    return s


def touch_before_accept() -> Scene:
    s = Scene(
        "touch-before-accept",
        "A TD touching a page it never accepted is killed",
        [
            "A private access to a gfn with no S-EPT leaf makes KVM AUG a PENDING page; the",
            "re-executed access finds it PENDING and (SEPT_VE_DISABLE) the TD is killed.",
        ],
        {"type": "tdx", "host_memory": "1G", "seed": 9},
    )
    layout(s)
    s.op("tdx_init_mem_region", gpa=hex(15 * MB), nr_pages=16, measure=True, value="0x90")
    s.op("tdx_finalize_vm")
    s.note("A finalized 16 MiB TD. A well-behaved guest accepts before it touches:")
    s.op("guest_accept", gpa=hex(8 * MB))
    s.op("guest_access", gpa=hex(8 * MB), write=True, value="0x01")
    s.note("A buggy guest writes a page at 10 MiB it never accepted ...")
    r = s.op("guest_access", expect="EIO", gpa=hex(10 * MB), write=True, value="0x02")
    s.note(
        f"... KVM AUGs a PENDING page (green), the access finds it PENDING: the TD is dead "
        f"(vm_dead = {str(r.ret.get('vm_dead')).lower()})."
    )
    s.op("guest_access", expect="EIO", gpa=hex(8 * MB))
    s.note("Everything after that fails with EIO: the TD has to be torn down.")
    return s


BUILDERS = (
    td_boot,
    qemu_conversion,
    lambda: gmem_order(0),
    lambda: gmem_order(9),
    mixed_2m,
    fault_race,
    memory_failure,
    gmem_close,
    memslot_delete,
    touch_before_accept,
)


def main() -> int:
    for build in BUILDERS:
        build().write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
