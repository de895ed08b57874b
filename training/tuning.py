"""Tuning on the validation customers: the recency of the signals, the hybrid's blend weights, its
`discover` mix and ALS's regularization, each chosen by a small search over the grids below.

Only validation baskets choose; the test baskets never do (they score the result once).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from training import algorithms
from training.algorithms.base import DEFAULTS, FittedCollaborative
from training.algorithms.blends import DISCOVERY_ONLY, HYBRID_START, baseline_blend
from training.core.blend import Blend
from training.core.bundle import ModelBundle
from training.core.collaborative import Collaborative
from training.evaluate import Candidate, Reuse, evaluate
from training.metrics import PRIMARY_METRIC
from training.split import Holdout

# The hybrid's blend is tuned on validation by coordinate search (≈ 35 evaluations instead of a
# full grid). Start: the repurchase weights, discovery-only blends (home without bought items) at
# each popularity weight, and the plain baselines, so that on validation the hybrid is never worse
# than popularity or personal frequency. Then, from the best: the "due" boost, the popularity prior,
# whether home lists bought items, the collaborative weight and the repurchase weight again.
REPURCHASE_WEIGHTS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
DUE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
POPULARITY_WEIGHTS = (1e-3, 0.05, 0.2, 0.5, 2.0)
# Zero last: on a tie the collaborative part stays (it is what `discover` serves).
COLLABORATIVE_WEIGHTS = (0.3, 3.0, 0.0)
# `discover` gets its own collaborative/popularity mix, tuned on the validation baskets' new items:
# (collaborative, popularity) pairs, popularity alone last.
DISCOVER_MIXES = ((1.0, 1e-3), (1.0, 0.05), (1.0, 0.2), (1.0, 0.5), (1.0, 2.0), (0.0, 1.0))
# ALS's regularization is chosen on validation (discover NDCG@10 of ALS alone) when the model search
# is affordable: the best value depends on the data (0.05, implicit's example value, over-fits
# small or sparse matrices badly; a large value can shrink the factors to nothing). Without the
# search (training.pipeline.fit: above SEARCH_MAX_PAIRS) one fit with DEFAULTS["regularization"].
ALS_REGULARIZATIONS = (0.05, 30.0, 100.0)

# Half-lives (days) of the customer's own purchases and of popularity, chosen on validation.
HALF_LIVES = (30.0, 90.0, 365.0, math.inf)
POPULARITY_HALF_LIVES = (14.0, 60.0, 365.0)

# A bundle of the training lines from (half-life, popularity half-life, blend, collaborative scorer).
BundleOf = Callable[[float, float, Blend, Collaborative | None], ModelBundle]


def score_of(results: dict[str, dict[str, float]], name: str, metric: str = PRIMARY_METRIC) -> float:
    """One model's metric in `evaluate`'s results (NaN when it has none)."""
    return results.get(name, {}).get(metric, float("nan"))


def best_of(scores: Mapping[Any, float]) -> Any:
    """Key with the highest score (first on ties, NaN never wins)."""
    best_key, best = None, -math.inf
    for key, value in scores.items():
        if not math.isnan(value) and value > best:
            best_key, best = key, value
    return best_key if best_key is not None else next(iter(scores))


def tune_recency(
    *, bundle: BundleOf, holdout: Holdout, params: Mapping[str, Any]
) -> tuple[float, float, dict[str, dict[str, float]]]:
    """Half-lives of the customer's own purchases (personal frequency's score) and then of popularity
    (popularity alone), each chosen on validation unless given in `params`; returns (half-life,
    popularity half-life, the scores tried by half-life, for the run's record)."""
    choice: dict[str, dict[str, float]] = {}
    if "half_life" in params:
        half_life = float(params["half_life"])
    else:
        scores = {}
        for hl in HALF_LIVES:
            b = bundle(hl, 60.0, baseline_blend("frequency"), None)
            res = evaluate(candidates=[Candidate("f", b, b.blend, ("home",))], holdout=holdout, ks=(10,), detail=False)
            scores[hl] = score_of(res, "f")
        half_life = best_of(scores)
        choice["half_life_scores"] = {str(k): v for k, v in scores.items()}
    if "popularity_half_life" in params:
        pop_half_life = float(params["popularity_half_life"])
    else:
        base = bundle(half_life, 60.0, baseline_blend("popularity"), None)
        scores = {}
        for phl in POPULARITY_HALF_LIVES:
            b = bundle(half_life, phl, baseline_blend("popularity"), None) if phl != 60.0 else base
            res = evaluate(candidates=[Candidate("p", b, b.blend, ("home",))], holdout=holdout, ks=(10,), detail=False)
            scores[phl] = score_of(res, "p")
        pop_half_life = best_of(scores)
        choice["popularity_half_life_scores"] = {str(k): v for k, v in scores.items()}
    return half_life, pop_half_life, choice


def tune_blend(*, bundle: ModelBundle, holdout: Holdout, reuse: Reuse | None = None) -> tuple[Blend, float]:
    """Coordinate search of the hybrid's weights on validation; returns (best blend, its score)."""
    reuse = reuse or Reuse(holdout)

    def run(blends: list[Blend]) -> dict[Blend, float]:
        cands = [Candidate(str(i), bundle, b, ("home",)) for i, b in enumerate(blends)]
        res = evaluate(candidates=cands, holdout=holdout, ks=(10,), detail=False, reuse=reuse)
        return {b: score_of(res, str(i)) for i, b in enumerate(blends)}

    # The baselines come last so that, on a tie, a blend with the collaborative part wins.
    tried = run(
        [
            *(replace(HYBRID_START, repurchase=w) for w in REPURCHASE_WEIGHTS),
            *(replace(DISCOVERY_ONLY, popularity=w) for w in POPULARITY_WEIGHTS),
            baseline_blend("frequency"),
            baseline_blend("popularity"),
        ]
    )
    if all(math.isnan(v) for v in tried.values()):
        # Nothing to tune on (no validation basket anywhere): own purchases first, then discovery.
        return replace(HYBRID_START, repurchase=10.0), math.nan
    best = best_of(tried)
    for axis, values in (
        ("due", DUE_WEIGHTS),
        ("popularity", POPULARITY_WEIGHTS),
        ("home_excludes_bought", (False, True)),
        ("collaborative", COLLABORATIVE_WEIGHTS),
        ("repurchase", REPURCHASE_WEIGHTS),
    ):
        if axis == "due" and (best.repurchase == 0.0 or best.home_excludes_bought):
            continue  # no repurchase signal in the list: the boost changes nothing
        if axis == "repurchase" and best.home_excludes_bought:
            continue  # bought items are not listed in home
        if axis == "popularity" and best.collaborative == 0.0 and best.repurchase == 0.0:
            continue  # popularity alone ranks the same at any weight
        new = [b for b in (replace(best, **{axis: v}) for v in values) if b not in tried]
        tried.update(run(new))
        best = best_of(tried)
    return best, tried[best]


def tune_discover(
    *, bundle: ModelBundle, holdout: Holdout, blend: Blend, reuse: Reuse | None = None
) -> tuple[Blend, dict[str, float]]:
    """The blend with its own `discover` mix, chosen on the new items of the validation baskets.

    Home weights are tuned for home, where a grocery customer's own staples fill the list and the
    collaborative part can drop out; discover still needs the best mix for new items. Blends that
    keep bought items out of home already are discovery lists: they stay as they are."""
    if blend.home_excludes_bought:
        return blend, {}
    mixes = [replace(blend, discover_collaborative=c, discover_popularity=p) for c, p in DISCOVER_MIXES]
    cands = [Candidate(str(i), bundle, b, ("discover",)) for i, b in enumerate(mixes)]
    res = evaluate(candidates=cands, holdout=holdout, ks=(10,), detail=False, reuse=reuse)
    scores = {b: score_of(res, str(i), "discover/ndcg_at_10") for i, b in enumerate(mixes)}
    if all(math.isnan(v) for v in scores.values()):
        return blend, {}
    best = best_of(scores)
    return best, {f"{b.discover_collaborative}/{b.discover_popularity}": v for b, v in scores.items()}


def fit_candidate(
    *,
    name: str,
    matrix: Any,
    params: Mapping[str, Any],
    search: bool,
    validation_bundle: Callable[[Collaborative], ModelBundle],
    holdout: Holdout,
) -> tuple[FittedCollaborative, dict[str, Any], dict[float, float]]:
    """Fit one collaborative model; ALS tries a few regularizations (unless given) and keeps the best
    discover NDCG@10 on validation. Returns (fit, parameters chosen, validation score per value)."""
    if name != "als" or not search or "regularization" in params:
        return algorithms.fit_collaborative(name=name, matrix=matrix, params=params), {}, {}
    fits: dict[float, FittedCollaborative] = {}
    scores: dict[float, float] = {}
    for reg in ALS_REGULARIZATIONS:
        fit = algorithms.fit_collaborative(name=name, matrix=matrix, params={**params, "regularization": reg})
        bundle = validation_bundle(fit.scorer)
        res = evaluate(
            candidates=[Candidate("als", bundle, baseline_blend("als"), ("discover",))],
            holdout=holdout,
            ks=(10,),
            detail=False,
        )
        fits[reg], scores[reg] = fit, score_of(res, "als", "discover/ndcg_at_10")
    reg = best_of(scores) if not all(math.isnan(v) for v in scores.values()) else float(DEFAULTS["regularization"])
    chosen = fits.get(reg) or algorithms.fit_collaborative(name=name, matrix=matrix, params=params)
    seconds = sum(f.seconds for f in fits.values())
    return replace(chosen, seconds=seconds), {"regularization": reg}, scores
