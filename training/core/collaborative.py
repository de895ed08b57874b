"""The collaborative scorers: what "customers like you" and "bought together" are computed from.

Three kinds, one interface (`Collaborative`): customer and item factors (ALS, BPR), a sparse
item–item similarity (kNN) and dense item–item weights (EASE). Each scores a batch of customers
against every item, gives an item's neighbours, and turns itself into named arrays for the
bundle file and back (`kind` names the class there).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp


class Collaborative(ABC):
    """A collaborative scorer (see the module docstring)."""

    kind: ClassVar[str]

    @abstractmethod
    def user_scores(self, *, users: np.ndarray, bought: sp.csr_matrix) -> np.ndarray:
        """Dense scores (len(users) × items); `users` are row indices, −1 for rows without factors;
        `bought` is the rows' binary customer × item matrix (what item-based scorers multiply)."""

    @abstractmethod
    def item_neighbours(self, item: int) -> np.ndarray:
        """Similarity of every item to `item` (the item itself included)."""

    @abstractmethod
    def similarity_to(self, item: int, others: np.ndarray) -> np.ndarray:
        """`item_neighbours(item)[others]`, computed for those items only."""

    @abstractmethod
    def contributions(self, item: int, bought: np.ndarray) -> np.ndarray:
        """How much each of the `bought` items gives to a customer's score for `item`: the terms of
        the sum an item-based scorer computes, or, for factors, the item–item cosine of the factors
        (what "because you bought X" may quote: X among the bought items that give most)."""

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """The scorer as named arrays (for the bundle file)."""

    @classmethod
    @abstractmethod
    def read(cls, arrays: dict[str, np.ndarray], *, n_items: int) -> Collaborative:
        """The scorer from the arrays `arrays()` gave."""

    @staticmethod
    def from_arrays(kind: str, arrays: dict[str, np.ndarray], *, n_items: int) -> Collaborative:
        """The scorer `arrays()` wrote, by its `kind`."""
        for cls in (Factors, ItemSimilarity, ItemWeights):
            if cls.kind == kind:
                return cls.read(arrays, n_items=n_items)
        raise ValueError(f"unknown collaborative kind {kind!r}")


@dataclass(frozen=True)
class Factors(Collaborative):
    """Customer and item factors (ALS, BPR): a customer's score for an item is their dot product."""

    kind: ClassVar[str] = "factors"
    user_factors: np.ndarray
    item_factors: np.ndarray

    def user_scores(self, *, users: np.ndarray, bought: sp.csr_matrix) -> np.ndarray:
        known = (users >= 0) & (users < len(self.user_factors))
        factors = np.zeros((len(users), self.item_factors.shape[1]), dtype=np.float32)
        factors[known] = self.user_factors[users[known]]
        return factors @ self.item_factors.T

    def item_neighbours(self, item: int) -> np.ndarray:
        norms = np.linalg.norm(self.item_factors, axis=1) + 1e-9
        return (self.item_factors @ self.item_factors[item]) / (norms * norms[item])

    def similarity_to(self, item: int, others: np.ndarray) -> np.ndarray:
        vectors, target = self.item_factors[others], self.item_factors[item]
        return vectors @ target / ((np.linalg.norm(vectors, axis=1) + 1e-9) * (np.linalg.norm(target) + 1e-9))

    def contributions(self, item: int, bought: np.ndarray) -> np.ndarray:
        # A customer's factors are fitted to all they bought at once: no exact per-item split without
        # the fit's confidences, so the model's own item–item similarity stands in.
        return self.similarity_to(item, bought)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"cf_user_factors": self.user_factors, "cf_item_factors": self.item_factors}

    @classmethod
    def read(cls, arrays: dict[str, np.ndarray], *, n_items: int) -> Factors:
        return cls(user_factors=arrays["cf_user_factors"], item_factors=arrays["cf_item_factors"])


@dataclass(frozen=True)
class ItemSimilarity(Collaborative):
    """A sparse item × item similarity (kNN): a customer's score is the sum over what they bought."""

    kind: ClassVar[str] = "item_similarity"
    similarity: sp.csr_matrix

    def user_scores(self, *, users: np.ndarray, bought: sp.csr_matrix) -> np.ndarray:
        return np.asarray((bought @ self.similarity).todense(), dtype=np.float32)

    def item_neighbours(self, item: int) -> np.ndarray:
        return np.asarray(self.similarity[item].todense(), dtype=np.float32).reshape(-1)

    def similarity_to(self, item: int, others: np.ndarray) -> np.ndarray:
        return np.asarray(self.similarity[item, others].todense()).reshape(-1)

    def contributions(self, item: int, bought: np.ndarray) -> np.ndarray:
        # user_scores is bought @ similarity: item j adds similarity[j, item].
        return np.asarray(self.similarity[bought, item].todense()).reshape(-1)

    def arrays(self) -> dict[str, np.ndarray]:
        s = self.similarity.tocsr()
        return {"cf_sim_indptr": s.indptr, "cf_sim_indices": s.indices, "cf_sim_data": s.data}

    @classmethod
    def read(cls, arrays: dict[str, np.ndarray], *, n_items: int) -> ItemSimilarity:
        matrix = (arrays["cf_sim_data"], arrays["cf_sim_indices"], arrays["cf_sim_indptr"])
        return cls(similarity=sp.csr_matrix(matrix, shape=(n_items, n_items)))


@dataclass(frozen=True)
class ItemWeights(Collaborative):
    """Dense item × item weights (EASE): a customer's score is the sum of the rows they bought."""

    kind: ClassVar[str] = "item_dense"
    item_dense: np.ndarray

    def user_scores(self, *, users: np.ndarray, bought: sp.csr_matrix) -> np.ndarray:
        return np.asarray(bought @ self.item_dense, dtype=np.float32)

    def item_neighbours(self, item: int) -> np.ndarray:
        return np.asarray(self.item_dense[item] + self.item_dense[:, item], dtype=np.float32)

    def similarity_to(self, item: int, others: np.ndarray) -> np.ndarray:
        return self.item_dense[others, item] + self.item_dense[item, others]

    def contributions(self, item: int, bought: np.ndarray) -> np.ndarray:
        return np.asarray(self.item_dense[bought, item])  # user_scores is bought @ item_dense

    def arrays(self) -> dict[str, np.ndarray]:
        return {"cf_item_dense": self.item_dense}

    @classmethod
    def read(cls, arrays: dict[str, np.ndarray], *, n_items: int) -> ItemWeights:
        return cls(item_dense=arrays["cf_item_dense"])


def contribution_floor(scorer: Collaborative, *, n_items: int, quantile: float, sample: int = 64) -> float:
    """The `quantile` of the contributions between items (each of up to `sample` items, chosen
    evenly, against every other item): a scale-free bar for "similar" whatever the scorer's units.
    At 0.95, an item passes when it gives more to another's score than 95% of item pairs do."""
    if n_items < 2:
        return 0.0
    chosen = np.unique(np.linspace(0, n_items - 1, num=min(sample, n_items)).astype(np.int64))
    everyone = np.arange(n_items)
    values = [np.delete(scorer.contributions(int(i), everyone), i) for i in chosen]
    flat = np.nan_to_num(np.concatenate(values).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return float(np.quantile(flat, quantile))
