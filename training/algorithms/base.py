"""What a collaborative family is to the trainer: fitted on customer × item basket counts, it gives
a scorer of the ranking core (`training.core.collaborative`).

`CollaborativeFamily` is the one interface every family is fitted and folded in through;
`DEFAULTS` and `param` read the families' --param values; `blas_single_thread` keeps BLAS to one
thread around the fits and evaluation's batch threads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from training.core.collaborative import Collaborative

# A scorer's validation score (higher is better): what an iterative family may stop on.
Score = Callable[[Collaborative], float]

DEFAULTS: dict[str, Any] = {
    "factors": 64,
    "regularization": 0.05,
    "iterations": 15,
    "alpha": 1.0,
    "learning_rate": 0.01,
    "bpr_iterations": 100,
    "neighbours": 100,
    "ease_lambda": 250.0,
    "seed": 42,
}


@dataclass(frozen=True)
class FittedCollaborative:
    """A collaborative scorer plus the implicit model object (kept for folding in customers)."""

    name: str
    scorer: Collaborative
    model: Any = None
    seconds: float = 0.0
    chosen: Mapping[str, Any] = field(default_factory=dict)  # values chosen while fitting (ALS: iterations)
    scores: Mapping[str, float] = field(default_factory=dict)  # the validation score of each value tried


def param(params: Mapping[str, Any], key: str) -> Any:
    """A parameter from --param KEY=VALUE, cast to the default's type."""
    default = DEFAULTS[key]
    value = params.get(key, default)
    return type(default)(value)


class CollaborativeFamily(ABC):
    """A family of collaborative models, known by `name` (the --model and registry name)."""

    name: str

    @abstractmethod
    def fit(self, *, matrix: sp.csr_matrix, params: Mapping[str, Any]) -> FittedCollaborative:
        """Fit on a customer × item matrix of basket counts, with the --param values in `params`."""

    def fit_stopping_early(
        self, *, matrix: sp.csr_matrix, params: Mapping[str, Any], score: Score
    ) -> FittedCollaborative:
        """`fit`, with its number of iterations chosen on `score` where the family iterates and
        `params` does not give it (ALS: see `ALS.fit_stopping_early`). By default a plain `fit`."""
        return self.fit(matrix=matrix, params=params)

    def fold_in(
        self,
        *,
        fitted: FittedCollaborative,
        matrix: sp.csr_matrix,
        users: np.ndarray | None = None,
        seen: np.ndarray | None = None,
    ) -> FittedCollaborative:
        """The fit with customers' factors recomputed from a newer history `matrix` (see
        `training.algorithms.fold_in`). By default the fit unchanged: item-based scorers read the
        history at scoring time, and a family without a closed-form customer step keeps its factors."""
        return fitted


def blas_single_thread() -> Any:
    """BLAS limited to one thread: around implicit (it parallelizes itself; implicit warns otherwise)
    and around evaluation, whose batches run in threads of their own."""
    # Import implicit (and the BLAS it loads) first: threadpoolctl limits only libraries already loaded.
    import implicit.cpu.als
    import implicit.nearest_neighbours  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")
