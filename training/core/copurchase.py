"""Which aisles are bought together: per pair of categories, the baskets that hold both.

What a cart goes with is a matter of baskets, not of customers: over two years a customer buys from
most aisles, but pasta, minced meat and passata land in one basket. Counted per category (a few
dozen), the evidence is dense and small whatever the catalog's size; item-level similarity then
picks the item within an aisle. Built by training from the purchase lines, saved in the bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class CategoryBaskets:
    """Basket counts per pair of categories (the diagonal: baskets holding the category) and in all."""

    together: np.ndarray  # float64, categories × categories
    baskets: int

    @classmethod
    def count(
        cls, *, basket: np.ndarray, category: np.ndarray, n_categories: int, cuts: Sequence[int] = ()
    ) -> CategoryBaskets:
        """From one entry per purchase line (or per basket and item): its basket index and its item's
        category code (−1 unknown: left out). `cuts` are positions where no basket has entries on both
        sides (where one customer's entries end and the next one's begin): the parts between them are
        counted one after the other, so that only one part's matrix is held at a time."""
        baskets = int(np.count_nonzero(np.bincount(basket))) if len(basket) else 0
        together = np.zeros((n_categories + 1, n_categories + 1), dtype=np.int64)
        rows = int(basket.max(initial=-1)) + 1
        for start, stop in zip([0, *cuts], [*cuts, len(basket)], strict=True):
            # A basket × category matrix (scipy sums an aisle listed twice in a basket into one entry,
            # set back to 1): its product with itself counts the baskets of every pair. Unknown
            # categories take a column of their own, cut off at the end.
            part = category[start:stop]
            held = sp.csr_matrix(
                (np.ones(len(part), dtype=np.int32), (basket[start:stop], np.where(part >= 0, part, n_categories))),
                shape=(rows, n_categories + 1),
            )
            held.data[:] = 1
            together += (held.T @ held).toarray()
        return cls(together=together[:n_categories, :n_categories].astype(np.float64), baskets=baskets)

    def share(self, anchor: int, other: int) -> float:
        """Of the baskets holding category `anchor`, the share that also hold `other`."""
        base = self.together[anchor, anchor]
        return float(self.together[anchor, other] / base) if base > 0 else 0.0

    def lift(self, anchor: int, other: int) -> float:
        """`share` over the share of all baskets holding `other` (above 1: bought together more than chance)."""
        overall = self.together[other, other] / self.baskets if self.baskets else 0.0
        return self.share(anchor, other) / overall if overall > 0 else 0.0
