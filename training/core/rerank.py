"""The learned re-ranker of `home`: a tree ensemble that reorders each customer's first
CANDIDATES items of the blend, from what the blend knows about each (its signals) and what the
history says (how often, how long ago, how regularly the customer bought it).

The blend adds its signals with fixed weights; the ensemble learns how they combine on the shop's
own baskets (training.pipeline.rerank fits it with LightGBM's LambdaRank on earlier baskets and
keeps it only when it beats the blend beyond the interval on validation). Its trees are kept as
arrays (`Reranker`), so ranking needs numpy only, here as everywhere in the core. A re-ranked list
holds the same items as the blend's first CANDIDATES, in the ensemble's order, with the blend's
scores handed out again in that order: the rest of the catalogue keeps its lower scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.core.history import History, rebuy_interval
from training.core.topk import top_k

CANDIDATES = 50  # the blend's first items that the ensemble reorders
NEVER = 9999.0  # days since the last purchase, and rebuy interval, of an item the customer never bought
FEATURES = (
    "blend score",
    "blend rank",
    "bought",
    "baskets",
    "decayed baskets",
    "days since last",
    "rebuy interval",
    "days since last / interval",
    "customer's distinct items",
    "repurchase signal",
    "collaborative signal",
    "popularity signal",
    "item repeat rate",
    "item buyers",
)


@dataclass(frozen=True)
class Reranker:
    """Regression trees whose leaf values add up to an item's score. Nodes of every tree in one set
    of arrays: `feature` (−1 at a leaf), `threshold` (go left when the value is ≤ it), `left` and
    `right` (node numbers), `value` (the leaf's); `roots` the first node of each tree; `depth` the
    longest path."""

    feature: np.ndarray  # int32 per node
    threshold: np.ndarray  # float64 per node
    left: np.ndarray  # int32 per node
    right: np.ndarray  # int32 per node
    value: np.ndarray  # float64 per node
    roots: np.ndarray  # int32 per tree
    depth: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The ensemble's score of each row of features (rows × len(FEATURES))."""
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        rows = np.arange(len(x))[:, None]
        for _ in range(self.depth):
            feature = self.feature[node]
            inner = feature >= 0
            left = x[rows, np.maximum(feature, 0)] <= self.threshold[node]
            node = np.where(inner, np.where(left, self.left[node], self.right[node]), node)
        return self.value[node].sum(axis=1)

    def arrays(self) -> dict[str, np.ndarray]:
        """What the bundle file keeps (prefix `reranker_`)."""
        names = ("feature", "threshold", "left", "right", "value", "roots")
        return {**{n: getattr(self, n) for n in names}, "depth": np.array([self.depth])}

    @classmethod
    def of_arrays(cls, arrays: dict[str, np.ndarray]) -> Reranker:
        depth = int(np.asarray(arrays["depth"])[0])
        return cls(**{n: np.asarray(v) for n, v in arrays.items() if n != "depth"}, depth=depth)


@dataclass(frozen=True)
class PairFacts:
    """What the history says of a batch's bought pairs: their (row, item) and position in the
    history's arrays, each row's day, and per item the repeat rate and the number of buyers."""

    history: History
    row_of: np.ndarray  # int64 per pair: the row within the batch, ascending
    item: np.ndarray  # int per pair
    pos: np.ndarray  # int64 per pair: the position in the history's arrays
    now: np.ndarray  # float64 per row: days since epoch
    item_repeat: np.ndarray  # float64 per item
    buyers: np.ndarray  # float64 per item

    def at(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The history position of each (row, item), −1 where the customer never bought the item."""
        if not len(self.pos):
            return np.full(len(rows), -1, dtype=np.int64)
        n_items = len(self.buyers)
        keys = self.row_of * n_items + self.item
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        wanted = rows.astype(np.int64) * n_items + items
        at = np.minimum(np.searchsorted(sorted_keys, wanted), len(keys) - 1)
        return np.where(sorted_keys[at] == wanted, self.pos[order[at]], -1)


def candidates(scores: np.ndarray) -> np.ndarray:
    """Each row's first CANDIDATES items by score (rows × at most CANDIDATES), best first."""
    return top_k(scores, k=min(CANDIDATES, scores.shape[1]))[0]


def features(
    facts: PairFacts,
    *,
    scores: np.ndarray,
    top: np.ndarray,
    bought: np.ndarray,
    repurchase: np.ndarray,
    collaborative: np.ndarray | None,
    popular: np.ndarray,
) -> np.ndarray:
    """One row of FEATURES per (customer, candidate), customers in order, candidates in `top`'s order.
    `scores`, `bought`, `repurchase` and `collaborative` are dense rows × items, `popular` per item or
    rows × items."""
    n_rows, width = top.shape
    rows, items = np.repeat(np.arange(n_rows), width), top.ravel()
    h = facts.history
    p = facts.at(rows, items)
    found = p >= 0
    q = np.maximum(p, 0)
    baskets = np.where(found, h.baskets[q], 0.0)
    since = np.where(found, facts.now[rows] - h.last_day[q], NEVER)
    interval = np.where(
        found, rebuy_interval(first_day=h.first_day[q], last_day=h.last_day[q], baskets=np.maximum(baskets, 1)), NEVER
    )
    distinct = np.bincount(facts.row_of, minlength=n_rows).astype(np.float64)
    return np.column_stack(
        [
            scores[rows, items],
            np.tile(np.arange(width), n_rows),
            bought[rows, items],
            baskets,
            np.where(found, h.decayed[q], 0.0),
            since,
            interval,
            since / np.maximum(interval, 1.0),
            distinct[rows],
            repurchase[rows, items],
            np.zeros(len(rows)) if collaborative is None else collaborative[rows, items],
            popular[rows, items] if popular.ndim == 2 else popular[items],
            facts.item_repeat[items],
            facts.buyers[items],
        ]
    ).astype(np.float64)


def reordered(scores: np.ndarray, top: np.ndarray, predicted: np.ndarray, *, rows: np.ndarray) -> np.ndarray:
    """`scores` with the candidates `top` of `rows` (a bool mask: the others keep the blend's order)
    in the order of `predicted` (rows × candidates): the candidates take the blend's scores of the
    candidates in turn, best first, each made just below the one before where the blend had a tie,
    and the rest of the row stays below the last of them. The same items lead, in the trees' order.
    (A known customer's `home` scores are all finite: the context leaves no item out.)"""
    out = scores.copy()
    chosen = np.flatnonzero(rows)
    if not len(chosen) or not top.shape[1]:
        return out
    top, predicted = top[chosen], predicted[chosen]
    values = np.take_along_axis(scores[chosen], top, axis=1)  # best first: `top` is in the blend's order
    order = np.argsort(-predicted, axis=1, kind="stable")
    for c in range(1, values.shape[1]):
        values[:, c] = np.minimum(values[:, c], np.nextafter(values[:, c - 1], np.float32(-np.inf)))
    below = np.nextafter(values[:, -1], np.float32(-np.inf))[:, None]
    out[chosen] = np.minimum(out[chosen], below)
    out[chosen[:, None], np.take_along_axis(top, order, axis=1)] = values
    return out
