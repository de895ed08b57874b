"""Recommendations for a customer and items similar to an item, as plain functions over a loaded model
and the online features.

Ranking itself is `training.core.bundle.ModelBundle` (the one ranking core, shared with offline
evaluation); this module only chooses the link of the declared fallback chain, applies the live
filters (just bought, excluded, out of stock: the bundle's `allowed_items`) and writes reasons.

Fallback chain for a customer (`source` names the link that answered):
    model → item-to-item (from the customer's recent purchases) → popular-in-category → popular
Buy-again never falls back to others' items: model → recent-purchases → no-history (empty).
An unknown category or item is a 404 (UnknownCategory, UnknownItem) unless the caller asks for
fallback=popular; the answer's `fallback` then says what was unknown.
`degraded` is true when a dependency was skipped (online store down or slow, no model loaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from service.answers import Ranked
from service.candidates import mixed, top_from_candidates
from service.errors import UnknownCategory, UnknownItem
from service.policy import held_back
from service.recommendations.reasons import anchor_for, explain_for_customer, popular_reason
from training.core.blend import explore_slots
from training.core.columns import UNREQUESTABLE_ID
from training.core.topk import top_k

if TYPE_CHECKING:
    from service.model import LoadedModel
    from service.online.features import CustomerFeatures
    from service.online.items import ItemCatalog

FALLBACK_CHAIN = ("model", "item-to-item", "popular-in-category", "popular")
SEED_ITEMS = 5  # an unknown customer's recent purchases that seed item-to-item


def explore_share(*, diversity: float | None, setting: float | None, model: LoadedModel | None) -> float:
    """The share of `home` slots for items new to the customer: the request's `diversity`, else
    RECO_HOME_EXPLORE_SHARE, else the model's own (what its offline metrics measured)."""
    if diversity is not None:
        return diversity
    if setting is not None:
        return setting
    return model.bundle.blend.home_explore if model is not None else 0.0


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
    sensitive: Sequence[str] = (),
    explore_share: float = 0.0,
    fallback: str | None = None,
) -> Ranked:
    """Top-k for a customer through the fallback chain; never raises for unknown customers.

    An unknown `category` raises UnknownCategory unless `fallback` is "popular". Buy-again never
    serves others' items: a customer without a history gets their recent purchases (online store,
    posted events) or an empty list (`no-history`). `home` puts the discover list's best items in an
    `explore_share` of its slots. Sensitive categories are left out unless the customer bought in
    them or asked for that category (service.policy)."""
    if category is not None and not knows_category(model=model, catalog=catalog, category=category):
        if fallback != "popular":
            raise UnknownCategory(f"No category {category!r} in the catalog.")
        unknown = f"unknown category {category!r}"
        if model is None:
            answer = catalog_popular(
                catalog=catalog, k=k, category=None, exclude={*exclude, *just_bought}, explain=explain
            )
            return replace(answer, fallback=unknown)
        held = held_back(bundle=model.bundle, sensitive=sensitive)
        items = popular(
            model=model, k=k, category=None, exclude=[*exclude, *sorted(just_bought)], explain=explain, held=held
        )
        return Ranked(items, "popular", fallback=unknown)
    if model is None:
        return catalog_popular(
            catalog=catalog, k=k, category=category, exclude={*exclude, *just_bought}, explain=explain
        )
    bundle = model.bundle
    excluded = [*exclude, *sorted(just_bought)]
    if bundle.knows_user(user_id):
        held = (
            []
            if context == "buy-again"  # their own items: nothing is cross-sold
            else held_back(bundle=bundle, sensitive=sensitive, anchors=lambda: [category], customer=user_id)
        )
        share = explore_share if context == "home" and category is None else 0.0
        ranked = None
        if context == "home" and category is None:
            ranked = top_from_candidates(
                bundle,
                features.candidates_of(model.version) if features is not None else None,
                k=k,
                excluded=excluded,
                exclude_categories=held,
                explore_share=share,
            )
        if ranked is None:
            ranked = rank_customer(
                model=model,
                user_id=user_id,
                k=k,
                context=context,
                category=category,
                excluded=excluded,
                held=held,
                share=share,
            )
        if ranked or category is None or context == "buy-again":
            reasons = (
                explain_for_customer(
                    model=model, catalog=catalog, user_id=user_id, items=[i for i, _ in ranked], context=context
                )
                if explain
                else []
            )
            return Ranked([(i, s, reasons[n] if explain else None) for n, (i, s) in enumerate(ranked)], "model")
        # Nothing of this category is available: the popular link below says so in `source`.
        return Ranked(popular(model=model, k=k, category=None, exclude=excluded, explain=explain, held=held), "popular")

    # Unknown to the model: what the online store (or posted events) says they bought recently.
    recent = [i for i in (features.recent_items if features else ()) if bundle.knows_item(i)]
    if context == "buy-again":
        return recent_purchases(model=model, recent=recent, k=k, category=category, excluded=excluded, explain=explain)
    recent = list(dict.fromkeys([*sorted(i for i in just_bought if bundle.knows_item(i)), *recent]))[:SEED_ITEMS]
    held = held_back(
        bundle=bundle, sensitive=sensitive, anchors=lambda: [*(bundle.category_of(i) for i in recent), category]
    )
    if recent and bundle.collaborative is not None:
        items = item_to_item(
            model=model,
            catalog=catalog,
            seeds=recent,
            k=k,
            category=category,
            exclude=[*excluded, *recent],
            explain=explain,
            held=held,
        )
        if items:
            return Ranked(items, "item-to-item")
    preferred = category if category and category in set(bundle.categories.tolist()) else None
    if preferred is None and features is not None:
        preferred = next((c for c in features.top_categories if c in set(bundle.categories.tolist())), None)
    if preferred is not None:
        items = popular(model=model, k=k, category=preferred, exclude=excluded, explain=explain, held=held)
        if items:
            return Ranked(items, "popular-in-category")
    return Ranked(popular(model=model, k=k, category=None, exclude=excluded, explain=explain, held=held), "popular")


def knows_category(*, model: LoadedModel | None, catalog: ItemCatalog, category: str) -> bool:
    """Whether the model or the catalog has the category (True when neither can tell: no model and no catalog)."""
    if model is not None and category in set(model.bundle.categories.tolist()):
        return True
    if catalog.items:
        return any(info.category == category for info in catalog.items.values())
    return model is None


def knows_item(*, model: LoadedModel | None, catalog: ItemCatalog, item_id: str) -> bool:
    """Whether the model or the catalog has the item (True when neither can tell: no model and no catalog)."""
    if model is not None and model.bundle.knows_item(item_id):
        return True
    return item_id in catalog.items if catalog.items else model is None


def rank_customer(
    *,
    model: LoadedModel,
    user_id: str,
    k: int,
    context: str,
    category: str | None,
    excluded: Sequence[str],
    held: Sequence[str],
    share: float,
) -> list[tuple[str, float]]:
    """The core's ranking of a known customer on the spot; home with explore slots from discover."""
    bundle = model.bundle
    if not explore_slots(k=k, share=share):
        [ranked] = bundle.recommend_batch(
            [user_id], k=k, context=context, exclude_items=excluded, category=category, exclude_categories=held
        )
        return ranked
    allowed = bundle.allowed_items(exclude_items=excluded, category=category, exclude_categories=held)
    scored = bundle.score_contexts(rows=np.array([bundle.user_index[user_id]]), contexts=("home", "discover"))
    lists = []
    for context_scores in (scored["home"], scored["discover"]):
        context_scores[:, ~allowed] = -np.inf
        ids, vals = top_k(context_scores, k=k)
        finite = np.isfinite(vals[0])
        lists.append(list(zip(ids[0][finite].tolist(), vals[0][finite].tolist(), strict=True)))
    return [(str(bundle.item_ids[i]), s) for i, s in mixed(lists[0], lists[1], k=k, share=share)]


def recent_purchases(
    *, model: LoadedModel, recent: Sequence[str], k: int, category: str | None, excluded: Sequence[str], explain: bool
) -> Ranked:
    """Buy-again for a customer the model does not know: their recent purchases per the online store
    (most recent first, still in stock, not just bought), else an empty list: never others' items."""
    allowed = model.bundle.allowed_items(exclude_items=excluded, category=category)
    items = [i for i in dict.fromkeys(recent) if allowed[model.bundle.item_index[i]]][:k]
    if not items:
        return Ranked([], "no-history")
    return Ranked([(i, 1.0, "you bought this recently" if explain else None) for i in items], "recent-purchases")


def similar_to_item(
    *,
    model: LoadedModel | None,
    catalog: ItemCatalog,
    item_id: str,
    k: int,
    explain: bool,
    sensitive: Sequence[str] = (),
    fallback: str | None = None,
) -> Ranked:
    """ "Customers also bought": the core's neighbours, else popular in the item's category, else popular.
    An unknown item raises UnknownItem unless `fallback` is "popular"; sensitive categories other than
    the item's own are left out (service.policy)."""
    if not knows_item(model=model, catalog=catalog, item_id=item_id):
        if fallback != "popular":
            raise UnknownItem(f"No item {item_id!r} in the catalog.")
        unknown = f"unknown item {item_id!r}"
        if model is None:
            return replace(
                catalog_popular(catalog=catalog, k=k, category=None, exclude={item_id}, explain=explain),
                fallback=unknown,
            )
        held = held_back(bundle=model.bundle, sensitive=sensitive)
        items = popular(model=model, k=k, category=None, exclude=[item_id], explain=explain, held=held)
        return Ranked(items, "popular", fallback=unknown)
    if model is None:
        category = catalog.get(item_id).category
        return catalog_popular(catalog=catalog, k=k, category=category, exclude={item_id}, explain=explain)
    bundle = model.bundle
    category = bundle.category_of(item_id) or catalog.get(item_id).category
    held = held_back(bundle=bundle, sensitive=sensitive, anchors=lambda: [category])
    if bundle.knows_item(item_id) and bundle.collaborative is not None:
        ranked = bundle.similar_items(item_id, k=k, exclude_categories=held)
        if any(s > 0 for _, s in ranked):
            name = catalog.name(item_id)
            items = []
            bought_too = _bought_too(model=model, item_id=item_id, ranked=ranked) if explain else set()
            for i, s in ranked:
                reason = None
                if explain and s > 0:
                    if i in bought_too:
                        reason = f"customers who bought {name} also bought this"
                    else:  # the model's neighbour, though nobody bought both (yet)
                        reason = f"similar to {name}"
                elif explain:  # the core's fill-up (score 0): popular, not bought together
                    reason = popular_reason(bundle.category_of(i))
                items.append((i, s, reason))
            return Ranked(items, "model")
    if category and category in set(bundle.categories.tolist()):
        items = popular(model=model, k=k, category=category, exclude=[item_id], explain=explain, held=held)
        if items:
            return Ranked(items, "popular-in-category")
    return Ranked(popular(model=model, k=k, category=None, exclude=[item_id], explain=explain, held=held), "popular")


def _bought_too(*, model: LoadedModel, item_id: str, ranked: list[tuple[str, float]]) -> set[str]:
    """The ranked items some customer bought together with `item_id` (co-buyers, model histories)."""
    bundle = model.bundle
    ids = [i for i, s in ranked if s > 0]
    counts = bundle.co_buyers.together(bundle.item_index[item_id], np.array([bundle.item_index[i] for i in ids]))
    return {i for i, n in zip(ids, counts.tolist(), strict=True) if n > 0}


def popular(
    *,
    model: LoadedModel,
    k: int,
    category: str | None,
    exclude: Sequence[str],
    explain: bool,
    held: Sequence[str] = (),
) -> list[tuple[str, float, str | None]]:
    """Most popular available items (only of `category` when given: empty when none is available;
    never of the `held` categories)."""
    bundle = model.bundle
    [ranked] = bundle.recommend_batch(
        [UNREQUESTABLE_ID], k=k, context="home", exclude_items=exclude, category=category, exclude_categories=held
    )
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
    held: Sequence[str] = (),
) -> list[tuple[str, float, str | None]]:
    """Items most similar to the seeds (summed similarity), with the seed that contributed most: named
    in the reason when it passes the model's bar (reasons.py), else the item's popularity is."""
    bundle = model.bundle
    totals: dict[str, float] = {}
    best_seed: dict[str, tuple[float, str]] = {}
    for seed in seeds:
        for item_id, score in bundle.similar_items(
            seed, k=max(k * 3, 20), exclude_items=exclude, exclude_categories=held
        ):
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
    if not explain:
        return [(i, float(s), None) for i, s in ranked]
    out: list[tuple[str, float, str | None]] = []
    for i, s in ranked:
        seed_row = bundle.item_index[best_seed[i][1]]
        anchor = anchor_for(model=model, item=bundle.item_index[i], bought=np.array([seed_row]))
        reason = f"because you bought {catalog.name(best_seed[i][1])}" if anchor is not None else None
        out.append((i, float(s), reason or popular_reason(bundle.category_of(i))))
    return out


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
