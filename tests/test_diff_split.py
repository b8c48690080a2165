"""diff's `split` orders items by one combined key when each side has one item per
(start, code): the result must be what the six-key lexsort gives, with and without
duplicates (where the lexsort is taken)."""

from __future__ import annotations

import numpy as np
import pytest

from imemviz.io import state_diff as diff


def _lexsort(both: diff.Items, side: np.ndarray) -> np.ndarray:
    return np.lexsort((side, both.flag, both.pfn, both.span, both.code, both.start))


def _items(rng: np.random.Generator, n: int, unique: bool) -> diff.Items:
    start = rng.choice(60, n, replace=False) if unique else rng.integers(0, 30, n)
    code = rng.integers(1, 4, n)
    return diff.Items(
        start.astype(np.int64),
        np.left_shift(1, 9 * (code - 1)).astype(np.int64),
        code.astype(np.int64),
        rng.integers(0, 4, n).astype(np.int64),
        rng.integers(0, 2, n).astype(np.int64),
    )


def _cols(items: diff.Items) -> list[list[int]]:
    return [getattr(items, c).tolist() for c in diff.Items.COLUMNS]


@pytest.mark.parametrize("unique", [True, False])
def test_split_same_as_lexsort(unique: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1 if unique else 2)
    for _ in range(400):
        a = _items(rng, int(rng.integers(0, 40)), unique)
        b = _items(rng, int(rng.integers(0, 40)), unique)
        k = min(len(a), len(b)) // 2  # b shares items with a, some with another flag
        if unique and k:
            for c in ("start", "span", "code", "pfn"):
                getattr(b, c)[:k] = getattr(a, c)[:k]
            _, first = np.unique(b.start * 64 + b.code, return_index=True)
            b = b.take(np.sort(first))
        fast = diff.split(a, b)
        with monkeypatch.context() as m:
            m.setattr(diff, "_order", _lexsort)
            slow = diff.split(a, b)
        assert _cols(fast[0]) == _cols(slow[0])
        assert _cols(fast[1]) == _cols(slow[1])
        assert fast[2].tolist() == slow[2].tolist()
