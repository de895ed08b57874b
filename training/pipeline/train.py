"""`reco train`: check the tracking URI → load → split (test, gate and validation customers) → fit and
tune on validation → evaluate on test beside the baselines → champion gate (the champion as served
and its configuration refit, on the gate customers) → refit on all data → MLflow run, pyfunc model,
registered version, description, alias.

The steps live in prepare.py, fit.py, gating.py (with training.gate) and record.py; this module runs them in order
and starts two threads of its own (each explained where it starts): the registry's lookups while the
models fit, and the refit and the model's logging while the test and the gate run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training import algorithms
from training.algorithms.base import blas_single_thread
from training.core.errors import RecoError
from training.data.load import DEFAULT_MAX_REJECTED
from training.gate import PROMOTE_CHOICES
from training.metrics import PRIMARY_METRIC, TABLE_METRICS, comparison_table
from training.pipeline.fit import (
    DEFAULT_EVAL_USERS,
    REFIT_CHOICES,
    Log,
    evaluate_on_test,
    fit_configuration,
)
from training.pipeline.gating import run_gate
from training.pipeline.prepare import load_prepared
from training.pipeline.record import current_champion, input_dataset, log_run, publish
from training.registry.cleanup import on_stop, sweep
from training.tuning import score_of


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
    max_rejected: float = DEFAULT_MAX_REJECTED,
) -> TrainResult:
    """The whole `reco train`: see the module docstring. Returns what the command prints last.
    Refuses (InvalidPurchases, before any run is logged) purchases that cannot make a model: no
    row accepted, one customer, more than `max_rejected` of the rows rejected."""
    from training.registry.tracking import check_tracking_uri
    from training.settings import load_settings

    total_start = time.perf_counter()
    settings = settings or load_settings()
    check_tracking_uri(settings.tracking_uri)
    algorithms.check_model(model)
    params = dict(params or {})
    if promote not in PROMOTE_CHOICES:
        raise RecoError(f"--promote must be one of {', '.join(PROMOTE_CHOICES)}.")
    refit = str(params.get("refit", "auto"))
    if refit not in REFIT_CHOICES:
        raise RecoError(f"refit must be one of {', '.join(REFIT_CHOICES)}.")
    name = registered_name or settings.registered_name

    restore_signals = on_stop(settings=settings, name=name, log=log)  # a stopped run ends KILLED, not RUNNING
    try:
        return _train(
            purchases_path=purchases_path,
            catalog_path=catalog_path,
            model=model,
            params=params,
            name=name,
            promote=promote,
            refit=refit,
            settings=settings,
            log=log,
            total_start=total_start,
            max_rejected=max_rejected,
        )
    finally:
        restore_signals()


def _train(
    *,
    purchases_path: Path,
    catalog_path: Path | None,
    model: str,
    params: dict[str, str],
    name: str,
    promote: str,
    refit: str,
    settings: Any,
    log: Log,
    total_start: float,
    max_rejected: float,
) -> TrainResult:
    timings: dict[str, float] = {}
    t = time.perf_counter()
    eval_users = int(params.get("eval_users", DEFAULT_EVAL_USERS))
    prepared, reports, n_lines = load_prepared(
        purchases=purchases_path, catalog=catalog_path, eval_users=eval_users, max_rejected=max_rejected, log=log
    )
    timings["load_seconds"] = time.perf_counter() - t
    log(
        f"loaded {n_lines:,} lines: {prepared.interactions.n_users:,} customers, "
        f"{prepared.interactions.n_items:,} items; split {prepared.summary()}"
    )

    # MLflow's import and store (a new SQLite registry first creates its tables) take seconds of
    # mostly pure Python: a thread does them, and the input files' digests, while the models fit.
    # Not while the data loads: holding the GIL, it made the main thread wait for it after every
    # short Arrow and numpy step (load and split 7.7-11.3 s against 15.1-20.1 s, alternating runs).
    registry_pool = ThreadPoolExecutor(1, thread_name_prefix="registry")
    # First what a killed earlier run left (runs RUNNING, versions without an alias); the same
    # thread then logs this run, so the sweep is over before anything is registered.
    sweeping = registry_pool.submit(sweep, settings=settings, experiment=settings.experiment, name=name, log=log)
    champion_future = registry_pool.submit(current_champion, settings=settings, name=name)
    inputs_future = registry_pool.submit(
        lambda: [(input_dataset(p), c) for p, c in ((purchases_path, "training"), (catalog_path, "catalog")) if p]
    )
    registry_pool.shutdown(wait=False)

    t = time.perf_counter()
    fitted = fit_configuration(model=model, params=params, prepared=prepared, log=log)
    timings["fit_seconds"] = time.perf_counter() - t
    # Nothing after the fit reads the training split's lines (the test and the gate read the lines
    # before the test, the refit all of them): their events and histories go before the run's peak.
    prepared.train.release()

    # The bundle to register depends on the fitted configuration only, not on the test: a thread
    # refits it on all lines and logs it as the run's model while the test and the gate run.
    # Registration and aliases wait for the gate.
    blas = blas_single_thread()  # one limit around both threads: each sets and restores its own
    publish_pool = ThreadPoolExecutor(1, thread_name_prefix="publish")
    publishing = publish_pool.submit(
        publish,
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

    # The champion gate: the challenger, the champion as served and its configuration refit, on the
    # gate customers (set aside before tuning; the reported test never decides).
    t = time.perf_counter()
    champion = champion_future.result()
    if sweeping.exception() is not None:  # done: the same thread ran it first; this training goes on
        log(f"warning: could not clean up after stopped trainings: {sweeping.exception()}")
    gated = run_gate(fitted=fitted, prepared=prepared, champion=champion, promote=promote, log=log)
    timings["gate_seconds"] = time.perf_counter() - t
    log(
        f"gate ({len(prepared.gate.users):,} customers): {'promoted' if gated.promoted else 'not promoted'}: "
        f"{gated.decision['reason']}"
    )

    t = time.perf_counter()
    published = publishing.result()
    blas.restore_original_limits()
    timings["publish_wait_seconds"] = time.perf_counter() - t
    timings["refit_seconds"] = published.refit_seconds
    timings["model_log_seconds"] = published.log_seconds

    t = time.perf_counter()
    table = comparison_table(results, metrics=TABLE_METRICS)
    version = log_run(
        settings=settings,
        name=name,
        fitted=fitted,
        published=published,
        results=results,
        gated=gated,
        table=table,
        reports=reports,
        prepared=prepared,
        timings=timings,
        total_start=total_start,
    )
    timings["log_seconds"] = time.perf_counter() - t
    log(f"timings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    log(f"logged in {timings['log_seconds']:.1f} s; total {time.perf_counter() - total_start:.1f} s")
    headline = {k: round(v, 6) for k, v in results[fitted.label].items() if k in HEADLINE}
    headline.update({f"popularity/{k}": round(v, 6) for k, v in results["popularity"].items() if k in HEADLINE})
    headline.update({f"frequency/{k}": round(v, 6) for k, v in results["frequency"].items() if k in HEADLINE})
    return TrainResult(
        published.run_id, f"models:/{name}/{version}", version, headline, gated.promoted, gated.decision, table
    )
