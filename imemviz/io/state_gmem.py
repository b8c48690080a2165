"""Memslots and guest_memfd files of a state document, checked and filled: slots,
files with their bindings and folios (`GmemInode.from_arrays(check=False)`: single
folios and runs, checked here first), the slots linked to their files, and the one
invariant the engine relies on that no single field shows (I5: a binding and its
memslot name each other).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

from imemviz.io.state_fields import address, array, boolean, enum, fail, integer, obj
from imemviz.io.state_limits import (
    FD_MAX,
    FOLIOS,
    GFN_BEYOND,
    HVA_PAGES,
    MAX_SLOT_PAGES,
    SLOT_ID_MAX,
    U63,
    U64_END,
    Ctx,
    checked_rows,
)
from imemviz.model.columns import NO_FD, FolioColumns, MemslotColumns, int64
from imemviz.model.guest_memfd import (
    FILE_KINDS,
    GUEST_MEMFD,
    INACCESSIBLE,
    Binding,
    GmemFile,
    GmemInode,
)
from imemviz.model.memslots import Memslot
from imemviz.model.vm import GFN_LIMIT, VM

_SLOT_KEYS = (
    "id",
    "flags",
    "base_gfn",
    "npages",
    "userspace_addr",
    "gmem_file",
    "gmem_fd",
    "gmem_pgoff",
    "gmem_only",
)


def build_memslots(v: Any) -> list[Memslot]:
    entries = array(v, "$.memslots", 2 * 32768)
    out: list[Memslot] = []
    for i, e in enumerate(entries):
        p = f"$.memslots[{i}]"
        obj(e, p, _SLOT_KEYS)
        sid = integer(
            e["id"],
            f"{p}.id",
            0,
            SLOT_ID_MAX,
            "slot id",
            "the slot ids KVM has (address space 0 or 1, slot below 32767)",
        )
        if sid & 0xFFFF >= 32767:
            fail(f"{p}.id", f"slot {sid & 0xFFFF} is beyond KVM_MEM_SLOTS_NUM (32767)")
        if out and sid <= out[-1].id:
            fail(f"{p}.id", "out of order or repeated (memslots are sorted by id)")
        flags = integer(
            e["flags"],
            f"{p}.flags",
            0,
            7,
            "flags",
            "the defined flags (LOG_DIRTY_PAGES 1, READONLY 2, GUEST_MEMFD 4)",
        )
        npages = integer(e["npages"], f"{p}.npages", 1, MAX_SLOT_PAGES, "npages")
        base = address(e["base_gfn"], f"{p}.base_gfn", GFN_LIMIT - npages, "base_gfn", GFN_BEYOND)
        uaddr = address(
            e["userspace_addr"],
            f"{p}.userspace_addr",
            U64_END - (npages << 12),
            "userspace_addr",
            "the 64-bit address space",
        )
        if uaddr & 0xFFF:
            fail(f"{p}.userspace_addr", f"{hex(uaddr)} is not page aligned")
        gfd = e["gmem_fd"]
        if gfd is not None:
            gfd = integer(gfd, f"{p}.gmem_fd", 0, FD_MAX, "gmem_fd")
        if e["gmem_file"] is not None:
            # below 0: an inaccessible memfd no descriptor refers to (upm-v8), keyed -ino
            integer(e["gmem_file"], f"{p}.gmem_file", -U63, FD_MAX, "fd")
        pgoff = address(e["gmem_pgoff"], f"{p}.gmem_pgoff", HVA_PAGES - 1, "gmem_pgoff")
        only = boolean(e["gmem_only"], f"{p}.gmem_only")
        out.append(Memslot(sid, flags, base, npages, uaddr, None, gfd, pgoff, only))
    for as_id in (0, 1):
        mine = sorted((s for s in out if s.as_id == as_id), key=lambda s: s.base_gfn)
        for a, b in pairwise(mine):
            if b.base_gfn < a.end_gfn:
                fail(
                    f"$.memslots[{out.index(b)}].base_gfn",
                    f"slot {b.id} overlaps slot {a.id} in address space {as_id}",
                )
    return out


def link_slots(vm: VM, slots: list[Memslot], raw: list[dict[str, Any]]) -> None:
    files = []
    for i, _s in enumerate(slots):
        fd = raw[i]["gmem_file"]
        if fd is not None and fd not in vm.files:
            fail(f"$.memslots[{i}].gmem_file", f"no guest_memfd file has fd {fd}")
        files.append(NO_FD if fd is None else fd)
    # Every value checked above (the file's messages name the JSON path): from_arrays'
    # own checks, a few rows, then pass.
    cols = [(s.id, s.flags, s.base_gfn, s.npages, s.userspace_addr, s.gmem_pgoff) for s in slots]
    a = np.array(cols, np.int64).reshape(-1, 6)
    vm.memslots.from_arrays(
        MemslotColumns(
            a[:, 0],
            a[:, 1],
            a[:, 2],
            a[:, 3],
            a[:, 4],
            int64(files),
            int64([NO_FD if s.gmem_fd is None else s.gmem_fd for s in slots]),
            a[:, 5],
            np.array([s.gmem_only for s in slots], bool),
        ),
        vm.files,
    )


def build_gmem_files(vm: VM, v: Any, slots: list[Memslot], ctx: Ctx) -> dict[int, GmemFile]:
    entries = array(v, "$.gmem_files", 1 << 20)
    slot_ids = {s.id for s in slots}
    files: dict[int, GmemFile] = {}
    inos: set[int] = set()
    last_fd = -U63 - 1
    for i, e in enumerate(entries):
        p = f"$.gmem_files[{i}]"
        obj(e, p, ("fd", "ino", "size", "flags", "bindings", "folios"), ("kind",))
        kind = enum(e.get("kind", GUEST_MEMFD), f"{p}.kind", {k: k for k in FILE_KINDS})
        if kind == INACCESSIBLE and type(e["fd"]) is int and e["fd"] < 0:
            fd = integer(e["fd"], f"{p}.fd", -U63, -1, "fd")
            if fd != -integer(e["ino"], f"{p}.ino", 1, U63, "ino"):
                fail(f"{p}.fd", "an inaccessible memfd without a descriptor is keyed -ino")
        else:
            fd = integer(e["fd"], f"{p}.fd", 3, FD_MAX, "fd")
        if fd <= last_fd:
            fail(f"{p}.fd", "out of order or repeated (files are sorted by fd)")
        ino = integer(
            e["ino"],
            f"{p}.ino",
            1,
            vm.next_ino - 1,
            "ino",
            f"next_ino ({vm.next_ino}): inode numbers are below it",
        )
        if ino in inos:
            fail(f"{p}.ino", f"inode {ino} appears twice")
        inos.add(ino)
        last_fd = fd
        size = integer(e["size"], f"{p}.size", 0 if kind != GUEST_MEMFD else 1, U63, "size")
        if size & 0xFFF:
            fail(f"{p}.size", f"size {size} is not a multiple of 4096")
        flags = integer(
            e["flags"], f"{p}.flags", 0, 3, "flags", "the defined flags (MMAP 1, INIT_SHARED 2)"
        )
        inode = GmemInode(ino, size, flags)
        bindings = []
        for j, b in enumerate(array(e["bindings"], f"{p}.bindings", 2 * 32768)):
            q = f"{p}.bindings[{j}]"
            obj(b, q, ("pgoff", "npages", "slot"))
            pgoff = address(b["pgoff"], f"{q}.pgoff", HVA_PAGES - 1, "pgoff")
            n = integer(b["npages"], f"{q}.npages", 1, MAX_SLOT_PAGES, "npages")
            sid = integer(b["slot"], f"{q}.slot", 0, SLOT_ID_MAX, "slot")
            if sid not in slot_ids:
                fail(f"{q}.slot", f"no memslot has id {sid}")
            bindings.append(Binding(pgoff, n, sid))
        # A memfd may hold pages past i_size: fallocate(KEEP_SIZE) there, and v8's private
        # slots (shmem SGP_WRITE allocates past i_size).
        past_eof = kind != GUEST_MEMFD
        rows = checked_rows(
            ctx,
            e["folios"],
            f"{p}.folios",
            FOLIOS,
            HVA_PAGES if past_eof else inode.npages,
            "the 64-bit file offsets"
            if past_eof
            else f"the end of the file ({hex(inode.npages)} pages)",
            runs=True,
        )
        # A run row stays one run (never expanded).  Every row is checked (`_rows`,
        # messages with the JSON path): filled as it is.
        inode.from_arrays(
            FolioColumns(rows.start, rows.code, rows.pfn, rows.extra.astype(bool), rows.count),
            check=False,
        )
        files[fd] = GmemFile(fd, inode, bindings, kind)
    return files


def check_bindings(vm: VM, doc: dict[str, Any]) -> None:
    """Refuse what the engine relies on and no single field shows (I5: a binding and its
    memslot point at each other); `imemviz check` reports the other invariants."""
    for i, f in enumerate(doc["gmem_files"]):
        fd = f["fd"]
        for j, b in enumerate(vm.files[fd].bindings):
            slot = vm.memslots.by_id.get(b.slot)
            if slot is None or slot.gmem_file is not vm.files[fd]:
                fail(
                    f"$.gmem_files[{i}].bindings[{j}].slot",
                    f"slot {b.slot} does not point back at fd {fd} (invariant I5: a "
                    "binding and its memslot name each other)",
                )
            if slot.npages != b.npages or slot.gmem_pgoff != b.pgoff:
                fail(
                    f"$.gmem_files[{i}].bindings[{j}]",
                    f"does not match slot {b.slot}'s npages and gmem_pgoff (invariant I5)",
                )
    for i, s in enumerate(doc["memslots"]):
        slot = vm.memslots.by_id[s["id"]]
        f = slot.gmem_file
        if f is not None and not any(b.slot == slot.id for b in f.bindings):
            fail(
                f"$.memslots[{i}].gmem_file",
                f"fd {f.fd} has no binding for slot {slot.id} (invariant I5: a binding "
                "and its memslot name each other)",
            )
