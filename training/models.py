"""The models: signals (history, popularity, collaborative) fitted from purchase lines, and the blends.

Collaborative models come from `implicit` (ALS, BPR, item-item kNN with cosine or BM25) and EASE
(closed form, numpy). Fitting returns plain arrays (`ranking.Collaborative`); the ranking core
scores them with numpy so that a blend sees every item's score.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from training.core.blend import Blend
from training.core.collaborative import Collaborative, Factors, ItemSimilarity, ItemWeights
from training.core.errors import RecoError
from training.core.history import History, PopularityTimeline, decay
from training.interactions import Interactions
from training.sorting import run_numbers, run_starts, sorted_groups, stable_argsort

BASELINES = ("popularity", "frequency")
COLLABORATIVE = ("als", "bpr", "knn-cosine", "knn-bm25", "ease")
MODELS = ("hybrid", *BASELINES, *COLLABORATIVE)
DEFAULT_MODEL = "hybrid"
EASE_MAX_ITEMS = 20_000
# Candidates the hybrid chooses its discovery part from, in order of preference on ties.
HYBRID_CANDIDATES = ("als", "knn-bm25", "ease")
# The model search fits every candidate; above this many (customer, item) pairs it keeps ALS only,
# fitted in a thread beside the recency tuning, so that `reco train` stays near the time of one raw
# implicit fit (logged as `candidates`; README, Performance).
SEARCH_MAX_PAIRS = 2_000_000
EASE_SEARCH_MAX_ITEMS = 8_000

DEFAULTS: dict[str, Any] = {
    "factors": 64,
    "regularization": 0.05,
    "iterations": 15,
    "alpha": 1.0,
    "learning_rate": 0.01,
    "bpr_iterations": 100,
    "neighbours": 100,
    "ease_lambda": 250.0,
    "seed": 42,
}


class UnknownModel(RecoError):
    """--model names no model this trainer knows."""


@dataclass(frozen=True)
class FittedCollaborative:
    """A collaborative scorer plus the implicit model object (kept for folding in customers)."""

    name: str
    scorer: Collaborative
    model: Any = None
    seconds: float = 0.0


def check_model(name: str) -> str:
    """Validate a model name (one sentence when unknown)."""
    if name not in MODELS:
        raise UnknownModel(f"Unknown model {name!r}: use one of {', '.join(MODELS)}.")
    return name


def param(params: Mapping[str, Any], key: str) -> Any:
    """A parameter from --param KEY=VALUE, cast to the default's type."""
    default = DEFAULTS[key]
    value = params.get(key, default)
    return type(default)(value)


@dataclass(frozen=True)
class BasketEvents:
    """One event per (basket, item) grouped by (customer, item) pair: the part of a history that
    does not depend on the half-life, so tuning the half-life only re-weights. Events are ordered by
    pair (within a pair, by basket index), so per-pair figures are reductions over contiguous runs."""

    n_users: int
    n_items: int
    keys: np.ndarray  # int64 sorted distinct customer * n_items + item
    pair: np.ndarray  # int64 per event: index into keys (non-decreasing)
    day: np.ndarray  # float64 per event
    baskets: np.ndarray  # float32 per pair
    first_day: np.ndarray
    last_day: np.ndarray
    basket: np.ndarray  # int64 per event: its basket index

    def of_baskets(self, keep: np.ndarray) -> BasketEvents:
        """The events of the baskets where `keep` (bool per basket index) is true: what
        `basket_events` gives for the lines of those baskets, without sorting them again."""
        kept = keep[self.basket]
        pair = self.pair[kept]
        present = np.bincount(pair, minlength=len(self.keys)) > 0
        pair = (np.cumsum(present) - 1)[pair]
        return _grouped(self.n_users, self.n_items, self.keys[present], pair, self.day[kept], self.basket[kept])


def _grouped(
    n_users: int, n_items: int, keys: np.ndarray, pair: np.ndarray, day: np.ndarray, basket: np.ndarray
) -> BasketEvents:
    """Per-pair figures of events ordered by pair, every pair with one event at least (`ufunc.at`
    instead of `reduceat` was 1.3 s per figure on 10 M events here)."""
    starts = run_starts(pair)
    first_day = np.minimum.reduceat(day, starts) if len(starts) else np.zeros(0)
    last_day = np.maximum.reduceat(day, starts) if len(starts) else np.zeros(0)
    baskets = np.diff(np.r_[starts, len(pair)]).astype(np.float32)
    return BasketEvents(n_users, n_items, keys, pair, day, baskets, first_day, last_day, basket)


def baskets_of(interactions: Interactions, lines: np.ndarray) -> np.ndarray:
    """Bool per basket index: the baskets of the lines where `lines` is true (for `BasketEvents.of_baskets`)."""
    keep = np.zeros(int(interactions.basket.max(initial=-1)) + 1, dtype=bool)
    keep[interactions.basket[lines]] = True
    return keep


def basket_events(interactions: Interactions) -> BasketEvents:
    """Collapse purchase lines to one event per (basket, item) and group them by (customer, item)."""
    n_items = interactions.n_items
    # A basket listing an item on several lines counts once, on the day of its earliest line.
    basket_item, order, starts = sorted_groups(interactions.basket * n_items + interactions.item)
    day = np.minimum.reduceat(interactions.day[order], starts) if len(starts) else np.zeros(0)
    basket_user = np.zeros(int(interactions.basket.max(initial=-1)) + 1, dtype=np.int64)
    basket_user[interactions.basket] = interactions.user
    basket = basket_item // n_items
    # Events in pair order; the stable sort keeps each pair's events in basket order.
    keys, order, starts = sorted_groups(basket_user[basket] * n_items + basket_item % n_items)
    pair = run_numbers(starts, len(order))
    return _grouped(interactions.n_users, n_items, keys, pair, day[order], basket[order])


def build_history(
    *, interactions: Interactions, reference_day: float, half_life: float, events: BasketEvents | None = None
) -> History:
    """Per (customer, item): baskets, first and last purchase day and the decayed basket count."""
    ev = events if events is not None else basket_events(interactions)
    if not math.isfinite(half_life):  # every basket weighs 1 (see decay): the decayed count is the basket count
        decayed = ev.baskets
    else:
        weights = decay(age_days=reference_day - ev.day, half_life=half_life)
        decayed = np.bincount(ev.pair, weights=weights, minlength=len(ev.keys)).astype(np.float32)
    users = ev.keys // ev.n_items
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=ev.n_users))]).astype(np.int64)
    return History(
        indptr=indptr,
        indices=(ev.keys % ev.n_items).astype(np.int32),
        baskets=ev.baskets,
        first_day=ev.first_day,
        last_day=ev.last_day,
        decayed=decayed,
        reference_day=float(reference_day),
        half_life=float(half_life),
    )


def history_matrix(history: History, *, n_items: int) -> sp.csr_matrix:
    """Customer × item CSR of basket counts (what the collaborative models are fitted on)."""
    return sp.csr_matrix((history.baskets, history.indices, history.indptr), shape=(history.n_users, n_items))


@dataclass(frozen=True)
class PopularityLines:
    """Every line ordered by (customer, item, calendar day), file order within: in any set of these
    lines, the first of each group is that set's popularity event, so each split takes its events
    with a mask instead of sorting its lines again. Items and days are kept in that order too: a
    split's events are then read in order, not gathered from all over the lines."""

    line: np.ndarray  # line index, in group order
    group: np.ndarray  # group number per position (non-decreasing)
    item: np.ndarray  # the lines' items, in group order
    day: np.ndarray  # the lines' days, in group order

    def events(self, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`popularity_events` of the lines where `keep` is true (all lines when None)."""
        if keep is None:
            first = run_starts(self.group)
        else:
            kept = np.flatnonzero(keep[self.line])
            first = kept[run_starts(self.group[kept])]
        return self.item[first], self.day[first]


def popularity_lines(interactions: Interactions) -> PopularityLines:
    """The one sort that every split's popularity events come from (see PopularityLines)."""
    day = np.floor(interactions.day).astype(np.int64)
    key = (interactions.user.astype(np.int64) * interactions.n_items + interactions.item) * 100_000 + day
    line = stable_argsort(key)
    key = key[line]
    return PopularityLines(
        line=line,
        group=np.cumsum(np.r_[False, key[1:] != key[:-1]]) if len(key) else key,
        item=interactions.item[line],
        day=interactions.day[line],
    )


def popularity_events(interactions: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """(item, day) of each customer's first purchase of an item on a calendar day (half-life independent)."""
    return popularity_lines(interactions).events()


def popularity(
    *,
    interactions: Interactions,
    reference_day: float,
    half_life: float,
    events: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Recency-weighted number of customers buying each item (a customer counts once per day)."""
    item, day = events if events is not None else popularity_events(interactions)
    weights = decay(age_days=reference_day - day, half_life=half_life)
    return np.bincount(item, weights=weights, minlength=interactions.n_items).astype(np.float32)


TIMELINE_SNAPSHOTS = 256


def popularity_timeline(
    *,
    interactions: Interactions,
    half_life: float,
    events: tuple[np.ndarray, np.ndarray] | None = None,
    snapshots: int = TIMELINE_SNAPSHOTS,
) -> PopularityTimeline:
    """`popularity` as of evenly spaced days over the lines' span (the first snapshot is empty, the last
    counts every line), each snapshot scaled to max 1; at most `snapshots` + 1 rows of n_items floats."""
    item, day = events if events is not None else popularity_events(interactions)
    n_items = interactions.n_items
    if not len(day):
        return PopularityTimeline(days=np.zeros(1), values=np.zeros((1, n_items), dtype=np.float32))
    start, end = float(day.min()), float(day.max())
    step = max((end - start) / snapshots, 1e-6) * (1 + 1e-9)
    days = start + step * np.arange(snapshots + 1)  # days[-1] > end: the last snapshot has every line
    bucket = _snapshot_after(days, day)
    # Each line's weight as of its bucket's day, summed per (bucket, item) in one pass (no sort).
    weights = decay(age_days=days[np.minimum(bucket, snapshots)] - day, half_life=half_life)
    added = np.bincount(bucket * n_items + item, weights=weights, minlength=(snapshots + 2) * n_items)
    added = added.reshape(snapshots + 2, n_items)
    values = np.zeros((snapshots + 1, n_items), dtype=np.float64)
    step_decay = decay(age_days=np.array(step), half_life=half_life)
    for k in range(1, snapshots + 1):
        values[k] = values[k - 1] * step_decay + added[k]
    top = values.max(axis=1, keepdims=True)
    np.divide(values, top, out=values, where=top > 0)
    return PopularityTimeline(days=days, values=values.astype(np.float32))


def _snapshot_after(days: np.ndarray, day: np.ndarray) -> np.ndarray:
    """`np.searchsorted(days, day, side="right")` for evenly spaced `days` (the first snapshot after
    each line), by arithmetic and a one-step correction: several times faster on millions of lines."""
    step = days[1] - days[0] if len(days) > 1 else 1.0
    bucket = np.clip(np.floor((day - days[0]) / step).astype(np.int64) + 1, 0, len(days))
    bucket -= (bucket > 0) & (days[np.maximum(bucket - 1, 0)] > day)  # rounding put it one too far
    bucket += (bucket < len(days)) & (days[np.minimum(bucket, len(days) - 1)] <= day)  # one too near
    return bucket


def blas_single_thread() -> Any:
    """BLAS limited to one thread: around implicit (it parallelizes itself; implicit warns otherwise)
    and around evaluation, whose batches run in threads of their own."""
    # Import implicit (and the BLAS it loads) first: threadpoolctl limits only libraries already loaded.
    import implicit.cpu.als
    import implicit.nearest_neighbours  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


def _confidence(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """BM25-weighted basket counts: damp heavy buyers and ubiquitous items (implicit's recipe for ALS)."""
    from implicit.nearest_neighbours import bm25_weight

    return bm25_weight(matrix, K1=100, B=0.8).tocsr().astype(np.float32)


def fit_collaborative(*, name: str, matrix: sp.csr_matrix, params: Mapping[str, Any]) -> FittedCollaborative:
    """Fit one collaborative model on a customer × item basket-count matrix."""
    import time

    start = time.perf_counter()
    seed = param(params, "seed")
    with blas_single_thread():
        if name == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            als = AlternatingLeastSquares(
                factors=param(params, "factors"),
                regularization=param(params, "regularization"),
                alpha=param(params, "alpha"),
                iterations=param(params, "iterations"),
                random_state=seed,
            )
            als.fit(_confidence(matrix), show_progress=False)
            scorer = Factors(user_factors=als.user_factors, item_factors=als.item_factors)
            fitted = FittedCollaborative(name, scorer, als)
        elif name == "bpr":
            from implicit.cpu.bpr import BayesianPersonalizedRanking

            bpr = BayesianPersonalizedRanking(
                factors=param(params, "factors"),
                learning_rate=param(params, "learning_rate"),
                regularization=param(params, "regularization"),
                iterations=param(params, "bpr_iterations"),
                random_state=seed,
            )
            bpr.fit((matrix > 0).astype(np.float32).tocsr(), show_progress=False)
            scorer = Factors(user_factors=bpr.user_factors, item_factors=bpr.item_factors)
            fitted = FittedCollaborative(name, scorer, bpr)
        elif name in ("knn-cosine", "knn-bm25"):
            from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
            from implicit.utils import ParameterWarning

            knn_class = BM25Recommender if name == "knn-bm25" else CosineRecommender
            knn = knn_class(K=param(params, "neighbours"))
            with warnings.catch_warnings():
                # BM25Recommender converts its own COO weights and then warns about it.
                warnings.simplefilter("ignore", ParameterWarning)
                knn.fit((matrix > 0).astype(np.float32).tocsr(), show_progress=False)
            sim = knn.similarity.tocsr().astype(np.float32)
            sim.setdiag(0)
            sim.eliminate_zeros()
            fitted = FittedCollaborative(name, ItemSimilarity(similarity=sim), knn)
        elif name == "ease":
            fitted = FittedCollaborative(name, ItemWeights(item_dense=fit_ease(matrix=matrix, params=params)))
        else:
            raise UnknownModel(f"{name!r} is not a collaborative model: use one of {', '.join(COLLABORATIVE)}.")
    return FittedCollaborative(fitted.name, fitted.scorer, fitted.model, time.perf_counter() - start)


def fit_ease(*, matrix: sp.csr_matrix, params: Mapping[str, Any]) -> np.ndarray:
    """EASE (Steck 2019): B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, zero diagonal."""
    n_items = matrix.shape[1]
    if n_items > EASE_MAX_ITEMS:
        raise RecoError(f"EASE inverts an items × items matrix: {n_items:,} items is above {EASE_MAX_ITEMS:,}.")
    x = (matrix > 0).astype(np.float64)
    gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
    gram[np.diag_indices(n_items)] += param(params, "ease_lambda")
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices(n_items)] = 0.0
    return b.astype(np.float32)


def fold_in(
    *,
    fitted: FittedCollaborative,
    matrix: sp.csr_matrix,
    users: np.ndarray | None = None,
    seen: np.ndarray | None = None,
) -> FittedCollaborative:
    """Recompute customer factors from a newer history with the item side fixed, for all customers or
    only `users` (the others keep the factors of the fit).

    `recalculate_user` solves each customer exactly. With all customers and `seen` (bool per customer:
    had lines at fit time), the seen ones instead take one more user step of the fit's own
    conjugate-gradient solver from their fitted factors (an extra half-iteration: about four times
    faster on 173k customers here, top-10 lists 99.8% the same); the unseen are solved exactly.

    Item-based scorers read the history at scoring time and need nothing; BPR has no closed-form
    user step, so its customers keep the factors of the fit."""
    if fitted.name != "als":
        return fitted
    model = fitted.model
    assert isinstance(fitted.scorer, Factors)
    factors = np.array(fitted.scorer.user_factors, copy=True)
    confidence = _confidence(matrix)
    with blas_single_thread():
        if users is None and seen is not None:
            weighted = confidence if model.alpha == 1.0 else (model.alpha * confidence).astype(np.float32)
            model.solver(weighted, factors, model.item_factors, model.regularization, num_threads=model.num_threads)
            rows = np.flatnonzero(~seen)
        else:
            rows = np.arange(matrix.shape[0]) if users is None else np.unique(np.asarray(users, dtype=np.int64))
        if len(rows):
            factors[rows] = model.recalculate_user(rows, confidence[rows])
    return FittedCollaborative(
        fitted.name,
        Factors(user_factors=factors, item_factors=fitted.scorer.item_factors),
        fitted.model,
    )


def baseline_blend(name: str) -> Blend:
    """Fixed blends: popularity, personal frequency (own purchases first, popular after), a pure collaborative model."""
    if name == "popularity":
        return Blend(popularity=1.0)
    if name == "frequency":
        return Blend(repurchase=1.0, popularity=1e-3)
    return Blend(collaborative=1.0, popularity=1e-3)


# The hybrid's blend is tuned on validation by coordinate search (≈ 35 evaluations instead of a
# full grid). Start: the repurchase weights, discovery-only blends (home without bought items) at
# each popularity weight, and the plain baselines, so that on validation the hybrid is never worse
# than popularity or personal frequency. Then, from the best: the "due" boost, the popularity prior,
# whether home lists bought items, the collaborative weight and the repurchase weight again.
REPURCHASE_WEIGHTS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
DUE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
POPULARITY_WEIGHTS = (1e-3, 0.05, 0.2, 0.5, 2.0)
# Zero last: on a tie the collaborative part stays (it is what `discover` serves).
COLLABORATIVE_WEIGHTS = (0.3, 3.0, 0.0)
HYBRID_START = Blend(repurchase=1.0, collaborative=1.0, popularity=1e-3)
# `discover` gets its own collaborative/popularity mix, tuned on the validation baskets' new items:
# (collaborative, popularity) pairs, popularity alone last.
DISCOVER_MIXES = ((1.0, 1e-3), (1.0, 0.05), (1.0, 0.2), (1.0, 0.5), (1.0, 2.0), (0.0, 1.0))
# Catalogue-style data (nobody buys the same film twice): home = discovery only.
DISCOVERY_ONLY = Blend(collaborative=1.0, popularity=1e-3, home_excludes_bought=True)
# ALS's regularization is chosen on validation (discover NDCG@10 of ALS alone) when the model search
# is affordable: the best value depends on the data (0.05, implicit's example value, over-fits
# small or sparse matrices badly; a large value can shrink the factors to nothing). Above
# SEARCH_MAX_PAIRS one fit with DEFAULTS["regularization"].
ALS_REGULARIZATIONS = (0.05, 30.0, 100.0)


HALF_LIVES = (30.0, 90.0, 365.0, math.inf)
POPULARITY_HALF_LIVES = (14.0, 60.0, 365.0)
