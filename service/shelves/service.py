"""The home page as shelves, as Spotify's and Amazon's are built: ordered rows, each with a stable id,
a title and a reason a shopper reads, and its items (each with its own reason).

For a customer the model knows, in this order:

    buy-again                    "Buy it again": their regulars, the ones due now first
    picked-for-you               "Picked for you": new to them, ranked by the discover blend
    because-you-bought-{item}    "Because you bought {item}": items like a recent, characteristic
                                 purchase (bought lately, and more by them than by customers at large)
    new-in-{category}            "New in {category}": new to them, in the aisle they shop most
    popular-this-week            "Popular this week": most customers in the model's last seven days

For a customer it does not know: "Because you bought" their recent purchase (online store, posted
events; source item-to-item), "Popular in {category}" (their top aisle per the online store), and
"Popular this week". Without a model: "Popular this month" from item_stats.

Rules: the customer is scored once (one `ModelBundle.signals`, blended per context), no item appears
on two shelves, a shelf with fewer than `min_items` items is left out (the next one moves up), and
every shelf goes through the same filters as recommendations: in stock, not just bought, sensitive
categories only where the customer bought in them (service.policy).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from service.policy import held_back
from service.recommendations.reasons import (
    popular_reason,
    reasons_for_customer,
    rhythm_reason,
    score_parts,
)
from training.core.blend import blend_scores
from training.core.history import due_boost

if TYPE_CHECKING:
    from service.model import LoadedModel
    from service.online.features import CustomerFeatures
    from service.online.items import ItemCatalog

WEEK_DAYS = 7.0
DUE = 0.5  # due_boost at or above this: due now (within about half a rhythm width of their usual interval)
ANCHOR_CANDIDATES = 5  # recent, characteristic purchases tried in turn for "Because you bought"
RECENT_DAYS = 60.0  # an anchor bought within this many days of the model's last day


@dataclass
class Shelf:
    """One row of the home page."""

    id: str
    title: str
    reason: str
    items: list[tuple[str, float, str]]
    anchor_item_id: str | None = None
    category: str | None = None


@dataclass
class ShelfPage:
    """The shelves and where they came from (as a ranked list's `source` and degradations)."""

    shelves: list[Shelf]
    source: str
    degraded_reasons: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    """A stable, URL-safe id part: lower case, words joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def shelves_for_customer(
    *,
    model: LoadedModel | None,
    catalog: ItemCatalog,
    user_id: str,
    count: int,
    k: int,
    min_items: int,
    just_bought: set[str],
    features: CustomerFeatures | None,
    sensitive: Sequence[str],
) -> ShelfPage:
    """Up to `count` shelves of up to `k` items each (at least `min_items`), no item twice."""
    minimum = min(min_items, k)
    if model is None:
        return _catalog_page(catalog=catalog, k=k, minimum=minimum, just_bought=just_bought)
    builder = _Builder(model=model, catalog=catalog, k=k, minimum=minimum, count=count)
    if model.bundle.knows_user(user_id):
        builder.known_customer(user_id=user_id, just_bought=just_bought, sensitive=sensitive)
        return ShelfPage(builder.shelves, "model")
    source = builder.unknown_customer(just_bought=just_bought, features=features, sensitive=sensitive)
    return ShelfPage(builder.shelves, source if builder.shelves else "none")


class _Builder:
    """Shelves filled in display order, each taking only items no earlier shelf took."""

    def __init__(self, *, model: LoadedModel, catalog: ItemCatalog, k: int, minimum: int, count: int) -> None:
        self.model, self.bundle, self.catalog = model, model.bundle, catalog
        self.k, self.minimum, self.count = k, minimum, count
        self.used = np.zeros(self.bundle.n_items, dtype=bool)
        self.shelves: list[Shelf] = []

    @property
    def full(self) -> bool:
        return len(self.shelves) >= self.count

    def take(self, scores: np.ndarray, allowed: np.ndarray) -> list[int]:
        """The best k items by `scores` that are allowed, finite and on no shelf yet."""
        open_scores = np.where(allowed & ~self.used & np.isfinite(scores), scores, -np.inf)
        order = np.argsort(-open_scores, kind="stable")[: self.k]
        return [int(i) for i in order if np.isfinite(open_scores[i])]

    def add(self, shelf: Shelf, items: list[int]) -> bool:
        """Put the shelf up when it has enough items (and there is room); mark its items used."""
        if self.full or len(items) < self.minimum:
            return False
        self.used[items] = True
        self.shelves.append(shelf)
        return True

    def known_customer(self, *, user_id: str, just_bought: set[str], sensitive: Sequence[str]) -> None:
        bundle = self.bundle
        h = bundle.history
        row = bundle.user_index[user_id]
        signals = bundle.signals(rows=np.array([row]))  # the one scoring of this customer
        held = held_back(bundle=bundle, sensitive=sensitive, customer=user_id)
        allowed = bundle.allowed_items(exclude_items=sorted(just_bought), exclude_categories=held)
        positions = h.row(row)
        bought = h.indices[positions]
        position_of = {int(item): positions.start + n for n, item in enumerate(bought.tolist())}
        discover = blend_scores(signals, blend=bundle.blend, context="discover")[0]
        parts = score_parts(model=self.model, signals=signals, context="discover")

        def explained(items: list[int]) -> list[tuple[str, float, str]]:
            ids = [str(bundle.item_ids[i]) for i in items]
            reasons = reasons_for_customer(
                model=self.model, catalog=self.catalog, user_id=user_id, items=ids, context="discover", parts=parts
            )
            return [(i, float(discover[n]), r.text) for i, n, r in zip(ids, items, reasons, strict=True)]

        # Buy it again: their regulars, due now first.
        again = blend_scores(signals, blend=bundle.blend, context="buy-again")[0]
        since = h.reference_day - h.last_day[positions]
        interval = (h.last_day[positions] - h.first_day[positions]) / np.maximum(h.baskets[positions] - 1, 1)
        due = due_boost(interval=interval, since=since, baskets=h.baskets[positions]) >= DUE
        order_key = np.full(bundle.n_items, -np.inf)
        finite = np.isfinite(again[bought])
        order_key[bought[finite]] = again[bought[finite]] + np.where(due[finite], 1e6, 0.0)
        items = self.take(order_key, allowed)
        self.add(
            Shelf(
                "buy-again",
                "Buy it again",
                "Your regulars, the ones you are due to buy first",
                [
                    (str(bundle.item_ids[i]), float(again[i]), rhythm_reason(model=self.model, position=position_of[i]))
                    for i in items
                ],
            ),
            items,
        )
        if self.full:
            return
        # Picked for you: new to them, the discover blend.
        items = self.take(discover, allowed)
        self.add(
            Shelf(
                "picked-for-you",
                "Picked for you",
                "New to you, chosen from what customers like you buy",
                explained(items),
            ),
            items,
        )
        # Because you bought {anchor}: a recent, characteristic purchase and what adds most to it.
        cf = bundle.collaborative
        if cf is not None and not self.full:
            co = bundle.co_buyers
            idf = np.log((co.n_customers + 1) / (np.array([co.buyers(int(i)) for i in bought]) + 1))
            recent = since <= RECENT_DAYS
            characteristic = h.baskets[positions] * idf * np.where(recent, 1.0, 0.1)
            for n in np.argsort(-characteristic, kind="stable")[:ANCHOR_CANDIDATES].tolist():
                anchor = int(bought[n])
                given = np.nan_to_num(np.asarray(cf.item_neighbours(anchor), dtype=np.float64), nan=-np.inf)
                passes = (given > max(self.model.reason_floor, 0.0)) & self.aisles_with(anchor)
                passes[bought] = False  # new to them
                items = self.take(np.where(passes, given, -np.inf), allowed)
                name = self.catalog.name(str(bundle.item_ids[anchor]))
                shelf = Shelf(
                    f"because-you-bought-{slug(str(bundle.item_ids[anchor]))}",
                    f"Because you bought {name}",
                    f"New to you, and what customers who buy {name} buy",
                    [(str(bundle.item_ids[i]), float(given[i]), f"because you bought {name}") for i in items],
                    anchor_item_id=str(bundle.item_ids[anchor]),
                )
                if self.add(shelf, items):
                    break
        # New in {favourite category}: new to them, in the aisle they shop most.
        codes = bundle.item_category[bought]
        if not self.full and (codes >= 0).any():
            weights = np.bincount(codes[codes >= 0], weights=h.baskets[positions][codes >= 0])
            for code in np.argsort(-weights, kind="stable")[:2].tolist():
                category = str(bundle.categories[code])
                in_aisle = allowed & (bundle.item_category == code)
                items = self.take(np.where(np.isfinite(discover), discover, -np.inf), in_aisle)
                shelf = Shelf(
                    f"new-in-{slug(category)}",
                    f"New in {category}",
                    f"New to you in {category}, the aisle you shop most",
                    explained(items),
                    category=category,
                )
                if self.add(shelf, items):
                    break
        self.popular_this_week(allowed)

    def unknown_customer(
        self, *, just_bought: set[str], features: CustomerFeatures | None, sensitive: Sequence[str]
    ) -> str:
        """Shelves for a customer without a history in the model; returns the first shelf's link."""
        bundle = self.bundle
        recent = [i for i in (features.recent_items if features else ()) if bundle.knows_item(i)]
        recent = list(dict.fromkeys([*sorted(i for i in just_bought if bundle.knows_item(i)), *recent]))
        held = held_back(bundle=bundle, sensitive=sensitive, anchors=lambda: [bundle.category_of(i) for i in recent])
        allowed = bundle.allowed_items(exclude_items=[*sorted(just_bought), *recent], exclude_categories=held)
        links: list[str] = []
        cf = bundle.collaborative
        for seed in recent[:ANCHOR_CANDIDATES] if cf is not None else []:
            anchor = bundle.item_index[seed]
            assert cf is not None
            given = np.nan_to_num(np.asarray(cf.item_neighbours(anchor), dtype=np.float64), nan=-np.inf)
            passes = (given > max(self.model.reason_floor, 0.0)) & self.aisles_with(anchor)
            items = self.take(np.where(passes, given, -np.inf), allowed)
            name = self.catalog.name(seed)
            shelf = Shelf(
                f"because-you-bought-{slug(seed)}",
                f"Because you bought {name}",
                f"What customers who buy {name} buy",
                [(str(bundle.item_ids[i]), float(given[i]), f"because you bought {name}") for i in items],
                anchor_item_id=seed,
            )
            if self.add(shelf, items):
                links.append("item-to-item")
                break
        known = set(bundle.categories.tolist())
        favourite = next((c for c in (features.top_categories if features else ()) if c in known), None)
        if favourite is not None and not self.full:
            pop = bundle.popular_scores()
            items = self.take(
                pop, allowed & np.isin(bundle.item_category, np.flatnonzero(bundle.categories == favourite))
            )
            shelf = Shelf(
                f"popular-in-{slug(favourite)}",
                f"Popular in {favourite}",
                f"The best sellers of {favourite}, the aisle you shop most",
                [(str(bundle.item_ids[i]), float(pop[i]), popular_reason(favourite)) for i in items],
                category=favourite,
            )
            if self.add(shelf, items):
                links.append("popular-in-category")
        if self.popular_this_week(allowed):
            links.append("popular")
        return links[0] if links else "none"

    def aisles_with(self, anchor: int) -> np.ndarray:
        """Per item: of the anchor's aisle, or of an aisle in its baskets at least as often as in
        baskets at large (all items when the bundle did not count baskets)."""
        counted = self.bundle.category_baskets
        code = int(self.bundle.item_category[anchor])
        if counted is None or code < 0 or counted.together[code, code] <= 0:
            return np.ones(self.bundle.n_items, dtype=bool)
        share = counted.together[code] / counted.together[code, code]
        overall = np.diag(counted.together) / max(counted.baskets, 1)
        ok = share >= overall
        ok[code] = True
        known = self.bundle.item_category >= 0
        return known & ok[np.maximum(self.bundle.item_category, 0)]

    def popular_this_week(self, allowed: np.ndarray) -> bool:
        """The items most customers bought in the model's last seven days."""
        if self.full:
            return False
        h = self.bundle.history
        buyers = h.buyers_since(h.reference_day - WEEK_DAYS, n_items=self.bundle.n_items).astype(np.float64)
        items = self.take(np.where(buyers > 0, buyers, -np.inf), allowed)
        top = float(buyers.max()) or 1.0
        return self.add(
            Shelf(
                "popular-this-week",
                "Popular this week",
                "What the most customers bought in the last seven days",
                [
                    (str(self.bundle.item_ids[i]), buyers[i] / top, f"bought by {int(buyers[i])} customers this week")
                    for i in items
                ],
            ),
            items,
        )


def _catalog_page(*, catalog: ItemCatalog, k: int, minimum: int, just_bought: set[str]) -> ShelfPage:
    """No model loaded: one shelf of item_stats' 30-day best sellers, degraded."""
    candidates = [
        (item_id, info.popularity_30d or 0)
        for item_id, info in catalog.items.items()
        if info.in_stock is not False and item_id not in just_bought and info.popularity_30d
    ]
    candidates.sort(key=lambda pair: (-pair[1], pair[0]))
    top = max((n for _, n in candidates), default=0) or 1
    items = [(i, n / top, f"bought {n} times in 30 days") for i, n in candidates[:k]]
    shelves = (
        [Shelf("popular-this-month", "Popular this month", "The best sellers of the last 30 days", items)]
        if len(items) >= minimum
        else []
    )
    return ShelfPage(shelves, "popular" if shelves else "none", ["model-not-loaded"])
