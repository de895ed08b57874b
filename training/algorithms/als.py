"""ALS: alternating least squares on BM25-weighted basket counts (implicit), customer and item factors.

Its number of iterations can be chosen by early stopping on validation (`ALS.fit_stopping_early`).
The one family with a fold-in: customers' factors are solved again from a newer history with the
item factors fixed (the test bundle's customers, and the refit on all lines when it folds in).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from training.algorithms.base import (
    DEFAULTS,
    CollaborativeFamily,
    FittedCollaborative,
    Score,
    blas_single_thread,
    param,
)
from training.core.collaborative import Factors

# Early stopping: the first score after this many iterations, then one after every STEP more.
FIRST_ITERATIONS = 4
STEP_ITERATIONS = 2


class ALS(CollaborativeFamily):
    """implicit's `AlternatingLeastSquares` (factors, regularization, alpha, iterations, seed)."""

    name = "als"

    def fit(self, *, matrix: sp.csr_matrix, params: Mapping[str, Any]) -> FittedCollaborative:
        """Fit on BM25-weighted basket counts."""
        als = _model(params)
        # implicit's own bar of the iterations (with an ETA) on a terminal; nothing in logs.
        als.fit(_confidence(matrix), show_progress=sys.stderr.isatty())
        return FittedCollaborative(self.name, _factors(als), als)

    def fit_stopping_early(
        self, *, matrix: sp.csr_matrix, params: Mapping[str, Any], score: Score
    ) -> FittedCollaborative:
        """At most the default number of iterations (15), scored on validation after FIRST_ITERATIONS
        and then every STEP_ITERATIONS more: the fit stops at the first score that is not above the
        best so far and keeps the best one's factors (the best mean: stopping saves fitting time, it
        adds nothing to the model). `chosen` says how many iterations those had, `scores` the score of
        each count tried. Given `iterations` (or a first score that is not a number: no validation
        customers), a plain fit of that many. On a terminal, a bar of the iterations and the score.

        Later steps continue from the factors so far (implicit's `fit` starts from factors it already
        has), so the factors kept are those of a plain fit of that many iterations."""
        if "iterations" in params:
            return self.fit(matrix=matrix, params=params)
        from tqdm import tqdm

        limit = DEFAULTS["iterations"]
        als, confidence = _model(params), _confidence(matrix)
        with tqdm(total=limit, desc="als", unit="iteration", disable=None, file=sys.stderr, leave=False) as bar:

            def more(iterations: int) -> None:
                als.iterations = iterations
                als.fit(confidence, show_progress=False)
                bar.update(iterations)

            def scored() -> float:
                value = score(_factors(als))
                bar.set_postfix_str(f"validation {value:.4f}")
                return value

            done = min(FIRST_ITERATIONS, limit)
            more(done)
            first = scored()
            if math.isnan(first):  # no validation customer: nothing to stop on, a plain fit of the limit
                if done < limit:
                    more(limit - done)
                als.iterations = limit
                return FittedCollaborative(self.name, _factors(als), als)
            scores = {f"iterations_{done}": first}
            best = (first, done, als.user_factors.copy(), als.item_factors.copy())
            while done < limit:
                step = min(STEP_ITERATIONS, limit - done)
                more(step)
                done += step
                value = scored()
                scores[f"iterations_{done}"] = value
                if not value > best[0]:
                    break
                best = (value, done, als.user_factors.copy(), als.item_factors.copy())
        _, kept, als.user_factors, als.item_factors = best
        als.iterations = kept
        return FittedCollaborative(self.name, _factors(als), als, chosen={"iterations": kept}, scores=scores)

    def fold_in(
        self,
        *,
        fitted: FittedCollaborative,
        matrix: sp.csr_matrix,
        users: np.ndarray | None = None,
        seen: np.ndarray | None = None,
    ) -> FittedCollaborative:
        """Customer factors from a newer history with the item side fixed, for all customers or only
        `users` (the others keep the factors of the fit).

        `recalculate_user` solves each customer exactly. With all customers and `seen` (bool per
        customer: had lines at fit time), the seen ones instead take one more user step of the fit's
        own conjugate-gradient solver from their fitted factors (an extra half-iteration: about four
        times faster on 173k customers here, top-10 lists 99.8% the same); the unseen are solved exactly."""
        model = fitted.model
        assert isinstance(fitted.scorer, Factors)
        factors = np.array(fitted.scorer.user_factors, copy=True)
        confidence = _confidence(matrix)
        with blas_single_thread():
            if users is None and seen is not None:
                weighted = confidence if model.alpha == 1.0 else (model.alpha * confidence).astype(np.float32)
                model.solver(weighted, factors, model.item_factors, model.regularization, num_threads=model.num_threads)
                rows = np.flatnonzero(~seen)
            else:
                rows = np.arange(matrix.shape[0]) if users is None else np.unique(np.asarray(users, dtype=np.int64))
            if len(rows):
                factors[rows] = model.recalculate_user(rows, confidence[rows])
        return FittedCollaborative(
            fitted.name,
            Factors(user_factors=factors, item_factors=fitted.scorer.item_factors),
            fitted.model,
        )


def _factors(als: Any) -> Factors:
    """The scorer of implicit's model as it stands (its arrays, not copies)."""
    return Factors(user_factors=als.user_factors, item_factors=als.item_factors)


def _model(params: Mapping[str, Any]) -> Any:
    """implicit's ALS with the --param values (not fitted)."""
    from implicit.cpu.als import AlternatingLeastSquares

    return AlternatingLeastSquares(
        factors=param(params, "factors"),
        regularization=param(params, "regularization"),
        alpha=param(params, "alpha"),
        iterations=param(params, "iterations"),
        random_state=param(params, "seed"),
    )


def _confidence(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """BM25-weighted basket counts: damp heavy buyers and ubiquitous items (implicit's recipe for ALS)."""
    from implicit.nearest_neighbours import bm25_weight

    return bm25_weight(matrix, K1=100, B=0.8).tocsr().astype(np.float32)


def solve_customers(
    *, item_factors: np.ndarray, matrix: sp.csr_matrix, users: np.ndarray, regularization: float, alpha: float
) -> np.ndarray:
    """Factors of every customer row of `matrix` (basket counts), solved exactly for `users` with the
    item factors fixed (ALS's own user step; the other rows stay zero): customers folded into item
    factors that were fitted elsewhere, such as a registered model's."""
    from implicit.cpu.als import AlternatingLeastSquares

    item_factors = np.array(item_factors, dtype=np.float32)  # a writable copy (a loaded bundle is mapped read-only)
    model = AlternatingLeastSquares(factors=item_factors.shape[1], regularization=regularization, alpha=alpha)
    model.item_factors = item_factors
    factors = np.zeros((matrix.shape[0], item_factors.shape[1]), dtype=np.float32)
    rows = np.unique(np.asarray(users, dtype=np.int64))
    if len(rows):
        with blas_single_thread():
            factors[rows] = model.recalculate_user(rows, _confidence(matrix)[rows])
    return factors
