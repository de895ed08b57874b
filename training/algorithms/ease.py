"""EASE (Steck 2019): dense item–item weights in closed form (numpy), for catalogues of a few thousand items.

The scorer reads each customer's history at scoring time: no fold-in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from training.algorithms.base import CollaborativeFamily, FittedCollaborative, param
from training.core.collaborative import ItemWeights
from training.core.errors import RecoError

EASE_MAX_ITEMS = 20_000


class EASE(CollaborativeFamily):
    """EASE with the L2 weight `ease_lambda`."""

    name = "ease"

    def fit(self, *, matrix: sp.csr_matrix, params: Mapping[str, Any]) -> FittedCollaborative:
        """The item weights of `fit_ease`."""
        return FittedCollaborative(self.name, ItemWeights(item_dense=fit_ease(matrix=matrix, params=params)))


def fit_ease(*, matrix: sp.csr_matrix, params: Mapping[str, Any]) -> np.ndarray:
    """EASE (Steck 2019): B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, zero diagonal."""
    n_items = matrix.shape[1]
    if n_items > EASE_MAX_ITEMS:
        raise RecoError(f"EASE inverts an items × items matrix: {n_items:,} items is above {EASE_MAX_ITEMS:,}.")
    x = (matrix > 0).astype(np.float64)
    gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
    gram[np.diag_indices(n_items)] += param(params, "ease_lambda")
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices(n_items)] = 0.0
    return b.astype(np.float32)
