"""The VM configuration of the contract (VMCONFIG) and its validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from imemviz.model import validate as V
from imemviz.model.kernels import DEFAULT as DEFAULT_KERNEL
from imemviz.model.kernels import PROFILES, Profile, profile
from imemviz.model.units import LEVEL_4K, LEVEL_BY_NAME, LEVEL_NAMES, show_int

T = TypeVar("T")

VM_TYPES = ("default", "sw_protected", "tdx", "snp")
GMEM_ORDERS = (0, 9, 18)
SHARED_PAGE_SIZES = {"4K": 1 << 12, "2M": 1 << 21, "1G": 1 << 30}
# The buddy allocator tracks blocks up to 1G; beyond that memory is just many 1G blocks.
MAX_HOST_MEMORY = 1 << 50


class ConfigError(ValueError):
    """A VM config field is missing, unknown or out of range; `path` names it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@attrs.frozen(slots=True)
class VMConfig:
    type: str
    host_memory: int = 16 << 30
    gmem_max_order: int = 0
    shared_page_size: int = 4096
    tdx_private_max_level: int = LEVEL_4K
    gpaw: int = 52
    seed: int = 0
    kernel: str = DEFAULT_KERNEL

    @property
    def profile(self) -> Profile:
        """The kernel whose rules this VM follows (imemviz.model.kernels)."""
        return profile(self.kernel)

    @property
    def is_tdx(self) -> bool:
        return self.type == "tdx"

    @property
    def is_snp(self) -> bool:
        return self.type == "snp"

    @property
    def has_protected_state(self) -> bool:
        """kvm->arch.has_protected_state: TDX and SEV-ES/SNP guests (no READONLY slots)."""
        return self.type in ("tdx", "snp")

    @property
    def has_private_mem(self) -> bool:
        """kvm_arch_has_private_mem(): SW_PROTECTED, SNP and TDX; under upm-v8 every VM
        (the series' HAVE_KVM_PRIVATE_MEM_TESTING setup, docs/kernels.md)."""
        return self.type != "default" or profile(self.kernel)["private_memslot"]

    @property
    def shared_bit_gfn(self) -> int:
        """The TDX shared bit as a gfn bit (GPA bit 51 or 47)."""
        return 1 << ((51 if self.gpaw == 52 else 47) - 12)

    @classmethod
    def from_dict(cls, d: Any, path: str = "vm") -> VMConfig:
        if not isinstance(d, dict):
            raise ConfigError(path, V.expectation("an object", d))

        def field(name: str, conv: Callable[..., T], *args: Any, default: T | None = None) -> T:
            """`conv(d[name], *args)`, or `default` when absent (None: required); a refusal
            names the field."""
            if name not in d:
                if default is None:
                    raise ConfigError(f"{path}.{name}", "missing required field")
                return default
            try:
                return conv(d[name], *args)
            except V.Invalid as e:
                raise ConfigError(f"{path}.{name}", str(e)) from None

        def integer(name: str, default: int) -> int:
            return field(name, V.to_int, default=default)

        known = {
            "type",
            "host_memory",
            "gmem_max_order",
            "shared_page_size",
            "tdx_private_max_level",
            "gpaw",
            "seed",
            "kernel",
        }
        for key in d:
            if key not in known:
                raise ConfigError(f"{path}.{V.key_name(key)}", "unknown field")
        vm_type = field("type", V.one_of, VM_TYPES)
        kernel = field("kernel", V.one_of, tuple(PROFILES), default=DEFAULT_KERNEL)
        refused = profile(kernel).vm_type_refusal(vm_type)
        if refused:
            raise ConfigError(f"{path}.type", refused)

        host_memory = integer("host_memory", 16 << 30)
        if host_memory <= 0 or host_memory % (2 << 20) or host_memory > MAX_HOST_MEMORY:
            raise ConfigError(
                f"{path}.host_memory", "must be a positive multiple of 2M and at most 1P"
            )
        order = integer("gmem_max_order", 0)
        if order not in GMEM_ORDERS:
            raise ConfigError(
                f"{path}.gmem_max_order", f"must be 0, 9 or 18, got {show_int(order)}"
            )
        sps = d.get("shared_page_size", "4K")
        if isinstance(sps, str) and sps.upper() in SHARED_PAGE_SIZES:
            shared = SHARED_PAGE_SIZES[sps.upper()]
        else:
            shared = integer("shared_page_size", 0)
            if shared not in SHARED_PAGE_SIZES.values():
                raise ConfigError(f"{path}.shared_page_size", 'must be "4K", "2M" or "1G"')
        lvl = field("tdx_private_max_level", V.one_of, ("4K", "2M"), default="4K")
        gpaw = integer("gpaw", 52)
        if gpaw not in (48, 52):
            raise ConfigError(f"{path}.gpaw", f"must be 48 or 52, got {show_int(gpaw)}")
        seed = integer("seed", 0)
        if not 0 <= seed < (1 << 64):
            raise ConfigError(f"{path}.seed", "must be between 0 and 2**64-1")
        return cls(vm_type, host_memory, order, shared, LEVEL_BY_NAME[lvl], gpaw, seed, kernel)

    def to_dict(self) -> dict[str, Any]:
        """The canonical VMCONFIG (sizes as strings a human reads)."""
        from imemviz.model.units import fmt_size

        return {
            "type": self.type,
            "host_memory": fmt_size(self.host_memory),
            "gmem_max_order": self.gmem_max_order,
            "shared_page_size": fmt_size(self.shared_page_size),
            "tdx_private_max_level": LEVEL_NAMES[self.tdx_private_max_level],
            "gpaw": self.gpaw,
            "seed": self.seed,
            "kernel": self.kernel,
        }
