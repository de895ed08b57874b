"""Step 2 of `reco train`: one configuration fitted on the training split, tuned on validation,
scored on test beside the baselines, and refit on all lines for the registry.

A configuration is a model name (training.algorithms.MODELS) and its --param values. For the
hybrid, the collaborative candidates are fitted and the blend tuned for each (training.tuning); the
best on validation is kept.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from training import algorithms
from training.algorithms.base import DEFAULTS, FittedCollaborative, blas_single_thread
from training.algorithms.blends import HYBRID_START, baseline_blend
from training.algorithms.repurchase import history_matrix
from training.core.blend import DEFAULT_HOME_EXPLORE, Blend
from training.core.bundle import ModelBundle
from training.core.collaborative import Collaborative
from training.core.errors import RecoError
from training.core.rerank import Reranker
from training.evaluate import Candidate, Reuse, evaluate
from training.interactions import Interactions
from training.metrics import KS, PRIMARY_METRIC
from training.pipeline import rerank
from training.pipeline.prepare import Prepared
from training.tuning import (
    HALF_LIVES,
    POPULARITY_HALF_LIVES,
    SEARCH_SECONDS,
    better_beyond_interval,
    discover_score,
    per_customer,
    search_candidate,
    tune_blend,
    tune_discover,
    tune_recency,
)

DEFAULT_EVAL_USERS = 10_000
REFIT_CHOICES = ("auto", "full", "fold-in", "none")
RERANK_CHOICES = ("auto", "off")  # --param rerank: learn home's re-ranker where it can help, or never
# Candidates the hybrid chooses its discovery part from, simplest first: EASE (one value to choose,
# closed form, deterministic), item neighbours (one value, a truncated similarity), ALS (three values,
# iterative, seeded). A later one replaces the one kept so far only when its validation score (home
# NDCG@10 of its tuned blend plus discover NDCG@10 of the model alone, per customer) is better beyond
# the interval (tuning.better_beyond_interval).
HYBRID_CANDIDATES = ("ease", "knn-bm25", "als")
# The model search fits every candidate; above this many (customer, item) pairs it keeps ALS only,
# fitted in a thread beside the recency tuning, so that `reco train` stays near the time of one raw
# implicit fit (logged as `candidates`; README, Performance).
SEARCH_MAX_PAIRS = 2_000_000
EASE_SEARCH_MAX_ITEMS = 8_000
Log = Callable[[str], None]


@dataclass
class Fitted:
    """One configuration fitted on the training split, tuned on validation and scored on test."""

    model: str
    params: dict[str, Any]
    blend: Blend
    half_life: float
    popularity_half_life: float
    collaborative_name: str | None
    collaborative: FittedCollaborative | None
    test_bundle: ModelBundle
    reranker: Reranker | None = None  # home's, when validation kept it (blend.home_rerank)
    collaborative_params: dict[str, Any] = field(default_factory=dict)  # chosen on validation (refit uses them)
    validation_scores: dict[str, float] = field(default_factory=dict)
    choice: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float = 0.0

    @property
    def label(self) -> str:
        """Model name with its chosen discovery part, e.g. hybrid(als)."""
        return f"{self.model}({self.collaborative_name})" if self.model == "hybrid" else self.model


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE strings → dict (one sentence for a malformed pair or an unknown key)."""
    params: dict[str, str] = {}
    known = {
        *DEFAULTS,
        "candidates",
        "refit",
        "eval_users",
        "half_life",
        "popularity_half_life",
        "explore_share",
        "search_seconds",
        "rerank",
    }
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RecoError(f"--param {pair!r} is not KEY=VALUE.")
        if key not in known:
            raise RecoError(f"Unknown --param {key!r}: use one of {', '.join(sorted(known))}.")
        params[key] = value
    explore_share(params)  # checked before any work
    if params.get("rerank", "auto") not in RERANK_CHOICES:
        raise RecoError(f"rerank must be one of {', '.join(RERANK_CHOICES)}, got {params['rerank']!r}.")
    return params


def wants_reranker(*, model: str, params: Mapping[str, Any], prepared: Prepared, blend: Blend, search: bool) -> bool:
    """Whether to learn home's re-ranker: `--param rerank=auto` (the default) for the hybrid on
    basket data with the model search (below SEARCH_MAX_PAIRS), whose home list holds bought items."""
    return (
        params.get("rerank", "auto") == "auto"
        and model == "hybrid"
        and search
        and prepared.split.protocol == "baskets"
        and not blend.home_excludes_bought
    )


def explore_share(params: Mapping[str, Any]) -> float:
    """`--param explore_share` (0..1; default core.blend.DEFAULT_HOME_EXPLORE), one sentence when invalid."""
    raw = params.get("explore_share", DEFAULT_HOME_EXPLORE)
    try:
        share = float(raw)
    except (TypeError, ValueError):
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise RecoError(f"explore_share must be a number from 0 to 1, got {raw!r}.")
    return share


def _rounded(scores: Mapping[Any, float]) -> dict[str, float]:
    return {str(k): round(v, 4) for k, v in scores.items()}


def candidates_for(*, model: str, params: Mapping[str, Any], interactions: Interactions, pairs: int) -> list[str]:
    """Collaborative models to fit: the model itself, or the hybrid's search space (bounded by data size)."""
    if model in algorithms.BASELINES:
        return []
    if model != "hybrid":
        return [model]
    if "candidates" in params:
        chosen = [c.strip() for c in str(params["candidates"]).split(",") if c.strip()]
        if not chosen:
            raise RecoError(
                "--param candidates= names no model: list one or more of " + ", ".join(algorithms.COLLABORATIVE)
            )
        for c in chosen:
            algorithms.check_model(c)
            if c not in algorithms.COLLABORATIVE:
                raise RecoError(f"Candidate {c!r} is not a collaborative model.")
        return chosen
    if pairs > SEARCH_MAX_PAIRS:
        return ["als"]
    return [c for c in HYBRID_CANDIDATES if c != "ease" or interactions.n_items <= EASE_SEARCH_MAX_ITEMS]


def fit_configuration(*, model: str, params: Mapping[str, Any], prepared: Prepared, log: Log) -> Fitted:
    """Fit on the training split, tune on validation, and build the test-time bundle (history up to the test basket)."""
    # One BLAS limit around the whole: the fits and the evaluations set their own, from two threads.
    with blas_single_thread(), tuning_progress() as bar:
        return _fit_configuration(model=model, params=params, prepared=prepared, log=log, bar=bar)


def tuning_progress() -> Any:
    """The terminal's progress bar of a configuration's tuning steps, with an ETA (tqdm; silent when
    stderr is not a terminal). Its total is set once the candidates are known."""
    from tqdm import tqdm

    return tqdm(total=1, desc="tuning", unit="step", disable=None, file=sys.stderr, leave=False)


def _step(bar: Any, done: str) -> None:
    bar.set_postfix_str(done, refresh=False)
    bar.update(1)


def _fit_configuration(*, model: str, params: Mapping[str, Any], prepared: Prepared, log: Log, bar: Any) -> Fitted:
    start = time.perf_counter()
    inter = prepared.interactions
    val = prepared.tuning

    train_lines = prepared.train

    def bundle(hl: float, phl: float, blend: Blend, cf: Collaborative | None) -> ModelBundle:
        return train_lines.bundle(
            half_life=hl,
            popularity_half_life=phl,
            blend=blend,
            collaborative=cf,
            catalog=prepared.catalog,
            timeline=True,
        )

    # The collaborative models are fitted on basket counts, which no half-life changes. Without a
    # model search (large data), their fits run in a thread beside the recency tuning and the
    # test-time history below (implicit's loops release the GIL), and ALS's iterations stop early
    # on validation (discover NDCG@10 of ALS alone, on a bundle built here, before the thread).
    first_half_life = float(params.get("half_life", HALF_LIVES[0]))
    matrix = history_matrix(train_lines.history(first_half_life), n_items=inter.n_items)
    names = candidates_for(model=model, params=params, interactions=inter, pairs=matrix.nnz)
    # Steps: recency, each candidate's fit, (hybrid) each candidate's blend and the discover mix, the test bundle.
    bar.total = 2 + len(names) + (len(names) + 1 if model == "hybrid" else 0)
    bar.refresh()
    search = matrix.nnz <= SEARCH_MAX_PAIRS
    fitting = None
    if names and not search:
        # The bundle ALS is scored on is built here while its first iterations run.
        stop_on: Future[ModelBundle] = Future()

        def fit_stopping_early(name: str) -> FittedCollaborative:
            score = discover_score(
                name=name, validation_bundle=lambda cf: replace(stop_on.result(), collaborative=cf), holdout=val
            )
            return algorithms.fit_collaborative(name=name, matrix=matrix, params=params, score=score)

        pool = ThreadPoolExecutor(1, thread_name_prefix="fit")
        fitting = pool.submit(lambda: {n: fit_stopping_early(n) for n in names})
        pool.shutdown(wait=False)
        try:
            stop_on.set_result(bundle(first_half_life, POPULARITY_HALF_LIVES[0], baseline_blend("als"), None))
        except BaseException as error:  # the fit's thread ends on it at its first score
            stop_on.set_exception(error)
            raise

    choice: dict[str, Any] = {}
    # 1. Recency of the customer's own purchases and of popularity, on validation.
    half_life, pop_half_life, recency_scores = tune_recency(bundle=bundle, holdout=val, params=params)
    choice.update(recency_scores)
    log(f"  recency: own purchases half-life {half_life} d, popularity half-life {pop_half_life} d")
    _step(bar, "recency")

    # What comes after the fit but needs no collaborative part, computed while the fit runs: the
    # test-time history (up to each customer's test basket) and popularity, and those of all lines
    # and their aisles' basket counts for the refit. Without the model search, the blend's tuning
    # and the refit need nothing else of the training lines' and all lines' events: they go (the
    # memory they hold is what the fit phase is short of on large data).
    if fitting is not None:
        train_lines.history(half_life)
        train_lines.popularity(pop_half_life)
        train_lines.timeline(pop_half_life)
        train_lines.release_events()
    before_test = prepared.before_test
    test_history = before_test.history(half_life)
    before_test.popularity(pop_half_life)
    before_test.timeline(pop_half_life)
    if fitting is not None:
        prepared.lines.history(half_life)
        prepared.lines.popularity(pop_half_life)
        prepared.lines.category_baskets(prepared.catalog)
        prepared.lines.release_events()

    # 2. Collaborative candidates fitted on the training split; blends tuned on validation.
    fits: dict[str, FittedCollaborative] = {}
    chosen_params: dict[str, dict[str, Any]] = {}
    scores: dict[str, float]  # validation score per value tried (the model search)
    budget = float(params.get("search_seconds", SEARCH_SECONDS))  # the model search's, beyond each first fit
    for n, name in enumerate(names):
        if fitting is not None:
            fits[name] = fitting.result()[name]
            chosen_params[name], scores = dict(fits[name].chosen), dict(fits[name].scores)
        else:
            fits[name], chosen_params[name], scores, searched = search_candidate(
                name=name,
                matrix=matrix,
                params=params,
                search=search,
                seconds=budget / (len(names) - n),
                validation_bundle=lambda cf: bundle(half_life, pop_half_life, baseline_blend("als"), cf),
                holdout=val,
            )
            budget -= searched
        if scores:
            choice[f"{name}_discover_scores"] = scores
            log(f"  {name} validation discover/ndcg_at_10 by value tried: {_rounded(scores)}")
        chosen_text = "".join(f" {k}={v}" for k, v in chosen_params[name].items())
        log(f"  fitted {name}{chosen_text} on the training split in {fits[name].seconds:.1f} s")
        _step(bar, f"fitted {name}")
    if model in algorithms.BASELINES:
        blend, chosen = baseline_blend(model), None
    elif model != "hybrid":
        blend, chosen = baseline_blend(model), model
    else:
        per_candidate: dict[str, tuple[Blend, float]] = {}
        tune = prepared.tuning
        # The one kept so far (simplest first; a later candidate replaces it only when better beyond
        # the interval on validation): its name, bundle (whose signals serve the discover mix) and
        # per-customer scores.
        best: tuple[str, ModelBundle, Reuse] | None = None

        def ranked(name: str, b: ModelBundle, reuse: Reuse) -> Any:
            """Per customer: home NDCG@10 of the tuned blend plus discover NDCG@10 of the model alone
            (what the discover mix starts from; 0 without new items): a candidate serves both."""
            home = per_customer({name: (b, per_candidate[name][0])}, holdout=tune, context="home", reuse=reuse)
            new = per_customer({name: (b, baseline_blend(name))}, holdout=tune, context="discover", reuse=reuse)
            return home[name] + np.nan_to_num(new[name])

        for name, fitted_cf in fits.items():
            b, reuse = bundle(half_life, pop_half_life, HYBRID_START, fitted_cf.scorer), Reuse(tune)
            per_candidate[name] = tune_blend(bundle=b, holdout=tune, reuse=reuse)
            log(
                f"  validation {PRIMARY_METRIC} hybrid({name}) = {per_candidate[name][1]:.4f}"
                f" with {per_candidate[name][0]}"
            )
            _step(bar, f"blend of hybrid({name})")
            if best is None:
                best = (name, b, reuse)
                continue
            wins, comparison = better_beyond_interval(ranked(name, b, reuse), ranked(*best))
            choice[f"hybrid_{name}_vs_{best[0]}"] = comparison.to_dict()  # home + discover NDCG@10
            if wins:
                best = (name, b, reuse)
        assert best is not None
        chosen, kept_bundle, kept_reuse = best
        blend, discover_scores = tune_discover(
            bundle=kept_bundle, holdout=tune, blend=per_candidate[chosen][0], reuse=kept_reuse
        )
        del best, reuse, kept_bundle, kept_reuse
        if discover_scores:
            choice["discover_mix_scores"] = discover_scores
            log(
                f"  discover mix (collaborative, popularity) = ({blend.discover_collaborative}, "
                f"{blend.discover_popularity}) on validation discover/ndcg_at_10 {_rounded(discover_scores)}"
            )
        choice["candidates"] = {
            name: {"validation_score": s, "blend": b.to_dict()} for name, (b, s) in per_candidate.items()
        }
        choice["chosen"] = chosen
        _step(bar, "discover mix")
    # Home as served: a share of its slots for items new to the customer (a fixed policy, not tuned,
    # so home is not a copy of buy-again); the test and the gate measure that list.
    if not blend.home_excludes_bought:
        blend = replace(blend, home_explore=explore_share(params))
    if chosen and chosen_params.get(chosen):
        choice["chosen_params"] = chosen_params[chosen]
    # 4. The learned re-ranker of home (hybrid on baskets with the model search), kept when it beats
    # the blend as served beyond the interval on validation (training.pipeline.rerank).
    reranker = None
    if wants_reranker(model=model, params=params, prepared=prepared, blend=blend, search=search):
        learnt = rerank.learn(
            prepared=prepared,
            blend=blend,
            half_life=half_life,
            popularity_half_life=pop_half_life,
            collaborative=chosen,
            params={**params, **chosen_params.get(chosen, {})} if chosen else dict(params),
            log=log,
        )
        cf_scorer = fits[chosen].scorer if chosen else None
        kept, choice["rerank"] = rerank.choose(
            learnt, bundle=bundle(half_life, pop_half_life, blend, cf_scorer), blend=blend, holdout=val, log=log
        )
        if kept:
            reranker, blend = learnt.reranker, replace(blend, home_rerank=True)
    # 3. The test-time bundle. With the model search (small data) every candidate is fitted again on
    # all the lines before the test, with the values validation chose: the test then measures what
    # is registered (a fit on every line known), and the validation lines (a fifth of every
    # customer's lines under the `lines` protocol) are not missing from its item side. Above
    # SEARCH_MAX_PAIRS the fits are kept and ALS customers folded in (`reco train`'s time budget).
    cf_fit = fits.get(chosen) if chosen else None
    test_cf = None
    test_fits: dict[str, FittedCollaborative] = {}
    if fits:
        test_matrix = history_matrix(test_history, n_items=inter.n_items)
        if search:
            for name in fits:
                test_fits[name] = algorithms.fit_collaborative(
                    name=name, matrix=test_matrix, params={**params, **chosen_params[name]}
                )
        else:
            # Only the customers evaluated (test and gate) need their factors folded in (the final
            # refit does all of them).
            scored = np.concatenate([prepared.test.users, prepared.gate.users])
            test_fits = {
                name: algorithms.fold_in(fitted=fit, matrix=test_matrix, users=scored) for name, fit in fits.items()
            }
    if cf_fit is not None and chosen is not None:
        test_cf = test_fits[chosen].scorer
    test_bundle = before_test.bundle(
        half_life=half_life,
        popularity_half_life=pop_half_life,
        blend=blend,
        collaborative=test_cf,
        catalog=prepared.catalog,
        timeline=True,
        reranker=reranker,
    )
    _step(bar, "test bundle")
    fitted = Fitted(
        model=model,
        params=dict(params),
        blend=blend,
        half_life=half_life,
        popularity_half_life=pop_half_life,
        collaborative_name=chosen,
        collaborative=cf_fit,
        collaborative_params=chosen_params.get(chosen, {}) if chosen else {},
        test_bundle=test_bundle,
        reranker=reranker,
        choice=choice,
        fit_seconds=time.perf_counter() - start,
    )
    fitted.choice["all_fits"] = test_fits  # the candidates as tested, kept for the baseline table
    return fitted


def evaluate_on_test(*, fitted: Fitted, prepared: Prepared) -> dict[str, dict[str, float]]:
    """The model and the baselines (and every fitted collaborative candidate) on the same test customers."""
    candidates = test_candidates(fitted=fitted, prepared=prepared)
    return evaluate(candidates=candidates, holdout=prepared.test, ks=KS, item_share=prepared.item_share)


def test_candidates(*, fitted: Fitted, prepared: Prepared) -> list[Candidate]:
    """What the test compares: the model first, the baselines, every collaborative candidate it fitted alone."""
    tb = fitted.test_bundle
    candidates = [Candidate(fitted.label, tb, fitted.blend)]
    candidates += [
        Candidate(name, tb, baseline_blend(name), contexts)
        for name, contexts in (("popularity", ("home", "discover")), ("frequency", ("home", "buy-again")))
        if name != fitted.label
    ]
    for name, cf in fitted.choice.get("all_fits", {}).items():
        if fitted.model != "hybrid" and name == fitted.collaborative_name:
            continue
        # The chosen one shares the model's bundle: its signals are computed once per batch for both.
        bundle = tb if name == fitted.collaborative_name else replace(tb, collaborative=cf.scorer)
        candidates.append(Candidate(name, bundle, baseline_blend(name), ("home", "discover")))
    return candidates


def refit_all(*, fitted: Fitted, prepared: Prepared, refit: str, log: Log) -> tuple[ModelBundle, str]:
    """The bundle to register: refit on all lines (what production needs); returns (bundle, refit mode used)."""
    inter = prepared.interactions
    cf_fit = fitted.collaborative
    mode = refit
    if mode == "auto":
        # ALS customers folded in on all data keep `reco train` within budget on large data; the
        # item side then misses only each customer's last two baskets.
        big = inter.n_lines > 2 * SEARCH_MAX_PAIRS
        mode = "fold-in" if big and fitted.collaborative_name == "als" else "full"
    if mode == "none":
        return fitted.test_bundle, mode
    lines = prepared.lines
    history = lines.history(fitted.half_life)
    scorer = None
    if cf_fit is not None and fitted.collaborative_name is not None:
        matrix = history_matrix(history, n_items=inter.n_items)
        if mode == "full":
            cf_fit = algorithms.fit_collaborative(
                name=fitted.collaborative_name, matrix=matrix, params={**fitted.params, **fitted.collaborative_params}
            )
            log(f"  refit {fitted.collaborative_name} on all data in {cf_fit.seconds:.1f} s")
            scorer = cf_fit.scorer
        else:
            seen = np.bincount(inter.user[prepared.split.train], minlength=inter.n_users) > 0
            scorer = algorithms.fold_in(fitted=cf_fit, matrix=matrix, seen=seen).scorer
    bundle = lines.bundle(
        half_life=fitted.half_life,
        popularity_half_life=fitted.popularity_half_life,
        blend=fitted.blend,
        collaborative=scorer,
        catalog=prepared.catalog,
        copurchase=True,
        reranker=fitted.reranker,
    )
    return bundle, mode
