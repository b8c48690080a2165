"""Page and level arithmetic, and the contract's integer spellings."""

from __future__ import annotations

import re

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

# Mapping levels use the kernel's numbering: PG_LEVEL_4K = 1, 2M = 2, 1G = 3.
LEVEL_4K = 1
LEVEL_2M = 2
LEVEL_1G = 3
LEVELS = (LEVEL_4K, LEVEL_2M, LEVEL_1G)
LEVEL_NAMES = {LEVEL_4K: "4K", LEVEL_2M: "2M", LEVEL_1G: "1G"}
LEVEL_BY_NAME = {v: k for k, v in LEVEL_NAMES.items()}

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1


def level_pages(level: int) -> int:
    """4K pages covered by one leaf at `level`."""
    return 1 << (9 * (level - 1))


def level_for_order(order: int) -> int:
    """kvm_max_level_for_order(): the largest level a folio of `order` can map."""
    if order >= 18:
        return LEVEL_1G
    if order >= 9:
        return LEVEL_2M
    return LEVEL_4K


_SUFFIX = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50, "E": 60}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGTPE]?)(?:i?B)?\s*$", re.IGNORECASE)


def _short(text: str) -> str:
    """repr() of a string, cut to a length a one-line message can carry."""
    return repr(text) if len(text) <= 60 else repr(text[:57]) + "..."


def show_int(v: int) -> str:
    """An integer for a one-line message: huge ones (a 5,000-digit hex string) by size."""
    if v.bit_length() <= 128:
        return str(v)
    return f"a {v.bit_length()}-bit {'negative ' if v < 0 else ''}number"


def parse_int(value: object) -> int:
    """An integer from a JSON int, a hex string ("0xc0000000") or a size string ("2M").

    Raises ValueError with a short reason; booleans are refused.
    """
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        s = value.strip()
        neg = s.startswith("-")
        body = s[1:] if neg else s
        if body[:2].lower() == "0x":
            try:
                n = int(body[2:], 16)
            except ValueError:
                raise ValueError(f"bad hex integer {_short(value)}") from None
            return -n if neg else n
        m = _SIZE_RE.match(body)
        if m:
            if len(m.group(1)) > 4000:  # int() refuses past 4,300 digits anyway
                raise ValueError(f"integer with {len(m.group(1)):,} digits is far too large")
            n = int(m.group(1)) << _SUFFIX[m.group(2).upper()]
            return -n if neg else n
        raise ValueError(f'bad integer {_short(value)} (use 123, "0x7b" or a size like "2M")')
    raise ValueError(f"expected an integer, got {type(value).__name__}")


def fmt_size(nbytes: int) -> str:
    """A compact binary size: 4096 -> "4K", 3<<30 -> "3G", 6144 -> "6K"."""
    for suffix, shift in (("E", 60), ("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if nbytes and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift}{suffix}"
    return str(nbytes)
