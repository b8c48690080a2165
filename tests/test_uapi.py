"""The kernel's uAPI constants live in imemviz.model.uapi and nowhere else (kernel-internal
limits such as KVM_MEM_SLOTS_NUM stay with the code that enforces them)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from imemviz.model import uapi

ROOT = Path(__file__).resolve().parents[1] / "imemviz"
UAPI_NAME = re.compile(
    r"^(KVM_MEM_(LOG_DIRTY_PAGES|READONLY|GUEST_MEMFD|PRIVATE)$|KVM_MEMORY_|GUEST_MEMFD_FLAG_|FALLOC_FL_|MFD_|PFERR_PRIVATE_ACCESS$"
    r"|V8_MEMORY_EXIT_FLAG_)"
)


def test_no_module_but_uapi_defines_a_uapi_constant() -> None:
    found = []
    for path in ROOT.rglob("*.py"):
        if path.name == "uapi.py":
            continue
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            for t in targets:
                if isinstance(t, ast.Name) and UAPI_NAME.match(t.id):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {t.id}")
    assert found == []


def test_name_tables_turn_around() -> None:
    assert uapi.value_names(uapi.MEM_FLAGS) == {
        1: "LOG_DIRTY_PAGES",
        2: "READONLY",
        4: "GUEST_MEMFD",
    }
    # v1's bit 2 is read under both names and written back as PRIVATE (upm-v8)
    assert uapi.value_names(uapi.MEM_FLAGS_V1_NAMES)[4] == "PRIVATE"
    assert uapi.is_private_attr(uapi.KVM_MEMORY_ATTRIBUTE_PRIVATE)
    assert not uapi.is_private_attr(0)
    # the values include/uapi/linux/kvm.h, memfd.h and falloc.h give
    assert (uapi.KVM_MEMORY_ATTRIBUTE_PRIVATE, uapi.KVM_MEM_GUEST_MEMFD) == (8, 4)
    assert (uapi.FALLOC_FL_KEEP_SIZE, uapi.FALLOC_FL_PUNCH_HOLE) == (1, 2)
    assert (uapi.GUEST_MEMFD_FLAG_MMAP, uapi.GUEST_MEMFD_FLAG_INIT_SHARED) == (1, 2)
