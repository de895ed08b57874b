"""Recommendations for a customer and items similar to an item, as plain functions over a loaded model
and the online features.

Ranking itself is `training.core.bundle.ModelBundle` (the one ranking core, shared with offline
evaluation); this module only chooses the link of the declared fallback chain, applies the live
filters (just bought, excluded, out of stock: the bundle's `allowed_items`) and writes reasons.

Fallback chain for a customer (`source` names the link that answered):
    model → item-to-item (from the customer's recent purchases) → popular-in-category → popular
`degraded` is true when a dependency was skipped (online store down or slow, no model loaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from service.answers import Ranked
from service.candidates import top_from_candidates
from service.recommendations.reasons import explain_for_customer, popular_reason
from training.core.columns import UNREQUESTABLE_ID

if TYPE_CHECKING:
    from service.model import LoadedModel
    from service.online.features import CustomerFeatures
    from service.online.items import ItemCatalog

FALLBACK_CHAIN = ("model", "item-to-item", "popular-in-category", "popular")
SEED_ITEMS = 5  # an unknown customer's recent purchases that seed item-to-item


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
        return catalog_popular(
            catalog=catalog, k=k, category=category, exclude={*exclude, *just_bought}, explain=explain
        )
    bundle = model.bundle
    excluded = [*exclude, *sorted(just_bought)]
    if bundle.knows_user(user_id):
        ranked = None
        if model.candidates is not None and context == "home" and category is None and k <= model.candidates.size:
            ranked = top_from_candidates(
                bundle, model.candidates, user_row=bundle.user_index[user_id], k=k, excluded=excluded
            )
        if ranked is None:
            [ranked] = bundle.recommend_batch(
                [user_id], k=k, context=context, exclude_items=excluded, category=category
            )
        if ranked or category is None:
            reasons = (
                explain_for_customer(model=model, catalog=catalog, user_id=user_id, items=[i for i, _ in ranked])
                if explain
                else []
            )
            return Ranked([(i, s, reasons[n] if explain else None) for n, (i, s) in enumerate(ranked)], "model")
        # Nothing of this category is available: the popular link below says so in `source`.
        return Ranked(popular(model=model, k=k, category=None, exclude=excluded, explain=explain), "popular")

    # Unknown to the model: what the online store (or posted events) says they bought recently.
    recent = [i for i in (features.recent_items if features else ()) if bundle.knows_item(i)]
    recent = list(dict.fromkeys([*sorted(i for i in just_bought if bundle.knows_item(i)), *recent]))[:SEED_ITEMS]
    if recent and bundle.collaborative is not None and context != "buy-again":
        items = item_to_item(
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
        items = popular(model=model, k=k, category=preferred, exclude=excluded, explain=explain)
        if items:
            return Ranked(items, "popular-in-category")
    return Ranked(popular(model=model, k=k, category=None, exclude=excluded, explain=explain), "popular")


def similar_to_item(*, model: LoadedModel | None, catalog: ItemCatalog, item_id: str, k: int, explain: bool) -> Ranked:
    """ "Customers also bought": the core's neighbours, else popular in the item's category, else popular."""
    if model is None:
        category = catalog.get(item_id).category
        return catalog_popular(catalog=catalog, k=k, category=category, exclude={item_id}, explain=explain)
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
                    reason = popular_reason(bundle.category_of(i))
                items.append((i, s, reason))
            return Ranked(items, "model")
    category = bundle.category_of(item_id) or catalog.get(item_id).category
    if category and category in set(bundle.categories.tolist()):
        items = popular(model=model, k=k, category=category, exclude=[item_id], explain=explain)
        if items:
            return Ranked(items, "popular-in-category")
    return Ranked(popular(model=model, k=k, category=None, exclude=[item_id], explain=explain), "popular")


def popular(
    *, model: LoadedModel, k: int, category: str | None, exclude: Sequence[str], explain: bool
) -> list[tuple[str, float, str | None]]:
    """Most popular available items (only of `category` when given: empty when none is available)."""
    bundle = model.bundle
    [ranked] = bundle.recommend_batch([UNREQUESTABLE_ID], k=k, context="home", exclude_items=exclude, category=category)
    return [
        (item_id, score, popular_reason(bundle.category_of(item_id)) if explain else None) for item_id, score in ranked
    ]


def item_to_item(
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
        allowed = bundle.allowed_items(exclude_items=exclude, category=category)
        totals = {i: s for i, s in totals.items() if allowed[bundle.item_index[i]]}
    ranked = sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))[:k]
    return [
        (i, float(s), f"because you bought {catalog.name(best_seed[i][1])}" if explain else None) for i, s in ranked
    ]


def catalog_popular(*, catalog: ItemCatalog, k: int, category: str | None, exclude: set[str], explain: bool) -> Ranked:
    """No model loaded: popularity from item_stats, if the online store gave us the catalog."""
    candidates = [
        (item_id, info)
        for item_id, info in catalog.items.items()
        if info.in_stock is not False and item_id not in exclude and (category is None or info.category == category)
    ]
    candidates.sort(key=lambda pair: (-(pair[1].popularity_30d or 0), pair[0]))
    top = max((info.popularity_30d or 0 for _, info in candidates), default=0) or 1
    items = [
        (item_id, (info.popularity_30d or 0) / top, popular_reason(info.category) if explain else None)
        for item_id, info in candidates[:k]
    ]
    if category is not None and not items:
        return catalog_popular(catalog=catalog, k=k, category=None, exclude=exclude, explain=explain)
    source = "popular-in-category" if category and items else "popular"
    return Ranked(items, source if items else "none", ["model-not-loaded"])
