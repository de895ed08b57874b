"""What the endpoints answer, as plain functions over a loaded model and the online features.

Ranking itself is `training.ranking.ModelBundle` (the one ranking core, shared with offline
evaluation); this module only chooses the link of the declared fallback chain, applies the live
filters (just bought, excluded, out of stock via the bundle's availability) and writes reasons.

Fallback chain for a customer (`source` names the link that answered):
    model → item-to-item (from the customer's recent purchases) → popular-in-category → popular
`degraded` is true when a dependency was skipped (online store down or slow, no model loaded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from service.candidates import top_from_candidates
from service.model import LoadedModel
from service.online.features import CustomerFeatures
from service.online.items import ItemCatalog
from training.core.columns import UNREQUESTABLE_ID

FALLBACK_CHAIN = ("model", "item-to-item", "popular-in-category", "popular")
_SEED_ITEMS = 5
_BASKET_SEEDS = 20


@dataclass
class Ranked:
    """One answer: (item_id, score, reason or None) triples and where they came from."""

    items: list[tuple[str, float, str | None]]
    source: str
    degraded_reasons: list[str] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        return bool(self.degraded_reasons)


def _days(when: datetime) -> float:
    return when.timestamp() / 86_400.0


# --- recommendations for a customer ---------------------------------------------------------------


def recommend_for_customer(
    *,
    model: LoadedModel | None,
    catalog: ItemCatalog,
    user_id: str,
    k: int,
    context: str,
    category: str | None,
    exclude: Sequence[str],
    just_bought: set[str],
    features: CustomerFeatures | None,
    explain: bool,
) -> Ranked:
    """Top-k for a customer through the fallback chain; never raises for unknown customers."""
    if model is None:
        return _catalog_popular(catalog, k=k, category=category, exclude={*exclude, *just_bought}, explain=explain)
    bundle = model.bundle
    excluded = [*exclude, *sorted(just_bought)]
    if bundle.knows_user(user_id):
        ranked = None
        if model.candidates is not None and context == "home" and category is None and k <= model.candidates.size:
            ranked = top_from_candidates(
                bundle, model.candidates, user_row=bundle.user_index[user_id], k=k, excluded=excluded
            )
        if ranked is None:
            ranked = bundle.recommend_batch([user_id], k=k, context=context, exclude_items=excluded, category=category)[
                0
            ]
        if ranked or category is None:
            reasons = (
                explain_for_customer(model=model, catalog=catalog, user_id=user_id, items=[i for i, _ in ranked])
                if explain
                else []
            )
            return Ranked([(i, s, reasons[n] if explain else None) for n, (i, s) in enumerate(ranked)], "model")
        # Nothing of this category is available: the popular link below says so in `source`.
        return Ranked(
            popular(model=model, catalog=catalog, k=k, category=None, exclude=excluded, explain=explain), "popular"
        )

    # Unknown to the model: what the online store (or posted events) says they bought recently.
    recent = [i for i in (features.recent_items if features else ()) if bundle.knows_item(i)]
    recent = list(dict.fromkeys([*sorted(i for i in just_bought if bundle.knows_item(i)), *recent]))[:_SEED_ITEMS]
    if recent and bundle.collaborative is not None and context != "buy-again":
        items = _item_to_item(
            model=model,
            catalog=catalog,
            seeds=recent,
            k=k,
            category=category,
            exclude=[*excluded, *recent],
            explain=explain,
        )
        if items:
            return Ranked(items, "item-to-item")
    preferred = category if category and category in set(bundle.categories.tolist()) else None
    if preferred is None and features is not None:
        preferred = next((c for c in features.top_categories if c in set(bundle.categories.tolist())), None)
    if preferred is not None:
        items = popular(model=model, catalog=catalog, k=k, category=preferred, exclude=excluded, explain=explain)
        if items:
            return Ranked(items, "popular-in-category")
    return Ranked(
        popular(model=model, catalog=catalog, k=k, category=None, exclude=excluded, explain=explain), "popular"
    )


def popular(
    *, model: LoadedModel, catalog: ItemCatalog, k: int, category: str | None, exclude: Sequence[str], explain: bool
) -> list[tuple[str, float, str | None]]:
    """Most popular available items (only of `category` when given: empty when none is available)."""
    bundle = model.bundle
    ranked = bundle.recommend_batch([UNREQUESTABLE_ID], k=k, context="home", exclude_items=exclude, category=category)[
        0
    ]
    out = []
    for item_id, score in ranked:
        reason = None
        if explain:
            item_category = _category(model, item_id)
            reason = f"popular in {item_category}" if item_category else "popular right now"
        out.append((item_id, score, reason))
    return out


def _item_to_item(
    *,
    model: LoadedModel,
    catalog: ItemCatalog,
    seeds: Sequence[str],
    k: int,
    category: str | None,
    exclude: Sequence[str],
    explain: bool,
) -> list[tuple[str, float, str | None]]:
    """Items most similar to the seeds (summed similarity), with the seed that contributed most."""
    bundle = model.bundle
    totals: dict[str, float] = {}
    best_seed: dict[str, tuple[float, str]] = {}
    for seed in seeds:
        for item_id, score in bundle.similar_items(seed, k=max(k * 3, 20), exclude_items=exclude):
            if score <= 0:
                continue  # the core's category/popular fill-up, not a neighbour
            totals[item_id] = totals.get(item_id, 0.0) + score
            if score > best_seed.get(item_id, (-1.0, ""))[0]:
                best_seed[item_id] = (score, seed)
    if category is not None and category in set(bundle.categories.tolist()):
        # No neighbour in the asked category: empty, so the chain moves on to popular-in-category.
        totals = {i: s for i, s in totals.items() if _category(model, i) == category}
    ranked = sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))[:k]
    return [
        (i, float(s), f"because you bought {catalog.name(best_seed[i][1])}" if explain else None) for i, s in ranked
    ]


def _catalog_popular(catalog: ItemCatalog, *, k: int, category: str | None, exclude: set[str], explain: bool) -> Ranked:
    """No model loaded: popularity from item_stats, if the online store gave us the catalog."""
    candidates = [
        (item_id, info)
        for item_id, info in catalog.items.items()
        if info.in_stock is not False and item_id not in exclude and (category is None or info.category == category)
    ]
    candidates.sort(key=lambda pair: (-(pair[1].popularity_30d or 0), pair[0]))
    top = max((info.popularity_30d or 0 for _, info in candidates), default=0) or 1
    items = [
        (
            item_id,
            (info.popularity_30d or 0) / top,
            (f"popular in {info.category}" if info.category else "popular right now") if explain else None,
        )
        for item_id, info in candidates[:k]
    ]
    if category is not None and not items:
        return _catalog_popular(catalog, k=k, category=None, exclude=exclude, explain=explain)
    source = "popular-in-category" if category and items else "popular"
    return Ranked(items, source if items else "none", ["model-not-loaded"])


# --- reasons ----------------------------------------------------------------------------------------


def explain_for_customer(*, model: LoadedModel, catalog: ItemCatalog, user_id: str, items: Sequence[str]) -> list[str]:
    """A reason per recommended item, in a shopper's words, from the customer's own history."""
    bundle = model.bundle
    h = bundle.history
    row = bundle.user_index.get(user_id)
    if row is None:
        return ["popular right now"] * len(items)
    start, end = int(h.indptr[row]), int(h.indptr[row + 1])
    bought = h.indices[start:end]
    position = {int(item): start + n for n, item in enumerate(bought)}
    reasons = []
    for item_id in items:
        i = bundle.item_index.get(item_id)
        pos = position.get(i) if i is not None else None
        if pos is not None:
            baskets = float(h.baskets[pos])
            interval = (float(h.last_day[pos]) - float(h.first_day[pos])) / max(baskets - 1.0, 1.0)
            if baskets >= 2 and interval >= 1:
                reasons.append(f"you buy this about every {round(interval)} days")
            else:
                reasons.append("you bought this before")
            continue
        seed = _closest_bought(model, i, bought) if i is not None else None
        if seed is not None:
            reasons.append(f"because you bought {catalog.name(str(bundle.item_ids[seed]))}")
        else:
            item_category = _category(model, item_id)
            reasons.append(f"popular in {item_category}" if item_category else "popular right now")
    return reasons


def _closest_bought(model: LoadedModel, item: int, bought: np.ndarray) -> int | None:
    """The customer's bought item most similar to `item` (None without a collaborative signal)."""
    cf = model.bundle.collaborative
    if cf is None or len(bought) == 0:
        return None
    sims = cf.similarity_to(item, bought)
    best = int(np.argmax(sims))
    return int(bought[best]) if sims[best] > 0 else None


def _category(model: LoadedModel, item_id: str) -> str | None:
    bundle = model.bundle
    i = bundle.item_index.get(item_id)
    if i is None or bundle.item_category[i] < 0:
        return None
    return str(bundle.categories[bundle.item_category[i]])


# --- similar items and baskets ----------------------------------------------------------------------


def similar_to_item(*, model: LoadedModel | None, catalog: ItemCatalog, item_id: str, k: int, explain: bool) -> Ranked:
    """ "Customers also bought": the core's neighbours, else popular in the item's category, else popular."""
    if model is None:
        category = catalog.get(item_id).category
        return _catalog_popular(catalog, k=k, category=category, exclude={item_id}, explain=explain)
    bundle = model.bundle
    if bundle.knows_item(item_id) and bundle.collaborative is not None:
        ranked = bundle.similar_items(item_id, k=k)
        if any(s > 0 for _, s in ranked):
            name = catalog.name(item_id)
            items = []
            for i, s in ranked:
                reason = None
                if explain and s > 0:
                    reason = f"customers who bought {name} also bought this"
                elif explain:  # the core's fill-up (score 0): popular, not bought together
                    item_category = _category(model, i)
                    reason = f"popular in {item_category}" if item_category else "popular right now"
                items.append((i, s, reason))
            return Ranked(items, "model")
    category = _category(model, item_id) or catalog.get(item_id).category
    if category and category in set(bundle.categories.tolist()):
        items = popular(model=model, catalog=catalog, k=k, category=category, exclude=[item_id], explain=explain)
        if items:
            return Ranked(items, "popular-in-category")
    return Ranked(
        popular(model=model, catalog=catalog, k=k, category=None, exclude=[item_id], explain=explain), "popular"
    )


def complete_basket(
    *,
    model: LoadedModel | None,
    catalog: ItemCatalog,
    user_id: str | None,
    basket: Sequence[str],
    k: int,
    just_bought: set[str],
    explain: bool,
) -> Ranked:
    """Items that go with the basket: summed similarity to its items, blended with the customer's own scores."""
    if model is None:
        return _catalog_popular(catalog, k=k, category=None, exclude={*basket, *just_bought}, explain=explain)
    bundle = model.bundle
    cf = bundle.collaborative
    seeds = [bundle.item_index[i] for i in dict.fromkeys(basket) if i in bundle.item_index][-_BASKET_SEEDS:]
    scores = np.zeros(bundle.n_items, dtype=np.float32)
    best_seed = np.full(bundle.n_items, -1, dtype=np.int64)
    best_value = np.zeros(bundle.n_items, dtype=np.float32)
    if cf is not None:
        for seed in seeds:
            sims = np.nan_to_num(np.asarray(cf.item_neighbours(seed), dtype=np.float32), neginf=0.0, posinf=0.0)
            top = float(np.abs(sims).max()) or 1.0
            sims = np.maximum(sims / top, 0.0)
            better = sims > best_value
            best_value[better], best_seed[better] = sims[better], seed
            scores += sims
    personal = user_id is not None and bundle.knows_user(user_id)
    if personal:
        row = np.array([bundle.user_index[str(user_id)]])
        own = bundle.score_rows(rows=row, context="home")[0]
        own = np.where(np.isfinite(own), own, 0.0).astype(np.float32)
        top = float(own.max()) or 1.0
        scores += 0.5 * max(len(seeds), 1) * own / top
    if not scores.any():
        items = popular(
            model=model, catalog=catalog, k=k, category=None, exclude=[*basket, *just_bought], explain=explain
        )
        return Ranked(items, "popular")
    allowed = bundle.in_stock.copy()
    for item_id in (*basket, *just_bought):
        i = bundle.item_index.get(item_id)
        if i is not None:
            allowed[i] = False
    scores = np.where(allowed & (scores > 0), scores, -np.inf)
    from training.core.topk import top_k

    ids, vals = top_k(scores[None, :], k=k)
    items = []
    for i, v in zip(ids[0], vals[0], strict=True):
        if not math.isfinite(float(v)):
            continue
        reason = None
        if explain:
            seed = int(best_seed[i])
            reason = f"goes with {catalog.name(str(bundle.item_ids[seed]))}" if seed >= 0 else "picked for you"
        items.append((str(bundle.item_ids[i]), float(v), reason))
    return Ranked(items, "model")


# --- shop by recipe ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CartLine:
    """One ingredient of a recipe cart."""

    ingredient: str
    item_id: str | None
    name: str | None
    price: float | None
    in_cart: bool
    status: str  # added | probably-at-home | unavailable
    reason: str


def recipe_cart(
    *,
    model: LoadedModel | None,
    catalog: ItemCatalog,
    recipe: dict[str, Any],
    user_id: str,
    now: datetime,
    just_bought: set[str],
) -> tuple[list[CartLine], str]:
    """One in-stock item per ingredient (category), chosen for this customer; ingredients they
    probably still have at home (bought more recently than their own rhythm, or just now according
    to posted events and online features) are not added."""
    lines: list[CartLine] = []
    if model is None:
        return _catalog_recipe_cart(catalog, recipe=recipe, just_bought=just_bought)
    bundle = model.bundle
    h = bundle.history
    row = bundle.user_index.get(user_id)
    known = row is not None and h.indptr[row + 1] > h.indptr[row]
    today = _days(now)
    pop = bundle.popular_scores()
    bought_items = h.indices[h.indptr[row] : h.indptr[row + 1]] if known and row is not None else np.array([], int)
    base = int(h.indptr[row]) if known and row is not None else 0
    brands = _usual_brands(bundle, catalog, bought_items, h.baskets[base : base + len(bought_items)])
    price_level = _price_level(bundle, catalog, bought_items)
    for ingredient in recipe.get("ingredients", []):
        category = str(ingredient.get("category"))
        codes = np.flatnonzero(bundle.categories == category)
        in_category = np.isin(bundle.item_category, codes)
        candidates = np.flatnonzero(in_category & bundle.in_stock)
        just = sorted(i for i in just_bought if i in bundle.item_index and in_category[bundle.item_index[i]])
        if just:
            info = catalog.get(just[0])
            lines.append(
                CartLine(
                    category,
                    just[0],
                    catalog.name(just[0]),
                    info.price,
                    False,
                    "probably-at-home",
                    f"you just bought {catalog.name(just[0])}",
                )
            )
            continue
        mine = [(n, int(i)) for n, i in enumerate(bought_items) if in_category[i]]
        if mine:
            # Their usual: most baskets in this category; "at home" when bought within their rhythm.
            n, usual = max(mine, key=lambda pair: (h.baskets[base + pair[0]], h.last_day[base + pair[0]]))
            pos = base + n
            last = max(float(h.last_day[base + m]) for m, _ in mine)
            baskets = float(h.baskets[pos])
            interval = (float(h.last_day[pos]) - float(h.first_day[pos])) / max(baskets - 1.0, 1.0)
            since = today - last
            item_id = str(bundle.item_ids[usual])
            info = catalog.get(item_id)
            if baskets >= 2 and interval >= 1 and 0 <= since < 0.5 * interval:
                lines.append(
                    CartLine(
                        category,
                        item_id,
                        catalog.name(item_id),
                        info.price,
                        False,
                        "probably-at-home",
                        f"you bought {catalog.name(item_id)} {round(since)} days ago and usually buy it "
                        f"every {round(interval)} days",
                    )
                )
                continue
            if bundle.in_stock[usual]:
                lines.append(
                    CartLine(category, item_id, catalog.name(item_id), info.price, True, "added", "your usual")
                )
                continue
        if len(candidates) == 0:
            lines.append(CartLine(category, None, None, None, False, "unavailable", f"nothing in {category} in stock"))
            continue
        choice, reason = _pick_for_customer(bundle, catalog, candidates, pop, brands, category, price_level)
        item_id = str(bundle.item_ids[choice])
        lines.append(
            CartLine(category, item_id, catalog.name(item_id), catalog.get(item_id).price, True, "added", reason)
        )
    return lines, "model" if known else "popular-in-category"


def _catalog_recipe_cart(
    catalog: ItemCatalog, *, recipe: dict[str, Any], just_bought: set[str]
) -> tuple[list[CartLine], str]:
    """No model loaded: the most popular in-stock item of each ingredient's category, from item_stats."""
    lines: list[CartLine] = []
    for ingredient in recipe.get("ingredients", []):
        category = str(ingredient.get("category"))
        in_category = [(i, info) for i, info in catalog.items.items() if info.category == category]
        just = sorted(i for i, _ in in_category if i in just_bought)
        available = [(i, info) for i, info in in_category if info.in_stock]
        if just:
            name = catalog.name(just[0])
            line = CartLine(
                category,
                just[0],
                name,
                catalog.get(just[0]).price,
                False,
                "probably-at-home",
                f"you just bought {name}",
            )
        elif available:
            item_id, info = min(available, key=lambda pair: (-(pair[1].popularity_30d or 0), pair[0]))
            line = CartLine(
                category, item_id, catalog.name(item_id), info.price, True, "added", f"popular in {category}"
            )
        else:
            line = CartLine(category, None, None, None, False, "unavailable", f"nothing in {category} in stock")
        lines.append(line)
    return lines, "popular-in-category" if any(line.in_cart for line in lines) else "none"


def _usual_brands(bundle: Any, catalog: ItemCatalog, items: np.ndarray, baskets: np.ndarray) -> dict[str, float]:
    """Baskets per brand over the customer's history (brands from item_stats)."""
    brands: dict[str, float] = {}
    for i, n in zip(items.tolist(), baskets.tolist(), strict=True):
        brand = catalog.get(str(bundle.item_ids[i])).brand
        if brand:
            brands[brand] = brands.get(brand, 0.0) + float(n)
    return brands


def _price_level(bundle: Any, catalog: ItemCatalog, items: np.ndarray) -> float | None:
    """Median ratio of the customer's item prices to their categories' median price (1 = average)."""
    if len(items) == 0 or not catalog.items:
        return None
    medians: dict[int, float] = {}
    ratios = []
    for i in items.tolist():
        price = catalog.get(str(bundle.item_ids[i])).price
        code = int(bundle.item_category[i])
        if not price or code < 0:
            continue
        if code not in medians:
            peers = [catalog.get(str(bundle.item_ids[j])).price for j in np.flatnonzero(bundle.item_category == code)]
            medians[code] = float(np.median([p for p in peers if p])) if any(peers) else 0.0
        if medians[code] > 0:
            ratios.append(price / medians[code])
    return float(np.median(ratios)) if ratios else None


def _pick_for_customer(
    bundle: Any,
    catalog: ItemCatalog,
    candidates: np.ndarray,
    pop: np.ndarray,
    brands: dict[str, float],
    category: str,
    price_level: float | None,
) -> tuple[int, str]:
    """Among in-stock items of a category: their usual brand first, else a popular one at their price level."""
    if brands:
        # Their most-bought brand in stock here, the most popular of its items.
        branded = [
            (brands.get(catalog.get(str(bundle.item_ids[i])).brand or "", 0.0), float(pop[i]), int(i))
            for i in candidates
        ]
        branded = [entry for entry in branded if entry[0] > 0]
        if branded:
            *_, choice = max(branded)
            return choice, f"your usual brand {catalog.get(str(bundle.item_ids[choice])).brand}"
    top = candidates[np.argsort(-pop[candidates], kind="stable")[:10]]
    prices = [catalog.get(str(bundle.item_ids[i])).price for i in top]
    if price_level is not None and all(p is not None and p > 0 for p in prices):
        # Their price level: among the ten most popular, the price nearest to what they usually pay.
        target = float(np.median(np.asarray(prices, dtype=float))) * price_level
        choice = int(top[int(np.argmin([abs(np.log(float(p) / target)) for p in prices]))])  # type: ignore[arg-type]
        return choice, f"popular in {category} at your usual price level"
    return int(top[0]), f"popular in {category}"
