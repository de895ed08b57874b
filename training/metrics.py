"""Ranking metrics of ranked lists against held-out baskets, and the table that compares models.

Per customer @k: NDCG, recall, precision, MAP and hit rate (`ranking_metrics`); `evaluate` adds
catalog coverage, novelty and mean popularity and averages them. `PRIMARY_METRIC` is what the
hybrid's tuning, the recency search and the champion gate compare.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KS = (10, 20)  # the list lengths every metric is computed at
PRIMARY_METRIC = "home/ndcg_at_10"
# The columns of the comparison table `reco train` and `reco evaluate` print.
TABLE_METRICS = (
    "home/ndcg_at_10",
    "home/recall_at_10",
    "home/precision_at_10",
    "home/map_at_10",
    "home/hit_rate_at_10",
    "home/ndcg_at_20",
    "home/repeat/ndcg_at_10",
    "home/new/ndcg_at_10",
    "home/coverage_at_10",
    "buy-again/ndcg_at_10",
    "discover/ndcg_at_10",
    "discover/recall_at_20",
    "discover/coverage_at_10",
    "discover/novelty_at_10",
)


def ranking_metrics(*, top: np.ndarray, targets: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-customer NDCG, recall, precision, AP and hit @k for ranked item indices `top` (rows × ≥k, −1 = empty)
    against boolean `targets` (rows × items); rows without targets get NaN."""
    return metrics_from_hits(hits=ranked_hits(top=top[:, :k], targets=targets), n_targets=targets.sum(axis=1), k=k)


def ranked_hits(*, top: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Bool per ranked position: the item there is a target (−1 = empty, never a hit)."""
    valid = top >= 0
    return np.take_along_axis(targets, np.where(valid, top, 0), axis=1) & valid


def metrics_from_hits(*, hits: np.ndarray, n_targets: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """`ranking_metrics` from the hits of the ranked positions (rows × ≥k) and each row's number of targets."""
    hits = hits[:, :k]
    n_targets = n_targets.astype(np.float64)
    has = n_targets > 0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts[None, :]).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_targets, k).astype(np.int64) - 1]
    n_hits = hits.sum(axis=1)
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)[None, :]
    ap = (precision_at_i * hits).sum(axis=1) / np.maximum(np.minimum(n_targets, k), 1)
    nan = np.full(len(hits), np.nan)
    return {
        "ndcg": np.where(has, dcg / np.where(has, ideal, 1.0), nan),
        "recall": np.where(has, n_hits / np.maximum(n_targets, 1), nan),
        "precision": np.where(has, n_hits / k, nan),
        "map": np.where(has, ap, nan),
        "hit_rate": np.where(has, (n_hits > 0).astype(np.float64), nan),
    }


def comparison_table(results: dict[str, dict[str, float]], *, metrics: Sequence[str]) -> str:
    """A Markdown table: one row per model, one column per metric."""
    header = "| model | " + " | ".join(metrics) + " |"
    rule = "|---|" + "---|" * len(metrics)
    rows = [
        f"| {name} | " + " | ".join(f"{values[m]:.4f}" if m in values else "–" for m in metrics) + " |"
        for name, values in results.items()
    ]
    return "\n".join([header, rule, *rows])
