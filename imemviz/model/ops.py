"""The contract's operations (section 3): one frozen attrs class per op.

Each class carries the op's contract name in ``NAME`` and its fields under
the contract's field names, every integer already normalised to a Python int
(``-1`` in an unsigned field is stored as the all-ones value, flag-name lists
as the OR of their bits, ``guest_accept.level`` as 1/2/3).

`parse_op` turns one decoded JSON line into an op and is the only place that
validates (contract 3.4): the constructors trust their caller, so that the
engine, the app and the tests build ops for free and `imemviz run` spends its
time in the engine rather than here.  `op_to_dict` gives the canonical JSON
form the recorder writes; it parses back to an equal op.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs

from imemviz.model import validate as V
from imemviz.model.uapi import (
    ATTRIBUTE_FLAGS,
    ATTRIBUTES_OP_FLAGS,
    FALLOC_FLAGS,
    GMEM_FLAGS,
    MEM_FLAGS,
    MEM_FLAGS_V1,
    MEM_FLAGS_V1_NAMES,
    MFD_FLAGS,
)
from imemviz.model.units import LEVEL_BY_NAME, LEVEL_NAMES, U32_MAX, U64_MAX

__all__ = [
    "OPS",
    "REQUIRED",
    "Close",
    "CreateGuestMemfd",
    "Fallocate",
    "FieldSpec",
    "GuestAccept",
    "GuestAccess",
    "GuestMapGpaRange",
    "GuestPvalidate",
    "HostAccess",
    "HostMmapPfnmap",
    "Inspect",
    "Madvise",
    "MemfdCreate",
    "MemoryEncryptRegRegion",
    "MemoryEncryptUnregRegion",
    "MemoryFailure",
    "Note",
    "Op",
    "OpError",
    "PreFaultMemory",
    "SetMemoryAttributes",
    "SetUserMemoryRegion",
    "SetUserMemoryRegion2",
    "SnpLaunchFinish",
    "SnpLaunchUpdate",
    "Stats",
    "TdxFinalizeVm",
    "TdxInitMemRegion",
    "VcpuResume",
    "op_fields",
    "op_to_dict",
    "parse_op",
]

# The kernel's flag names, without their prefix (contract section 3).
# KVM_SET_USER_MEMORY_REGION (v1): bit 2 is the 2022 design's KVM_MEM_PRIVATE (upm-v8); the
# merged name GUEST_MEMFD is read as well, and written back as PRIVATE.

MAX_VCPUS = 1024  # KVM_MAX_VCPUS on x86
C_INT_MIN, C_INT_MAX = -(1 << 31), (1 << 31) - 1
LOFF_MIN, LOFF_MAX = -(1 << 63), (1 << 63) - 1


class OpError(ValueError):
    """An op line is unusable; `field` names the culprit ("op" for the op itself).

    `op` is the op's name once it is known, so a reader can say
    ``set_memory_attributes.size: ...``.
    """

    def __init__(self, field: str, message: str, op: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.op = op


class Op:
    """Base of every op class: ``NAME`` is the contract's op name."""

    __slots__ = ()
    NAME: ClassVar[str]


# ---------------------------------------------------------------- the ops
# Field order is the contract's.  Constructors do not validate: use parse_op
# for anything that comes from outside the program.


@attrs.frozen(slots=True)
class CreateGuestMemfd(Op):
    NAME: ClassVar[str] = "create_guest_memfd"
    size: int
    flags: int = 0


@attrs.frozen(slots=True)
class SetUserMemoryRegion2(Op):
    """KVM_SET_USER_MEMORY_REGION2.  `flags` is keyword-only (it sits between
    required fields in the uAPI struct, which a Python signature cannot do)."""

    NAME: ClassVar[str] = "set_user_memory_region2"
    slot: int
    flags: int = attrs.field(default=0, kw_only=True)
    guest_phys_addr: int
    memory_size: int
    userspace_addr: int = 0
    guest_memfd: int = 0
    guest_memfd_offset: int = 0


@attrs.frozen(slots=True)
class SetUserMemoryRegion(Op):
    """KVM_SET_USER_MEMORY_REGION (v1); `flags` is keyword-only as in v2.  `private_fd` and
    `private_offset` are the upm-v8 extension (kvm_userspace_memory_region_ext)."""

    NAME: ClassVar[str] = "set_user_memory_region"
    slot: int
    flags: int = attrs.field(default=0, kw_only=True)
    guest_phys_addr: int
    memory_size: int
    userspace_addr: int = 0
    private_fd: int = 0
    private_offset: int = 0


@attrs.frozen(slots=True)
class SetMemoryAttributes(Op):
    NAME: ClassVar[str] = "set_memory_attributes"
    address: int
    size: int
    attributes: int
    flags: int = 0


@attrs.frozen(slots=True)
class Fallocate(Op):
    NAME: ClassVar[str] = "fallocate"
    fd: int
    mode: int
    offset: int
    len: int


@attrs.frozen(slots=True)
class Close(Op):
    NAME: ClassVar[str] = "close"
    fd: int


@attrs.frozen(slots=True)
class GuestAccess(Op):
    NAME: ClassVar[str] = "guest_access"
    gpa: int
    vcpu: int = 0
    write: bool = False
    value: int | None = None
    private: bool | None = None
    hold: bool = False


@attrs.frozen(slots=True)
class VcpuResume(Op):
    NAME: ClassVar[str] = "vcpu_resume"
    vcpu: int = 0


@attrs.frozen(slots=True)
class GuestAccept(Op):
    """TDG.MEM.PAGE.ACCEPT; `level` is the kernel's PG_LEVEL (1=4K, 2=2M, 3=1G)."""

    NAME: ClassVar[str] = "guest_accept"
    gpa: int
    level: int = 1


@attrs.frozen(slots=True)
class TdxInitMemRegion(Op):
    NAME: ClassVar[str] = "tdx_init_mem_region"
    gpa: int
    nr_pages: int
    measure: bool = True
    value: int = 0


@attrs.frozen(slots=True)
class TdxFinalizeVm(Op):
    NAME: ClassVar[str] = "tdx_finalize_vm"


@attrs.frozen(slots=True)
class SnpLaunchUpdate(Op):
    """KVM_SEV_SNP_LAUNCH_UPDATE: `type` is a KVM_SEV_SNP_PAGE_TYPE_* name; `value` the
    byte the source pages hold."""

    NAME: ClassVar[str] = "snp_launch_update"
    gpa: int
    size: int
    type: str = "NORMAL"
    value: int = 0


@attrs.frozen(slots=True)
class SnpLaunchFinish(Op):
    NAME: ClassVar[str] = "snp_launch_finish"


@attrs.frozen(slots=True)
class GuestPvalidate(Op):
    """The SNP guest's PVALIDATE; `level` is 1 (4K) or 2 (2M) as for guest_accept."""

    NAME: ClassVar[str] = "guest_pvalidate"
    gpa: int
    level: int = 1
    validate: bool = True


@attrs.frozen(slots=True)
class HostAccess(Op):
    NAME: ClassVar[str] = "host_access"
    hva: int
    write: bool = False
    value: int | None = None


@attrs.frozen(slots=True)
class Madvise(Op):
    NAME: ClassVar[str] = "madvise"
    hva: int
    len: int
    advice: str = "DONTNEED"


@attrs.frozen(slots=True)
class MemoryFailure(Op):
    NAME: ClassVar[str] = "memory_failure"
    pfn: int


@attrs.frozen(slots=True)
class PreFaultMemory(Op):
    """KVM_PRE_FAULT_MEMORY (a vCPU ioctl): map [gpa, gpa + size) as a guest fault would."""

    NAME: ClassVar[str] = "pre_fault_memory"
    gpa: int
    size: int
    vcpu: int = 0
    flags: int = 0


@attrs.frozen(slots=True)
class GuestMapGpaRange(Op):
    """The guest asks the host to convert a range: TDX TDG.VP.VMCALL<MapGPA>,
    KVM_HC_MAP_GPA_RANGE; KVM exits to the VMM with KVM_EXIT_HYPERCALL."""

    NAME: ClassVar[str] = "guest_map_gpa_range"
    gpa: int
    size: int
    private: bool
    vcpu: int = 0


@attrs.frozen(slots=True)
class MemfdCreate(Op):
    """memfd_create(2) plus the ftruncate that sizes it; flag INACCESSIBLE is upm-v8's."""

    NAME: ClassVar[str] = "memfd_create"
    size: int
    flags: int = 0


@attrs.frozen(slots=True)
class MemoryEncryptRegRegion(Op):
    """KVM_MEMORY_ENCRYPT_REG_REGION; under upm-v8 it marks a GPA range private."""

    NAME: ClassVar[str] = "memory_encrypt_reg_region"
    address: int
    size: int


@attrs.frozen(slots=True)
class MemoryEncryptUnregRegion(Op):
    """KVM_MEMORY_ENCRYPT_UNREG_REGION; under upm-v8 it marks a GPA range shared."""

    NAME: ClassVar[str] = "memory_encrypt_unreg_region"
    address: int
    size: int


@attrs.frozen(slots=True)
class HostMmapPfnmap(Op):
    """The VMM maps device memory (VM_PFNMAP, e.g. a virtio-gpu blob) at `hva`, over part of
    a memslot's userspace range; `refcounted` false: struct pages without a refcount."""

    NAME: ClassVar[str] = "host_mmap_pfnmap"
    hva: int
    size: int
    refcounted: bool = False


@attrs.frozen(slots=True)
class Note(Op):
    NAME: ClassVar[str] = "note"
    text: str


@attrs.frozen(slots=True)
class Inspect(Op):
    NAME: ClassVar[str] = "inspect"
    gpa: int


@attrs.frozen(slots=True)
class Stats(Op):
    NAME: ClassVar[str] = "stats"


# ------------------------------------------------------- field converters
# A converter takes the decoded JSON value and returns the normalised Python
# value, or raises validate.Invalid with a message that does not repeat the
# field's name (parse_op adds it).  The common case, a plain in-range int, is
# the first test in every integer converter.  The shared ones are
# model/validate.py's; these are the op-only kinds.

_byte = V.ranged(0, 255, "a byte")


def _optional_byte(v: Any) -> int | None:
    return None if v is None else _byte(v)


def _level(v: Any) -> int:
    return V.choice(v, LEVEL_BY_NAME)


def _advice(v: Any) -> str:
    if v == "DONTNEED" and type(v) is str:
        return v
    raise V.Invalid(f'only "DONTNEED" is supported, got {V.json_type(v)}')


SNP_PAGE_TYPE_NAMES = ("NORMAL", "ZERO", "UNMEASURED", "SECRETS", "CPUID")


def _snp_page_type(v: Any) -> str:
    return V.one_of(v, SNP_PAGE_TYPE_NAMES)


_u32 = V.unsigned(U32_MAX, "u32")
_u64 = V.unsigned(U64_MAX, "u64")
_c_int = V.ranged(C_INT_MIN, C_INT_MAX, "a C int")
_loff = V.ranged(LOFF_MIN, LOFF_MAX, "loff_t")
_vcpu = V.ranged(0, MAX_VCPUS - 1, "a vcpu index")
# fallocate(2) takes `int mode`; a negative mode is not a set of flags.
_mode = V.flags(FALLOC_FLAGS, V.ranged(0, C_INT_MAX, "a fallocate mode"))


# ------------------------------------------------- canonical (dump) forms
# What the recorder writes: addresses in hex and sizes with a suffix, so a
# recording attached to a bug report reads like the kernel's own traces.


def _dump_plain(v: Any) -> Any:
    return v


def _dump_hex(v: int) -> Any:
    return f"{v:#x}"


def _dump_size(v: int) -> Any:
    for suffix, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if v > 0 and v & ((1 << shift) - 1) == 0:
            return f"{v >> shift}{suffix}"
    return v


def _dump_flags(names: Mapping[str, int]) -> Callable[[int], Any]:
    def dump(v: int) -> Any:
        picked = [name for name, bit in names.items() if v & bit]
        covered = 0
        for name in picked:
            covered |= names[name]
        return picked if picked and covered == v else v

    return dump


def _dump_level(v: int) -> str:
    return LEVEL_NAMES[v]


# ------------------------------------------------------------ field specs


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""The `default` of a FieldSpec for a field the op cannot do without."""


@attrs.frozen(slots=True)
class FieldSpec:
    """One field of an op as scripts spell it.

    `kind` is a short type name for docs and forms ("u32", "u64", "flags",
    "bool", ...); `flag_names` the names a flag field accepts.
    """

    name: str
    kind: str
    default: Any = REQUIRED
    flag_names: Mapping[str, int] = attrs.field(factory=dict)
    parse: Callable[[Any], Any] = attrs.field(default=_dump_plain, repr=False)
    dump: Callable[[Any], Any] = attrs.field(default=_dump_plain, repr=False)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _u32f(name: str, default: Any = REQUIRED) -> FieldSpec:
    return FieldSpec(name, "u32", default, parse=_u32)


def _addr(name: str, default: Any = REQUIRED) -> FieldSpec:
    return FieldSpec(name, "u64", default, parse=_u64, dump=_dump_hex)


def _size(name: str, default: Any = REQUIRED) -> FieldSpec:
    return FieldSpec(name, "u64", default, parse=_u64, dump=_dump_size)


def _flagf(name: str, names: Mapping[str, int], as_int: Callable[[Any], int]) -> FieldSpec:
    return FieldSpec(name, "flags", 0, names, V.flags(names, as_int), _dump_flags(names))


def _boolf(name: str, default: bool) -> FieldSpec:
    return FieldSpec(name, "bool", default, parse=V.boolean)


_VALUE = FieldSpec("value", "byte", None, parse=_optional_byte)
_VCPU = FieldSpec("vcpu", "vcpu", 0, parse=_vcpu)

_FIELDS: dict[type[Op], tuple[FieldSpec, ...]] = {
    CreateGuestMemfd: (_size("size"), _flagf("flags", GMEM_FLAGS, _u64)),
    SetUserMemoryRegion2: (
        _u32f("slot"),
        _flagf("flags", MEM_FLAGS, _u32),
        _addr("guest_phys_addr"),
        _size("memory_size"),
        _addr("userspace_addr", 0),
        _u32f("guest_memfd", 0),
        _addr("guest_memfd_offset", 0),
    ),
    SetUserMemoryRegion: (
        _u32f("slot"),
        FieldSpec(
            "flags",
            "flags",
            0,
            MEM_FLAGS_V1,
            V.flags(MEM_FLAGS_V1_NAMES, _u32),
            _dump_flags(MEM_FLAGS_V1),
        ),
        _addr("guest_phys_addr"),
        _size("memory_size"),
        _addr("userspace_addr", 0),
        _u32f("private_fd", 0),
        _addr("private_offset", 0),
    ),
    SetMemoryAttributes: (
        _addr("address"),
        _size("size"),
        # Required, so not built with _flagf (whose default is 0).
        FieldSpec(
            "attributes",
            "flags",
            REQUIRED,
            ATTRIBUTE_FLAGS,
            V.flags(ATTRIBUTE_FLAGS, _u64),
            _dump_flags(ATTRIBUTE_FLAGS),
        ),
        _flagf("flags", ATTRIBUTES_OP_FLAGS, _u64),
    ),
    Fallocate: (
        FieldSpec("fd", "int", parse=_c_int),
        FieldSpec("mode", "flags", REQUIRED, FALLOC_FLAGS, _mode, _dump_flags(FALLOC_FLAGS)),
        FieldSpec("offset", "loff_t", parse=_loff, dump=_dump_size),
        FieldSpec("len", "loff_t", parse=_loff, dump=_dump_size),
    ),
    Close: (FieldSpec("fd", "int", parse=_c_int),),
    GuestAccess: (
        _addr("gpa"),
        _VCPU,
        _boolf("write", False),
        _VALUE,
        FieldSpec("private", "bool?", None, parse=V.optional_bool),
        _boolf("hold", False),
    ),
    VcpuResume: (_VCPU,),
    GuestAccept: (_addr("gpa"), FieldSpec("level", "level", 1, parse=_level, dump=_dump_level)),
    TdxInitMemRegion: (
        _addr("gpa"),
        FieldSpec("nr_pages", "u64", parse=_u64),
        _boolf("measure", True),
        FieldSpec("value", "byte", 0, parse=_byte),
    ),
    TdxFinalizeVm: (),
    HostAccess: (_addr("hva"), _boolf("write", False), _VALUE),
    Madvise: (
        _addr("hva"),
        _size("len"),
        FieldSpec("advice", "advice", "DONTNEED", parse=_advice),
    ),
    MemoryFailure: (_addr("pfn"),),
    PreFaultMemory: (_addr("gpa"), _size("size"), _VCPU, _flagf("flags", {}, _u64)),
    GuestMapGpaRange: (
        _addr("gpa"),
        _size("size"),
        FieldSpec("private", "bool", parse=V.boolean),
        _VCPU,
    ),
    SnpLaunchUpdate: (
        _addr("gpa"),
        _size("size"),
        FieldSpec("type", "snp_page_type", "NORMAL", parse=_snp_page_type),
        FieldSpec("value", "byte", 0, parse=_byte),
    ),
    SnpLaunchFinish: (),
    GuestPvalidate: (
        _addr("gpa"),
        FieldSpec("level", "level", 1, parse=_level, dump=_dump_level),
        _boolf("validate", True),
    ),
    MemfdCreate: (_size("size"), _flagf("flags", MFD_FLAGS, _u32)),
    MemoryEncryptRegRegion: (_addr("address"), _size("size")),
    MemoryEncryptUnregRegion: (_addr("address"), _size("size")),
    HostMmapPfnmap: (_addr("hva"), _size("size"), _boolf("refcounted", False)),
    Note: (FieldSpec("text", "str", parse=V.string),),
    Inspect: (_addr("gpa"),),
    Stats: (),
}

OPS: dict[str, type[Op]] = {cls.NAME: cls for cls in _FIELDS}
"""Contract op name -> op class."""


def op_fields(op: str | type[Op]) -> tuple[FieldSpec, ...]:
    """The fields of an op (by name or class), in the contract's order."""
    return _FIELDS[OPS[op] if isinstance(op, str) else op]


# ---------------------------------------------------------------- parsing


def _check_write_value(name: str, kwargs: dict[str, Any]) -> None:
    """`value` goes with `write`: required when writing, refused otherwise."""
    value = kwargs.get("value")
    if kwargs.get("write", False):
        if value is None:
            raise OpError("value", "required when write is true", name)
    elif value is not None:
        raise OpError("value", "only allowed when write is true", name)


_CHECKS: dict[type[Op], Callable[[str, dict[str, Any]], None]] = {
    GuestAccess: _check_write_value,
    HostAccess: _check_write_value,
}


def _make_parser(cls: type[Op]) -> Callable[[dict[str, Any]], Op]:
    """A parser for one op class with everything it needs bound up front."""
    name = cls.NAME
    fields = _FIELDS[cls]
    convs = {f.name: f.parse for f in fields}
    required = tuple(f.name for f in fields if f.required)
    check = _CHECKS.get(cls)

    def parse(d: dict[str, Any]) -> Op:
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            conv = convs.get(key)
            if conv is None:
                if key == "op" or key == "t":
                    continue
                raise OpError(V.key_name(key), _unknown_field(key, convs), name)
            try:
                kwargs[key] = conv(value)
            except V.Invalid as e:
                raise OpError(key, str(e), name) from None
        for key in required:
            if key not in kwargs:
                raise OpError(key, "missing required field", name)
        if check is not None:
            check(name, kwargs)
        return cls(**kwargs)

    return parse


def _unknown_field(key: str, known: Mapping[str, Any]) -> str:
    if not known:
        return "unknown field (this op takes none)"
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    return f"unknown field ({hint}fields: {', '.join(known)})"


_PARSERS: dict[str, Callable[[dict[str, Any]], Op]] = {n: _make_parser(c) for n, c in OPS.items()}


def parse_op(d: Any) -> Op:
    """The op of one decoded script line, validated as contract 3.4 says.

    Raises OpError naming the field at fault.  The optional "t" key is
    accepted and ignored here (the script reader returns it).
    """
    if type(d) is not dict:
        raise OpError("op", f'expected a JSON object like {{"op": ...}}, got {V.json_type(d)}')
    name = d.get("op")
    parser = _PARSERS.get(name) if type(name) is str else None
    if parser is None:
        raise OpError("op", _bad_op_name(d))
    return parser(d)


def _bad_op_name(d: dict[str, Any]) -> str:
    if "op" not in d:
        return 'missing field "op"'
    name = d["op"]
    if type(name) is not str:
        return f'"op" must be a string, got {V.json_type(name)}'
    close = difflib.get_close_matches(name, list(OPS), n=1)
    if close:
        return f'unknown op "{name}" (did you mean "{close[0]}"?)'
    return f'unknown op "{name}" (ops: {", ".join(OPS)})'


def op_to_dict(op: Op) -> dict[str, Any]:
    """The canonical JSON object of an op: fields at their default are left out.

    Addresses are written in hex, sizes with a suffix when they are whole
    units, flags as names, levels as "4K"/"2M"/"1G"; `parse_op` reads it back
    to an equal op.
    """
    d: dict[str, Any] = {"op": op.NAME}
    for f in _FIELDS[type(op)]:
        v = getattr(op, f.name)
        # type() too: False == 0, and measure=1 is not the default True.
        if f.default is not REQUIRED and v == f.default and type(v) is type(f.default):
            continue
        d[f.name] = f.dump(v)
    return d
