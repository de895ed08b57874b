"""The packed-key stable sort and grouping against their definition, numpy's."""

from __future__ import annotations

import numpy as np

from training.sorting import INT32_MAX, narrow, run_numbers, sorted_pairs, stable_argsort, unique_inverse


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


def test_sorted_pairs_equal_lexsort() -> None:
    """`sorted_pairs` groups positions by (major, minor) as `np.lexsort` orders them, packed or not
    (majors too large to pack beside the minors: numpy's path); equal pairs may come in any order."""
    rng = np.random.default_rng(6)
    for high in (30, 10**9, 2**60):
        major = rng.integers(0, high, 20_000, dtype=np.int64)
        minor = rng.integers(0, 40, 20_000, dtype=np.int64)
        majors, minors, order, starts = sorted_pairs(major, minor)
        expected = np.lexsort((minor, major))
        np.testing.assert_array_equal(major[order], major[expected])
        np.testing.assert_array_equal(minor[order], minor[expected])
        pairs, counts = np.unique(np.stack([major, minor], axis=1), axis=0, return_counts=True)
        np.testing.assert_array_equal(majors, pairs[:, 0])
        np.testing.assert_array_equal(minors, pairs[:, 1])
        np.testing.assert_array_equal(np.diff(np.r_[starts, len(order)]), counts)
    empty = np.zeros(0, dtype=np.int64)
    assert all(len(part) == 0 for part in sorted_pairs(empty, empty))


def test_narrow_halves_indices_that_fit_and_keeps_the_rest() -> None:
    """Indices kept per event become int32 with the same values while they fit; beyond int32 they stay as they are."""
    small = np.array([0, 7, INT32_MAX], dtype=np.int64)
    narrowed = narrow(small)
    assert narrowed.dtype == np.int32
    np.testing.assert_array_equal(narrowed, small)
    large = np.array([0, INT32_MAX + 1], dtype=np.int64)
    assert narrow(large).dtype == np.int64
    np.testing.assert_array_equal(narrow(large), large)
    numbers = run_numbers(np.array([0, 2, 3]), 5)
    assert numbers.dtype == np.int32
    np.testing.assert_array_equal(numbers, [0, 0, 1, 2, 2])
