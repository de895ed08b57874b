"""Every model is one blend of three per-item signals, each scaled to at most 1 per customer:

    score = repurchase_weight · repurchase + collaborative_weight · collaborative + popularity_weight · popular

* repurchase: the customer's own recency-weighted basket count for the item, boosted when the
  item is "due" (history.due_boost), weighted by how often the item's buyers buy it again
  (`item_repeat`: the exponent of history.item_repeat_rates; milk comes back, a birthday card does
  not) and by how much of the customer's own buying is repeats (`customer_repeat`: the exponent of
  the odds in history.repeat_odds; a creature of habit gets their staples, an explorer the
  collaborative part's new items), the repeat / explore mix of next-basket research (TIFU-KNN,
  the reality check of Li et al. 2023, TREx), per customer;
* collaborative: the scorer's score (collaborative.py);
* popular: recency-weighted popularity, also the fallback for customers the model does not know
  (in evaluation, as of each held-out basket's day: history.PopularityTimeline).

Popularity, personal frequency, the pure collaborative models and the default hybrid differ only
in their weights. Contexts: `buy-again` keeps items the customer bought, `discover` keeps items
never bought (with its own collaborative/popularity mix when the blend has one), `home` keeps both
(unless the blend says home excludes bought items, as on catalogue-style data where nobody buys
the same film twice).

The service ranks with `blend_scores` then `topk.top_k`; offline evaluation ranks the same
signals with `top_blended`, which gives the same lists (tested) while sharing the dense work
between the dozens of blends tuning tries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.linalg import blas

from training.core import rerank
from training.core.errors import UnknownContext
from training.core.rerank import PairFacts, Reranker
from training.core.topk import top_k, top_of_candidates

CONTEXTS = ("home", "buy-again", "discover")
RepurchaseKey = tuple[float, float, float]  # Blend.repurchase_key: (due, item_repeat, customer_repeat)
# The share of a `home` list the trainer gives to items new to the customer (its discover list),
# in `explore_slots`: so home is not a copy of buy-again, and offline metrics measure that list.
DEFAULT_HOME_EXPLORE = 0.1


def check_context(context: str) -> str:
    """Validate a context name (UnknownContext, one sentence, otherwise)."""
    if context not in CONTEXTS:
        raise UnknownContext(f"Unknown context {context!r}: use one of {', '.join(CONTEXTS)}.")
    return context


@dataclass(frozen=True)
class Blend:
    """The weights that make a model out of the three signals (see module docstring)."""

    repurchase: float = 0.0
    collaborative: float = 0.0
    popularity: float = 1.0
    due: float = 0.0
    home_excludes_bought: bool = False
    # `discover` lists only new items, so its collaborative/popularity mix is tuned on the new items
    # of the validation baskets on its own (None: the home weights).
    discover_collaborative: float | None = None
    discover_popularity: float | None = None
    # Share of `home`'s slots that hold the customer's `discover` list (`mix_explore`; 0: the blend alone).
    home_explore: float = 0.0
    # Exponents of the item's repeat rate and of the customer's repeat odds in the repurchase signal.
    item_repeat: float = 0.0
    customer_repeat: float = 0.0
    # `home`'s first items reordered by the bundle's learned re-ranker (core.rerank), when it has one.
    home_rerank: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for config.json and MLflow params."""
        return {
            "repurchase": self.repurchase,
            "collaborative": self.collaborative,
            "popularity": self.popularity,
            "due": self.due,
            "home_excludes_bought": self.home_excludes_bought,
            "discover_collaborative": self.discover_collaborative,
            "discover_popularity": self.discover_popularity,
            "home_explore": self.home_explore,
            "item_repeat": self.item_repeat,
            "customer_repeat": self.customer_repeat,
            # Only when set: a bundle without a re-ranker stays readable by services from before it.
            **({"home_rerank": True} if self.home_rerank else {}),
        }

    @property
    def repurchase_key(self) -> tuple[float, float, float]:
        """What the repurchase signal depends on: (due, item_repeat, customer_repeat)."""
        return (self.due, self.item_repeat, self.customer_repeat)

    def for_context(self, context: str) -> Blend:
        """The weights a context ranks with (discover may have its own collaborative/popularity mix)."""
        if context != "discover" or self.discover_collaborative is None or self.discover_popularity is None:
            return self
        return replace(
            self, repurchase=0.0, collaborative=self.discover_collaborative, popularity=self.discover_popularity
        )

    def excludes_bought(self, context: str) -> bool:
        """Whether the context's list leaves out every item the customer bought."""
        return context == "discover" or (context == "home" and self.home_excludes_bought)


@dataclass(frozen=True)
class Signals:
    """Per-item signals for a batch of customers (rows × items), each at most 1 per row.

    Repurchase scores are kept at the bought pairs (`pairs`, by row) and made dense on demand."""

    known: np.ndarray  # bool per row: the customer has a history
    bought: np.ndarray  # bool rows × items
    repurchase: dict[RepurchaseKey, np.ndarray]  # Blend.repurchase_key → dense scores (from the pairs when missing)
    collaborative: np.ndarray | None
    popular: np.ndarray  # per item, or rows × items (popularity as of each row's day)
    pairs: tuple[np.ndarray, np.ndarray] | None = None  # (row, item) of every bought pair, rows ascending
    repurchase_of: Callable[[RepurchaseKey], np.ndarray] | None = None  # Blend.repurchase_key → scores at `pairs`
    # The bundle's re-ranker (None: the blend's order) and what its features read of the history.
    reranker: Reranker | None = None
    facts: Callable[[], PairFacts] | None = None
    _at_pairs: dict[RepurchaseKey, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def repurchase_at_pairs(self, key: RepurchaseKey) -> np.ndarray:
        """Repurchase scores at `pairs` for a Blend.repurchase_key (computed once)."""
        if key not in self._at_pairs:
            assert self.repurchase_of is not None, "Signals without pairs carry their dense repurchase scores"
            self._at_pairs[key] = self.repurchase_of(key)
        return self._at_pairs[key]

    def repurchase_scores(self, key: RepurchaseKey) -> np.ndarray:
        """Dense repurchase scores for a Blend.repurchase_key."""
        if key not in self.repurchase:
            assert self.pairs is not None, "Signals without pairs carry their dense repurchase scores"
            dense = np.zeros(self.bought.shape, dtype=np.float32)
            dense[self.pairs] = self.repurchase_at_pairs(key)
            self.repurchase[key] = dense
        return self.repurchase[key]


def blend_scores(signals: Signals, *, blend: Blend, context: str) -> np.ndarray:
    """Blend the signals; −inf where the context excludes an item; unknown customers get popularity."""
    shape = signals.bought.shape
    blend = blend.for_context(context)
    scores = _base_scores(signals, collaborative=blend.collaborative, popularity=blend.popularity)
    if blend.repurchase:  # only bought items have repurchase scores: the others keep the base
        scores += signals.repurchase_scores(blend.repurchase_key) * np.float32(blend.repurchase)
    known = signals.known
    # Customers unknown to the model get the popularity fallback, whatever the blend.
    if not known.all():
        popular = signals.popular if signals.popular.ndim == 2 else signals.popular[None, :]
        scores[~known] = np.broadcast_to(popular, shape)[~known]
    if context == "buy-again":
        excluded = ~signals.bought if known.all() else ~signals.bought & known[:, None]
        np.copyto(scores, np.float32(-np.inf), where=excluded)
    elif blend.excludes_bought(context):
        np.copyto(scores, np.float32(-np.inf), where=signals.bought)
    if reranks(signals, blend=blend, context=context) and known.any():
        assert not blend.home_excludes_bought, "the re-ranker orders home lists that hold bought items"
        scores = reranked_home(signals, scores=scores, blend=blend)
    return scores


def reranks(signals: Signals, *, blend: Blend, context: str) -> bool:
    """Whether this list is re-ranked: `home`, with a blend that asks for it and a bundle that has one."""
    return context == "home" and blend.home_rerank and signals.reranker is not None


def reranked_home(signals: Signals, *, scores: np.ndarray, blend: Blend) -> np.ndarray:
    """`home` scores of the known customers with their first items in the re-ranker's order (core.rerank)."""
    assert signals.reranker is not None
    top, x = rerank_features(signals, scores=scores, blend=blend)
    predicted = signals.reranker.predict(x).reshape(top.shape)
    return rerank.reordered(scores, top, predicted, rows=signals.known)


def rerank_features(signals: Signals, *, scores: np.ndarray, blend: Blend) -> tuple[np.ndarray, np.ndarray]:
    """(each row's re-ranking candidates, best first: rows × at most rerank.CANDIDATES; their
    rerank.FEATURES, one row per customer and candidate) of the blend's `home` scores."""
    assert signals.facts is not None, "Signals without a history have no re-ranking features"
    top = rerank.candidates(scores)
    x = rerank.features(
        signals.facts(),
        scores=scores,
        top=top,
        bought=signals.bought,
        repurchase=signals.repurchase_scores(blend.repurchase_key),
        collaborative=signals.collaborative,
        popular=signals.popular,
    )
    return top, x


def _base_scores(signals: Signals, *, collaborative: float, popularity: float) -> np.ndarray:
    """collaborative · collaborative signal + popularity · popular: every item's score before its
    repurchase part (which only bought items have)."""
    # In-place arithmetic and BLAS's saxpy for the weighted sum (one pass over the scores instead of
    # three, about twice as fast): this runs for every customer batch and blend while tuning.
    if signals.collaborative is not None and collaborative:
        scores = np.multiply(signals.collaborative, np.float32(collaborative), dtype=np.float32)
    else:
        scores = np.zeros(signals.bought.shape, dtype=np.float32)
    if popularity:
        _add_scaled(scores, signals.popular if signals.popular.ndim == 2 else signals.popular[None, :], popularity)
    return scores


def _add_scaled(scores: np.ndarray, values: np.ndarray, weight: float) -> None:
    """scores += weight * values, in place; `values` may be one row for every row of `scores`."""
    if values.shape == scores.shape and values.dtype == np.float32 and values.flags.c_contiguous and scores.size:
        flat = scores.reshape(-1)
        out = blas.saxpy(values.reshape(-1), flat, a=weight)
        if out.ctypes.data != flat.ctypes.data:  # f2py worked on a copy (never seen for these arrays)
            flat[:] = out
    else:
        scores += np.float32(weight) * values.astype(np.float32, copy=False)


def top_blended(
    signals: Signals, *, blend: Blend, context: str, k: int, shared: dict[Any, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """`top_k(blend_scores(signals, blend=blend, context=context), k=k)`, with the dense work shared
    between blends (tuning ranks the same customers with dozens of them).

    An item the customer never bought scores the base (collaborative and popularity parts) in every
    context, so one top-k of the base over those items per (collaborative, popularity) weights, kept
    in `shared` (one dict per Signals), serves every blend and context with those weights; the bought
    items, a few dozen per customer, are scored on their own and merged in. The same float operations
    on the same values as `blend_scores`: the same lists, ties included. A re-ranked `home` list
    has no shared work: it is `blend_scores`'s."""
    if signals.pairs is None or not signals.known.all() or reranks(signals, blend=blend, context=context):
        return top_k(blend_scores(signals, blend=blend, context=context), k=k)
    k = max(min(k, signals.bought.shape[1]), 0)
    blend = blend.for_context(context)
    collaborative = blend.collaborative if signals.collaborative is not None else 0.0
    key = (collaborative, blend.popularity, k)
    if key not in shared:
        base = _base_scores(signals, collaborative=collaborative, popularity=blend.popularity)
        at_bought = base[signals.pairs]
        np.copyto(base, np.float32(-np.inf), where=signals.bought)
        shared[key] = at_bought, top_k(base, k=k)
    at_bought, (new_ids, new_vals) = shared[key]
    if blend.excludes_bought(context):
        return new_ids.copy(), new_vals.copy()
    bought_vals = at_bought
    if blend.repurchase:
        bought_vals = at_bought + signals.repurchase_at_pairs(blend.repurchase_key) * np.float32(blend.repurchase)
    row, item = signals.pairs
    rows = len(signals.known)
    if context == "buy-again":
        return top_of_candidates(row, item, bought_vals, rows=rows, k=k)
    finite = np.isfinite(new_vals)
    row = np.concatenate([np.nonzero(finite)[0], row])
    item = np.concatenate([new_ids[finite], item])
    order = np.argsort(row * signals.bought.shape[1] + item)  # (row, item) order; the pairs are distinct
    values = np.concatenate([new_vals[finite], bought_vals])[order]
    return top_of_candidates(row[order], item[order], values, rows=rows, k=k)


def explore_slots(*, k: int, share: float) -> list[int]:
    """The positions of a k-item list that hold explore items for a `share` of them (0..1): round(k ·
    share) slots spread evenly, none first unless every slot is (k=10, share 0.2: positions 2 and 7)."""
    n = min(k, max(0, round(k * max(0.0, min(share, 1.0)))))
    if n == 0:
        return []
    if n == k:
        return list(range(k))
    return [min(k - 1, (2 * j + 1) * k // (2 * n)) for j in range(n)]


def mix_explore(regular: list[int], explore: list[int], *, k: int, share: float) -> list[int]:
    """A k-item list of `regular` with `explore` items in the explore slots (none repeated; a side
    that runs short is filled up from the other)."""
    slots = set(explore_slots(k=k, share=share))
    taken: set[int] = set()
    out: list[int] = []
    queues = (list(regular), list(explore))
    for position in range(k):
        first, second = (queues[1], queues[0]) if position in slots else (queues[0], queues[1])
        for queue in (first, second):
            while queue and queue[0] in taken:
                queue.pop(0)
            if queue:
                item = queue.pop(0)
                out.append(item)
                taken.add(item)
                break
        else:
            break
    return out
