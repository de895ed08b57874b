"""A trained bundle for the ranking core's tests: the default hybrid on the small synthetic store."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from training.core.bundle import ModelBundle
from training.pipeline.fit import fit_configuration, refit_all
from training.pipeline.prepare import prepare


@pytest.fixture(scope="session")
def hybrid(small_store: Path) -> ModelBundle:
    """The default hybrid with ALS as its discovery part, refit on all of the small store."""
    prepared = prepare(
        purchases=pq.read_table(small_store / "purchases.parquet"),
        catalog=pq.read_table(small_store / "catalog.parquet"),
        eval_users=300,
    )
    fitted = fit_configuration(model="hybrid", params={"candidates": "als"}, prepared=prepared, log=lambda _: None)
    bundle, _ = refit_all(fitted=fitted, prepared=prepared, refit="full", log=lambda _: None)
    return bundle
