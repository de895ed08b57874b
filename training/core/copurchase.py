"""Which aisles are bought together: per pair of categories, the baskets that hold both.

What a cart goes with is a matter of baskets, not of customers: over two years a customer buys from
most aisles, but pasta, minced meat and passata land in one basket. Counted per category (a few
dozen), the evidence is dense and small whatever the catalog's size; item-level similarity then
picks the item within an aisle. Built by training from the purchase lines, saved in the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class CategoryBaskets:
    """Basket counts per pair of categories (the diagonal: baskets holding the category) and in all."""

    together: np.ndarray  # float64, categories × categories
    baskets: int

    @classmethod
    def count(cls, *, basket: np.ndarray, category: np.ndarray, n_categories: int) -> CategoryBaskets:
        """From one entry per purchase line (or per basket and item): its basket index and its item's
        category code (−1 unknown: left out)."""
        baskets = int(np.count_nonzero(np.bincount(basket))) if len(basket) else 0
        if n_categories == 0 or not (category >= 0).any():
            return cls(together=np.zeros((n_categories, n_categories)), baskets=baskets)
        # A basket × category matrix (scipy sums an aisle listed twice in a basket into one entry, set
        # back to 1): its product with itself counts the baskets of every pair. Unknown categories
        # take a column of their own, cut off after the product (no masked copies of the entries).
        column = np.where(category >= 0, category, n_categories).astype(np.int32, copy=False)
        held = sp.csr_matrix(
            (np.ones(len(column), dtype=np.int32), (basket, column)),
            shape=(int(basket.max()) + 1, n_categories + 1),
        )
        held.data[:] = 1
        together = (held.T @ held).toarray()[:n_categories, :n_categories]
        return cls(together=together.astype(np.float64), baskets=baskets)

    def share(self, anchor: int, other: int) -> float:
        """Of the baskets holding category `anchor`, the share that also hold `other`."""
        base = self.together[anchor, anchor]
        return float(self.together[anchor, other] / base) if base > 0 else 0.0

    def lift(self, anchor: int, other: int) -> float:
        """`share` over the share of all baskets holding `other` (above 1: bought together more than chance)."""
        overall = self.together[other, other] / self.baskets if self.baskets else 0.0
        return self.share(anchor, other) / overall if overall > 0 else 0.0
