"""The `reco train` steps: the same configuration whether the fit runs beside the tuning or not."""

from __future__ import annotations

import threading
from pathlib import Path

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
    params = {"candidates": "als", "regularization": "0.05", "factors": "64", "alpha": "1.0"}  # no search
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
