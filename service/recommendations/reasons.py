"""Why an item is recommended, in a shopper's words, from the customer's own history.

A reason "because you bought X" always names an item the customer bought (DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from service.model import LoadedModel
    from service.online.items import ItemCatalog


def popular_reason(category: str | None) -> str:
    """The reason of an item picked for its popularity: its category when known."""
    return f"popular in {category}" if category else "popular right now"


def explain_for_customer(*, model: LoadedModel, catalog: ItemCatalog, user_id: str, items: Sequence[str]) -> list[str]:
    """A reason per recommended item, in a shopper's words, from the customer's own history."""
    bundle = model.bundle
    h = bundle.history
    row = bundle.user_index.get(user_id)
    if row is None:
        return [popular_reason(None)] * len(items)
    start, end = int(h.indptr[row]), int(h.indptr[row + 1])
    bought = h.indices[start:end]
    position = {int(item): start + n for n, item in enumerate(bought)}
    reasons = []
    for item_id in items:
        i = bundle.item_index.get(item_id)
        pos = position.get(i) if i is not None else None
        if pos is not None:
            baskets = float(h.baskets[pos])
            interval = h.interval(pos)
            if baskets >= 2 and interval >= 1:
                reasons.append(f"you buy this about every {round(interval)} days")
            else:
                reasons.append("you bought this before")
            continue
        seed = closest_bought(model=model, item=i, bought=bought) if i is not None else None
        if seed is not None:
            reasons.append(f"because you bought {catalog.name(str(bundle.item_ids[seed]))}")
        else:
            reasons.append(popular_reason(bundle.category_of(item_id)))
    return reasons


def closest_bought(*, model: LoadedModel, item: int, bought: np.ndarray) -> int | None:
    """The customer's bought item most similar to `item` (None without a collaborative signal)."""
    cf = model.bundle.collaborative
    if cf is None or len(bought) == 0:
        return None
    sims = cf.similarity_to(item, bought)
    best = int(np.argmax(sims))
    return int(bought[best]) if sims[best] > 0 else None
