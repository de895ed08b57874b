"""The `reco train` steps: the same configuration whether the fit runs beside the tuning or not, and
after the training lines let go of what they computed."""

from __future__ import annotations

import ast
import gc
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import training.pipeline.fit as fit_module
from training import algorithms
from training.pipeline.fit import fit_configuration
from training.pipeline.prepare import prepare


def test_fit_beside_the_tuning_gives_the_same_configuration(small_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the model-search size the collaborative fit runs in a thread beside the recency tuning:
    the same fit and choices as one after the other (the test bundle then folds the tested customers
    in, where the model search fits the candidates again on the lines before the test)."""
    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=200)
    params = {"candidates": "als", "regularization": "0.05", "factors": "64", "alpha": "1.0", "rerank": "off"}
    params["iterations"] = "15"  # given: no early stopping beside the tuning (see the test below)
    inline = fit_configuration(model="hybrid", params=params, prepared=prepared, log=lambda _: None)
    monkeypatch.setattr(fit_module, "SEARCH_MAX_PAIRS", 0)
    threads: list[str] = []
    fit = algorithms.fit_collaborative
    monkeypatch.setattr(
        algorithms, "fit_collaborative", lambda **kw: threads.append(threading.current_thread().name) or fit(**kw)
    )
    beside = fit_configuration(model="hybrid", params=params, prepared=prepared, log=lambda _: None)
    assert threads and all(name.startswith("fit") for name in threads)
    assert beside.blend == inline.blend and beside.half_life == inline.half_life
    assert beside.popularity_half_life == inline.popularity_half_life
    assert beside.test_bundle.collaborative is not None and inline.test_bundle.collaborative is not None
    assert beside.collaborative is not None and inline.collaborative is not None
    np.testing.assert_allclose(
        beside.collaborative.scorer.user_factors, inline.collaborative.scorer.user_factors, rtol=1e-5
    )


def test_beside_the_tuning_als_stops_early_on_validation(small_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the model-search size, ALS's iterations are chosen on validation (discover NDCG@10 of
    ALS alone): the run records the count kept (what a full refit is given) and each count's score,
    and the factors are those of a plain fit of that many iterations on the training split."""
    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=200)
    monkeypatch.setattr(fit_module, "SEARCH_MAX_PAIRS", 0)
    params = {"candidates": "als", "rerank": "off"}
    fitted = fit_configuration(model="hybrid", params=params, prepared=prepared, log=lambda _: None)
    kept = fitted.collaborative_params["iterations"]
    tried = fitted.choice["als_discover_scores"]
    assert 4 <= kept <= 15 and f"iterations_{kept}" in tried
    assert tried[f"iterations_{kept}"] == max(tried.values())
    assert fitted.collaborative is not None
    assert fitted.collaborative.model.iterations == kept
    matrix = fit_module.history_matrix(
        prepared.train.history(fit_module.HALF_LIVES[0]), n_items=prepared.interactions.n_items
    )
    plain = algorithms.fit_collaborative(name="als", matrix=matrix, params={"iterations": kept})
    np.testing.assert_allclose(
        fitted.collaborative.scorer.item_factors, plain.scorer.item_factors, rtol=1e-4, atol=1e-6
    )


def test_the_training_lines_let_go_of_what_they_computed(small_store: Path) -> None:
    """`reco train` releases the training split's events and histories once the fit is over (the
    test, the gate and the refit read other lines, and the run's peak comes after the fit): nothing
    the fit returns holds on to them, and asked again they are computed again, the same."""
    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=200)
    params = {"candidates": "als", "regularization": "0.05", "factors": "64", "alpha": "1.0"}  # no search
    first = fit_configuration(model="hybrid", params=params, prepared=prepared, log=lambda _: None)
    held = [weakref.ref(prepared.train.events), weakref.ref(prepared.train.history(first.half_life))]
    prepared.train.release()
    gc.collect()
    assert [ref() for ref in held] == [None, None]
    again = fit_configuration(model="hybrid", params=params, prepared=prepared, log=lambda _: None)
    assert (again.blend, again.half_life, again.popularity_half_life) == (
        first.blend,
        first.half_life,
        first.popularity_half_life,
    )


def test_train_lets_the_training_lines_go_after_the_fit(
    small_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole `reco train`: by the time the test is scored, nothing holds the training split's
    events and histories any more (the refit, the test and the gate run without them)."""
    import training.pipeline.train as train_module
    from training.settings import load_settings

    held: list[weakref.ref[Any]] = []
    alive_at_test: list[list[bool]] = []

    def fit_and_watch(*, prepared: Any, **kwargs: Any) -> Any:
        fitted = fit_configuration(prepared=prepared, **kwargs)
        held.extend([weakref.ref(prepared.train.events), weakref.ref(prepared.train.history(fitted.half_life))])
        return fitted

    evaluate = train_module.evaluate_on_test

    def look_then_evaluate(**kwargs: Any) -> Any:
        gc.collect()
        alive_at_test.append([ref() is not None for ref in held])
        return evaluate(**kwargs)

    monkeypatch.setattr(train_module, "fit_configuration", fit_and_watch)
    monkeypatch.setattr(train_module, "evaluate_on_test", look_then_evaluate)
    settings = load_settings(home=str(tmp_path), mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = train_module.train(
        purchases_path=small_store / "purchases.parquet",
        catalog_path=small_store / "catalog.parquet",
        params={"candidates": "als", "eval_users": "200"},
        settings=settings,
        log=lambda _: None,
    )
    assert result.version is not None and len(held) == 2
    assert alive_at_test == [[False, False]]


GIVE_BACK_ORDER = """
import sys
from pathlib import Path

import pyarrow as pa

import training.data.load as load
import training.pipeline.prepare as prepare

steps = []
give_back, split = load.give_back_read_memory, prepare.prepare_interactions


def spy(name, real):
    def call(*args, **kwargs):
        steps.append((name, pa.default_memory_pool().bytes_allocated()))
        return real(*args, **kwargs)
    return call


load.give_back_read_memory = spy("give back", give_back)
prepare.prepare_interactions = spy("split", split)
prepare.load_prepared(purchases=Path(sys.argv[1]), catalog=None, eval_users=100, max_rejected=0.01, log=print)
print(repr((steps, pa.default_memory_pool().max_memory())))
"""


def test_the_read_memory_goes_back_before_the_split(small_store: Path) -> None:
    """`reco train` gives Arrow's pool memory back once the table is encoded and let go, before the
    split makes its arrays (the fast path of docs/architecture.md): by then nothing may be left in
    the pool, or its pages could not go back. In a process of its own: the pool is the process's."""
    script = [sys.executable, "-c", GIVE_BACK_ORDER, str(small_store / "purchases.parquet")]
    done = subprocess.run(script, capture_output=True, text=True, timeout=120, check=True)
    steps, read_peak = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert [name for name, _ in steps] == ["give back", "split"]
    assert read_peak > 1_000_000  # the read's buffers were in the pool (a 1,500-customer store)
    assert all(held < 1_024 for _, held in steps)  # and none of them any more (a few bytes of Arrow's own)
