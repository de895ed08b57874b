"""Serving policy shared by every list: which sensitive categories a list leaves out.

A sensitive category (RECO_SENSITIVE_CATEGORIES, default Pharmacy, as the recap job's
`--sensitive-category`) is never cross-sold: similar items, basket completion, discover, home and the
shelves offer its items only when the anchor is of the same category (the item itself, an item in the
cart, or something the customer bought). The lists leave the others out through
`ModelBundle.allowed_items(exclude_categories=...)`, the one filter every list goes through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from training.core.bundle import ModelBundle


def held_back(
    *,
    bundle: ModelBundle,
    sensitive: Sequence[str],
    anchors: Callable[[], Iterable[str | None]] = lambda: (),
    customer: str | None = None,
) -> list[str]:
    """The sensitive categories of the catalog (named without case) that no anchor category matches
    and, when `customer` is given, that they never bought in. `anchors` is called only when some
    category is sensitive."""
    present = bundle.categories_named(sensitive)
    if not present:
        return []
    own = {a.lower() for a in anchors() if a}
    if customer is not None:
        own |= {c.lower() for c in bundle.bought_in(customer, present)}
    return [c for c in present if c.lower() not in own]
