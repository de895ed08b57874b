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
from collections.abc import Callable, Sequence
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
AISLE_SHARE_DIVISOR = 3  # at most a third of a completion from one category


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
        held = held_back(bundle=model.bundle, sensitive=sensitive)
        items = popular(model=model, k=k, category=None, exclude=[*basket, *just_bought], explain=explain, held=held)
        return Ranked(items, "popular", fallback=unknown)
    if model is None:
        return catalog_popular(catalog=catalog, k=k, category=None, exclude={*basket, *just_bought}, explain=explain)
    bundle = model.bundle
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
    aisle_reason: Callable[[int], str] | None = None
    if bundle.category_baskets is not None:
        scores, best_seed, aisle_reason = _by_aisle(model=model, catalog=catalog, seeds=seeds)
    else:  # a bundle from before baskets were counted: the model's similarity alone
        scores, best_seed = _by_similarity(model=model, seeds=seeds)
    if personal:
        own = bundle.score_rows(rows=np.array([bundle.user_index[str(user_id)]]), context="home")[0]
        own = np.where(np.isfinite(own), np.maximum(own, 0.0), 0.0).astype(np.float32)
        top = float(own.max()) or 1.0
        scores *= 1.0 + own / top  # their taste re-ranks what goes with the cart; it adds nothing new
        cart_aisles = set(bundle.item_category[seeds].tolist())
        for item in usual:  # ...but their usual repeats of the cart's aisles stay on offer
            if bundle.item_category[item] in cart_aisles:
                scores[item] = max(float(scores[item]), float(own[item] / top))
    # Complements, not substitutes: no second item of a cart's category unless it is their usual.
    cart_codes = np.unique(bundle.item_category[seeds]) if seeds else np.zeros(0, dtype=np.int32)
    substitute = np.isin(bundle.item_category, cart_codes[cart_codes >= 0])
    if usual:
        substitute[list(usual)] = False
    held = held_back(
        bundle=bundle,
        sensitive=sensitive,
        anchors=lambda: [bundle.category_of(str(bundle.item_ids[s])) for s in seeds],
        customer=str(user_id) if personal else None,
    )
    allowed = bundle.allowed_items(exclude_items=[*basket, *just_bought], exclude_categories=held) & ~substitute
    if not (scores > 0).any():
        items = popular(model=model, k=k, category=None, exclude=[*basket, *just_bought], explain=explain, held=held)
        return Ranked(items, "popular")
    scores = np.where(allowed & (scores > 0), scores, -np.inf)
    ids, vals = top_k(scores[None, :], k=k * AISLE_SHARE_DIVISOR)
    # At most a third of the list (at least two) from one aisle: a choice of complements, not ten cheeses.
    cap = max(2, math.ceil(k / AISLE_SHARE_DIVISOR))
    per_aisle: dict[int, int] = {}
    chosen: list[tuple[int, float]] = []
    for i, v in zip(ids[0].tolist(), vals[0].tolist(), strict=True):
        aisle = int(bundle.item_category[i])
        if not math.isfinite(v) or len(chosen) == k or per_aisle.get(aisle, 0) >= cap:
            continue
        per_aisle[aisle] = per_aisle.get(aisle, 0) + 1
        chosen.append((int(i), float(v)))
    reasons = (
        _reasons(
            model=model,
            catalog=catalog,
            chosen=chosen,
            seeds=seeds,
            usual=usual,
            best_seed=best_seed,
            personal=personal,
            aisle_reason=aisle_reason,
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
    personal: bool,
    aisle_reason: Callable[[int], str] | None,
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
        elif aisle_reason is not None and best_seed[item] >= 0:
            out[item] = aisle_reason(item)
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


def _by_similarity(*, model: LoadedModel, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Summed similarity to the seeds, each scaled to at most 1, where it passes the bar for reasons;
    and per item the seed it is most similar to (−1: none)."""
    bundle = model.bundle
    cf = bundle.collaborative
    scores = np.zeros(bundle.n_items, dtype=np.float32)
    best_seed = np.full(bundle.n_items, -1, dtype=np.int64)
    best_value = np.zeros(bundle.n_items, dtype=np.float32)
    floor = max(model.reason_floor, 0.0)
    if cf is not None:
        for seed in seeds:
            given = np.nan_to_num(np.asarray(cf.item_neighbours(seed), dtype=np.float32), neginf=0.0, posinf=0.0)
            top = float(np.abs(given).max()) or 1.0
            scaled = np.where(given > floor, np.maximum(given / top, 0.0), 0.0).astype(np.float32)
            better = scaled > best_value
            best_value[better], best_seed[better] = scaled[better], seed
            scores += scaled
    return scores, best_seed


def _by_aisle(
    *, model: LoadedModel, catalog: ItemCatalog, seeds: list[int]
) -> tuple[np.ndarray, np.ndarray, Callable[[int], str]]:
    """Complements by aisle: per seed, every other category in the seed's baskets more often than in
    baskets at large adds that excess share to its items, each weighted by half its similarity to the
    seed and half its popularity (which item of the aisle); returns the scores, the seed that added
    most per item, and the reason (with the basket evidence) of an item that has one."""
    bundle = model.bundle
    counted = bundle.category_baskets
    assert counted is not None
    cf = bundle.collaborative
    n_categories = len(bundle.categories)
    overall = np.diag(counted.together) / max(counted.baskets, 1)
    popular = bundle.popular_scores().astype(np.float32)
    scores = np.zeros(bundle.n_items, dtype=np.float32)
    best_seed = np.full(bundle.n_items, -1, dtype=np.int64)
    best_value = np.zeros(bundle.n_items, dtype=np.float32)
    known = bundle.item_category >= 0
    for seed in seeds:
        code = int(bundle.item_category[seed])
        if code < 0 or code >= n_categories or counted.together[code, code] <= 0:
            continue
        share = counted.together[code] / counted.together[code, code]
        excess = np.maximum(share - overall, 0.0)
        excess[code] = 0.0  # its own aisle: a substitute
        per_item = np.where(known, excess[np.maximum(bundle.item_category, 0)], 0.0).astype(np.float32)
        if cf is not None:
            similar = np.nan_to_num(np.asarray(cf.item_neighbours(seed), dtype=np.float32), neginf=0.0, posinf=0.0)
            similar = np.maximum(similar / (float(np.abs(similar).max()) or 1.0), 0.0)
        else:
            similar = np.zeros(bundle.n_items, dtype=np.float32)
        added = per_item * (0.5 * similar + 0.5 * popular)
        better = added > best_value
        best_value[better], best_seed[better] = added[better], seed
        scores += added

    def reason(item: int) -> str:
        seed = int(best_seed[item])
        seed_code, code = int(bundle.item_category[seed]), int(bundle.item_category[item])
        seed_name = catalog.name(str(bundle.item_ids[seed]))
        percent = max(1, round(100 * counted.share(seed_code, code)))
        return (
            f"goes with {seed_name}: {percent}% of baskets with {bundle.categories[seed_code]} "
            f"have {bundle.categories[code]} too"
        )

    return scores, best_seed, reason
