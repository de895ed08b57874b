"""`reco train` orchestration: load → split → fit and tune on validation → evaluate on test beside the
baselines → champion gate (the champion's configuration refit on the same split) → refit on all
data → MLflow run, pyfunc model, registered version, alias.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from training import algorithms
from training.algorithms.base import DEFAULTS, FittedCollaborative, blas_single_thread
from training.algorithms.blends import HYBRID_START, baseline_blend
from training.algorithms.popularity import (
    PopularityLines,
    popularity,
    popularity_events,
    popularity_lines,
    popularity_timeline,
)
from training.algorithms.repurchase import BasketEvents, basket_events, baskets_of, build_history, history_matrix
from training.core import columns as col
from training.core.blend import Blend
from training.core.bundle import ModelBundle
from training.core.collaborative import Collaborative
from training.core.errors import RecoError
from training.core.history import History, PopularityTimeline
from training.evaluate import Candidate, Reuse, evaluate
from training.interactions import Interactions, build_interactions
from training.metrics import KS, PRIMARY_METRIC, TABLE_METRICS, comparison_table
from training.registry import CHALLENGER
from training.sorting import run_starts
from training.split import TUNE_USERS, Holdout, Split, chronological_split, validation_and_test
from training.tuning import HALF_LIVES, best_of, fit_candidate, score_of, tune_blend, tune_discover, tune_recency

PROMOTE_CHOICES = ("auto", "always", "never")
REFIT_CHOICES = ("auto", "full", "fold-in", "none")
DEFAULT_EVAL_USERS = 10_000
# Candidates the hybrid chooses its discovery part from, in order of preference on ties.
HYBRID_CANDIDATES = ("als", "knn-bm25", "ease")
# The model search fits every candidate; above this many (customer, item) pairs it keeps ALS only,
# fitted in a thread beside the recency tuning, so that `reco train` stays near the time of one raw
# implicit fit (logged as `candidates`; README, Performance).
SEARCH_MAX_PAIRS = 2_000_000
EASE_SEARCH_MAX_ITEMS = 8_000
Log = Callable[[str], None]


@dataclass(frozen=True)
class Catalog:
    """Per-item catalog facts aligned with the interactions' item index."""

    in_stock: np.ndarray
    item_category: np.ndarray
    categories: np.ndarray


@dataclass(frozen=True)
class Prepared:
    """Everything derived from the input files that every fit shares."""

    interactions: Interactions
    split: Split
    catalog: Catalog
    validation: Holdout
    tuning: Holdout  # the validation customers the hybrid's weights are tuned on (a subsample)
    test: Holdout
    item_share: np.ndarray  # share of training customers who bought each item (novelty)
    events: BasketEvents  # one per (basket, item) over all lines; each split takes its baskets' events
    popular: PopularityLines  # every split's popularity events, by mask
    train: Lines  # the training split's lines (their histories and popularity are cached on them)
    lines: Lines  # every line, for the refit
    held_out_customers: int = 0  # test customers whose last basket was moved to validation

    def summary(self) -> dict[str, int]:
        """Split sizes as used (after any held-out customers moved from test to validation), for logging."""
        return {
            **self.split.summary(),
            "validation_customers": len(self.validation.users),
            "test_customers": len(self.test.users),
            "held_out_customers": self.held_out_customers,
        }


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
    known = {*DEFAULTS, "candidates", "refit", "eval_users", "half_life", "popularity_half_life"}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RecoError(f"--param {pair!r} is not KEY=VALUE.")
        if key not in known:
            raise RecoError(f"Unknown --param {key!r}: use one of {', '.join(sorted(known))}.")
        params[key] = value
    return params


def prepare(*, purchases: pa.Table, catalog: pa.Table | None, eval_users: int) -> Prepared:
    """Encode, split and align the catalog; the holdouts are sampled once so every fit uses the same customers."""
    return prepare_interactions(interactions=encode(purchases, catalog), catalog=catalog, eval_users=eval_users)


def encode(purchases: pa.Table, catalog: pa.Table | None) -> Interactions:
    """The purchase lines as arrays; the catalog's items join the item id space."""
    catalog_ids = None if catalog is None else np.asarray(catalog.column(col.ITEM_ID).to_pylist(), dtype=str)
    return build_interactions(purchases=purchases, catalog_item_ids=catalog_ids)


def prepare_interactions(*, interactions: Interactions, catalog: pa.Table | None, eval_users: int) -> Prepared:
    """`prepare` of lines already encoded (the caller can let the Arrow table go first)."""
    # The events, the popularity lines and the split are independent, and numpy's sorts release the
    # GIL: on two cores they run side by side.
    with ThreadPoolExecutor(2, thread_name_prefix="prepare") as pool:
        events_future = pool.submit(basket_events, interactions)
        popular_future = pool.submit(popularity_lines, interactions)
        split = chronological_split(interactions)
        if len(split.test_holdout.users) == 0:
            raise RecoError(
                "No customer has two baskets: there is nothing to evaluate on (need order_id or several days)."
            )
        validation, test, held_out = validation_and_test(split)
        events, popular = events_future.result(), popular_future.result()
    train = _lines(interactions, split.train, events=events, popular=popular)
    # Share of the training customers who bought each item (novelty): the training events' pairs.
    users = train.events.keys // interactions.n_items
    n_customers = max(len(run_starts(users)), 1)
    item_share = np.bincount(train.events.keys % interactions.n_items, minlength=interactions.n_items) / n_customers
    return Prepared(
        interactions=interactions,
        split=split,
        catalog=_align_catalog(catalog=catalog, item_ids=interactions.item_ids),
        validation=validation.sample(max_users=eval_users, seed=1),
        tuning=validation.sample(max_users=min(eval_users, TUNE_USERS), seed=1),
        test=test.sample(max_users=eval_users, seed=2),
        item_share=item_share.astype(np.float64),
        events=events,
        popular=popular,
        train=train,
        lines=_lines(interactions, None, events=events, popular=popular),
        held_out_customers=held_out,
    )


def _align_catalog(*, catalog: pa.Table | None, item_ids: np.ndarray) -> Catalog:
    """In-stock flags and category codes per item index (items missing from the catalog: in stock, no category)."""
    n = len(item_ids)
    in_stock = np.ones(n, dtype=bool)
    item_category = np.full(n, -1, dtype=np.int32)
    categories = np.array([], dtype=str)
    if catalog is not None and catalog.num_rows:
        index = {item: i for i, item in enumerate(item_ids.tolist())}
        rows = np.array([index.get(i, -1) for i in catalog.column(col.ITEM_ID).to_pylist()])
        ok = rows >= 0
        if col.IN_STOCK in catalog.column_names:
            stock = np.array([v is not False for v in catalog.column(col.IN_STOCK).to_pylist()])
            in_stock[rows[ok]] = stock[ok]
        if col.CATEGORY in catalog.column_names:
            names = np.array([v or "" for v in catalog.column(col.CATEGORY).to_pylist()], dtype=str)
            categories, codes = np.unique(names, return_inverse=True)
            item_category[rows[ok]] = codes[ok]
    return Catalog(in_stock=in_stock, item_category=item_category, categories=categories)


class Lines:
    """One set of purchase lines (a split, or all of them) and what every bundle built on it shares:
    the half-life-independent events, and per popularity half-life the popularity and its timeline,
    each computed once (tuning builds a bundle for every candidate half-life and blend).

    The lines are those of `interactions` where `keep` is true (all when None). Given the events of
    exactly those lines and `popular` (every line's PopularityLines), nothing is sorted again."""

    def __init__(
        self,
        interactions: Interactions,
        *,
        keep: np.ndarray | None = None,
        events: BasketEvents | None = None,
        popular: PopularityLines | None = None,
    ) -> None:
        self.interactions = interactions
        self.keep = keep
        latest = float(np.max(interactions.day, where=True if keep is None else keep, initial=-np.inf))
        self.reference_day = latest if math.isfinite(latest) else 0.0  # 0 without lines
        self._events = events
        self._popular = popular
        self._popularity_events: tuple[np.ndarray, np.ndarray] | None = None
        self._popularity: dict[float, np.ndarray] = {}
        self._history: tuple[float, History] | None = None  # the last one: tuning asks for it again and again
        self._timelines: dict[float, PopularityTimeline] = {}

    def _subset(self) -> Interactions:
        return self.interactions if self.keep is None else self.interactions.subset(self.keep)

    @property
    def events(self) -> BasketEvents:
        if self._events is None:
            self._events = basket_events(self._subset())
        return self._events

    @property
    def popularity_events(self) -> tuple[np.ndarray, np.ndarray]:
        if self._popularity_events is None:
            if self._popular is not None:
                self._popularity_events = self._popular.events(self.keep)
            else:
                self._popularity_events = popularity_events(self._subset())
        return self._popularity_events

    def history(self, half_life: float) -> History:
        """The customers' histories as of the last line."""
        # Read once: the refit's thread and the champion gate's fit may ask for two half-lives at once.
        cached = self._history
        if cached is None or cached[0] != half_life:
            history = build_history(
                interactions=self.interactions,
                reference_day=self.reference_day,
                half_life=half_life,
                events=self.events,
            )
            cached = self._history = (half_life, history)
        return cached[1]

    def popularity(self, half_life: float) -> np.ndarray:
        if half_life not in self._popularity:
            self._popularity[half_life] = popularity(
                interactions=self.interactions,
                reference_day=self.reference_day,
                half_life=half_life,
                events=self.popularity_events,
            )
        return self._popularity[half_life]

    def timeline(self, half_life: float) -> PopularityTimeline:
        if half_life not in self._timelines:
            self._timelines[half_life] = popularity_timeline(
                interactions=self.interactions, half_life=half_life, events=self.popularity_events
            )
        return self._timelines[half_life]

    def bundle(
        self,
        *,
        half_life: float,
        popularity_half_life: float,
        blend: Blend,
        collaborative: Collaborative | None,
        catalog: Catalog,
        timeline: bool = False,
    ) -> ModelBundle:
        """A bundle of these lines; `timeline` adds popularity as of past days, for evaluation on held-out baskets."""
        interactions = self.interactions
        return ModelBundle(
            user_ids=interactions.user_ids,
            item_ids=interactions.item_ids,
            history=self.history(half_life),
            popularity=self.popularity(popularity_half_life),
            in_stock=catalog.in_stock,
            item_category=catalog.item_category,
            categories=catalog.categories,
            blend=blend,
            collaborative=collaborative,
            popularity_timeline=self.timeline(popularity_half_life) if timeline else None,
        )


def _lines(
    interactions: Interactions, keep: np.ndarray | None, *, events: BasketEvents, popular: PopularityLines
) -> Lines:
    """The lines where `keep` is true (all when None), from every line's events and popularity lines:
    splits hold whole baskets, so their events are taken by mask, not computed again."""
    kept = events if keep is None else events.of_baskets(baskets_of(interactions, keep))
    return Lines(interactions, keep=keep, events=kept, popular=popular)


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
    with blas_single_thread():
        return _fit_configuration(model=model, params=params, prepared=prepared, log=log)


def _fit_configuration(*, model: str, params: Mapping[str, Any], prepared: Prepared, log: Log) -> Fitted:
    start = time.perf_counter()
    inter = prepared.interactions
    split = prepared.split
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
    # test-time history below: implicit's loops release the GIL.
    matrix = history_matrix(train_lines.history(float(params.get("half_life", HALF_LIVES[0]))), n_items=inter.n_items)
    names = candidates_for(model=model, params=params, interactions=inter, pairs=matrix.nnz)
    search = matrix.nnz <= SEARCH_MAX_PAIRS
    fitting = None
    if names and not search:
        pool = ThreadPoolExecutor(1, thread_name_prefix="fit")
        fitting = pool.submit(
            lambda: {n: algorithms.fit_collaborative(name=n, matrix=matrix, params=params) for n in names}
        )
        pool.shutdown(wait=False)

    choice: dict[str, Any] = {}
    # 1. Recency of the customer's own purchases and of popularity, on validation.
    half_life, pop_half_life, recency_scores = tune_recency(bundle=bundle, holdout=val, params=params)
    choice.update(recency_scores)
    log(f"  recency: own purchases half-life {half_life} d, popularity half-life {pop_half_life} d")

    # What comes after the fit but needs no collaborative part, computed while the fit runs: the
    # test-time history (up to each customer's test basket) and popularity, and those of all lines
    # for the refit.
    before_test = _lines(inter, split.train | split.validation, events=prepared.events, popular=prepared.popular)
    test_history = before_test.history(half_life)
    before_test.timeline(pop_half_life)
    if fitting is not None:
        prepared.lines.history(half_life)
        prepared.lines.popularity(pop_half_life)

    # 2. Collaborative candidates fitted on the training split; blends tuned on validation.
    fits: dict[str, FittedCollaborative] = {}
    chosen_params: dict[str, dict[str, Any]] = {}
    scores: dict[float, float]  # validation score per regularization tried (ALS's search)
    for name in names:
        if fitting is not None:
            fits[name], chosen_params[name], scores = fitting.result()[name], {}, {}
        else:
            fits[name], chosen_params[name], scores = fit_candidate(
                name=name,
                matrix=matrix,
                params=params,
                search=search,
                validation_bundle=lambda cf: bundle(half_life, pop_half_life, baseline_blend("als"), cf),
                holdout=val,
            )
        if scores:
            choice[f"{name}_discover_scores"] = {str(k): v for k, v in scores.items()}
            log(f"  {name} validation discover/ndcg_at_10 by regularization: {_rounded(scores)}")
        chosen_text = "".join(f" {k}={v}" for k, v in chosen_params[name].items())
        log(f"  fitted {name}{chosen_text} on the training split in {fits[name].seconds:.1f} s")
    if model in algorithms.BASELINES:
        blend, chosen = baseline_blend(model), None
    elif model != "hybrid":
        blend, chosen = baseline_blend(model), model
    else:
        per_candidate: dict[str, tuple[Blend, float]] = {}
        tune = prepared.tuning
        best: tuple[ModelBundle, Reuse] | None = None  # the best so far: its signals serve the discover mix
        for name, fitted_cf in fits.items():
            b, reuse = bundle(half_life, pop_half_life, HYBRID_START, fitted_cf.scorer), Reuse(tune)
            per_candidate[name] = tune_blend(bundle=b, holdout=tune, reuse=reuse)
            log(
                f"  validation {PRIMARY_METRIC} hybrid({name}) = {per_candidate[name][1]:.4f}"
                f" with {per_candidate[name][0]}"
            )
            if best_of({n: score for n, (_, score) in per_candidate.items()}) == name:
                best = (b, reuse)
        chosen = best_of({name: score for name, (_, score) in per_candidate.items()})
        assert best is not None
        blend, discover_scores = tune_discover(
            bundle=best[0], holdout=tune, blend=per_candidate[chosen][0], reuse=best[1]
        )
        del best, reuse
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
    if chosen and chosen_params.get(chosen):
        choice["chosen_params"] = chosen_params[chosen]
    # 3. The test-time bundle; ALS customers folded in.
    cf_fit = fits.get(chosen) if chosen else None
    test_cf = None
    if cf_fit is not None:
        # Only the customers evaluated need their factors folded in (the final refit does all of them).
        test_matrix = history_matrix(test_history, n_items=inter.n_items)
        test_cf = algorithms.fold_in(fitted=cf_fit, matrix=test_matrix, users=prepared.test.users).scorer
    test_bundle = before_test.bundle(
        half_life=half_life,
        popularity_half_life=pop_half_life,
        blend=blend,
        collaborative=test_cf,
        catalog=prepared.catalog,
        timeline=True,
    )
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
        choice=choice,
        fit_seconds=time.perf_counter() - start,
    )
    fitted.choice["all_fits"] = {name: f for name, f in fits.items()}  # kept for the baseline table
    return fitted


def evaluate_on_test(*, fitted: Fitted, prepared: Prepared) -> dict[str, dict[str, float]]:
    """The model and the baselines (and every fitted collaborative candidate) on the same test customers."""
    tb = fitted.test_bundle
    candidates = [Candidate(fitted.label, tb, fitted.blend)]
    candidates += [
        Candidate(name, tb, baseline_blend(name), contexts)
        for name, contexts in (("popularity", ("home", "discover")), ("frequency", ("home", "buy-again")))
        if name != fitted.label
    ]
    before_matrix = history_matrix(tb.history, n_items=tb.n_items)
    for name, cf in fitted.choice.get("all_fits", {}).items():
        if fitted.model != "hybrid" and name == fitted.collaborative_name:
            continue
        if name == fitted.collaborative_name:
            bundle = tb  # the same bundle: its signals are computed once per batch for both candidates
        else:
            scorer = algorithms.fold_in(fitted=cf, matrix=before_matrix, users=prepared.test.users).scorer
            bundle = replace(tb, collaborative=scorer)
        candidates.append(Candidate(name, bundle, baseline_blend(name), ("home", "discover")))
    return evaluate(candidates=candidates, holdout=prepared.test, ks=KS, item_share=prepared.item_share)


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
    )
    return bundle, mode


@dataclass
class TrainResult:
    """What `reco train` prints as its last line (plus the tables for humans)."""

    run_id: str
    model_uri: str
    version: str | None
    metrics: dict[str, float]
    promoted: bool
    decision: dict[str, Any]
    table: str

    def summary(self) -> dict[str, Any]:
        """The contract's JSON summary."""
        return {
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "version": self.version,
            "metrics": self.metrics,
            "promoted": self.promoted,
        }


HEADLINE = (
    "home/ndcg_at_10",
    "home/recall_at_10",
    "home/precision_at_10",
    "home/map_at_10",
    "home/hit_rate_at_10",
    "home/ndcg_at_20",
    "buy-again/ndcg_at_10",
    "discover/ndcg_at_10",
    "discover/recall_at_20",
)


def train(
    *,
    purchases_path: Path,
    catalog_path: Path | None,
    model: str = algorithms.DEFAULT_MODEL,
    params: Mapping[str, str] | None = None,
    registered_name: str | None = None,
    promote: str = "auto",
    settings: Any = None,
    log: Log = print,
) -> TrainResult:
    """The whole `reco train`: see the module docstring."""
    from training.data.load import load_training_inputs
    from training.settings import load_settings

    total_start = time.perf_counter()
    settings = settings or load_settings()
    algorithms.check_model(model)
    params = dict(params or {})
    if promote not in PROMOTE_CHOICES:
        raise RecoError(f"--promote must be one of {', '.join(PROMOTE_CHOICES)}.")
    refit = str(params.get("refit", "auto"))
    if refit not in REFIT_CHOICES:
        raise RecoError(f"refit must be one of {', '.join(REFIT_CHOICES)}.")
    name = registered_name or settings.registered_name
    timings: dict[str, float] = {}

    t = time.perf_counter()
    purchases, purchase_report, catalog, catalog_report = load_training_inputs(purchases_path, catalog_path)
    interactions, n_lines = encode(purchases, catalog), purchases.num_rows
    # The lines live on as numpy arrays: the Arrow table's memory goes to the split's arrays instead of
    # new pages (each gigabyte the process touches first costs it about a second of system time here).
    del purchases
    prepared = prepare_interactions(
        interactions=interactions, catalog=catalog, eval_users=int(params.get("eval_users", DEFAULT_EVAL_USERS))
    )
    timings["load_seconds"] = time.perf_counter() - t
    del interactions, catalog
    log(
        f"loaded {n_lines:,} lines: {prepared.interactions.n_users:,} customers, "
        f"{prepared.interactions.n_items:,} items; split {prepared.summary()}"
    )

    # MLflow's import and store (a new SQLite registry first creates its tables) take seconds of
    # mostly pure Python: a thread does them, and the input files' digests, while the models fit.
    # Not while the data loads: holding the GIL, it made the main thread wait for it after every
    # short Arrow and numpy step (load and split 7.7-11.3 s against 15.1-20.1 s, alternating runs).
    registry_pool = ThreadPoolExecutor(1, thread_name_prefix="registry")
    champion_future = registry_pool.submit(_current_champion, settings=settings, name=name)
    inputs_future = registry_pool.submit(
        lambda: [(_dataset(p), c) for p, c in ((purchases_path, "training"), (catalog_path, "catalog")) if p]
    )
    registry_pool.shutdown(wait=False)

    t = time.perf_counter()
    fitted = fit_configuration(model=model, params=params, prepared=prepared, log=log)
    timings["fit_seconds"] = time.perf_counter() - t

    # The bundle to register depends on the fitted configuration only, not on the test: a thread
    # refits it on all lines and logs it as the run's model while the test and the gate run.
    # Registration and aliases wait for the gate.
    blas = blas_single_thread()  # one limit around both threads: each sets and restores its own
    publish_pool = ThreadPoolExecutor(1, thread_name_prefix="publish")
    publishing = publish_pool.submit(
        _publish,
        settings=settings,
        name=name,
        fitted=fitted,
        prepared=prepared,
        refit=refit,
        promote=promote,
        inputs=inputs_future,
        log=log,
    )
    publish_pool.shutdown(wait=False)

    t = time.perf_counter()
    results = evaluate_on_test(fitted=fitted, prepared=prepared)
    timings["evaluate_seconds"] = time.perf_counter() - t
    model_metrics = results[fitted.label]
    score = model_metrics.get(PRIMARY_METRIC, float("nan"))
    log(
        f"test {PRIMARY_METRIC}: {fitted.label} {score:.4f}, popularity {score_of(results, 'popularity'):.4f}, "
        f"frequency {score_of(results, 'frequency'):.4f}"
    )

    # Champion gate: the champion's configuration refit on this very split, scored on the same customers.
    t = time.perf_counter()
    current = champion_future.result()
    decision: dict[str, Any] = {"primary_metric": PRIMARY_METRIC, "new_score": score, "mode": promote}
    if current is None:
        decision.update(champion_version=None, champion_score=None, reason="no champion yet")
        promoted = promote != "never"
    else:
        decision["champion_version"] = current["version"]
        same = current["model"] == model and current["params"] == params
        if same:
            champion_score = score
        elif current["model"] in algorithms.MODELS:
            champion_fit = fit_configuration(
                model=current["model"], params=current["params"], prepared=prepared, log=log
            )
            champion_res = evaluate(
                candidates=[Candidate("champion", champion_fit.test_bundle, champion_fit.blend, ("home",))],
                holdout=prepared.test,
                ks=(10,),
                detail=False,
            )
            champion_score = score_of(champion_res, "champion")
        else:
            champion_score = -math.inf
        decision["champion_score"] = champion_score
        better = score > champion_score + 1e-9
        decision["reason"] = (
            "same configuration as the champion"
            if same
            else ("beats the champion" if better else "does not beat the champion")
        )
        promoted = promote == "always" or (promote == "auto" and better)
    if promote == "always":
        decision["reason"] = f"--promote always ({decision['reason']})"
    elif promote == "never":
        decision["reason"] = f"--promote never ({decision['reason']})"
    timings["gate_seconds"] = time.perf_counter() - t
    log(f"gate: {decision['reason']} (new {score:.4f} vs champion {decision.get('champion_score')})")

    t = time.perf_counter()
    published = publishing.result()
    blas.restore_original_limits()
    timings["publish_wait_seconds"] = time.perf_counter() - t
    timings["refit_seconds"] = published.refit_seconds
    timings["model_log_seconds"] = published.log_seconds

    t = time.perf_counter()
    result = _log_run(
        settings=settings,
        name=name,
        fitted=fitted,
        published=published,
        results=results,
        decision=decision,
        promoted=promoted,
        reports=[purchase_report, *([catalog_report] if catalog_report else [])],
        prepared=prepared,
        timings=timings,
        total_start=total_start,
    )
    timings["log_seconds"] = time.perf_counter() - t
    log(f"timings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    log(f"logged in {timings['log_seconds']:.1f} s; total {time.perf_counter() - total_start:.1f} s")
    return result


def _current_champion(*, settings: Any, name: str) -> dict[str, Any] | None:
    """The champion (see registry.champion), with what logging the run imports loaded too, and MLflow's
    map of installed packages built (it checks the model's requirements against it when the model is
    logged: 0.2-0.6 s of the publishing thread otherwise)."""
    import mlflow.pyfunc  # noqa: F401
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    from training.registry import publishing as registry

    warn_dependency_requirement_mismatches(["numpy"])

    return registry.champion(settings=settings, name=name)


@dataclass(frozen=True)
class Published:
    """What `_publish` leaves for `_log_run`: the refit bundle, logged as its run's model, not registered yet."""

    bundle: ModelBundle
    refit: str  # the refit mode used
    run_id: str
    model_uri: str
    refit_seconds: float
    log_seconds: float


def _publish(
    *,
    settings: Any,
    name: str,
    fitted: Fitted,
    prepared: Prepared,
    refit: str,
    promote: str,
    inputs: Future[list[tuple[Any, str]]],
    log: Log,
) -> Published:
    """Refit on all lines, then open the MLflow run and log what the test does not decide: tags,
    parameters, datasets and the pyfunc model (signature and input example; checked by MLflow)."""
    import mlflow

    from training.registry import publishing as registry
    from training.registry.bundle_file import save_bundle

    start = time.perf_counter()
    final, refit_used = refit_all(fitted=fitted, prepared=prepared, refit=refit, log=log)
    refit_seconds = time.perf_counter() - start
    registry.client(settings=settings)
    registry.use_experiment(settings=settings, name="reco")
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags({"reco.model": fitted.model, "reco.params": json.dumps(fitted.params, sort_keys=True)})
        mlflow.log_params(
            {
                "model": fitted.model,
                "chosen_collaborative": fitted.collaborative_name or "",
                **{f"chosen_{k}": v for k, v in fitted.collaborative_params.items()},
                "half_life_days": fitted.half_life,
                "popularity_half_life_days": fitted.popularity_half_life,
                "refit": refit_used,
                "promote": promote,
                **{f"blend_{k}": v for k, v in fitted.blend.to_dict().items()},
                **{f"param_{k}": v for k, v in fitted.params.items()},
                **prepared.summary(),
                "eval_customers": len(prepared.test.users),
            }
        )
        for dataset, context in inputs.result():
            mlflow.log_input(dataset, context=context)
        final.config.update(
            model=fitted.model,
            label=fitted.label,
            params=fitted.params,
            run_id=run.info.run_id,
            registered_name=name,
        )
        bundle_dir = save_bundle(final, path=Path(tmp) / "bundle")
        info = registry.log_pyfunc(bundle_dir=bundle_dir, example_users=final.user_ids[:2].tolist())
    return Published(
        final, refit_used, run.info.run_id, info.model_uri, refit_seconds, time.perf_counter() - start - refit_seconds
    )


def _log_run(
    *,
    settings: Any,
    name: str,
    fitted: Fitted,
    published: Published,
    results: dict[str, dict[str, float]],
    decision: dict[str, Any],
    promoted: bool,
    reports: list[Any],
    prepared: Prepared,
    timings: dict[str, float],
    total_start: float,
) -> TrainResult:
    """The rest of the run `_publish` opened: metrics, reports, the evaluation, the registered version and its alias."""
    import mlflow

    from training.registry import publishing as registry

    table = comparison_table(results, metrics=TABLE_METRICS)
    run_id = published.run_id
    with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as tmp:
        metrics = {k: v for k, v in results[fitted.label].items() if math.isfinite(v)}
        mlflow.log_metrics(metrics)
        for other, values in results.items():
            if other != fitted.label:
                mlflow.log_metrics({f"baseline/{other}/{k}": v for k, v in values.items() if math.isfinite(v)})
        for key, value in fitted.choice.items():
            if key == "candidates":
                mlflow.log_metrics(
                    {f"validation/hybrid_{c}/{PRIMARY_METRIC}": v["validation_score"] for c, v in value.items()}
                )
            elif key.endswith("_discover_scores"):  # e.g. ALS by regularization
                model_name = key.removesuffix("_discover_scores")
                mlflow.log_metrics(
                    {
                        f"validation/{model_name}_regularization_{r}/discover/ndcg_at_10": v
                        for r, v in value.items()
                        if math.isfinite(v)
                    }
                )
        mlflow.log_metrics({f"timing/{k}": v for k, v in timings.items()})
        out = Path(tmp)
        for report in reports:
            report.write_json(out / f"validation_{report.kind}.json")
            mlflow.log_artifact(str(out / f"validation_{report.kind}.json"), artifact_path="data_validation")
        choice = {k: v for k, v in fitted.choice.items() if k != "all_fits"}
        evaluation = {"primary_metric": PRIMARY_METRIC, "results": results, "choice": choice, "decision": decision}
        (out / "evaluation.json").write_text(json.dumps(evaluation, indent=2, default=str) + "\n")
        (out / "evaluation.md").write_text(
            f"# Evaluation on each customer's last basket ({len(prepared.test.users):,} customers)\n\n{table}\n\n"
            f"Chosen: {fitted.label}, blend {fitted.blend.to_dict()}\n\nGate: {json.dumps(decision, default=str)}\n"
        )
        mlflow.log_artifact(str(out / "evaluation.json"), artifact_path="evaluation")
        mlflow.log_artifact(str(out / "evaluation.md"), artifact_path="evaluation")
        version = registry.register(settings=settings, name=name, model_uri=published.model_uri)
        client = registry.client(settings=settings)
        client.set_model_version_tag(name, version, "reco.model", fitted.model)
        client.set_model_version_tag(name, version, "reco.params", json.dumps(fitted.params, sort_keys=True))
        client.set_model_version_tag(name, version, "reco.score", f"{decision['new_score']:.6f}")
        if promoted:
            registry.promote(settings=settings, name=name, version=version, reason=decision["reason"])
        else:
            registry.set_alias(settings=settings, name=name, alias=CHALLENGER, version=version)
        mlflow.set_tags({"gate.decision": "champion" if promoted else "challenger", "gate.reason": decision["reason"]})
        mlflow.log_metrics(
            {
                "gate/new_score": float(decision["new_score"]),
                **(
                    {"gate/champion_score": float(decision["champion_score"])}
                    if decision.get("champion_score") is not None and math.isfinite(decision["champion_score"])
                    else {}
                ),
            }
        )
        mlflow.log_metric("timing/total_seconds", time.perf_counter() - total_start)
    headline = {k: round(v, 6) for k, v in results[fitted.label].items() if k in HEADLINE}
    headline.update({f"popularity/{k}": round(v, 6) for k, v in results["popularity"].items() if k in HEADLINE})
    headline.update({f"frequency/{k}": round(v, 6) for k, v in results["frequency"].items() if k in HEADLINE})
    return TrainResult(run_id, f"models:/{name}/{version}", version, headline, promoted, decision, table)


def _dataset(path: Path) -> Any:
    """An MLflow dataset record for a file: its source and a content digest (streamed, not loaded)."""
    import hashlib

    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    source = LocalArtifactDatasetSource(str(path.resolve()))
    return MetaDataset(source=source, name=path.name, digest=digest.hexdigest()[:16])  # type: ignore[abstract]
