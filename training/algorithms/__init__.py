"""The models the trainer fits, by name: two baselines, five collaborative families, and the hybrid
that blends them (its weights are tuned, see training.tuning).

    base        CollaborativeFamily, the one interface of a collaborative family; FittedCollaborative; DEFAULTS
    als         alternating least squares (implicit), with the fold-in of new customers
    bpr         Bayesian personalized ranking (implicit)
    knn         item–item nearest neighbours, cosine or BM25 (implicit)
    ease        EASE, dense item–item weights in closed form (numpy)
    repurchase  the customers' purchase histories: the repurchase signal, the matrix families are fitted on
    popularity  recency-weighted popularity, as of the last line and as of past days
    blends      the baselines' fixed blends and the hybrid's starting points

This module is the registry: `FAMILIES` by name, `fit_collaborative` and `fold_in` dispatch through
it. Collaborative models come from `implicit` and numpy; fitting returns plain arrays
(`training.core.collaborative`), which the ranking core scores so that a blend sees every item's score.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from training.algorithms.als import ALS
from training.algorithms.base import CollaborativeFamily, FittedCollaborative, Score, blas_single_thread
from training.algorithms.bpr import BPR
from training.algorithms.ease import EASE
from training.algorithms.knn import ItemKNN
from training.core.errors import RecoError

FAMILIES: dict[str, CollaborativeFamily] = {
    family.name: family
    for family in (ALS(), BPR(), ItemKNN("knn-cosine", bm25=False), ItemKNN("knn-bm25", bm25=True), EASE())
}
BASELINES = ("popularity", "frequency")
COLLABORATIVE = tuple(FAMILIES)
MODELS = ("hybrid", *BASELINES, *COLLABORATIVE)
DEFAULT_MODEL = "hybrid"


class UnknownModel(RecoError):
    """--model names no model this trainer knows."""


def check_model(name: str) -> str:
    """Validate a model name (one sentence when unknown)."""
    if name not in MODELS:
        raise UnknownModel(f"Unknown model {name!r}: use one of {', '.join(MODELS)}.")
    return name


def fit_collaborative(
    *, name: str, matrix: sp.csr_matrix, params: Mapping[str, Any], score: Score | None = None
) -> FittedCollaborative:
    """Fit one collaborative model on a customer × item basket-count matrix; with `score` (a validation
    score), an iterative family stops when more iterations stop raising it (`fit_stopping_early`)."""
    family = FAMILIES.get(name)
    if family is None:
        raise UnknownModel(f"{name!r} is not a collaborative model: use one of {', '.join(COLLABORATIVE)}.")
    start = time.perf_counter()
    with blas_single_thread():
        if score is None:
            fitted = family.fit(matrix=matrix, params=params)
        else:
            fitted = family.fit_stopping_early(matrix=matrix, params=params, score=score)
    return replace(fitted, seconds=time.perf_counter() - start)


def fold_in(
    *,
    fitted: FittedCollaborative,
    matrix: sp.csr_matrix,
    users: np.ndarray | None = None,
    seen: np.ndarray | None = None,
) -> FittedCollaborative:
    """Recompute customer factors from a newer history with the item side fixed, for all customers or
    only `users` (the others keep the factors of the fit); `seen` (bool per customer: had lines at fit
    time) lets a family start the seen ones from their fitted factors (ALS: see `ALS.fold_in`).

    Families without a fold-in return the fit unchanged: item-based scorers read the history at
    scoring time and need nothing; BPR has no closed-form user step, so its customers keep the
    factors of the fit."""
    return FAMILIES[fitted.name].fold_in(fitted=fitted, matrix=matrix, users=users, seen=seen)
