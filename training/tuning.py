"""Tuning on the validation customers: the recency of the signals, the hybrid's blend weights, its
`discover` mix and ALS's regularization, each chosen by a small search over the grids below.

Only validation baskets choose; the test baskets never do (they score the result once).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from training import algorithms
from training.algorithms.base import DEFAULTS, FittedCollaborative
from training.algorithms.blends import DISCOVERY_ONLY, HYBRID_START, baseline_blend
from training.core.blend import Blend
from training.core.bundle import ModelBundle
from training.core.collaborative import Collaborative
from training.evaluate import Candidate, Reuse, customer_scores, evaluate
from training.gate import Comparison, paired_bootstrap
from training.metrics import PRIMARY_METRIC
from training.split import Holdout

# The hybrid's blend is tuned on validation by coordinate search (≈ 35 evaluations instead of a
# full grid). Start: the repurchase weights, discovery-only blends (home without bought items) at
# each popularity weight, and the plain baselines, so that on validation the hybrid is never worse
# than popularity or personal frequency. Then, from the best: the "due" boost, the popularity prior,
# whether home lists bought items, the collaborative weight and the repurchase weight again.
REPURCHASE_WEIGHTS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
DUE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
# The repeat / explore mix (core.blend): exponents of the item's repeat rate and the customer's repeat odds.
ITEM_REPEAT_WEIGHTS = (0.0, 0.5, 1.0)
CUSTOMER_REPEAT_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
POPULARITY_WEIGHTS = (1e-3, 0.05, 0.2, 0.5, 2.0)
# Zero last: on a tie the collaborative part stays (it is what `discover` serves).
COLLABORATIVE_WEIGHTS = (0.3, 3.0, 0.0)
# The simplest blends (besides discovery-only at the lowest popularity weight): what a tuned blend
# must beat beyond the interval. "alone" is the collaborative model by itself.
SIMPLEST = ("frequency", "popularity", "alone")
# `discover` gets its own collaborative/popularity mix, tuned on the validation baskets' new items:
# (collaborative, popularity) pairs, popularity alone last.
DISCOVER_MIXES = ((1.0, 1e-3), (1.0, 0.05), (1.0, 0.2), (1.0, 0.5), (1.0, 2.0), (0.0, 1.0))
# Each collaborative family's search on validation (discover NDCG@10 of the family alone), one axis
# after another, when the model search is affordable (training.pipeline.fit: up to SEARCH_MAX_PAIRS),
# within `search_seconds` (--param; the fit with the defaults always runs): the values the plain
# references tune, within `search_seconds` (--param) shared by the candidates (what one leaves is the
# next one's). The best depends on the data (ALS's 0.05, implicit's example value, over-fits
# small or sparse matrices badly; a large one can shrink the factors to nothing).
SEARCH_GRIDS: dict[str, tuple[tuple[str, tuple[float, ...]], ...]] = {
    "als": (("regularization", (0.05, 1.0, 30.0, 100.0)), ("factors", (32, 64, 128)), ("alpha", (1.0, 10.0))),
    "ease": (("ease_lambda", (50.0, 250.0, 1000.0)),),
    "knn-bm25": (("neighbours", (20, 100, 300)),),
    "knn-cosine": (("neighbours", (20, 100, 300)),),
}
SEARCH_SECONDS = 120.0

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
    simplest = [replace(DISCOVERY_ONLY, popularity=POPULARITY_WEIGHTS[0]), *(baseline_blend(n) for n in SIMPLEST)]
    tried = run(
        [
            *(replace(HYBRID_START, repurchase=w) for w in REPURCHASE_WEIGHTS),
            *(replace(DISCOVERY_ONLY, popularity=w) for w in POPULARITY_WEIGHTS),
            *simplest[1:],
        ]
    )
    if all(math.isnan(v) for v in tried.values()):
        # Nothing to tune on (no validation basket anywhere): own purchases first, then discovery.
        return replace(HYBRID_START, repurchase=10.0), math.nan
    best = best_of(tried)
    for axis, values in (
        ("due", DUE_WEIGHTS),
        ("item_repeat", ITEM_REPEAT_WEIGHTS),
        ("customer_repeat", CUSTOMER_REPEAT_WEIGHTS),
        ("popularity", POPULARITY_WEIGHTS),
        ("home_excludes_bought", (False, True)),
        ("collaborative", COLLABORATIVE_WEIGHTS),
        ("repurchase", REPURCHASE_WEIGHTS),
    ):
        if axis in ("due", "item_repeat", "customer_repeat") and (best.repurchase == 0.0 or best.home_excludes_bought):
            continue  # no repurchase signal in the list: its shape changes nothing
        if axis == "repurchase" and best.home_excludes_bought:
            continue  # bought items are not listed in home
        if axis == "popularity" and best.collaborative == 0.0 and best.repurchase == 0.0:
            continue  # popularity alone ranks the same at any weight
        new = [b for b in (replace(best, **{axis: v}) for v in values) if b not in tried]
        tried.update(run(new))
        best = best_of(tried)
    # The search's best replaces the best of the simplest blends only when better beyond the interval.
    simple = best_of({b: tried[b] for b in simplest})
    if best != simple:
        scores = per_customer(
            {"best": (bundle, best), "simple": (bundle, simple)}, holdout=holdout, context="home", reuse=reuse
        )
        if not better_beyond_interval(scores["best"], scores["simple"])[0]:
            best = simple
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
    best, simple = best_of(scores), mixes[0]  # the first mix: the collaborative model alone
    if best != simple:
        per = per_customer(
            {"best": (bundle, best), "simple": (bundle, simple)}, holdout=holdout, context="discover", reuse=reuse
        )
        if not better_beyond_interval(per["best"], per["simple"])[0]:
            best = simple
    return best, {f"{b.discover_collaborative}/{b.discover_popularity}": v for b, v in scores.items()}


def better_beyond_interval(challenger: np.ndarray, incumbent: np.ndarray) -> tuple[bool, Comparison]:
    """Whether per-customer scores beat the incumbent's beyond noise: the 95% interval of the paired
    bootstrap difference (training.gate.paired_bootstrap) lies above zero. How every choice on
    validation that adds something to a simpler model is made: a gain inside its interval is noise."""
    comparison = paired_bootstrap(challenger, incumbent)
    return comparison.difference_low > 0.0, comparison


def per_customer(
    bundle_blends: Mapping[str, tuple[ModelBundle, Blend]],
    *,
    holdout: Holdout,
    context: str,
    reuse: Reuse | None = None,
) -> dict[str, np.ndarray]:
    """Each (bundle, blend)'s NDCG@10 per customer of the holdout on one context (`reuse`: the
    signals tuning kept for these customers)."""
    candidates = [Candidate(name, b, blend, (context,)) for name, (b, blend) in bundle_blends.items()]
    scores = customer_scores(candidates=candidates, holdout=holdout, reuse=reuse)
    return {name: values[context] for name, values in scores.items()}


def search_candidate(
    *,
    name: str,
    matrix: Any,
    params: Mapping[str, Any],
    search: bool,
    seconds: float,
    validation_bundle: Callable[[Collaborative], ModelBundle],
    holdout: Holdout,
) -> tuple[FittedCollaborative, dict[str, Any], dict[str, float], float]:
    """Fit one collaborative model; with `search`, its SEARCH_GRIDS axes one after another (values
    given in `params` are kept as given): on each, the value with the best discover NDCG@10 on
    validation replaces the current one only when better beyond the interval. No fit starts that
    would end more than `seconds` after the first (each is expected to take as long as the first).
    Returns (fit, values chosen, validation score per value tried, seconds the search took)."""
    fit = algorithms.fit_collaborative(name=name, matrix=matrix, params=params)
    axes = [(key, values) for key, values in SEARCH_GRIDS.get(name, ()) if key not in params]
    if not search or not axes:
        return fit, {}, {}, 0.0
    start = time.perf_counter()

    def scores_of(f: FittedCollaborative) -> np.ndarray:
        return discover_scores(name=name, scorer=f.scorer, validation_bundle=validation_bundle, holdout=holdout)

    chosen: dict[str, Any] = {}
    current, current_scores = fit, scores_of(fit)
    tried: dict[str, float] = {}
    fit_seconds = fit.seconds
    for key, values in axes:
        here = {**DEFAULTS, **params, **chosen}[key]
        tried[f"{key}_{here}"] = _mean(current_scores)
        best: tuple[Any, FittedCollaborative, np.ndarray] | None = None
        # Farthest from the current value first (on a log scale): under a budget, the search brackets.
        for value in sorted(values, key=lambda v: -abs(math.log(float(v) / float(here)))):
            if value == here:
                continue
            if time.perf_counter() + fit.seconds > start + seconds:
                tried["budget_reached"] = 1.0
                break
            f = algorithms.fit_collaborative(name=name, matrix=matrix, params={**params, **chosen, key: value})
            fit_seconds += f.seconds
            s = scores_of(f)
            tried[f"{key}_{value}"] = _mean(s)
            if best is None or _mean(s) > _mean(best[2]):
                best = (value, f, s)
        if best is not None and better_beyond_interval(best[2], current_scores)[0]:
            chosen[key] = best[0]
            current, current_scores = best[1], best[2]
        if "budget_reached" in tried:
            break
    return replace(current, seconds=fit_seconds), chosen, tried, time.perf_counter() - start


def discover_scores(
    *, name: str, scorer: Collaborative, validation_bundle: Callable[[Collaborative], ModelBundle], holdout: Holdout
) -> np.ndarray:
    """Per validation customer, discover NDCG@10 of a collaborative scorer alone: what the model
    search compares, and what ALS's iterations stop on where the search does not run."""
    alone = baseline_blend(name)
    return per_customer({"c": (validation_bundle(scorer), alone)}, holdout=holdout, context="discover")["c"]


def discover_score(
    *, name: str, validation_bundle: Callable[[Collaborative], ModelBundle], holdout: Holdout
) -> Callable[[Collaborative], float]:
    """The mean of `discover_scores` of a scorer (NaN without a validation customer to score)."""
    return lambda scorer: _mean(
        discover_scores(name=name, scorer=scorer, validation_bundle=validation_bundle, holdout=holdout)
    )


def _mean(scores: np.ndarray) -> float:
    finite = scores[np.isfinite(scores)]
    return float(finite.mean()) if len(finite) else math.nan
