"""The raster's pixel codes, numbered by significance (see raster.py: a pixel shows the
highest code among the gfns it covers)."""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    """Pixel codes, in increasing significance (the reduction keeps the highest)."""

    OUTSIDE = 0  # past the end of the drawn address space
    HOLE = 1  # no memslot: a hole, MMIO for the guest
    SHARED_EMPTY = 2  # shared, nothing behind the hva yet
    PRIVATE_EMPTY = 3  # private, no guest_memfd folio yet
    SHARED_POPULATED = 4  # shared, host page exists, not mapped in the EPT
    SHARED_KEPT = 5  # shared, but its private guest_memfd folio is still allocated
    PRIVATE_ALLOCATED = 6  # private, folio allocated, not mapped
    NO_BACKING = 7  # private, but the memslot has no guest_memfd: private access -> EFAULT
    SHARED_1G = 8
    SHARED_2M = 9
    SHARED_4K = 10
    PRIVATE_1G = 11
    PRIVATE_2M = 12
    PRIVATE_4K = 13
    BLOCKED = 14  # S-EPT leaf BLOCKED (only inside a zap; never between ops)
    PENDING_1G = 15  # S-EPT leaf added by TDH.MEM.PAGE.AUG, not accepted yet
    PENDING_2M = 16
    PENDING_4K = 17
    HWPOISON = 18  # the backing page is poisoned: an access gets EHWPOISON


NCODES = len(Code)
