"""Defaults that must hold on data unlike the synthetic store: sparse customers (nothing to validate
on), a search space that contains the baselines, ALS regularization chosen on validation, and a
discover list with its own mix (experiments/robustness.py measures the same on larger stand-ins)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import purchase_lines
from training import algorithms
from training.algorithms.base import FittedCollaborative
from training.algorithms.blends import HYBRID_START, baseline_blend
from training.algorithms.popularity import popularity, popularity_timeline
from training.algorithms.repurchase import build_history, history_matrix
from training.core.blend import Blend, Signals, blend_scores
from training.evaluate import Candidate, evaluate
from training.pipeline.fit import fit_configuration, refit_all
from training.pipeline.prepare import Catalog, Lines, prepare
from training.registry.bundle_file import load_bundle_dir, save_bundle
from training.tuning import ALS_REGULARIZATIONS, tune_blend


def _two_orders_at_most(customers: int = 400, items: int = 40, seed: int = 3) -> pa.Table:
    """Sparse retail: every customer has one or two orders of one to three items (two taste groups)."""
    rng = np.random.default_rng(seed)
    rows = []
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for u in range(customers):
        group = np.arange(items)[np.arange(items) % 2 == u % 2]
        weights = 1.0 / np.arange(1, len(group) + 1)
        for order in range(1 if u % 3 == 0 else 2):
            basket = rng.choice(group, size=1 + rng.integers(3), replace=False, p=weights / weights.sum())
            when = start + timedelta(days=int(rng.integers(300)) + 40 * order, hours=u % 24)
            rows += [(f"U{u}", f"I{i:02d}", when, f"O{u}-{order}") for i in basket]
    return purchase_lines(rows)


def test_without_validation_baskets_some_customers_are_held_out_for_tuning_not_tested() -> None:
    prepared = prepare(purchases=_two_orders_at_most(), catalog=None, eval_users=10_000)
    split = prepared.split
    assert len(split.validation_holdout.users) == 0  # nobody has a third basket
    held = prepared.held_out_customers
    assert held > 0 and len(prepared.tuning.users) == held
    # Tuned on or tested, never both; together every customer with two baskets.
    assert not set(prepared.tuning.users.tolist()) & set(prepared.test.users.tolist())
    assert len(prepared.test.users) + held == len(split.test_holdout.users)
    assert prepared.summary()["test_customers"] == len(prepared.test.users)
    # The held-out baskets are not training lines.
    inter = prepared.interactions
    train_pairs = set(zip(inter.user[split.train].tolist(), inter.item[split.train].tolist(), strict=True))
    rows, items = prepared.tuning.targets.nonzero()
    held_lines = set(zip(prepared.tuning.users[rows].tolist(), items.tolist(), strict=True))
    last_train_day = np.full(inter.n_users, -np.inf)
    np.maximum.at(last_train_day, inter.user[split.train], inter.day[split.train])
    assert (prepared.tuning.now > last_train_day[prepared.tuning.users]).all()
    assert held_lines - train_pairs  # something new to find
    # So the hybrid is tuned on something (every score finite) and still evaluates on the rest.
    fitted = fit_configuration(model="hybrid", params={}, prepared=prepared, log=lambda _: None)
    assert all(np.isfinite(c["validation_score"]) for c in fitted.choice["candidates"].values())


@pytest.mark.parametrize("source", ["small_store", "catalogue"])
def test_tuned_blend_is_never_worse_than_the_baselines_on_validation(source: str, request: Any) -> None:
    if source == "small_store":
        purchases = pq.read_table(Path(request.getfixturevalue("small_store")) / "purchases.parquet")
    else:
        from tests.test_training_metrics import _catalogue_style

        purchases = _catalogue_style()
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


def test_als_regularization_is_chosen_on_validation_and_kept_for_the_refit(
    small_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=300)
    fitted = fit_configuration(model="als", params={}, prepared=prepared, log=lambda _: None)
    scores = {float(k): v for k, v in fitted.choice["als_discover_scores"].items()}
    assert set(scores) == set(ALS_REGULARIZATIONS)
    assert fitted.collaborative_params == {"regularization": max(scores, key=lambda r: scores[r])}
    assert fitted.collaborative is not None
    assert fitted.collaborative.model.regularization == fitted.collaborative_params["regularization"]
    seen: list[dict[str, Any]] = []
    original = algorithms.fit_collaborative

    def recording(**kwargs: Any) -> FittedCollaborative:
        seen.append(dict(kwargs["params"]))
        return original(**kwargs)

    monkeypatch.setattr(algorithms, "fit_collaborative", recording)
    refit_all(fitted=fitted, prepared=prepared, refit="full", log=lambda _: None)
    assert [p["regularization"] for p in seen] == [fitted.collaborative_params["regularization"]]
    # An explicit --param regularization is used as given (no search).
    given = fit_configuration(model="als", params={"regularization": "1.5"}, prepared=prepared, log=lambda _: None)
    assert "als_discover_scores" not in given.choice and given.collaborative_params == {}


def test_discover_uses_its_own_mix_and_survives_the_bundle(small_store: Path, tmp_path: Path) -> None:
    popular = np.array([0.1, 1.0, 0.5, 0.2], dtype=np.float32)
    signals = Signals(
        known=np.array([True]),
        bought=np.array([[True, False, False, False]]),
        repurchase={0.0: np.array([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32)},
        collaborative=np.array([[0.0, 0.1, 0.2, 1.0]], dtype=np.float32),
        popular=popular,
    )
    blend = Blend(
        repurchase=10.0, collaborative=1.0, popularity=1e-3, discover_collaborative=0.0, discover_popularity=1.0
    )
    discover = blend_scores(signals, blend=blend, context="discover")[0]
    home = blend_scores(signals, blend=blend, context="home")[0]
    assert np.argsort(-discover)[:3].tolist() == [1, 2, 3]  # popularity alone, bought item excluded
    assert np.argsort(-home)[:2].tolist() == [0, 3]  # own purchase first, then the collaborative pick
    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=200)
    bundle = Lines(prepared.interactions).bundle(
        half_life=90.0,
        popularity_half_life=60.0,
        blend=blend,
        collaborative=None,
        catalog=prepared.catalog,
    )
    assert load_bundle_dir(save_bundle(bundle, path=tmp_path / "b")).blend == blend


def test_evaluation_ranks_with_the_popularity_of_the_baskets_own_day() -> None:
    """Item A sells in January, item B in June: a January basket must see A as the popular item,
    without June's lines (which production could not have known then), and the end of the data B."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [(f"U{u}", "A", start + timedelta(days=u)) for u in range(6)]
    rows += [(f"V{u}", "B", start + timedelta(days=150 + u)) for u in range(9)]
    rows += [("W", "C", start + timedelta(days=165))]
    table = purchase_lines(rows)
    from training.interactions import build_interactions

    inter = build_interactions(purchases=table)
    timeline = popularity_timeline(interactions=inter, half_life=14.0)
    a, b, c = (int(np.flatnonzero(inter.item_ids == i)[0]) for i in "ABC")
    january, june = inter.day.min() + 10, inter.day.min() + 160
    early, late, first = timeline.at(np.array([january, june, inter.day.min() - 1]))
    assert early[a] == 1.0 and early[b] == 0.0 and early[c] == 0.0  # nothing from later lines
    assert late[b] == 1.0 and late[a] < 0.01
    assert not first.any()  # before the first line nobody has bought anything
    # The last snapshot is the bundle's own popularity (what is served at the end of the data).
    end = popularity(interactions=inter, reference_day=float(inter.day.max()), half_life=14.0)
    assert np.allclose(timeline.values[-1], end / end.max())
    bundle = Lines(inter).bundle(
        half_life=90.0,
        popularity_half_life=14.0,
        blend=baseline_blend("popularity"),
        collaborative=None,
        catalog=Catalog(
            in_stock=np.ones(inter.n_items, bool),
            item_category=np.full(inter.n_items, -1, np.int32),
            categories=np.array([], dtype=str),
        ),
        timeline=True,
    )
    unknown = np.array([-1, -1])
    scores = blend_scores(
        bundle.signals(rows=unknown, now=np.array([january, june])), blend=bundle.blend, context="home"
    )
    assert scores.argmax(axis=1).tolist() == [a, b]
    # Without a day (serving), the popularity at the end of the data.
    assert blend_scores(bundle.signals(rows=unknown), blend=bundle.blend, context="home").argmax(axis=1).tolist() == [
        b,
        b,
    ]


def test_batch_commands_reuse_freed_memory_in_pool_threads(tmp_path: Path) -> None:
    """`reco train` keeps freed memory in the process (`_keep_freed_memory`): a 10 M-line array that a
    pool thread frees is reused by the next, not mapped afresh (each first touch of a page costs
    system time; at 10 M lines, seconds). Set after numpy's import, glibc's arena limit did not hold
    and pool threads mapped their arrays afresh. Runs in a new interpreter, as the command does."""
    import json
    import platform
    import subprocess
    import sys

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator settings are glibc's")
    script = f"""
import json
import resource
from concurrent.futures import ThreadPoolExecutor
from training.cli.train import _keep_freed_memory
_keep_freed_memory()
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

pq.write_table(pa.table({{"a": np.arange(1000)}}), {str(tmp_path / "a.parquet")!r})
pq.read_table({str(tmp_path / "a.parquet")!r})  # Arrow's threads allocate, as when reco reads purchases

def faults(_):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    values = np.ones(10_000_000)
    values += 1
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

with ThreadPoolExecutor(1) as pool:
    print(json.dumps(list(pool.map(faults, range(3)))))
"""
    # Three interpreters: with the settings after numpy's import, about two runs in three failed here
    # (whether an Arrow thread allocated first is a race).
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
        first, *again = json.loads(done.stdout.strip().splitlines()[-1])
        assert first > 0  # the first array's pages are new
        assert again == [0, 0], (first, again)
