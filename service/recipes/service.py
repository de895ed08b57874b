"""Shop by recipe: one item per ingredient, chosen for the customer, as plain functions.

An ingredient has a name and a category (its aisle). Products whose name holds the ingredient's
name come first ("Spaghetti" is spaghetti, not any pasta), then the aisle. The cart adds the
customer's usual item among them, else an in-stock item of their usual brand or price level, else
the most popular one; an ingredient they probably have at home is listed but not added: an item of
theirs bought again within the first half of its own usual interval (never after a first purchase),
or bought just now according to posted events and online features. Without a model, the most
popular in-stock item of item_stats.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from service.errors import NotFound
from training.core.topk import top_k

if TYPE_CHECKING:
    from service.config import ServiceSettings
    from service.model import LoadedModel
    from service.online.items import ItemCatalog

log = logging.getLogger("reco.service")


def load_recipes(*, settings: ServiceSettings) -> dict[str, dict[str, Any]]:
    """The recipes of recipes.json by recipe_id (none, logged, when the file is missing or unreadable)."""
    path = settings.recipes_file()
    if path is None:
        log.info("no recipes.json found (set RECO_RECIPES); the recipe endpoint answers 404")
        return {}
    try:
        data = json.loads(path.read_text())
        return {str(r["recipe_id"]): r for r in data.get("recipes", [])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot read recipes from %s: %s", path, exc)
        return {}


def list_recipes(*, recipes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every recipe as {id, name, ingredients: [{name, category}]}, by id."""
    return [
        {
            "id": recipe_id,
            "name": str(recipe.get("name", recipe_id)),
            "ingredients": [
                {"name": str(i.get("name") or i.get("category")), "category": i.get("category")}
                for i in recipe.get("ingredients", [])
            ],
        }
        for recipe_id, recipe in sorted(recipes.items())
    ]


def find_recipe(*, recipes: dict[str, dict[str, Any]], recipe_id: str) -> dict[str, Any]:
    """The recipe `recipe_id`; NotFound naming the known recipes otherwise."""
    found = recipes.get(recipe_id)
    if found is None:
        raise NotFound(f"No recipe {recipe_id!r}; known recipes: {', '.join(sorted(recipes)) or 'none'}.")
    return found


def _days(when: datetime) -> float:
    return when.timestamp() / 86_400.0


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
    category: str | None = None


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
        return catalog_recipe_cart(catalog=catalog, recipe=recipe, just_bought=just_bought)
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
        label = str(ingredient.get("name") or category)
        codes = np.flatnonzero(bundle.categories == category)
        in_category = np.isin(bundle.item_category, codes)  # bought or just bought, in stock or not
        # Products whose name holds the ingredient's name first, then the whole aisle.
        named = _named(bundle, catalog, in_category, ingredient.get("name"))
        pool = named if named.any() else in_category
        allowed = bundle.allowed_items(category=category)  # what the cart may add
        candidates = np.flatnonzero(allowed & pool) if (allowed & pool).any() else np.flatnonzero(allowed)
        just = sorted(i for i in just_bought if i in bundle.item_index and pool[bundle.item_index[i]])
        if just:
            info = catalog.get(just[0])
            lines.append(
                CartLine(
                    label,
                    just[0],
                    catalog.name(just[0]),
                    info.price,
                    False,
                    "probably-at-home",
                    f"you just bought {catalog.name(just[0])}",
                    category,
                )
            )
            continue
        mine = [(n, int(i)) for n, i in enumerate(bought_items) if pool[i]]
        # At home: an item of theirs bought again within the first half of its own usual interval
        # (never after a first purchase: one basket has no interval); the most recent such item.
        home = [
            (float(h.last_day[base + n]), n, i)
            for n, i in mine
            if h.baskets[base + n] >= 2
            and h.interval(base + n) >= 1
            and 0 <= today - float(h.last_day[base + n]) < 0.5 * h.interval(base + n)
        ]
        if home:
            last, n, item = max(home)
            item_id = str(bundle.item_ids[item])
            lines.append(
                CartLine(
                    label,
                    item_id,
                    catalog.name(item_id),
                    catalog.get(item_id).price,
                    False,
                    "probably-at-home",
                    f"you bought {catalog.name(item_id)} {round(today - last)} days ago and usually buy it "
                    f"every {round(h.interval(base + n))} days",
                    category,
                )
            )
            continue
        if mine:
            # Their usual: most baskets among the matching items, the latest on a tie.
            n, usual = max(mine, key=lambda pair: (h.baskets[base + pair[0]], h.last_day[base + pair[0]]))
            if allowed[usual]:
                item_id = str(bundle.item_ids[usual])
                info = catalog.get(item_id)
                lines.append(
                    CartLine(label, item_id, catalog.name(item_id), info.price, True, "added", "your usual", category)
                )
                continue
        if len(candidates) == 0:
            lines.append(
                CartLine(label, None, None, None, False, "unavailable", f"nothing in {category} in stock", category)
            )
            continue
        choice, reason = _pick_for_customer(bundle, catalog, candidates, pop, brands, category, price_level)
        item_id = str(bundle.item_ids[choice])
        lines.append(
            CartLine(label, item_id, catalog.name(item_id), catalog.get(item_id).price, True, "added", reason, category)
        )
    return lines, "model" if known else "popular-in-category"


def catalog_recipe_cart(
    *, catalog: ItemCatalog, recipe: dict[str, Any], just_bought: set[str]
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
        lines.append(replace(line, ingredient=str(ingredient.get("name") or category), category=category))
    return lines, "popular-in-category" if any(line.in_cart for line in lines) else "none"


def _named(bundle: Any, catalog: ItemCatalog, among: np.ndarray, name: object) -> np.ndarray:
    """Bool per item of `among` whose catalog name holds every word of the ingredient's `name`."""
    found = np.zeros(len(among), dtype=bool)
    words = [re.escape(w) for w in str(name or "").lower().split()]
    if not words:
        return found
    pattern = re.compile("".join(rf"(?=.*\b{w}\b)" for w in words))
    for i in np.flatnonzero(among).tolist():
        found[i] = bool(pattern.match(catalog.name(str(bundle.item_ids[i])).lower()))
    return found


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
    in_stock = np.full(len(pop), -np.inf, dtype=np.float32)
    in_stock[candidates] = pop[candidates]
    ids, values = top_k(in_stock[None, :], k=10)
    top = ids[0][np.isfinite(values[0])]
    prices = [catalog.get(str(bundle.item_ids[i])).price for i in top]
    if price_level is not None and all(p is not None and p > 0 for p in prices):
        # Their price level: among the ten most popular, the price nearest to what they usually pay.
        target = float(np.median(np.asarray(prices, dtype=float))) * price_level
        choice = int(top[int(np.argmin([abs(np.log(float(p) / target)) for p in prices]))])  # type: ignore[arg-type]
        return choice, f"popular in {category} at your usual price level"
    return int(top[0]), f"popular in {category}"
