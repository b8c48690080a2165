"""parse_op / op_to_dict: every op, its defaults, the integer spellings and each kind of error."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imemviz.model import ops
from imemviz.model import ops as O
from imemviz.model.ops import (
    OPS,
    REQUIRED,
    Close,
    CreateGuestMemfd,
    Fallocate,
    GuestAccept,
    GuestAccess,
    GuestMapGpaRange,
    HostAccess,
    HostMmapPfnmap,
    Inspect,
    Madvise,
    MemfdCreate,
    MemoryEncryptRegRegion,
    MemoryEncryptUnregRegion,
    MemoryFailure,
    Note,
    OpError,
    PreFaultMemory,
    SetMemoryAttributes,
    SetUserMemoryRegion,
    SetUserMemoryRegion2,
    Stats,
    TdxFinalizeVm,
    TdxInitMemRegion,
    VcpuResume,
    op_fields,
    op_to_dict,
    parse_op,
)

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1

# The contract's table (section 3): op -> fields, in order.
CONTRACT_FIELDS = {
    "create_guest_memfd": ["size", "flags"],
    "set_user_memory_region2": [
        "slot",
        "flags",
        "guest_phys_addr",
        "memory_size",
        "userspace_addr",
        "guest_memfd",
        "guest_memfd_offset",
    ],
    "set_user_memory_region": [
        "slot",
        "flags",
        "guest_phys_addr",
        "memory_size",
        "userspace_addr",
        "private_fd",
        "private_offset",
    ],
    "set_memory_attributes": ["address", "size", "attributes", "flags"],
    "fallocate": ["fd", "mode", "offset", "len"],
    "close": ["fd"],
    "guest_access": ["gpa", "vcpu", "write", "value", "private", "hold"],
    "vcpu_resume": ["vcpu"],
    "guest_accept": ["gpa", "level"],
    "tdx_init_mem_region": ["gpa", "nr_pages", "measure", "value"],
    "tdx_finalize_vm": [],
    "host_access": ["hva", "write", "value"],
    "madvise": ["hva", "len", "advice"],
    "memory_failure": ["pfn"],
    "pre_fault_memory": ["gpa", "size", "vcpu", "flags"],
    "guest_map_gpa_range": ["gpa", "size", "private", "vcpu"],
    "snp_launch_update": ["gpa", "size", "type", "value"],
    "snp_launch_finish": [],
    "guest_pvalidate": ["gpa", "level", "validate"],
    "memfd_create": ["size", "flags"],
    "memory_encrypt_reg_region": ["address", "size"],
    "memory_encrypt_unreg_region": ["address", "size"],
    "host_mmap_pfnmap": ["hva", "size", "refcounted"],
    "note": ["text"],
    "inspect": ["gpa"],
    "stats": [],
}

# The smallest valid line of every op, and the op it must give (defaults filled in).
MINIMAL = [
    ({"op": "create_guest_memfd", "size": 4096}, CreateGuestMemfd(size=4096, flags=0)),
    (
        {"op": "set_user_memory_region2", "slot": 0, "guest_phys_addr": 0, "memory_size": 0},
        SetUserMemoryRegion2(
            slot=0,
            flags=0,
            guest_phys_addr=0,
            memory_size=0,
            userspace_addr=0,
            guest_memfd=0,
            guest_memfd_offset=0,
        ),
    ),
    (
        {"op": "set_user_memory_region", "slot": 1, "guest_phys_addr": 0, "memory_size": 4096},
        SetUserMemoryRegion(
            slot=1,
            flags=0,
            guest_phys_addr=0,
            memory_size=4096,
            userspace_addr=0,
            private_fd=0,
            private_offset=0,
        ),
    ),
    (
        {"op": "set_memory_attributes", "address": 0, "size": 4096, "attributes": 8},
        SetMemoryAttributes(address=0, size=4096, attributes=8, flags=0),
    ),
    (
        {"op": "fallocate", "fd": 3, "mode": 3, "offset": 0, "len": 4096},
        Fallocate(fd=3, mode=3, offset=0, len=4096),
    ),
    ({"op": "close", "fd": 3}, Close(fd=3)),
    (
        {"op": "guest_access", "gpa": 0x1000},
        GuestAccess(gpa=0x1000, vcpu=0, write=False, value=None, private=None, hold=False),
    ),
    ({"op": "vcpu_resume"}, VcpuResume(vcpu=0)),
    ({"op": "guest_accept", "gpa": 0}, GuestAccept(gpa=0, level=1)),
    (
        {"op": "tdx_init_mem_region", "gpa": 0, "nr_pages": 1},
        TdxInitMemRegion(gpa=0, nr_pages=1, measure=True, value=0),
    ),
    ({"op": "tdx_finalize_vm"}, TdxFinalizeVm()),
    ({"op": "host_access", "hva": 0x7000}, HostAccess(hva=0x7000, write=False, value=None)),
    ({"op": "madvise", "hva": 0, "len": 4096}, Madvise(hva=0, len=4096, advice="DONTNEED")),
    ({"op": "memory_failure", "pfn": 5}, MemoryFailure(pfn=5)),
    (
        {"op": "pre_fault_memory", "gpa": 0, "size": 4096},
        PreFaultMemory(gpa=0, size=4096, vcpu=0, flags=0),
    ),
    (
        {"op": "guest_map_gpa_range", "gpa": 0, "size": 4096, "private": True},
        GuestMapGpaRange(gpa=0, size=4096, private=True, vcpu=0),
    ),
    (
        {"op": "snp_launch_update", "gpa": 0, "size": 4096},
        O.SnpLaunchUpdate(gpa=0, size=4096, type="NORMAL", value=0),
    ),
    ({"op": "snp_launch_finish"}, O.SnpLaunchFinish()),
    ({"op": "guest_pvalidate", "gpa": 0}, O.GuestPvalidate(gpa=0, level=1, validate=True)),
    ({"op": "memfd_create", "size": 4096}, MemfdCreate(size=4096, flags=0)),
    (
        {"op": "memory_encrypt_reg_region", "address": 0, "size": 4096},
        MemoryEncryptRegRegion(address=0, size=4096),
    ),
    (
        {"op": "memory_encrypt_unreg_region", "address": 0, "size": 4096},
        MemoryEncryptUnregRegion(address=0, size=4096),
    ),
    (
        {"op": "host_mmap_pfnmap", "hva": 0x7000, "size": 4096},
        HostMmapPfnmap(hva=0x7000, size=4096, refcounted=False),
    ),
    ({"op": "note", "text": "hello"}, Note(text="hello")),
    ({"op": "inspect", "gpa": 0}, Inspect(gpa=0)),
    ({"op": "stats"}, Stats()),
]
MINIMAL_BY_NAME = {d["op"]: d for d, _ in MINIMAL}


def error_of(d: Any) -> OpError:
    with pytest.raises(OpError) as info:
        parse_op(d)
    return info.value


def with_field(name: str, field: str, value: Any) -> dict[str, Any]:
    d = dict(MINIMAL_BY_NAME[name])
    d[field] = value
    return d


# ------------------------------------------------------------ the op set


def test_ops_are_exactly_the_contracts() -> None:
    assert list(OPS) == list(CONTRACT_FIELDS)
    for name, cls in OPS.items():
        assert name == cls.NAME
        assert {f.name for f in attrs.fields(cls)} == set(CONTRACT_FIELDS[name])
        assert [f.name for f in op_fields(name)] == CONTRACT_FIELDS[name]
        assert op_fields(cls) == op_fields(name)


def test_every_op_has_a_minimal_case() -> None:
    assert sorted(MINIMAL_BY_NAME) == sorted(OPS)


@pytest.mark.parametrize(("line", "expected"), MINIMAL, ids=[d["op"] for d, _ in MINIMAL])
def test_minimal_line_and_defaults(line: dict[str, Any], expected: ops.Op) -> None:
    op = parse_op(line)
    assert op == expected
    assert type(op) is type(expected)
    # The canonical form of a minimal line carries only the required fields.
    required = {f.name for f in op_fields(op.NAME) if f.default is REQUIRED}
    assert set(op_to_dict(op)) == {"op"} | required
    assert parse_op(op_to_dict(op)) == op


def test_ops_are_frozen_and_hashable() -> None:
    op = parse_op({"op": "close", "fd": 3})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        op.fd = 4  # type: ignore[misc]
    assert hash(op) == hash(Close(3))


def test_t_is_allowed_and_ignored() -> None:
    assert parse_op({"op": "stats", "t": 1.5}) == Stats()


# ------------------------------------------------------ integer spellings


@pytest.mark.parametrize(
    ("spelling", "value"),
    [
        (4096, 4096),
        ("0x1000", 4096),
        ("0X1000", 4096),
        ("4K", 4096),
        ("4k", 4096),
        ("2M", 2 << 20),
        ("4G", 4 << 30),
        ("1T", 1 << 40),
        ("123", 123),
        (" 0xc0000000 ", 0xC0000000),
    ],
)
def test_integer_spellings(spelling: Any, value: int) -> None:
    assert parse_op({"op": "create_guest_memfd", "size": spelling}).size == value


def test_all_integers_are_python_ints() -> None:
    op = parse_op(
        {
            "op": "set_user_memory_region2",
            "slot": "0x1",
            "flags": ["GUEST_MEMFD"],
            "guest_phys_addr": "1G",
            "memory_size": "2M",
            "userspace_addr": "0x7f0000000000",
            "guest_memfd": "3",
            "guest_memfd_offset": "0x200000",
        }
    )
    for f in attrs.fields(type(op)):
        assert type(getattr(op, f.name)) is int, f.name
    assert op.flags == 4 and op.guest_memfd == 3 and op.memory_size == 2 << 20


U32_FIELDS = [
    ("set_user_memory_region2", "slot"),
    ("set_user_memory_region2", "flags"),
    ("set_user_memory_region2", "guest_memfd"),
    ("set_user_memory_region", "slot"),
    ("set_user_memory_region", "flags"),
]
U64_FIELDS = [
    ("create_guest_memfd", "size"),
    ("create_guest_memfd", "flags"),
    ("set_user_memory_region2", "guest_phys_addr"),
    ("set_user_memory_region2", "memory_size"),
    ("set_user_memory_region2", "userspace_addr"),
    ("set_user_memory_region2", "guest_memfd_offset"),
    ("set_user_memory_region", "guest_phys_addr"),
    ("set_user_memory_region", "memory_size"),
    ("set_user_memory_region", "userspace_addr"),
    ("set_memory_attributes", "address"),
    ("set_memory_attributes", "size"),
    ("set_memory_attributes", "attributes"),
    ("set_memory_attributes", "flags"),
    ("guest_access", "gpa"),
    ("guest_accept", "gpa"),
    ("tdx_init_mem_region", "gpa"),
    ("tdx_init_mem_region", "nr_pages"),
    ("host_access", "hva"),
    ("madvise", "hva"),
    ("madvise", "len"),
    ("memory_failure", "pfn"),
    ("inspect", "gpa"),
]
UNSIGNED = [(op, f, U32) for op, f in U32_FIELDS] + [(op, f, U64) for op, f in U64_FIELDS]


@pytest.mark.parametrize(("name", "field", "top"), UNSIGNED)
def test_unsigned_fields(name: str, field: str, top: int) -> None:
    assert getattr(parse_op(with_field(name, field, -1)), field) == top
    assert getattr(parse_op(with_field(name, field, "-1")), field) == top
    assert getattr(parse_op(with_field(name, field, top)), field) == top
    assert getattr(parse_op(with_field(name, field, hex(top))), field) == top
    for bad in (-2, top + 1, "-0x2"):
        e = error_of(with_field(name, field, bad))
        assert (e.op, e.field) == (name, field)
        assert "out of range" in e.message


def test_unsigned_fields_cover_the_u32_u64_names_of_the_brief() -> None:
    kinds = {(n, f.name): f.kind for n in OPS for f in op_fields(n)}
    for name, field in U32_FIELDS:
        assert kinds[name, field] in ("u32", "flags")
    for name, field in U64_FIELDS:
        assert kinds[name, field] in ("u64", "flags")


def test_fd_is_a_c_int() -> None:
    # A negative fd is a runtime EBADF, not a parse error.
    assert parse_op({"op": "close", "fd": -1}).fd == -1
    assert parse_op({"op": "close", "fd": -(1 << 31)}).fd == -(1 << 31)
    assert parse_op({"op": "close", "fd": (1 << 31) - 1}).fd == (1 << 31) - 1
    for bad in (1 << 31, -(1 << 31) - 1):
        assert error_of({"op": "close", "fd": bad}).field == "fd"
    e = error_of(with_field("fallocate", "fd", 1 << 40))
    assert (e.op, e.field) == ("fallocate", "fd")


def test_fallocate_mode_offset_len() -> None:
    assert parse_op(with_field("fallocate", "offset", -4096)).offset == -4096
    assert parse_op(with_field("fallocate", "len", -1)).len == -1
    assert parse_op(with_field("fallocate", "len", (1 << 63) - 1)).len == (1 << 63) - 1
    for field in ("offset", "len"):
        assert error_of(with_field("fallocate", field, 1 << 63)).field == field
        assert error_of(with_field("fallocate", field, -(1 << 63) - 1)).field == field
    assert parse_op(with_field("fallocate", "mode", (1 << 31) - 1)).mode == (1 << 31) - 1
    for bad in (-1, 1 << 31):
        assert error_of(with_field("fallocate", "mode", bad)).field == "mode"


def test_vcpu_range() -> None:
    assert parse_op({"op": "vcpu_resume", "vcpu": 1023}).vcpu == 1023
    assert parse_op(with_field("guest_access", "vcpu", "0x3ff")).vcpu == 1023
    for bad in (1024, -1):
        assert error_of({"op": "vcpu_resume", "vcpu": bad}).field == "vcpu"
        assert error_of(with_field("guest_access", "vcpu", bad)).field == "vcpu"


@pytest.mark.parametrize(
    "bad",
    [True, False, None, 1.5, 4096.0, [4096], {"x": 1}, "lots", "1.5G", "0xg", ""],
    ids=repr,
)
def test_integer_field_wrong_types(bad: Any) -> None:
    e = error_of({"op": "create_guest_memfd", "size": bad})
    assert (e.op, e.field) == ("create_guest_memfd", "size")
    assert str(e) == f"size: {e.message}"


def test_wrong_type_message_names_the_json_type() -> None:
    e = error_of({"op": "set_memory_attributes", "address": 0, "size": [1], "attributes": 8})
    assert str(e) == "size: expected an integer, got a list"
    assert e.op == "set_memory_attributes"
    assert error_of({"op": "inspect", "gpa": True}).message == "expected an integer, got true"
    assert error_of({"op": "inspect", "gpa": None}).message == "expected an integer, got null"
    # The same words as a state file's errors (model/validate.py): strings as JSON spells them.
    e = error_of({"op": "guest_access", "gpa": 0, "write": "yes"})
    assert e.message == 'expected true or false, got the string "yes"'
    e = error_of({"op": "guest_accept", "gpa": 0, "level": "8K"})
    assert e.message == 'expected one of 4K, 2M, 1G, got the string "8K"'


def test_an_odd_unknown_key_stays_on_one_line() -> None:
    e = error_of({"op": "stats", "a\nb: c": 1})
    assert e.field == '"a\\nb: c"'
    assert "\n" not in str(e)


# ------------------------------------------------------------------ flags


def test_flag_names() -> None:
    assert parse_op({"op": "create_guest_memfd", "size": 1, "flags": ["MMAP"]}).flags == 1
    assert parse_op({"op": "create_guest_memfd", "size": 1, "flags": ["INIT_SHARED"]}).flags == 2
    assert parse_op(with_field("fallocate", "mode", ["KEEP_SIZE", "PUNCH_HOLE"])).mode == 3
    all_modes = ["KEEP_SIZE", "PUNCH_HOLE", "COLLAPSE_RANGE", "ZERO_RANGE", "INSERT_RANGE"]
    assert parse_op(with_field("fallocate", "mode", all_modes)).mode == 1 | 2 | 8 | 16 | 32
    names = ["LOG_DIRTY_PAGES", "READONLY", "GUEST_MEMFD"]
    assert parse_op(with_field("set_user_memory_region2", "flags", names)).flags == 7
    assert parse_op(with_field("set_user_memory_region", "flags", ["READONLY"])).flags == 2
    assert parse_op(with_field("set_memory_attributes", "attributes", ["PRIVATE"])).attributes == 8
    assert parse_op(with_field("set_memory_attributes", "attributes", [])).attributes == 0
    # Integers, hex strings and -1 still work in flag fields.
    assert parse_op(with_field("set_memory_attributes", "attributes", "0x8")).attributes == 8
    assert parse_op(with_field("set_memory_attributes", "flags", -1)).flags == U64


@pytest.mark.parametrize(
    ("name", "field", "value", "words"),
    [
        ("fallocate", "mode", ["KEEP_SIZE", "FOO"], "unknown flag 'FOO'"),
        ("fallocate", "mode", ["keep_size"], "unknown flag 'keep_size'"),
        ("fallocate", "mode", ["FALLOC_FL_KEEP_SIZE"], "unknown flag"),
        ("fallocate", "mode", [1], "flag names must be strings"),
        ("set_memory_attributes", "flags", ["PRIVATE"], "none are defined"),
        ("set_user_memory_region2", "flags", ["PRIVATE"], "GUEST_MEMFD"),
        ("create_guest_memfd", "flags", {"MMAP": True}, "list of flag names"),
        ("set_memory_attributes", "attributes", True, "expected an integer"),
    ],
)
def test_flag_errors(name: str, field: str, value: Any, words: str) -> None:
    e = error_of(with_field(name, field, value))
    assert (e.op, e.field) == (name, field)
    assert words in e.message


# ----------------------------------------------------- the other field kinds


def test_write_and_value() -> None:
    for name in ("guest_access", "host_access"):
        assert parse_op(with_field(name, "write", True) | {"value": 255}).value == 255
        assert parse_op(with_field(name, "write", True) | {"value": "0xff"}).value == 255
        assert parse_op(with_field(name, "value", None)).value is None
        e = error_of(with_field(name, "write", True))
        assert (e.op, e.field, e.message) == (name, "value", "required when write is true")
        e = error_of(with_field(name, "value", 7))
        assert (e.field, e.message) == ("value", "only allowed when write is true")
        e = error_of(with_field(name, "write", False) | {"value": 7})
        assert e.field == "value"
        for bad in (256, -1, True, 1.0):
            e = error_of(with_field(name, "write", True) | {"value": bad})
            assert (e.op, e.field) == (name, "value")
        for bad in (1, 0, None, "true"):
            assert error_of(with_field(name, "write", bad)).field == "write"


def test_tdx_init_mem_region_fields() -> None:
    op = parse_op(
        {"op": "tdx_init_mem_region", "gpa": "2M", "nr_pages": 512, "measure": False, "value": 9}
    )
    assert op == TdxInitMemRegion(gpa=2 << 20, nr_pages=512, measure=False, value=9)
    assert error_of(with_field("tdx_init_mem_region", "value", 256)).field == "value"
    assert error_of(with_field("tdx_init_mem_region", "value", None)).field == "value"
    assert error_of(with_field("tdx_init_mem_region", "measure", 1)).field == "measure"


def test_private_and_hold() -> None:
    assert parse_op(with_field("guest_access", "private", True)).private is True
    assert parse_op(with_field("guest_access", "private", False)).private is False
    assert parse_op(with_field("guest_access", "private", None)).private is None
    assert parse_op(with_field("guest_access", "hold", True)).hold is True
    for bad in (0, "yes", [True]):
        assert error_of(with_field("guest_access", "private", bad)).field == "private"
        assert error_of(with_field("guest_access", "hold", bad)).field == "hold"


def test_level() -> None:
    for name, level in (("4K", 1), ("2M", 2), ("1G", 3)):
        assert parse_op({"op": "guest_accept", "gpa": 0, "level": name}).level == level
    for bad in ("4k", "512G", 2, None, ["2M"]):
        e = error_of({"op": "guest_accept", "gpa": 0, "level": bad})
        assert (e.op, e.field) == ("guest_accept", "level")


def test_advice_and_text() -> None:
    for bad in ("FREE", "dontneed", 4, None):
        assert error_of(with_field("madvise", "advice", bad)).field == "advice"
    assert parse_op({"op": "note", "text": ""}).text == ""
    assert parse_op({"op": "note", "text": "é ✓"}).text == "é ✓"
    for bad in (1, None, ["a"]):
        assert error_of({"op": "note", "text": bad}).field == "text"


# -------------------------------------------------------- structural errors


def test_unknown_field() -> None:
    e = error_of(with_field("guest_access", "privat", True))
    assert (e.op, e.field) == ("guest_access", "privat")
    assert 'did you mean "private"' in e.message
    e = error_of({"op": "stats", "gpa": 0})
    assert (e.op, e.field) == ("stats", "gpa")
    assert "unknown field" in e.message


@pytest.mark.parametrize("name", [n for n in OPS if any(f.required for f in op_fields(n))])
def test_each_missing_required_field(name: str) -> None:
    for f in op_fields(name):
        if not f.required:
            continue
        d = dict(MINIMAL_BY_NAME[name])
        del d[f.name]
        e = error_of(d)
        assert (e.op, e.field, e.message) == (name, f.name, "missing required field")


def test_op_errors() -> None:
    e = error_of({"gpa": 0})
    assert (e.field, e.op) == ("op", None)
    assert e.message == 'missing field "op"'
    e = error_of({"op": "guest_acces", "gpa": 0})
    assert e.field == "op"
    assert 'unknown op "guest_acces"' in e.message and '"guest_access"' in e.message
    assert "ops: create_guest_memfd" in error_of({"op": "zzzz"}).message
    assert "must be a string" in error_of({"op": 3}).message
    assert "must be a string" in error_of({"op": ["stats"]}).message
    e = error_of([{"op": "stats"}])
    assert e.field == "op" and "JSON object" in e.message
    assert str(e).startswith("op: ")


def test_op_error_is_a_value_error() -> None:
    e = OpError("size", "too big", "create_guest_memfd")
    assert isinstance(e, ValueError)
    assert str(e) == "size: too big"
    assert (e.field, e.message, e.op) == ("size", "too big", "create_guest_memfd")


# ------------------------------------------------------- canonical form


def test_op_to_dict_canonical_form() -> None:
    op = parse_op(
        {
            "op": "set_user_memory_region2",
            "slot": 1,
            "flags": 4,
            "guest_phys_addr": 0xC0000000,
            "memory_size": 1 << 30,
            "guest_memfd": 3,
        }
    )
    assert op_to_dict(op) == {
        "op": "set_user_memory_region2",
        "slot": 1,
        "flags": ["GUEST_MEMFD"],
        "guest_phys_addr": "0xc0000000",
        "memory_size": "1G",
        "guest_memfd": 3,
    }
    assert op_to_dict(GuestAccept(gpa=0x2000, level=2)) == {
        "op": "guest_accept",
        "gpa": "0x2000",
        "level": "2M",
    }
    # Bits with no name stay an integer; a size that is no whole unit stays an integer.
    assert op_to_dict(CreateGuestMemfd(size=4097, flags=5)) == {
        "op": "create_guest_memfd",
        "size": 4097,
        "flags": 5,
    }
    # Defaults are left out, but a value that only compares equal to one is not.
    assert op_to_dict(TdxInitMemRegion(gpa=0, nr_pages=1, measure=False)) == {
        "op": "tdx_init_mem_region",
        "gpa": "0x0",
        "nr_pages": 1,
        "measure": False,
    }
    assert "write" in op_to_dict(GuestAccess(gpa=0, write=True, value=0))
    assert op_to_dict(Stats()) == {"op": "stats"}


def _value_for(kind: str, spec: ops.FieldSpec) -> st.SearchStrategy[Any]:
    """Valid (normalised) values of one field kind."""
    if kind == "u32":
        return st.integers(0, U32)
    if kind == "u64":
        return st.integers(0, U64)
    if kind == "flags":
        top = (1 << 31) - 1 if spec.name == "mode" else U32 if spec.name == "flags" else U64
        return st.integers(0, top)
    if kind == "int":
        return st.integers(-(1 << 31), (1 << 31) - 1)
    if kind == "loff_t":
        return st.integers(-(1 << 63), (1 << 63) - 1)
    if kind == "vcpu":
        return st.integers(0, 1023)
    if kind == "byte":
        return st.integers(0, 255)
    if kind == "bool":
        return st.booleans()
    if kind == "bool?":
        return st.sampled_from([None, True, False])
    if kind == "level":
        return st.sampled_from([1, 2, 3])
    if kind == "advice":
        return st.just("DONTNEED")
    if kind == "snp_page_type":
        return st.sampled_from(ops.SNP_PAGE_TYPE_NAMES)
    assert kind == "str", kind
    return st.text()


@st.composite
def any_op(draw: st.DrawFn) -> ops.Op:
    cls = draw(st.sampled_from(list(OPS.values())))
    kwargs = {f.name: draw(_value_for(f.kind, f)) for f in op_fields(cls)}
    if "write" in kwargs and cls is not TdxInitMemRegion:
        kwargs["value"] = draw(st.integers(0, 255)) if kwargs["write"] else None
    return cls(**kwargs)


@given(any_op())
def test_op_to_dict_round_trips_through_json(op: ops.Op) -> None:
    line = json.dumps(op_to_dict(op))
    assert parse_op(json.loads(line)) == op
