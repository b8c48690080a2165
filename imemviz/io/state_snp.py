"""The `snp` section of a state file: the launch state and the RMP as rows of runs.

``{"launched": bool, "vmsa_pfn": pfn | null, "rmp": [[pfn, gpa, count, size, flags]]}``:
each row is `count` consecutive pfns from `pfn` assigned to consecutive guest pages
from `gpa`, with one entry size ("4K", or "2M" for whole 2M entries) and one flag set
(`flags` a comma-separated subset of "validated", "immutable", "vmsa"; "" for none).
Unassigned (hypervisor-owned) pfns have no row.  The section is present only for
`snp` VMs (docs/state-format.md).
"""

from __future__ import annotations

from typing import Any

from imemviz.io.state_fields import address, array, boolean, count, enum, fail, obj
from imemviz.model.rmp import (
    ASSIGNED,
    IMMUTABLE,
    PMD_PAGES,
    SIZE_2M,
    VALIDATED,
    VMSA,
    RmpRun,
    RmpTable,
)

FLAG_NAMES = {"validated": VALIDATED, "immutable": IMMUTABLE, "vmsa": VMSA}
GFN_LIMIT = 1 << 52
MAX_ROWS = 10_000_000


def flags_text(flags: int) -> str:
    return ",".join(name for name, bit in FLAG_NAMES.items() if flags & bit)


def rmp_rows(rmp: RmpTable) -> list[list[Any]]:
    """The RMP's assigned runs as state rows (also what diff compares)."""
    return [
        [
            hex(r.pfn),
            hex(r.gfn << 12),
            r.count,
            "2M" if r.flags & SIZE_2M else "4K",
            flags_text(r.flags),
        ]
        for r in rmp.runs()
    ]


def document(vm: Any) -> dict[str, Any] | None:
    snp = vm.snp
    if snp is None:
        return None
    return {
        "launched": snp.launched,
        "vmsa_pfn": None if snp.vmsa_pfn is None else hex(snp.vmsa_pfn),
        "rmp": rmp_rows(snp.rmp),
    }


def build(vm: Any, v: Any, npages: int) -> int:
    """Fill `vm.snp` from the section (checked); returns the number of rows read."""
    path = "$.snp"
    if vm.snp is None:
        if v is not None:
            fail(path, f"must be absent for a {vm.config.type} VM (only SNP VMs have an RMP)")
        return 0
    if v is None:
        return 0  # an SNP VM saved with nothing launched or assigned
    obj(v, path, ("launched", "rmp"), ("vmsa_pfn",))
    vm.snp.launched = boolean(v["launched"], f"{path}.launched")
    vp = v.get("vmsa_pfn")
    vm.snp.vmsa_pfn = (
        None if vp is None else address(vp, f"{path}.vmsa_pfn", npages - 1, "pfn", "host memory")
    )
    rows = array(v["rmp"], f"{path}.rmp", MAX_ROWS)
    end = 0
    for i, row in enumerate(rows):
        p = f"{path}.rmp[{i}]"
        if type(row) is not list or len(row) != 5:
            fail(p, "expected a row [pfn, gpa, count, size, flags]")
        pfn = address(row[0], f"{p}[0]", npages - 1, "pfn", "host memory")
        gpa = address(row[1], f"{p}[1]", (GFN_LIMIT << 12) - 1, "gpa")
        n = count(row[2], f"{p}[2]", npages)
        size_2m = enum(row[3], f"{p}[3]", {"4K": False, "2M": True})
        if type(row[4]) is not str:
            fail(f"{p}[4]", 'expected a string of flags like "validated,immutable"')
        flags = ASSIGNED
        for name in filter(None, row[4].split(",")):
            if name not in FLAG_NAMES:
                fail(f"{p}[4]", f"unknown flag {name!r} (known: {', '.join(FLAG_NAMES)})")
            flags |= FLAG_NAMES[name]
        if gpa & 0xFFF:
            fail(f"{p}[1]", "gpa must be 4K aligned")
        if pfn + n > npages:
            fail(p, f"pfns {hex(pfn)}-{hex(pfn + n - 1)} are outside host memory")
        if (gpa >> 12) + n > GFN_LIMIT:
            fail(p, "gpas run past the guest physical address space")
        if size_2m:
            flags |= SIZE_2M
            if pfn % PMD_PAGES or n % PMD_PAGES or (gpa >> 12) % PMD_PAGES:
                fail(p, "a 2M entry run must be 2M aligned (pfn and gpa) and whole 2M entries")
        if pfn < end:
            fail(p, "rows must be sorted by pfn and must not overlap")
        end = pfn + n
        vm.snp.rmp.load_run(RmpRun(pfn, n, gpa >> 12, flags))
    return len(rows)
