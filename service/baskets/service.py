"""Basket completion: items that go with a cart, as a plain function over a loaded model.

Complements, not substitutes: an item goes with the cart when one of its items adds more to the
item's score than the model's bar for reasons (`LoadedModel.reason_floor`, the model's own
item–item contribution); candidates are ranked by their summed contributions from the cart's items
(each seed scaled to at most 1), re-ranked by the customer's own scores when the cart names a known
customer. A second item of a category already in the cart is offered only when it is the
customer's usual repeat (bought in two baskets or more). Sensitive categories (service.policy) only
when a cart item or the customer's own purchases are of them. The reason quotes the co-purchase
evidence ("N% of customers who buy X also buy this") when X's buyers buy it more often than
customers at large; no item goes with the cart at all: popular (recommendations.service, named in
`source`). A cart of items neither the model nor the catalog knows is a 404 (UnknownItem) unless
the caller asks for fallback=popular.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from service.answers import Ranked
from service.errors import UnknownItem
from service.policy import held_back
from service.recommendations.reasons import (
    LIKE_YOU,
    bought_with,
    bought_with_reason,
    popular_reason,
    rhythm_reason,
)
from service.recommendations.service import catalog_popular, knows_item, popular
from training.core.topk import top_k

if TYPE_CHECKING:
    from service.model import LoadedModel
    from service.online.items import ItemCatalog

BASKET_SEEDS = 20  # the cart's last distinct items that seed the neighbours
USUAL_BASKETS = 2  # a customer's usual repeat: bought in at least this many baskets


def complete_basket(
    *,
    model: LoadedModel | None,
    catalog: ItemCatalog,
    user_id: str | None,
    basket: Sequence[str],
    k: int,
    just_bought: set[str],
    explain: bool,
    sensitive: Sequence[str] = (),
    fallback: str | None = None,
) -> Ranked:
    """Items that go with the basket (complements with evidence), personalized for a known customer."""
    if not any(knows_item(model=model, catalog=catalog, item_id=i) for i in basket):
        if fallback != "popular":
            raise UnknownItem("None of the cart's items is in the catalog.")
        unknown = "unknown items: " + ", ".join(repr(i) for i in list(dict.fromkeys(basket))[:5])
        if model is None:
            answer = catalog_popular(
                catalog=catalog, k=k, category=None, exclude={*basket, *just_bought}, explain=explain
            )
            return Ranked(answer.items, answer.source, answer.degraded_reasons, fallback=unknown)
        held = held_back(categories=model.bundle.categories, sensitive=sensitive, anchors=lambda: ())
        items = popular(model=model, k=k, category=None, exclude=[*basket, *just_bought], explain=explain, held=held)
        return Ranked(items, "popular", fallback=unknown)
    if model is None:
        return catalog_popular(catalog=catalog, k=k, category=None, exclude={*basket, *just_bought}, explain=explain)
    bundle = model.bundle
    cf = bundle.collaborative
    seeds = [bundle.item_index[i] for i in dict.fromkeys(basket) if i in bundle.item_index][-BASKET_SEEDS:]
    personal = user_id is not None and bundle.knows_user(user_id)
    h = bundle.history
    usual: dict[int, int] = {}  # item → history position, for the customer's usual repeats
    if personal:
        row = bundle.user_index[str(user_id)]
        start = int(h.indptr[row])
        for n, item in enumerate(h.indices[h.row(row)].tolist()):
            if h.baskets[start + n] >= USUAL_BASKETS:
                usual[item] = start + n
    scores = np.zeros(bundle.n_items, dtype=np.float32)
    best_seed = np.full(bundle.n_items, -1, dtype=np.int64)
    best_value = np.zeros(bundle.n_items, dtype=np.float32)
    floor = max(model.reason_floor, 0.0)
    if cf is not None:
        for seed in seeds:
            given = np.nan_to_num(np.asarray(cf.item_neighbours(seed), dtype=np.float32), neginf=0.0, posinf=0.0)
            passes = given > floor  # the model's similarity above the bar for reasons
            top = float(np.abs(given).max()) or 1.0
            scaled = np.where(passes, np.maximum(given / top, 0.0), 0.0).astype(np.float32)
            better = scaled > best_value
            best_value[better], best_seed[better] = scaled[better], seed
            scores += scaled
    if personal:
        own = bundle.score_rows(rows=np.array([bundle.user_index[str(user_id)]]), context="home")[0]
        own = np.where(np.isfinite(own), np.maximum(own, 0.0), 0.0).astype(np.float32)
        top = float(own.max()) or 1.0
        scores *= 1.0 + own / top  # their taste re-ranks what goes with the cart; it adds nothing new
    # Complements, not substitutes: no second item of a cart's category unless it is their usual.
    cart_codes = np.unique(bundle.item_category[seeds]) if seeds else np.zeros(0, dtype=np.int32)
    substitute = np.isin(bundle.item_category, cart_codes[cart_codes >= 0])
    if usual:
        substitute[list(usual)] = False
    held = held_back(
        categories=bundle.categories,
        sensitive=sensitive,
        anchors=lambda: [
            *(bundle.category_of(str(bundle.item_ids[s])) for s in seeds),
            *(bundle.bought_categories(str(user_id)) if personal else ()),
        ],
    )
    allowed = bundle.allowed_items(exclude_items=[*basket, *just_bought], exclude_categories=held) & ~substitute
    if not (scores > 0).any():
        items = popular(model=model, k=k, category=None, exclude=[*basket, *just_bought], explain=explain, held=held)
        return Ranked(items, "popular")
    scores = np.where(allowed & (scores > 0), scores, -np.inf)
    ids, vals = top_k(scores[None, :], k=k)
    chosen = [(int(i), float(v)) for i, v in zip(ids[0], vals[0], strict=True) if math.isfinite(float(v))]
    reasons = (
        _reasons(
            model=model,
            catalog=catalog,
            chosen=chosen,
            seeds=seeds,
            usual=usual,
            best_seed=best_seed,
            personal=personal,
        )
        if explain
        else {}
    )
    return Ranked([(str(bundle.item_ids[i]), v, reasons.get(i)) for i, v in chosen], "model")


def _reasons(
    *,
    model: LoadedModel,
    catalog: ItemCatalog,
    chosen: list[tuple[int, float]],
    seeds: list[int],
    usual: dict[int, int],
    best_seed: np.ndarray,
    personal: bool = False,
) -> dict[int, str]:
    """Per chosen item: the customer's rhythm for a usual repeat; else the cart item whose buyers buy
    it most often (more often than chance); else the cart item most similar to it (above the bar)."""
    bundle = model.bundle
    items = np.array([i for i, _ in chosen], dtype=np.int64)
    shares = np.array([bought_with(model=model, anchor=s, items=items) for s in seeds]).reshape(len(seeds), len(items))
    out: dict[int, str] = {}
    for n, (item, _) in enumerate(chosen):
        if item in usual:
            out[item] = rhythm_reason(model=model, position=usual[item])
        elif len(seeds) and shares[:, n].max() > 0:
            best = int(np.argmax(shares[:, n]))
            out[item] = bought_with_reason(
                name=catalog.name(str(bundle.item_ids[seeds[best]])), share=float(shares[best, n])
            )
        elif best_seed[item] >= 0:
            out[item] = f"goes with {catalog.name(str(bundle.item_ids[best_seed[item]]))}"
        else:
            out[item] = LIKE_YOU if personal else popular_reason(bundle.category_of(str(bundle.item_ids[item])))
    return out
