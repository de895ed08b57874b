"""top_k, the fast path every list goes through, against a full sort."""

from __future__ import annotations

import numpy as np


def test_top_k_equals_a_full_sort_on_ties_and_missing_scores() -> None:
    """top_k's group-maximum threshold keeps exactly what a full sort keeps: the k best, ties towards
    the lower item index, rows with fewer than k finite scores padded with −inf."""
    from training.core.topk import top_k

    rng = np.random.default_rng(9)
    n = 5_000  # above and below the grouped path's cut-off: 78 groups against 2k = 20 or 200
    rows = {
        "random": rng.random((40, n)),
        "mostly -inf (buy-again)": np.where(rng.random((40, n)) < 0.997, -np.inf, rng.random((40, n))),
        "mostly 0": np.where(rng.random((40, n)) < 0.99, 0.0, rng.random((40, n))),
        "few distinct values": rng.integers(0, 4, (40, n)).astype(float),
        "all -inf": np.full((40, n), -np.inf),
        "ascending": np.tile(np.linspace(0.0, 1.0, n), (40, 1)),
        "negative, with −0 and +0 (which tie)": np.where(
            rng.random((40, n)) < 0.5, rng.choice([-0.0, 0.0], (40, n)), -np.abs(rng.standard_normal((40, n)))
        ),
    }
    for name, scores in rows.items():
        scores = scores.astype(np.float32)
        for k in (1, 10, 20, 100):
            ids, vals = top_k(scores, k=k)
            order = np.lexsort((np.tile(np.arange(n), (len(scores), 1)), -scores), axis=1)[:, :k]
            expected = np.take_along_axis(scores, order, axis=1)
            np.testing.assert_array_equal(vals, expected, err_msg=f"{name}, k={k}")
            finite = np.isfinite(expected)
            np.testing.assert_array_equal(ids[finite], order[finite], err_msg=f"{name}, k={k}")
