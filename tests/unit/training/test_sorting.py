"""The packed-key stable sort and grouping against their definition, numpy's."""

from __future__ import annotations

import numpy as np

from training.sorting import stable_argsort, unique_inverse


def test_packed_sorts_equal_numpy() -> None:
    """The trainer's fast stable argsort and unique agree with numpy's, packed or not (keys too large to pack)."""
    rng = np.random.default_rng(5)
    for high in (50, 10**9, 2**62):  # the last cannot be packed beside a position: numpy's path
        keys = rng.integers(0, high, 20_000, dtype=np.int64)
        np.testing.assert_array_equal(stable_argsort(keys), np.argsort(keys, kind="stable"))
        distinct, inverse = unique_inverse(keys)
        expected = np.unique(keys, return_inverse=True)
        np.testing.assert_array_equal(distinct, expected[0])
        np.testing.assert_array_equal(inverse, expected[1])
