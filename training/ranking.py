"""The one ranking core: a model bundle plus a customer's history → a ranked, filtered list.

The service ranks with `ModelBundle.score_rows` / `recommend_batch` (`blend_scores`, then `top_k`);
offline evaluation ranks the same signals with `top_blended`, which gives the same lists (tested)
while sharing the dense work between the many blends tuning tries, so offline metrics measure
exactly what production serves.

Every model is the same blend of three per-item signals, each scaled to at most 1 per customer:

    score = repurchase_weight · repurchase + collaborative_weight · collaborative + popularity_weight · popular

* repurchase: the customer's own recency-weighted basket count for the item, boosted when the
  item is "due" (time since the last purchase ≈ the customer's usual interval for it);
* collaborative: ALS/BPR factors, item-item kNN similarities or EASE weights;
* popular: recency-weighted popularity, also the fallback for customers the model does not know
  (in evaluation, as of each held-out basket's day: `PopularityTimeline`).

Popularity, personal frequency, the pure collaborative models and the default hybrid differ only
in their weights (see training.models). Contexts: `buy-again` keeps items the customer bought,
`discover` keeps items never bought (with its own collaborative/popularity mix when the blend has
one), `home` keeps both (unless the blend says home excludes bought items, as on catalogue-style
data where nobody buys the same film twice).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas

CONTEXTS = ("home", "buy-again", "discover")
_BATCH = 256
_DUE_WIDTH = 0.6  # log-scale width of the "due" bump around the customer's usual interval
_TOP_K_GROUP = 64  # top_k thresholds rows by the maxima of groups of this many items (a power of two)


class UnknownContext(ValueError):
    """The context is not one of home, buy-again, discover."""


@dataclass(frozen=True)
class History:
    """Customer × item purchase history in CSR form with parallel per-pair arrays."""

    indptr: np.ndarray  # int64, n_users + 1
    indices: np.ndarray  # int32 item index per pair
    baskets: np.ndarray  # float32: baskets containing the item
    first_day: np.ndarray  # float64: first purchase, days since epoch
    last_day: np.ndarray  # float64: last purchase
    decayed: np.ndarray  # float32: Σ 0.5^((reference_day − day) / half_life) over the baskets
    reference_day: float
    half_life: float

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def positions(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row number within `rows`, position in the pair arrays) for every pair of those rows."""
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        total = int(lengths.sum())
        row_of = np.repeat(np.arange(len(rows)), lengths)
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return row_of, offsets + np.arange(total)


@dataclass(frozen=True)
class Collaborative:
    """A collaborative scorer: factors (ALS, BPR), a sparse item similarity (kNN) or a dense item matrix (EASE)."""

    kind: str  # "factors" | "item_similarity" | "item_dense"
    user_factors: np.ndarray | None = None
    item_factors: np.ndarray | None = None
    similarity: sp.csr_matrix | None = None
    item_dense: np.ndarray | None = None

    def user_scores(self, *, users: np.ndarray, bought: sp.csr_matrix) -> np.ndarray:
        """Dense scores (len(users) × items); `users` are row indices, −1 for rows without factors."""
        if self.kind == "factors":
            assert self.user_factors is not None and self.item_factors is not None
            known = (users >= 0) & (users < len(self.user_factors))
            factors = np.zeros((len(users), self.item_factors.shape[1]), dtype=np.float32)
            factors[known] = self.user_factors[users[known]]
            return factors @ self.item_factors.T
        if self.kind == "item_similarity":
            assert self.similarity is not None
            return np.asarray((bought @ self.similarity).todense(), dtype=np.float32)
        assert self.item_dense is not None
        return np.asarray(bought @ self.item_dense, dtype=np.float32)

    def item_neighbours(self, item: int) -> np.ndarray:
        """Similarity of every item to `item` (the item itself included)."""
        if self.kind == "factors":
            assert self.item_factors is not None
            norms = np.linalg.norm(self.item_factors, axis=1) + 1e-9
            return (self.item_factors @ self.item_factors[item]) / (norms * norms[item])
        if self.kind == "item_similarity":
            assert self.similarity is not None
            return np.asarray(self.similarity[item].todense(), dtype=np.float32).reshape(-1)
        assert self.item_dense is not None
        return np.asarray(self.item_dense[item] + self.item_dense[:, item], dtype=np.float32)


@dataclass(frozen=True)
class PopularityTimeline:
    """Recency-weighted popularity as of past days, from snapshots (each scaled to max 1).

    Evaluation ranks each held-out basket with the popularity of its own day, counting only lines
    before it, as production does at serving time. Popularity as of the end of the data would tell
    an early customer what became popular after their basket, and misses what was popular then."""

    days: np.ndarray  # float64, ascending: snapshot k counts the lines before days[k]
    values: np.ndarray  # float32, snapshots × items

    def at(self, now: np.ndarray) -> np.ndarray:
        """Popularity (rows × items) as of the latest snapshot at or before each `now`."""
        index = np.searchsorted(self.days, np.asarray(now, dtype=np.float64), side="right") - 1
        return self.values[np.clip(index, 0, len(self.days) - 1)]


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
        }

    def for_context(self, context: str) -> Blend:
        """The weights a context ranks with (discover may have its own collaborative/popularity mix)."""
        if context != "discover" or self.discover_collaborative is None or self.discover_popularity is None:
            return self
        return replace(
            self, repurchase=0.0, collaborative=self.discover_collaborative, popularity=self.discover_popularity
        )


@dataclass
class ModelBundle:
    """A trained model: id maps, histories, signals and blend. Load with training.bundle / training.registry."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    history: History
    popularity: np.ndarray  # float32 per item, recency-weighted
    in_stock: np.ndarray  # bool per item
    item_category: np.ndarray  # int32 per item, −1 unknown
    categories: np.ndarray  # str per category code
    blend: Blend
    collaborative: Collaborative | None = None
    config: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    # Evaluation only (never saved): popularity as of each held-out basket's day.
    popularity_timeline: PopularityTimeline | None = None
    _user_index: dict[str, int] | None = field(default=None, repr=False)
    _item_index: dict[str, int] | None = field(default=None, repr=False)

    # --- id maps ------------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def user_index(self) -> dict[str, int]:
        """user_id → row (built on first use)."""
        if self._user_index is None:
            self._user_index = {u: i for i, u in enumerate(self.user_ids.tolist())}
        return self._user_index

    @property
    def item_index(self) -> dict[str, int]:
        """item_id → column (built on first use)."""
        if self._item_index is None:
            self._item_index = {u: i for i, u in enumerate(self.item_ids.tolist())}
        return self._item_index

    def knows_user(self, user_id: str) -> bool:
        """True when the customer has a purchase history in the model."""
        row = self.user_index.get(str(user_id))
        return row is not None and self.history.indptr[row + 1] > self.history.indptr[row]

    def knows_item(self, item_id: str) -> bool:
        """True when the item is in the model's catalog."""
        return str(item_id) in self.item_index

    def with_blend(self, blend: Blend) -> ModelBundle:
        """The same arrays with other weights (used when tuning on the validation split)."""
        return replace(self, blend=blend)

    # --- scoring ------------------------------------------------------------------------------

    def popular_scores(self) -> np.ndarray:
        """Popularity scaled to [0, 1]."""
        top = float(self.popularity.max()) if len(self.popularity) else 0.0
        return self.popularity / top if top > 0 else np.zeros_like(self.popularity)

    def _repurchase_values(self, *, row_of: np.ndarray, pos: np.ndarray, now: np.ndarray, due: float) -> np.ndarray:
        """Repurchase scores at the history pairs `pos` (of batch rows `row_of`, ascending), scaled to
        max 1 per row."""
        h = self.history
        values = h.decayed[pos].astype(np.float64)
        if due:
            n = h.baskets[pos]
            interval = (h.last_day[pos] - h.first_day[pos]) / np.maximum(n - 1, 1)
            since = np.maximum(now[row_of] - h.last_day[pos], 1e-3)
            ratio = np.log(since / np.maximum(interval, 1e-3))
            boost = np.where((n >= 2) & (interval > 0.5), np.exp(-0.5 * (ratio / _DUE_WIDTH) ** 2), 0.0)
            values = values * (1.0 + due * boost)
        values = values.astype(np.float32)
        top = np.zeros(len(now), dtype=np.float32)
        if len(values):
            starts = np.flatnonzero(np.r_[True, row_of[1:] != row_of[:-1]])
            top[row_of[starts]] = np.maximum.reduceat(values, starts)
        scale = top[row_of]
        np.divide(values, scale, out=values, where=scale > 0)
        return values

    def signals(self, *, rows: np.ndarray, now: np.ndarray | None = None) -> Signals:
        """The per-item signals of history rows (−1 = unknown customer), before blending (repurchase
        scores per due weight on first use)."""
        rows = np.asarray(rows, dtype=np.int64)
        known = rows >= 0
        safe = np.where(known, rows, 0)
        when = np.full(len(rows), self.history.reference_day) if now is None else np.asarray(now, dtype=np.float64)
        row_of, pos = self.history.positions(safe)
        if not known.all():
            row_of, pos = row_of[known[row_of]], pos[known[row_of]]
        item = self.history.indices[pos]
        bought = np.zeros((len(rows), self.n_items), dtype=bool)
        bought[row_of, item] = True
        cf = None
        if self.collaborative is not None:
            # The bought pairs already found, as the binary matrix item-based scorers multiply.
            ones = np.ones(len(item), dtype=np.float32)
            bought_matrix = sp.csr_matrix((ones, (row_of, item)), shape=(len(rows), self.n_items))
            cf = self.collaborative.user_scores(users=np.where(known, safe, -1), bought=bought_matrix)
            cf[~known] = 0.0
            top = np.abs(cf).max(axis=1, keepdims=True)
            np.divide(cf, top, out=cf, where=top > 0)
        if self.popularity_timeline is not None and now is not None:
            popular = self.popularity_timeline.at(when)
        else:
            popular = self.popular_scores()
        return Signals(
            known=known,
            bought=bought,
            repurchase={},
            collaborative=cf,
            popular=popular,
            pairs=(row_of, item),
            repurchase_of=lambda due: self._repurchase_values(row_of=row_of, pos=pos, now=when, due=due),
        )

    def score_rows(self, *, rows: np.ndarray, context: str, now: np.ndarray | None = None) -> np.ndarray:
        """Blended scores for history rows (−1 = unknown customer), −inf where the context excludes an item."""
        check_context(context)
        return blend_scores(self.signals(rows=rows, now=now), blend=self.blend, context=context)

    # --- the API the service and batch jobs use -----------------------------------------------

    def recommend_batch(
        self,
        user_ids: Sequence[str],
        *,
        k: int,
        context: str = "home",
        exclude_items: Sequence[str] = (),
        category: str | None = None,
        now: datetime | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Top-k (item_id, score) per customer; unknown customers get the popular fallback, never an error."""
        out: list[list[tuple[str, float]]] = []
        users = [str(u) for u in user_ids]
        for start in range(0, len(users), _BATCH):
            rows = np.array([self._history_row(u) for u in users[start : start + _BATCH]], dtype=np.int64)
            ids, vals = self.top_rows(
                rows, k=k, context=context, exclude_items=exclude_items, category=category, now=now
            )
            for row_ids, row_vals in zip(ids, vals, strict=True):
                finite = np.isfinite(row_vals)
                out.append(list(zip(self.item_ids[row_ids[finite]].tolist(), row_vals[finite].tolist(), strict=True)))
        return out

    def top_rows(
        self,
        rows: np.ndarray,
        *,
        k: int,
        context: str = "home",
        exclude_items: Sequence[str] = (),
        category: str | None = None,
        now: datetime | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`recommend_batch` for history rows (−1 = unknown customer), as arrays: item indices and
        scores, rows × k, best first, padded with −inf scores."""
        check_context(context)
        allowed = self._allowed_items(exclude_items=exclude_items, category=category)
        when = None if now is None else np.full(len(rows), now.timestamp() / 86_400.0)
        scores = self.score_rows(rows=np.asarray(rows, dtype=np.int64), context=context, now=when)
        scores[:, ~allowed] = -np.inf
        return top_k(scores, k=max(int(k), 0))

    def similar_items(self, item_id: str, *, k: int, exclude_items: Sequence[str] = ()) -> list[tuple[str, float]]:
        """Items most like `item_id`; unknown items (or models without one) fall back to popular in its category."""
        allowed = self._allowed_items(exclude_items=(*exclude_items, item_id), category=None)
        item = self.item_index.get(str(item_id))
        if item is not None and self.collaborative is not None:
            scores = self.collaborative.item_neighbours(item).astype(np.float32)
            scores[~allowed] = -np.inf
            scores[scores <= 0] = -np.inf
        else:
            scores = np.full(self.n_items, -np.inf, dtype=np.float32)
        ids, vals = top_k(scores[None, :], k=k)
        found = [(self.item_ids[i], float(v)) for i, v in zip(ids[0], vals[0], strict=True) if np.isfinite(v)]
        if len(found) >= k:
            return found
        # Fill up from the fallback chain: popular in the item's category, then popular.
        seen = {i for i, _ in found}
        pop = self.popular_scores()
        chain = []
        if item is not None and self.item_category[item] >= 0:
            chain.append(allowed & (self.item_category == self.item_category[item]))
        chain.append(allowed)
        for mask in chain:
            ids, vals = top_k(np.where(mask, pop, -np.inf)[None, :], k=k)
            for i, v in zip(ids[0], vals[0], strict=True):
                if np.isfinite(v) and self.item_ids[i] not in seen and len(found) < k:
                    found.append((self.item_ids[i], 0.0))
                    seen.add(self.item_ids[i])
        return found

    def _history_row(self, user_id: str) -> int:
        row = self.user_index.get(user_id)
        return -1 if row is None else row

    def _allowed_items(self, *, exclude_items: Sequence[str], category: str | None) -> np.ndarray:
        allowed = self.in_stock.copy()
        for item_id in exclude_items:
            i = self.item_index.get(str(item_id))
            if i is not None:
                allowed[i] = False
        if category is not None:
            # Strict: an unknown or sold-out category allows nothing (the caller's fallback chain
            # decides what to serve instead and says so), never items of other categories.
            allowed &= np.isin(self.item_category, np.flatnonzero(self.categories == category))
        return allowed


@dataclass(frozen=True)
class Signals:
    """Per-item signals for a batch of customers (rows × items), each at most 1 per row.

    Repurchase scores are kept at the bought pairs (`pairs`, by row) and made dense on demand."""

    known: np.ndarray  # bool per row: the customer has a history
    bought: np.ndarray  # bool rows × items
    repurchase: dict[float, np.ndarray]  # due weight → dense scores (built from the pairs when missing)
    collaborative: np.ndarray | None
    popular: np.ndarray  # per item, or rows × items (popularity as of each row's day)
    pairs: tuple[np.ndarray, np.ndarray] | None = None  # (row, item) of every bought pair, rows ascending
    repurchase_of: Callable[[float], np.ndarray] | None = None  # due weight → scores at `pairs`
    _at_pairs: dict[float, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def repurchase_at_pairs(self, due: float) -> np.ndarray:
        """Repurchase scores at `pairs` for a due weight (computed once)."""
        if due not in self._at_pairs:
            assert self.repurchase_of is not None, "Signals without pairs carry their dense repurchase scores"
            self._at_pairs[due] = self.repurchase_of(due)
        return self._at_pairs[due]

    def repurchase_scores(self, due: float) -> np.ndarray:
        """Dense repurchase scores for a due weight."""
        if due not in self.repurchase:
            assert self.pairs is not None, "Signals without pairs carry their dense repurchase scores"
            dense = np.zeros(self.bought.shape, dtype=np.float32)
            dense[self.pairs] = self.repurchase_at_pairs(due)
            self.repurchase[due] = dense
        return self.repurchase[due]


def check_context(context: str) -> str:
    """Validate a context name (UnknownContext, one sentence, otherwise)."""
    if context not in CONTEXTS:
        raise UnknownContext(f"Unknown context {context!r}: use one of {', '.join(CONTEXTS)}.")
    return context


def blend_scores(signals: Signals, *, blend: Blend, context: str) -> np.ndarray:
    """Blend the signals; −inf where the context excludes an item; unknown customers get popularity."""
    shape = signals.bought.shape
    blend = blend.for_context(context)
    scores = _base_scores(signals, collaborative=blend.collaborative, popularity=blend.popularity)
    if blend.repurchase:  # only bought items have repurchase scores: the others keep the base
        scores += signals.repurchase_scores(blend.due) * np.float32(blend.repurchase)
    known = signals.known
    # Customers unknown to the model get the popularity fallback, whatever the blend.
    if not known.all():
        popular = signals.popular if signals.popular.ndim == 2 else signals.popular[None, :]
        scores[~known] = np.broadcast_to(popular, shape)[~known]
    if context == "buy-again":
        excluded = ~signals.bought if known.all() else ~signals.bought & known[:, None]
        np.copyto(scores, np.float32(-np.inf), where=excluded)
    elif context == "discover" or (context == "home" and blend.home_excludes_bought):
        np.copyto(scores, np.float32(-np.inf), where=signals.bought)
    return scores


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


def top_blended(
    signals: Signals, *, blend: Blend, context: str, k: int, shared: dict[Any, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """`top_k(blend_scores(signals, blend=blend, context=context), k=k)`, with the dense work shared
    between blends (tuning ranks the same customers with dozens of them).

    An item the customer never bought scores the base (collaborative and popularity parts) in every
    context, so one top-k of the base over those items per (collaborative, popularity) weights, kept
    in `shared` (one dict per Signals), serves every blend and context with those weights; the bought
    items, a few dozen per customer, are scored on their own and merged in. The same float operations
    on the same values as `blend_scores`: the same lists, ties included."""
    if signals.pairs is None or not signals.known.all():
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
    if context == "discover" or (context == "home" and blend.home_excludes_bought):
        return new_ids.copy(), new_vals.copy()
    bought_vals = at_bought
    if blend.repurchase:
        bought_vals = at_bought + signals.repurchase_at_pairs(blend.due) * np.float32(blend.repurchase)
    row, item = signals.pairs
    rows = len(signals.known)
    if context == "buy-again":
        return _top_of(row, item, bought_vals, rows=rows, k=k)
    finite = np.isfinite(new_vals)
    row = np.concatenate([np.nonzero(finite)[0], row])
    item = np.concatenate([new_ids[finite], item])
    order = np.argsort(row * signals.bought.shape[1] + item)  # (row, item) order; the pairs are distinct
    return _top_of(row[order], item[order], np.concatenate([new_vals[finite], bought_vals])[order], rows=rows, k=k)


def _add_scaled(scores: np.ndarray, values: np.ndarray, weight: float) -> None:
    """scores += weight * values, in place; `values` may be one row for every row of `scores`."""
    if values.shape == scores.shape and values.dtype == np.float32 and values.flags.c_contiguous and scores.size:
        flat = scores.reshape(-1)
        out = blas.saxpy(values.reshape(-1), flat, a=weight)
        if out.ctypes.data != flat.ctypes.data:  # f2py worked on a copy (never seen for these arrays)
            flat[:] = out
    else:
        scores += np.float32(weight) * values.astype(np.float32, copy=False)


def top_k(scores: np.ndarray, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k best scores per row, best first; rows with fewer than k finite scores
    are padded with −inf values (drop them). Ties break towards the lower item index."""
    rows, n = scores.shape
    k = max(min(k, n), 0)
    if k == 0 or rows == 0:
        return np.zeros((rows, k), dtype=np.int64), np.full((rows, k), -np.inf, dtype=np.float32)
    groups = n // _TOP_K_GROUP
    if groups >= 2 * k:
        # Threshold at the k-th best maximum of groups of items, at most the k-th best score, so the
        # scores at or above it hold the top k and only those few are sorted. Partitioning whole rows
        # instead is four times slower on typical rows and forty times slower when most scores tie
        # (buy-again, where every item not bought is −inf). A group is every `groups`-th item: the
        # maxima are then element-wise maxima of contiguous slices, taken pairwise by halves (numpy's
        # `max(axis=1)` walks the middle axis element by element: 2.5 times slower).
        full = groups * _TOP_K_GROUP
        halves = scores[:, :full].reshape(rows, _TOP_K_GROUP, groups)
        halves = np.maximum(halves[:, : _TOP_K_GROUP // 2], halves[:, _TOP_K_GROUP // 2 :])
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
    return _top_of(row, col, np.take(scores, flat), rows=rows, k=k)


def _top_of(
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


def decay(*, age_days: np.ndarray, half_life: float) -> np.ndarray:
    """0.5^(age / half_life); an infinite half-life weighs every purchase 1."""
    if not math.isfinite(half_life):
        return np.ones_like(age_days, dtype=np.float64)
    return np.exp2(np.maximum(age_days, 0.0) * (-1.0 / half_life))
