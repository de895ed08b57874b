"""The k best scores of each row: the one place the ranking core sorts.

`top_k_reference` is the definition (a full stable sort per row); `top_k` is the fast path every
list goes through, and gives exactly the same indices and values (tests/unit/core/test_topk.py
compares them on ties, −0 and +0, missing scores and long tied tails). Ranking whole rows is
what evaluation does for every customer and blend, and what the service does per request.
"""

from __future__ import annotations

import numpy as np

GROUP = 64  # top_k thresholds rows by the maxima of groups of this many items (a power of two)


def top_k_reference(scores: np.ndarray, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k best scores per row, best first, ties towards the lower item
    index, −inf where a row has fewer than k finite scores (drop them): a full stable sort."""
    k = max(min(k, scores.shape[1]), 0)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    return np.where(np.isfinite(values), order, 0), np.where(np.isfinite(values), values, np.float32(-np.inf))


def top_k(scores: np.ndarray, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`top_k_reference`, fast: only the scores that can be among the k best are sorted."""
    rows, n = scores.shape
    k = max(min(k, n), 0)
    if k == 0 or rows == 0:
        return np.zeros((rows, k), dtype=np.int64), np.full((rows, k), -np.inf, dtype=np.float32)
    groups = n // GROUP
    if groups >= 2 * k:
        # Threshold at the k-th best maximum of groups of items, at most the k-th best score, so the
        # scores at or above it hold the top k and only those few are sorted. Partitioning whole rows
        # instead is four times slower on typical rows and forty times slower when most scores tie
        # (buy-again, where every item not bought is −inf). A group is every `groups`-th item: the
        # maxima are then element-wise maxima of contiguous slices, taken pairwise by halves (numpy's
        # `max(axis=1)` walks the middle axis element by element: 2.5 times slower).
        full = groups * GROUP
        halves = scores[:, :full].reshape(rows, GROUP, groups)
        halves = np.maximum(halves[:, : GROUP // 2], halves[:, GROUP // 2 :])
        while halves.shape[1] > 1:
            half = halves.shape[1] // 2
            halves = np.maximum(halves[:, :half], halves[:, half:], out=halves[:, :half])
        maxima = halves[:, 0]
        if full < n:
            maxima = np.concatenate([maxima, scores[:, full:].max(axis=1, keepdims=True)], axis=1)
        threshold = np.partition(maxima, maxima.shape[1] - k, axis=1)[:, maxima.shape[1] - k]
    else:
        threshold = np.partition(scores, n - k, axis=1)[:, n - k]
    # A row with fewer than k finite scores keeps all of them: its threshold is the lowest finite float.
    threshold = np.where(np.isfinite(threshold), threshold, np.finfo(np.float32).min)[:, None]
    # Flat positions (about ten times faster than np.nonzero on a 2-D mask) come by row, then item.
    flat = np.flatnonzero(scores >= threshold)
    row, col = np.divmod(flat, n)
    return top_of_candidates(row, col, np.take(scores, flat), rows=rows, k=k)


def top_of_candidates(
    row: np.ndarray, item: np.ndarray, value: np.ndarray, *, rows: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k best of candidate (row, item, value) triples given in (row, item) order, as `top_k`
    returns them: best first, ties towards the lower item, −inf padding."""
    ids = np.zeros((rows, k), dtype=np.int64)
    vals = np.full((rows, k), -np.inf, dtype=np.float32)
    if value.dtype == np.float32:
        # One stable sort of (row, descending value) packed in 64 bits: 7-10 times faster than
        # lexsort on (row, −value). Float bits map to unsigned integers in the same order (negative
        # floats have all bits flipped, the others the sign bit set); + 0 makes −0 into +0, which tie.
        bits = (value + np.float32(0)).view(np.uint32)
        ascending = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(1 << 31))
        order = np.argsort((row.astype(np.uint64) << np.uint64(32)) | ~ascending, kind="stable")
    else:
        order = np.lexsort((-value, row))
    row, item, value = row[order], item[order], value[order]
    rank = np.arange(len(row)) - np.searchsorted(row, np.arange(rows))[row]
    keep = rank < k
    ids[row[keep], rank[keep]] = item[keep]
    vals[row[keep], rank[keep]] = value[keep]
    return ids, vals
