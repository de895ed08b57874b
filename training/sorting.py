"""Stable sorts and grouping of non-negative integer keys: the one place the trainer packs sort keys.

The definition is numpy's `np.argsort(keys, kind="stable")` (and `np.unique(..., return_inverse=True)`);
`stable_argsort` is its fast path, one SIMD sort of key and position packed in 64 bits, and falls
back to the definition when they do not fit. tests/unit/training/test_sorting.py compares them.
Splits and the basket events (histories, popularity) group millions of purchase lines with these,
and keep their per-line and per-event indices `narrow`ed to int32 where they fit.
"""

from __future__ import annotations

import numpy as np

INT32_MAX = (1 << 31) - 1


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """`np.argsort(keys, kind="stable")` for non-negative integer keys: when key and position fit in 63
    bits together, one SIMD `np.sort` of (key << bits | position), about eight times faster here."""
    n = len(keys)
    bits = max((n - 1).bit_length(), 1)
    if n and int(keys.min()) >= 0 and int(keys.max()) < 1 << (63 - bits):
        packed = keys.astype(np.int64)  # a copy: shifted and or-ed in place (fresh arrays cost page faults)
        packed <<= bits
        packed |= np.arange(n, dtype=np.int64)
        packed.sort()
        packed &= (1 << bits) - 1
        return packed
    return np.argsort(keys, kind="stable")


def run_starts(ordered: np.ndarray) -> np.ndarray:
    """Where each run of equal values starts, in an array that holds equal values together."""
    return np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(ordered) else np.zeros(0, np.int64)


def run_numbers(starts: np.ndarray, n: int) -> np.ndarray:
    """Each of `n` positions' run number, from the runs' starts (int32 while they fit, as `narrow`)."""
    numbers = np.arange(len(starts), dtype=np.int32 if len(starts) <= INT32_MAX else np.int64)
    return np.repeat(numbers, np.diff(np.r_[starts, n]))


def narrow(values: np.ndarray) -> np.ndarray:
    """Non-negative integers as int32 when they fit: per-event indices kept for a whole training take
    half the bytes of int64 (new pages cost the kernel time, docs/performance.md)."""
    if values.dtype != np.int32 and (not len(values) or int(values.max()) <= INT32_MAX):
        return values.astype(np.int32)
    return values


def sorted_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted distinct values, `stable_argsort(values)`, where each value's run starts in that order),
    for non-negative integers: `values[order]` holds each distinct value's entries together, in their
    original order, so per-group minima and counts are `reduceat`s over contiguous runs."""
    order = stable_argsort(values)
    ordered = values[order]
    starts = run_starts(ordered)
    return ordered[starts], order, starts


def sorted_pairs(major: np.ndarray, minor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(each distinct pair's major, its minor, order, starts) of non-negative integer pairs: `order`
    puts the positions in (major, minor) order (equal pairs in any order) and each distinct pair's
    run starts at `starts` in that order; the definition is `np.lexsort((minor, major))`. One sort
    of the two packed in 64 bits when they fit."""
    bits = max(int(minor.max(initial=0)).bit_length(), 1)
    if int(major.max(initial=0)) < 1 << (63 - bits):  # always when empty: the fallback needs a pair
        packed = major.astype(np.int64)  # a copy: shifted and or-ed in place
        packed <<= bits
        packed |= minor
        order = np.argsort(packed)
        packed = packed[order]
        starts = run_starts(packed)
        packed = packed[starts]
        return packed >> bits, packed & ((1 << bits) - 1), order, starts
    order = np.lexsort((minor, major))
    major, minor = major[order], minor[order]
    starts = np.flatnonzero(np.r_[True, (major[1:] != major[:-1]) | (minor[1:] != minor[:-1])])
    return major[starts], minor[starts], order, starts


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_inverse=True)` for non-negative integers, through `stable_argsort`."""
    distinct, order, starts = sorted_groups(values)
    inverse = np.empty(len(values), dtype=np.int64)
    inverse[order] = run_numbers(starts, len(values))
    return distinct, inverse
