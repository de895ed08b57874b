"""Basket completion: items that go with a cart, as a plain function over a loaded model.

Summed similarity to the cart's items (the collaborative scorer's neighbours, each seed scaled to
at most 1), blended with the customer's own scores when the cart names a known customer; no
similarity at all falls back to popular (recommendations.service, named in `source`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from service.answers import Ranked
from service.recommendations.service import catalog_popular, popular
from training.core.topk import top_k

if TYPE_CHECKING:
    from service.model import LoadedModel
    from service.online.items import ItemCatalog

BASKET_SEEDS = 20  # the cart's last distinct items that seed the neighbours


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
        return catalog_popular(catalog=catalog, k=k, category=None, exclude={*basket, *just_bought}, explain=explain)
    bundle = model.bundle
    cf = bundle.collaborative
    seeds = [bundle.item_index[i] for i in dict.fromkeys(basket) if i in bundle.item_index][-BASKET_SEEDS:]
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
        items = popular(model=model, k=k, category=None, exclude=[*basket, *just_bought], explain=explain)
        return Ranked(items, "popular")
    allowed = bundle.allowed_items(exclude_items=[*basket, *just_bought])
    scores = np.where(allowed & (scores > 0), scores, -np.inf)
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
