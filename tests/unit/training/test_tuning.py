"""Tuning on validation: the hybrid adapts to data unlike the synthetic store, is never worse than the
baselines it searches over, and ALS's regularization is chosen there and kept for the refit
(experiments/robustness.py measures the same on larger stand-ins)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.unit.training.conftest import catalogue_style
from training import algorithms, tuning
from training.algorithms.base import DEFAULTS, FittedCollaborative
from training.algorithms.blends import HYBRID_START, baseline_blend
from training.algorithms.repurchase import build_history, history_matrix
from training.evaluate import Candidate, evaluate
from training.pipeline.fit import evaluate_on_test, fit_configuration, refit_all
from training.pipeline.prepare import Lines, prepare
from training.tuning import SEARCH_GRIDS, better_beyond_interval, tune_blend


def test_default_hybrid_adapts_to_data_without_repeat_purchases() -> None:
    """On catalogue-style data the validation split must steer the hybrid away from re-recommending
    what the customer already has (no order_id: a basket is a customer's day)."""
    prepared = prepare(purchases=catalogue_style(), catalog=None, eval_users=1000)
    fitted = fit_configuration(model="hybrid", params={}, prepared=prepared, log=lambda _: None)
    results = evaluate_on_test(fitted=fitted, prepared=prepared)
    hybrid = results[fitted.label]["home/ndcg_at_10"]
    assert hybrid > 2 * results["frequency"]["home/ndcg_at_10"]
    assert hybrid > results["popularity"]["home/ndcg_at_10"]
    assert fitted.blend.home_excludes_bought or fitted.blend.repurchase == 0.0


@pytest.mark.parametrize("source", ["small_store", "catalogue"])
def test_tuned_blend_is_never_worse_than_the_baselines_on_validation(source: str, request: Any) -> None:
    if source == "small_store":
        purchases = pq.read_table(Path(request.getfixturevalue("small_store")) / "purchases.parquet")
    else:
        purchases = catalogue_style()
    prepared = prepare(purchases=purchases, catalog=None, eval_users=600)
    train = prepared.interactions.subset(prepared.split.train)
    matrix = history_matrix(
        build_history(interactions=train, reference_day=float(train.day.max()), half_life=90.0),
        n_items=train.n_items,
    )
    cf = algorithms.fit_collaborative(name="ease", matrix=matrix, params={})
    bundle = Lines(train).bundle(
        half_life=90.0,
        popularity_half_life=60.0,
        blend=HYBRID_START,
        collaborative=cf.scorer,
        catalog=prepared.catalog,
    )
    _, score = tune_blend(bundle=bundle, holdout=prepared.tuning)
    baselines = evaluate(
        candidates=[Candidate(n, bundle, baseline_blend(n), ("home",)) for n in ("popularity", "frequency", "ease")],
        holdout=prepared.tuning,
        ks=(10,),
        detail=False,
    )
    assert all(score >= res["home/ndcg_at_10"] - 1e-12 for res in baselines.values())


def test_the_model_search_keeps_a_value_only_when_it_wins_beyond_the_interval_and_the_refit_uses_it(
    small_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=300)
    fitted = fit_configuration(model="als", params={}, prepared=prepared, log=lambda _: None)
    tried = fitted.choice["als_discover_scores"]
    assert {f"regularization_{r}" for r in SEARCH_GRIDS["als"][0][1]} <= set(tried)
    for key, value in fitted.collaborative_params.items():  # a kept value beat the default on validation
        assert tried[f"{key}_{value}"] > tried[f"{key}_{DEFAULTS[key]}"]
    assert fitted.collaborative is not None
    assert fitted.collaborative.model.regularization == fitted.collaborative_params.get(
        "regularization", DEFAULTS["regularization"]
    )
    # The interval decides: when no value beats it nothing is kept; when every one does, values are
    # kept, the fit returned is the one with them, and the refit fits with them.
    with monkeypatch.context() as rule:
        rule.setattr(tuning, "better_beyond_interval", lambda challenger, incumbent: (False, None))
        assert (
            fit_configuration(model="als", params={}, prepared=prepared, log=lambda _: None).collaborative_params == {}
        )
        rule.setattr(tuning, "better_beyond_interval", lambda challenger, incumbent: (True, None))
        kept = fit_configuration(model="als", params={}, prepared=prepared, log=lambda _: None)
    assert "regularization" in kept.collaborative_params and kept.collaborative is not None
    assert kept.collaborative.model.regularization == kept.collaborative_params["regularization"]
    seen: list[dict[str, Any]] = []
    original = algorithms.fit_collaborative

    def recording(**kwargs: Any) -> FittedCollaborative:
        seen.append(dict(kwargs["params"]))
        return original(**kwargs)

    monkeypatch.setattr(algorithms, "fit_collaborative", recording)
    refit_all(fitted=kept, prepared=prepared, refit="full", log=lambda _: None)
    assert len(seen) == 1 and all(seen[0][k] == v for k, v in kept.collaborative_params.items())
    seen.clear()
    # An explicit --param is used as given (its axis is not searched), and no fit starts after the budget.
    given = fit_configuration(
        model="als", params={"regularization": "1.5", "search_seconds": "0"}, prepared=prepared, log=lambda _: None
    )
    assert not any(k.startswith("regularization") for k in given.choice["als_discover_scores"])
    assert given.choice["als_discover_scores"].get("budget_reached") == 1.0
    assert [p.get("regularization") for p in seen] == ["1.5", "1.5"]  # the fit and the test's refit


def test_a_candidate_replaces_a_simpler_one_only_when_better_beyond_the_interval() -> None:
    same = np.linspace(0.0, 1.0, 400)
    noisy = same + np.random.default_rng(0).normal(0.0, 0.05, size=len(same))
    assert not better_beyond_interval(noisy + 0.001, same)[0]  # a gain inside the noise
    assert better_beyond_interval(same + 0.02, same)[0]
    assert not better_beyond_interval(np.r_[same, np.nan], np.r_[same, 5.0])[0]  # NaN pairs left out
