"""Serving policy shared by every list: which sensitive categories a list leaves out.

A sensitive category (RECO_SENSITIVE_CATEGORIES, default Pharmacy, as the recap job's
`--sensitive-category`) is never cross-sold: similar items, basket completion, discover, home and the
shelves offer its items only when the anchor is of the same category (the item itself, an item in the
cart, or something the customer bought). The lists leave the others out through
`ModelBundle.allowed_items(exclude_categories=...)`, the one filter every list goes through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence


def held_back(
    *, categories: Iterable[str], sensitive: Sequence[str], anchors: Callable[[], Iterable[str | None]]
) -> list[str]:
    """The sensitive ones of `categories` (compared without case) that no anchor category matches;
    `anchors` is called only when some category is sensitive (it reads a history)."""
    wanted = {c.strip().lower() for c in sensitive if c.strip()}
    present = [c for c in categories if c.lower() in wanted] if wanted else []
    if not present:
        return []
    own = {a.strip().lower() for a in anchors() if a}
    return [c for c in present if c.lower() not in own]
