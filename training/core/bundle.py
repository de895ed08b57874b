"""`ModelBundle`: a trained model as the service and batch jobs use it.

Id maps, the customers' histories, popularity, availability, categories, the collaborative scorer
and the blend weights; `recommend_batch` / `top_rows` rank customers, `similar_items` ranks an
item's neighbours, `allowed_items` is the one filter every list goes through. Saved and loaded as
`.npz` arrays by training.registry.bundle_file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import scipy.sparse as sp

from training.core.blend import Blend, RepurchaseKey, Signals, blend_scores, check_context
from training.core.collaborative import Collaborative
from training.core.copurchase import CategoryBaskets
from training.core.history import (
    CoBuyers,
    History,
    PopularityTimeline,
    due_boost,
    item_repeat_rates,
    rebuy_interval,
    repeat_odds,
)
from training.core.ids import IdLookup
from training.core.rerank import PairFacts, Reranker
from training.core.topk import top_k

BATCH = 256  # customers ranked per matrix product
SECONDS_PER_DAY = 86_400.0


@dataclass
class ModelBundle:
    """A trained model: id maps, histories, signals and blend. Load with training.registry."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    history: History
    popularity: np.ndarray  # float32 per item, recency-weighted
    in_stock: np.ndarray  # bool per item
    item_category: np.ndarray  # int32 per item, −1 unknown
    categories: np.ndarray  # str per category code
    blend: Blend
    collaborative: Collaborative | None = None
    category_baskets: CategoryBaskets | None = None  # which aisles share baskets (None: older bundles)
    reranker: Reranker | None = None  # home's learned re-ranker (core.rerank; None: the blend's order)
    config: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    # Evaluation only (never saved): popularity as of each held-out basket's day.
    popularity_timeline: PopularityTimeline | None = None
    _user_index: IdLookup | None = field(default=None, repr=False)
    _item_index: dict[str, int] | None = field(default=None, repr=False)
    _co_buyers: CoBuyers | None = field(default=None, repr=False)
    _item_repeat: np.ndarray | None = field(default=None, repr=False)
    _item_buyers: np.ndarray | None = field(default=None, repr=False)
    _category_codes: dict[str, int] | None = field(default=None, repr=False)
    _categories_lower: dict[str, str] | None = field(default=None, repr=False)

    # --- id maps ------------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def user_index(self) -> IdLookup:
        """user_id → row, by binary search over `user_ids` (training.core.ids: no per-customer memory)."""
        if self._user_index is None:
            self._user_index = IdLookup(self.user_ids)
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

    def bought_since(self, user_id: str, *, day: float) -> set[str]:
        """Items the customer last bought on `day` (days since epoch) or later, per the model's history
        (day resolution; none for customers the model does not know)."""
        row = self.user_index.get(str(user_id))
        if row is None:
            return set()
        span = self.history.row(row)
        recent = self.history.indices[span][self.history.last_day[span] >= day]
        return {str(self.item_ids[i]) for i in recent}

    def category_of(self, item_id: str) -> str | None:
        """The item's category (None when unknown)."""
        i = self.item_index.get(item_id)
        if i is None or self.item_category[i] < 0:
            return None
        return str(self.categories[self.item_category[i]])

    def with_blend(self, blend: Blend) -> ModelBundle:
        """The same arrays with other weights (used when tuning on the validation split)."""
        return replace(self, blend=blend)

    # --- scoring ------------------------------------------------------------------------------

    def popular_scores(self) -> np.ndarray:
        """Popularity scaled to [0, 1]."""
        top = float(self.popularity.max()) if len(self.popularity) else 0.0
        return self.popularity / top if top > 0 else np.zeros_like(self.popularity)

    def item_repeat_rates(self) -> np.ndarray:
        """history.item_repeat_rates of this bundle's history (computed once)."""
        if self._item_repeat is None:
            self._item_repeat = item_repeat_rates(self.history, n_items=self.n_items)
        return self._item_repeat

    def item_buyers(self) -> np.ndarray:
        """Per item, the customers who bought it (float64; computed once)."""
        if self._item_buyers is None:
            self._item_buyers = np.bincount(self.history.indices, minlength=self.n_items).astype(np.float64)
        return self._item_buyers

    def _repurchase_values(
        self, *, row_of: np.ndarray, pos: np.ndarray, now: np.ndarray, key: RepurchaseKey
    ) -> np.ndarray:
        """Repurchase scores at the history pairs `pos` (of batch rows `row_of`, ascending) for a
        Blend.repurchase_key: scaled to max 1 per row, then times the customer's repeat odds to the
        `customer_repeat` power (see core.blend)."""
        due, item_repeat, customer_repeat = key
        h = self.history
        values = h.decayed[pos].astype(np.float64)
        if due:
            n = h.baskets[pos]
            interval = rebuy_interval(first_day=h.first_day[pos], last_day=h.last_day[pos], baskets=n)
            boost = due_boost(interval=interval, since=now[row_of] - h.last_day[pos], baskets=n)
            values = values * (1.0 + due * boost)
        if item_repeat:
            values = values * self.item_repeat_rates()[h.indices[pos]] ** item_repeat
        values = values.astype(np.float32)
        top = np.zeros(len(now), dtype=np.float32)
        if len(values):
            starts = np.flatnonzero(np.r_[True, row_of[1:] != row_of[:-1]])
            top[row_of[starts]] = np.maximum.reduceat(values, starts)
        scale = top[row_of]
        np.divide(values, scale, out=values, where=scale > 0)
        if customer_repeat:
            odds = repeat_odds(baskets=h.baskets[pos].astype(np.float64), row_of=row_of, rows=len(now))
            values *= (odds**customer_repeat).astype(np.float32)[row_of]
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

        def facts() -> PairFacts:
            return PairFacts(
                history=self.history,
                row_of=row_of,
                item=item,
                pos=pos,
                now=when,
                item_repeat=self.item_repeat_rates(),
                buyers=self.item_buyers(),
            )

        return Signals(
            known=known,
            bought=bought,
            repurchase={},
            collaborative=cf,
            popular=popular,
            pairs=(row_of, item),
            repurchase_of=lambda key: self._repurchase_values(row_of=row_of, pos=pos, now=when, key=key),
            reranker=self.reranker,
            facts=facts,
        )

    def score_rows(self, *, rows: np.ndarray, context: str, now: np.ndarray | None = None) -> np.ndarray:
        """Blended scores for history rows (−1 = unknown customer), −inf where the context excludes an item."""
        check_context(context)
        return blend_scores(self.signals(rows=rows, now=now), blend=self.blend, context=context)

    def score_contexts(
        self, *, rows: np.ndarray, contexts: Sequence[str], now: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """`score_rows` in several contexts from one computation of the signals (the collaborative
        scores are the costly part): context → rows × items, −inf where the context excludes an item."""
        signals = self.signals(rows=np.asarray(rows, dtype=np.int64), now=now)
        return {c: blend_scores(signals, blend=self.blend, context=check_context(c)) for c in contexts}

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
        exclude_categories: Sequence[str] = (),
    ) -> list[list[tuple[str, float]]]:
        """Top-k (item_id, score) per customer; unknown customers get the popular fallback, never an error."""
        out: list[list[tuple[str, float]]] = []
        users = [str(u) for u in user_ids]
        for start in range(0, len(users), BATCH):
            rows = np.array([self.user_index.get(u, -1) for u in users[start : start + BATCH]], dtype=np.int64)
            ids, vals = self.top_rows(
                rows,
                k=k,
                context=context,
                exclude_items=exclude_items,
                category=category,
                now=now,
                exclude_categories=exclude_categories,
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
        exclude_categories: Sequence[str] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        """`recommend_batch` for history rows (−1 = unknown customer), as arrays: item indices and
        scores, rows × k, best first, padded with −inf scores."""
        check_context(context)
        allowed = self.allowed_items(
            exclude_items=exclude_items, category=category, exclude_categories=exclude_categories
        )
        when = None if now is None else np.full(len(rows), now.timestamp() / SECONDS_PER_DAY)
        scores = self.score_rows(rows=np.asarray(rows, dtype=np.int64), context=context, now=when)
        scores[:, ~allowed] = -np.inf
        return top_k(scores, k=max(int(k), 0))

    def similar_items(
        self, item_id: str, *, k: int, exclude_items: Sequence[str] = (), exclude_categories: Sequence[str] = ()
    ) -> list[tuple[str, float]]:
        """Items most like `item_id`; unknown items (or models without one) fall back to popular in its category."""
        allowed = self.allowed_items(
            exclude_items=(*exclude_items, item_id), category=None, exclude_categories=exclude_categories
        )
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

    def allowed_items(
        self,
        *,
        exclude_items: Sequence[str] = (),
        category: str | None = None,
        exclude_categories: Sequence[str] = (),
        among: np.ndarray | None = None,
    ) -> np.ndarray:
        """Bool per item: in stock, not excluded, not of an excluded category and, when `category` is
        given, of that category; per item of `among` (item indices) when given, else per catalog item.

        Strict: an unknown or sold-out category allows nothing (the caller's fallback chain decides
        what to serve instead and says so), never items of other categories."""
        excluded = [i for i in (self.item_index.get(str(item_id)) for item_id in exclude_items) if i is not None]
        if among is None:
            allowed, codes = self.in_stock.copy(), self.item_category
            allowed[excluded] = False
        else:
            items = np.asarray(among)
            allowed, codes = self.in_stock[items], self.item_category[items]
            if excluded:
                allowed &= ~_member(items, np.asarray(excluded))
        if category is not None:
            allowed &= _member(codes, self.category_codes([category]))
        if exclude_categories:
            allowed &= ~_member(codes, self.category_codes(exclude_categories))
        return allowed

    def categories_named(self, names: Sequence[str]) -> list[str]:
        """The catalog's categories among `names`, compared without case (as settings spell them)."""
        if self._categories_lower is None:
            self._categories_lower = {str(name).lower(): str(name) for name in self.categories.tolist()}
        lower = self._categories_lower
        return [lower[n.strip().lower()] for n in names if n.strip().lower() in lower]

    def category_codes(self, names: Sequence[str]) -> np.ndarray:
        """The codes of the categories named (unknown names have none)."""
        if self._category_codes is None:
            self._category_codes = {str(name): code for code, name in enumerate(self.categories.tolist())}
        lookup = self._category_codes
        return np.array([lookup[n] for n in names if n in lookup], dtype=np.int32)

    def bought_in(self, user_id: str, categories: Sequence[str]) -> list[str]:
        """Those of `categories` the customer bought an item of (none for customers without a history)."""
        row = self.user_index.get(str(user_id))
        if row is None or not categories:
            return []
        bought = self.item_category[self.history.indices[self.history.row(row)]]
        return [name for name in categories if _member(bought, self.category_codes([name])).any()]

    @property
    def co_buyers(self) -> CoBuyers:
        """Which customers bought each item (saved with the model; built on first use for a bundle in
        training, kept by shallow copies)."""
        if self._co_buyers is None:
            self._co_buyers = CoBuyers.of(self.history, n_items=self.n_items)
        return self._co_buyers


def _member(values: np.ndarray, of: np.ndarray) -> np.ndarray:
    """`np.isin(values, of)`, by direct comparison when `of` has a few entries (a serving filter holds
    one or two categories and a few excluded items; np.isin's set-up costs tens of µs per call)."""
    if len(of) > 16:
        return np.isin(values, of)
    found = np.zeros(len(values), dtype=bool)
    for value in of.tolist():
        found |= values == value
    return found
