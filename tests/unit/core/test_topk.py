"""top_k, the fast path every list goes through, against its definition top_k_reference and a full sort."""

from __future__ import annotations

import numpy as np

from training.core.topk import top_k, top_k_reference

N_ITEMS = 5_000  # above and below the grouped path's cut-off: 78 groups against 2k = 20 or 200


def _score_rows() -> dict[str, np.ndarray]:
    """Rows of scores that stress the threshold: ties, missing scores (−inf), −0 and +0, long tied tails."""
    rng = np.random.default_rng(9)
    n = N_ITEMS
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
    return {name: scores.astype(np.float32) for name, scores in rows.items()}


def test_top_k_equals_a_full_sort_on_ties_and_missing_scores() -> None:
    """top_k's group-maximum threshold keeps exactly what a full sort keeps: the k best, ties towards
    the lower item index, rows with fewer than k finite scores padded with −inf."""
    n = N_ITEMS
    for name, scores in _score_rows().items():
        for k in (1, 10, 20, 100):
            ids, vals = top_k(scores, k=k)
            order = np.lexsort((np.tile(np.arange(n), (len(scores), 1)), -scores), axis=1)[:, :k]
            expected = np.take_along_axis(scores, order, axis=1)
            np.testing.assert_array_equal(vals, expected, err_msg=f"{name}, k={k}")
            finite = np.isfinite(expected)
            np.testing.assert_array_equal(ids[finite], order[finite], err_msg=f"{name}, k={k}")


def test_top_k_equals_top_k_reference_padding_included() -> None:
    """The fast path returns the reference's arrays exactly: indices, values and the −inf padding, for
    k from 1 to more items than a row has."""
    for name, scores in _score_rows().items():
        for k in (0, 1, 10, 20, 100, N_ITEMS + 1):
            ids, vals = top_k(scores, k=k)
            want_ids, want_vals = top_k_reference(scores, k=k)
            np.testing.assert_array_equal(vals, want_vals, err_msg=f"{name}, k={k}")
            np.testing.assert_array_equal(ids, want_ids, err_msg=f"{name}, k={k}")
