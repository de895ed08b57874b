"""What the endpoints answer, as plain functions over a loaded model and the online features.

Ranking itself is `training.ranking.ModelBundle` (the one ranking core, shared with offline
evaluation); this module only chooses the link of the declared fallback chain, applies the live
filters (just bought, excluded, out of stock via the bundle's availability) and writes reasons.

Fallback chain for a customer (`source` names the link that answered):
    model → item-to-item (from the customer's recent purchases) → popular-in-category → popular
`degraded` is true when a dependency was skipped (online store down or slow, no model loaded).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from service.model import LoadedModel
from service.online.items import ItemCatalog


def _days(when: datetime) -> float:
    return when.timestamp() / 86_400.0


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
