"""BPR: Bayesian personalized ranking on who bought what (implicit), customer and item factors.

No fold-in: BPR has no closed-form customer step, so customers keep the factors of the fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from training.algorithms.base import CollaborativeFamily, FittedCollaborative, param
from training.core.collaborative import Factors


class BPR(CollaborativeFamily):
    """implicit's `BayesianPersonalizedRanking` (factors, learning_rate, regularization, bpr_iterations, seed)."""

    name = "bpr"

    def fit(self, *, matrix: sp.csr_matrix, params: Mapping[str, Any]) -> FittedCollaborative:
        """Fit on bought / not bought (basket counts above zero)."""
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        bpr = BayesianPersonalizedRanking(
            factors=param(params, "factors"),
            learning_rate=param(params, "learning_rate"),
            regularization=param(params, "regularization"),
            iterations=param(params, "bpr_iterations"),
            random_state=param(params, "seed"),
        )
        bpr.fit((matrix > 0).astype(np.float32).tocsr(), show_progress=False)
        scorer = Factors(user_factors=bpr.user_factors, item_factors=bpr.item_factors)
        return FittedCollaborative(self.name, scorer, bpr)
