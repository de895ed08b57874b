"""Why an item is recommended, in a shopper's words, and only what is true of the model and the data.

* An item the customer bought: their rhythm ("you buy this about every 12 days") or "you bought this before".
* "Because you bought X": X is the customer's purchase that adds most to the item's score (the
  model's own contribution, `Collaborative.contributions`) and adds more than the model's bar
  (`LoadedModel.reason_floor`, the RECO_REASON_SIMILARITY_QUANTILE of item pairs). A reason
  therefore always names an item the customer bought that drives the score (docs/api.md).
* Otherwise a generic reason: "popular with customers like you" when the collaborative part of the
  item's score outweighs its popularity part, else "popular in {category}".
* Co-purchase evidence (basket completion): "N% of customers who buy X also buy this", counted on
  the model's histories, only when X's buyers buy the item more often than customers at large do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from service.model import LoadedModel
    from service.online.items import ItemCatalog
    from training.core.blend import Signals

LIKE_YOU = "popular with customers like you"


@dataclass(frozen=True)
class Reason:
    """A reason and, for "because you bought X", the item X (its id)."""

    text: str
    anchor: str | None = None


def popular_reason(category: str | None) -> str:
    """The reason of an item picked for its popularity: its category when known."""
    return f"popular in {category}" if category else "popular right now"


def rhythm_reason(*, model: LoadedModel, position: int) -> str:
    """The reason of an item the customer bought, at history pair `position`."""
    h = model.bundle.history
    interval = h.interval(position)
    if float(h.baskets[position]) >= 2 and interval >= 1:
        return f"you buy this about every {round(interval)} days"
    return "you bought this before"


def anchor_for(*, model: LoadedModel, item: int, bought: np.ndarray) -> int | None:
    """The bought item that adds most to `item`'s score, when it adds more than the model's bar."""
    cf = model.bundle.collaborative
    if cf is None or len(bought) == 0:
        return None
    values = np.nan_to_num(np.asarray(cf.contributions(item, bought), dtype=np.float64), nan=-np.inf)
    best = int(np.argmax(values))
    return int(bought[best]) if values[best] > max(model.reason_floor, 0.0) else None


def reasons_for_customer(
    *,
    model: LoadedModel,
    catalog: ItemCatalog,
    user_id: str,
    items: Sequence[str],
    context: str = "home",
    parts: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Reason]:
    """A reason per recommended item (`context` ranked it), from the customer's own history; `parts`
    are the customer's score parts (`score_parts`) when the caller has them."""
    bundle = model.bundle
    h = bundle.history
    row = bundle.user_index.get(user_id)
    if row is None or not bundle.knows_user(user_id):
        return [Reason(popular_reason(bundle.category_of(i))) for i in items]
    start, end = int(h.indptr[row]), int(h.indptr[row + 1])
    bought = h.indices[start:end]
    position = {int(item): start + n for n, item in enumerate(bought)}
    reasons = []
    for item_id in items:
        i = bundle.item_index.get(item_id)
        if i is None:
            reasons.append(Reason(popular_reason(None)))
            continue
        if i in position:
            reasons.append(Reason(rhythm_reason(model=model, position=position[i])))
            continue
        anchor = anchor_for(model=model, item=i, bought=bought)
        if anchor is not None:
            anchor_id = str(bundle.item_ids[anchor])
            reasons.append(Reason(f"because you bought {catalog.name(anchor_id)}", anchor_id))
            continue
        if parts is None:
            parts = score_parts(model=model, signals=model.bundle.signals(rows=np.array([row])), context=context)
        collaborative, popular = parts
        liked = collaborative[i] > 0 and collaborative[i] >= popular[i]
        reasons.append(Reason(LIKE_YOU if liked else popular_reason(bundle.category_of(item_id))))
    return reasons


def explain_for_customer(
    *, model: LoadedModel, catalog: ItemCatalog, user_id: str, items: Sequence[str], context: str = "home"
) -> list[str]:
    """`reasons_for_customer`, as text."""
    return [
        r.text
        for r in reasons_for_customer(model=model, catalog=catalog, user_id=user_id, items=items, context=context)
    ]


def score_parts(*, model: LoadedModel, signals: Signals, context: str) -> tuple[np.ndarray, np.ndarray]:
    """The collaborative and popularity parts of one customer's scores in `context` (per item), from
    their signals (`ModelBundle.signals` of their row)."""
    bundle = model.bundle
    blend = bundle.blend.for_context(context)
    popular = np.asarray(signals.popular, dtype=np.float64).reshape(-1) * blend.popularity
    if signals.collaborative is None:
        return np.zeros_like(popular), popular
    return np.asarray(signals.collaborative[0], dtype=np.float64) * blend.collaborative, popular


def bought_with(*, model: LoadedModel, anchor: int, items: np.ndarray) -> np.ndarray:
    """Per item, the share of the anchor's buyers who bought it too, where that beats the share of all
    customers who did (more often than chance); 0 elsewhere."""
    co = model.bundle.co_buyers
    buyers = co.buyers(anchor)
    if buyers == 0 or co.n_customers == 0 or len(items) == 0:
        return np.zeros(len(items))
    share = co.together(anchor, items) / buyers
    overall = np.array([co.buyers(int(i)) for i in items]) / co.n_customers
    return np.where(share > overall, share, 0.0)


def bought_with_reason(*, name: str, share: float) -> str:
    """ "N% of customers who buy X also buy this" (at least 1%)."""
    return f"{max(1, round(100 * share))}% of customers who buy {name} also buy this"
