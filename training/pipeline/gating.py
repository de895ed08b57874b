"""Step 4 of `reco train`: the champion gate's scores. The challenger, the champion as served and the
champion's configuration refit, each ranked by the ranking core for the gate customers (set aside
before tuning, training.split.set_aside_gate), then `training.gate.decide`.

The champion as served is the registered bundle's item side (factors, similarities or item weights)
and blend, applied to the challenger's histories up to each gate customer's last basket, with ALS
customers folded in from those histories. It is compared on the gate baskets that came after its
own data ended only: its item side was fitted on every line before that, and on baskets it has seen
(a retrain on the same or older data) it scores far above what it would on new ones (+0.04
discover NDCG@10 on the demo store). The gate holds the newest baskets (training.split.set_aside_gate),
so a retrain on newer data has many such customers. The configuration refit is the champion's
model and parameters fitted and tuned on the challenger's split, like the challenger itself, and is
compared on every gate customer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp

from training.algorithms import MODELS
from training.algorithms.als import solve_customers
from training.algorithms.base import DEFAULTS
from training.algorithms.repurchase import history_matrix
from training.core.blend import CONTEXTS
from training.core.bundle import ModelBundle
from training.core.collaborative import Collaborative, Factors, ItemSimilarity, ItemWeights
from training.evaluate import Candidate, customer_scores
from training.gate import GATE_K, GATE_METRIC, decide
from training.pipeline.fit import Log, fit_configuration
from training.pipeline.prepare import Prepared

DEFAULT_POPULARITY_HALF_LIFE = 60.0  # bundles registered before the popularity half-life was recorded
CHALLENGER = "challenger"
SERVED = "champion"
REFIT = "champion refit"


@dataclass
class Champion:
    """The current champion as the registry holds it: its record and its bundle (None when it could not
    be loaded, `error` says why)."""

    version: str
    model: str
    params: dict[str, Any]
    bundle: ModelBundle | None = None
    error: str = ""

    @property
    def data_end_day(self) -> float | None:
        """The day (since the epoch) of the last purchase line the champion was trained on."""
        if self.bundle is None:
            return None
        config = self.bundle.config
        return float(config.get("data_end_day", self.bundle.history.reference_day))


@dataclass
class Gated:
    """The gate's outcome: the decision as logged, and the scores behind it (for the run's table and figure)."""

    decision: dict[str, Any]
    promoted: bool
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # model → context → per customer


def day_text(day: float | None) -> str | None:
    """A day since the epoch as an ISO date (UTC)."""
    if day is None or not math.isfinite(day):
        return None
    return datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()


def run_gate(*, fitted: Any, prepared: Prepared, champion: Champion | None, promote: str, log: Log) -> Gated:
    """Score the challenger (`fitted`, a training.pipeline.fit.Fitted) and the champion on the gate
    customers and decide (training.gate.decide)."""
    holdout = prepared.gate
    data_end = prepared.lines.reference_day
    candidates = [Candidate(CHALLENGER, fitted.test_bundle, fitted.blend, CONTEXTS)]
    unscored: list[str] = []
    newer: bool | None = None
    unseen = np.zeros(len(holdout.users), dtype=bool)
    if champion is not None:
        end = champion.data_end_day
        newer = None if end is None else data_end > end + 1e-9
        if champion.bundle is None:
            unscored.append(f"its model did not load: {champion.error}")
        else:
            # Only the gate baskets after the champion's last line are ones it cannot have been fitted on.
            unseen = holdout.now > float(end if end is not None else math.inf)
            if unseen.any():
                served = served_bundle(champion.bundle, prepared=prepared)
                candidates.append(Candidate(SERVED, served, served.blend, CONTEXTS))
            if not unseen.any():
                unscored.append(f"the champion as served has seen every gate basket: its data ends {day_text(end)}")
            elif not unseen.all():
                unscored.append(
                    f"the champion as served is scored on the {int(unseen.sum()):,} gate customers whose last "
                    f"basket came after its data, which ends {day_text(end)}"
                )
        same = champion.model == fitted.model and champion.params == fitted.params
        if same:
            log("  gate: the champion's configuration is the challenger's: its refit would be the challenger")
        elif champion.model in MODELS:
            log(f"  gate: the champion's configuration refit on this split ({champion.model} {champion.params})")
            refit = fit_configuration(model=champion.model, params=champion.params, prepared=prepared, log=log)
            candidates.append(Candidate(REFIT, refit.test_bundle, refit.blend, CONTEXTS))
        else:
            unscored.append(f"this trainer does not know its model {champion.model!r}")
    scores = customer_scores(candidates=candidates, holdout=holdout, metric=GATE_METRIC, k=GATE_K)
    for values in scores.get(SERVED, {}).values():
        values[~unseen] = np.nan  # baskets the champion may have been fitted on are not compared
    references = {name: by for name, by in scores.items() if name != CHALLENGER}
    ends = {
        "challenger": day_text(data_end),
        "champion": None if champion is None else day_text(champion.data_end_day),
    }
    decision, promoted = decide(
        challenger=scores[CHALLENGER],
        references=references,
        newer_data=newer,
        champion=None if champion is None else {"version": champion.version},
        promote=promote,
        data_end=ends,
        unscored="; ".join(unscored),
    )
    decision["gate_customers"] = len(holdout.users)
    return Gated(decision, promoted, scores)


def served_bundle(champion: ModelBundle, *, prepared: Prepared) -> ModelBundle:
    """The champion as served, on the challenger's histories up to each customer's last basket (see the
    module docstring): its blend, half-lives, item side and re-ranker on the challenger's item index."""
    inter = prepared.interactions
    known = champion.item_index
    position = np.array([known.get(item, -1) for item in inter.item_ids.tolist()], dtype=np.int64)
    config = champion.config
    half_life = float(champion.history.half_life)
    popularity_half_life = float(
        config.get("popularity_half_life")
        or config.get("params", {}).get("popularity_half_life")
        or DEFAULT_POPULARITY_HALF_LIFE
    )
    before = prepared.before_test
    collaborative = None
    if champion.collaborative is not None:
        collaborative = _on_items(champion.collaborative, position)
        if isinstance(collaborative, Factors):
            chosen = {**config.get("params", {}), **config.get("collaborative_params", {})}
            matrix = history_matrix(before.history(half_life), n_items=inter.n_items)
            user_factors = solve_customers(
                item_factors=collaborative.item_factors,
                matrix=matrix,
                users=prepared.gate.users,
                regularization=float(chosen.get("regularization", DEFAULTS["regularization"])),
                alpha=float(chosen.get("alpha", DEFAULTS["alpha"])),
            )
            collaborative = Factors(user_factors=user_factors, item_factors=collaborative.item_factors)
    return before.bundle(
        half_life=half_life,
        popularity_half_life=popularity_half_life,
        blend=champion.blend,
        collaborative=collaborative,
        catalog=prepared.catalog,
        timeline=True,
        reranker=champion.reranker,  # its features read no item ids: the trees hold on any item index
    )


def _on_items(scorer: Collaborative, position: np.ndarray) -> Collaborative:
    """The scorer's item side on another item index: `position[j]` is item j's index in the scorer
    (−1: an item the champion never saw, which gets no collaborative score)."""
    known = np.flatnonzero(position >= 0)
    n = len(position)
    if isinstance(scorer, Factors):
        item_factors = np.zeros((n, scorer.item_factors.shape[1]), dtype=np.float32)
        item_factors[known] = scorer.item_factors[position[known]]
        return Factors(user_factors=np.zeros((0, item_factors.shape[1]), dtype=np.float32), item_factors=item_factors)
    if isinstance(scorer, ItemSimilarity):
        pick = sp.csr_matrix(
            (np.ones(len(known), dtype=np.float32), (known, position[known])), shape=(n, scorer.similarity.shape[0])
        )
        return ItemSimilarity(similarity=(pick @ scorer.similarity @ pick.T).tocsr())
    if isinstance(scorer, ItemWeights):
        weights = np.zeros((n, n), dtype=np.float32)
        weights[np.ix_(known, known)] = scorer.item_dense[np.ix_(position[known], position[known])]
        return ItemWeights(item_dense=weights)
    raise TypeError(f"unknown collaborative scorer {type(scorer).__name__}")
