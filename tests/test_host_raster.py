"""Host spaces as pixels: the interval reduction against a page-by-page brute force."""

from __future__ import annotations

import random

import numpy as np
import pytest

from imemviz.io import plans
from imemviz.io.session import Session
from imemviz.model import ops as O
from imemviz.model.host_raster import (
    HostCode,
    brute_force_rows,
    file_space,
    folio_pfns,
    pfn_space,
    reduce_rows,
)

MB = 1 << 20


def _huge_td() -> Session:
    """A small TD with 2M folios and 2M S-EPT leaves, some accepted, punched and poisoned."""
    s = Session.new(
        {
            "type": "tdx",
            "host_memory": "1G",
            "gmem_max_order": 9,
            "tdx_private_max_level": "2M",
        }
    )
    s.apply_group(plans.qemu_layout("tdx", 64 * MB), "layout")
    vm = s.vm
    for g in (0x800, 0x1000, 0x1200, 0x3000):
        s.apply_group(plans.accept_and_touch(vm, g).ops)
    s.apply_group(plans.allocate(vm, 0x2000, 0x2600).ops)
    s.apply_group(plans.punch_hole(vm, 0x2200, 0x2400).ops)
    s.apply_group(plans.memory_failure(vm, 0x1000).ops)
    hva = vm.memslots.lookup(0x3800).gfn_to_hva(0x3800)
    s.apply_group([O.HostAccess(hva=hva, write=True, value=1)])
    return s


@pytest.fixture(scope="module")
def sessions() -> list[Session]:
    return [Session.scene("default"), _huge_td()]


def _windows(limit: int, rng: random.Random):
    yield 0, max(16, -(-limit // 40)), 40, 16  # the whole space
    yield 0, 64, 20, 64  # page per pixel
    for _ in range(12):
        row_pages = rng.choice((16, 64, 512, 1000, 4096))
        cols = rng.randint(1, min(row_pages, 40))
        rows = rng.randint(1, 12)
        start = rng.randrange(0, limit + 1000)
        yield start, row_pages, rows, cols


@pytest.mark.parametrize("which", [0, 1])
def test_reduce_matches_brute_force(sessions, which):
    vm = sessions[which].vm
    rng = random.Random(which)
    spaces = [pfn_space(vm)] + [file_space(vm, fd) for fd in vm.files]
    for space in spaces:
        for start, row_pages, rows, cols in _windows(space.limit, rng):
            if rows * row_pages > 3_000_000:
                continue
            got = reduce_rows(space, start, row_pages, rows, cols)
            want = brute_force_rows(space, start, row_pages, rows, cols)
            assert np.array_equal(got, want), (start, row_pages, rows, cols)


def test_spaces_hold_what_the_engine_has(sessions):
    vm = sessions[1].vm
    sp = pfn_space(vm)
    assert np.all(sp.starts[1:] >= sp.ends[:-1]), "intervals overlap"
    f = vm.files[3]
    for folio in f.inode.all_folios():
        i = sp.at(folio.pfn)
        assert i >= 0 and sp.fd[i] == 3 and sp.index[i] == folio.index
        assert sp.ends[i] - sp.starts[i] == 1 << folio.order
    for pfn in vm.host.poisoned:
        assert sp.code_at(pfn) == HostCode.HWPOISON
    for (_lv, _g), pfn in vm.private.tables.items():
        assert sp.code_at(pfn) == HostCode.SEPT
    fs = file_space(vm, 3)
    codes = {fs.code_at(int(s)) for s in fs.starts}
    assert HostCode.FOLIO_2M in codes and HostCode.HWPOISON in codes
    assert fs.code_at(0x2200) == HostCode.FREE  # punched
    assert fs.code_at(0x2000) == HostCode.FOLIO_2M
    assert sp.code_at(sp.limit) == HostCode.OUTSIDE
    assert HostCode.SHARED in set(sp.codes.tolist())


def test_folio_pfns_follow_the_folios(sessions):
    vm = sessions[1].vm
    fs = file_space(vm, 3)
    for folio in list(vm.files[3].inode.all_folios())[:20]:
        got = folio_pfns(fs, folio.index, folio.index + 1)
        assert got == [(folio.pfn, folio.pfn + 1)]
