"""Item–item nearest neighbours (implicit): a sparse similarity of items bought by the same customers,
cosine or BM25-weighted. The scorer reads each customer's history at scoring time: no fold-in.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from training.algorithms.base import CollaborativeFamily, FittedCollaborative, param
from training.core.collaborative import ItemSimilarity


class ItemKNN(CollaborativeFamily):
    """implicit's `CosineRecommender`, or `BM25Recommender` when `bm25` (neighbours)."""

    def __init__(self, name: str, *, bm25: bool) -> None:
        self.name = name
        self.bm25 = bm25

    def fit(self, *, matrix: sp.csr_matrix, params: Mapping[str, Any]) -> FittedCollaborative:
        """The `neighbours` most similar items of each item, on bought / not bought; no self-similarity."""
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
        from implicit.utils import ParameterWarning

        knn_class = BM25Recommender if self.bm25 else CosineRecommender
        knn = knn_class(K=param(params, "neighbours"))
        with warnings.catch_warnings():
            # BM25Recommender converts its own COO weights and then warns about it.
            warnings.simplefilter("ignore", ParameterWarning)
            knn.fit((matrix > 0).astype(np.float32).tocsr(), show_progress=False)
        sim = knn.similarity.tocsr().astype(np.float32)
        sim.setdiag(0)
        sim.eliminate_zeros()
        return FittedCollaborative(self.name, ItemSimilarity(similarity=sim), knn)
