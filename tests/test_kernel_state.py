"""The `kernel` field in state files (docs/state-format.md): recorded, round-tripped, and
absent in files written before it existed, which load as mainline."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from imemviz.io.state import StateError, load_state, save_state, state_document, vm_from_document
from imemviz.model import VM, VMConfig
from imemviz.model.kernels import PROFILES
from imemviz.model.ops import parse_op

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("path", sorted(DATA.glob("state-v1-*.json.gz")), ids=lambda p: p.name)
def test_old_state_files_load_as_mainline(path: Path) -> None:
    raw = json.loads(gzip.decompress(path.read_bytes()))
    assert "kernel" not in raw["vm"]
    assert load_state(path).config.kernel == "mainline"


@pytest.mark.parametrize("kernel", PROFILES)
def test_kernel_round_trips(tmp_path: Path, kernel: str) -> None:
    vm = VM(VMConfig.from_dict({"type": "default", "kernel": kernel, "host_memory": "64M"}))
    vm.apply(parse_op({"op": "memfd_create", "size": "2M", "flags": ["INACCESSIBLE"]}))
    path = tmp_path / "s.json.zst"
    save_state(vm, path)
    copy = load_state(path)
    assert copy.config.kernel == kernel
    assert state_document(copy) == state_document(vm)
    # the next op behaves as the kernel says (ENOTTY on upm-v8)
    op = parse_op({"op": "create_guest_memfd", "size": "2M"})
    assert copy.apply(op) == vm.apply(op)


def test_a_state_a_kernel_cannot_hold_is_refused() -> None:
    doc = state_document(VM(VMConfig.from_dict({"type": "tdx", "host_memory": "64M"})))
    for kernel, what in (("6.12", 'kernel "6.12" cannot create a tdx VM'), ("4.19", "4.19")):
        bad = json.loads(json.dumps(doc))
        bad["vm"]["kernel"] = kernel
        with pytest.raises(StateError, match=r"^\$\.vm\.") as info:
            vm_from_document(bad)
        assert what in str(info.value) and "\n" not in str(info.value)
