"""home's learned re-ranker: its features on a hand-made history, its trees as arrays against
LightGBM's own prediction, the reordered list, and a bundle that keeps it through the file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tests.unit.training.conftest import hand_made
from training.core import rerank
from training.core.blend import Blend, blend_scores, rerank_features
from training.core.bundle import ModelBundle
from training.pipeline.prepare import Catalog, Lines
from training.pipeline.rerank import examples, from_lightgbm
from training.registry.bundle_file import InvalidBundle, load_bundle_dir, save_bundle
from training.split import Holdout


def _bundle() -> tuple[ModelBundle, Blend, Holdout]:
    # Customer 0 bought item 0 on days 1 and 5, item 1 on day 5; customer 1 bought items 2 and 3.
    lines = [(0, 0, 1.0, 0), (0, 0, 5.0, 1), (0, 1, 5.0, 1), (1, 2, 2.0, 2), (1, 3, 2.0, 2)]
    catalog = Catalog(
        in_stock=np.ones(4, dtype=bool), item_category=np.zeros(4, dtype=np.int64), categories=np.array(["c"])
    )
    blend = Blend(repurchase=1.0, popularity=0.01)
    bundle = Lines(hand_made(lines, n_users=2, n_items=4)).bundle(
        half_life=float("inf"), popularity_half_life=30.0, blend=blend, collaborative=None, catalog=catalog
    )
    # Customer 1's next basket, on day 4, holds item 3; customer 0's, on day 10, item 1 (listed second,
    # so a lookup that mixed up list rows and customer ids would fail).
    holdout = Holdout(
        users=np.array([1, 0]),
        now=np.array([4.0, 10.0]),
        targets=sp.csr_matrix((np.array([True, True]), (np.array([0, 1]), np.array([3, 1]))), shape=(2, 4)),
        prior_baskets=np.array([1, 2]),
    )
    return bundle, blend, holdout


def test_features_describe_the_blends_list_and_examples_label_the_held_out_basket() -> None:
    bundle, blend, holdout = _bundle()
    signals = bundle.signals(rows=holdout.users, now=holdout.now)
    top, features = rerank_features(signals, scores=blend_scores(signals, blend=blend, context="home"), blend=blend)
    assert features.shape == (8, len(rerank.FEATURES))
    assert top.tolist() == [[2, 3, 0, 1], [0, 1, 2, 3]]  # own items first (0: two baskets), then by popularity
    score, rank, bought, baskets, decayed, since, interval = (features[:, c] for c in range(7))
    assert np.all(np.diff(score.reshape(2, 4), axis=1) <= 0)  # each list in the blend's order
    assert rank.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert bought.tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
    assert baskets.tolist() == [1, 1, 0, 0, 2, 1, 0, 0]
    assert decayed.tolist() == [1, 1, 0, 0, 2, 1, 0, 0]  # no decay at an infinite half-life
    assert since.tolist()[:2] == [2.0, 2.0] and since.tolist()[4:6] == [5.0, 5.0]  # to the held-out basket's day
    assert interval[4] == 4.0  # customer 0 bought item 0 on days 1 and 5
    assert since[6] == interval[6] == rerank.NEVER  # never bought: the fill value
    assert features[:, rerank.FEATURES.index("customer's distinct items")].tolist() == [2] * 8
    x, labels = examples(bundle, blend=blend, holdout=holdout)
    assert np.array_equal(x, features)
    assert labels.tolist() == [0, 1, 0, 0, 0, 1, 0, 0]


def _fitted_trees(seed: int = 0) -> tuple[object, np.ndarray]:
    import lightgbm

    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=3000), rng.integers(0, 5, 3000), rng.exponential(size=3000)])
    x = np.column_stack([x, np.zeros((3000, len(rerank.FEATURES) - 3))])
    relevance = (x[:, 0] + 0.5 * (x[:, 1] == 2) - x[:, 2] > 0.3).astype(int)
    model = lightgbm.LGBMRanker(objective="lambdarank", n_estimators=30, num_leaves=7, min_child_samples=5, verbose=-1)
    model.fit(x, relevance, group=np.full(60, 50))
    return model, x


def test_the_trees_as_arrays_predict_what_lightgbm_predicts() -> None:
    model, x = _fitted_trees()
    trees = from_lightgbm(model.booster_.dump_model())  # type: ignore[attr-defined]
    assert len(trees.roots) == 30 and trees.depth >= 2
    # Also with values exactly at the first feature's thresholds (≤ goes left on both sides).
    splits = trees.threshold[trees.feature == 0]
    assert len(splits)
    at_thresholds = x[:50].copy()
    at_thresholds[:, 0] = splits[np.arange(50) % len(splits)]
    for rows in (x, at_thresholds):
        assert np.allclose(trees.predict(rows), model.predict(rows), rtol=0, atol=1e-9)  # type: ignore[attr-defined]


def test_reordered_lists_keep_the_blends_items_and_scores_in_the_trees_order() -> None:
    from training.core.topk import top_k

    scores = np.array([[0.9, 0.5, 0.7, 0.1, -np.inf], [0.9, 0.5, 0.7, 0.1, 0.2]], dtype=np.float32)
    top = np.array([[0, 2, 1], [0, 2, 1]])
    predicted = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    out = rerank.reordered(scores, top, predicted, rows=np.array([True, False]))
    # Row 0: item 1 first, then 2, then 0, with the blend's 0.9, 0.7, 0.5; the rest as it was.
    assert out[0].tolist() == np.array([0.5, 0.9, 0.7, 0.1, -np.inf], dtype=np.float32).tolist()
    assert np.array_equal(out[1], scores[1])  # a customer not re-ranked keeps the blend's order
    # Ties in the blend: the trees' order still holds, and an item tied with the last candidate
    # (but not among them) stays below it.
    tied = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]], dtype=np.float32)
    out = rerank.reordered(tied, np.array([[0, 1, 2]]), np.array([[0.0, 0.0, 5.0]]), rows=np.array([True]))
    assert top_k(out, k=5)[0].tolist() == [[2, 0, 1, 3, 4]]


def test_a_bundle_keeps_its_reranker_through_the_file_and_ranks_home_with_it(tmp_path: Path) -> None:
    model, _ = _fitted_trees()
    bundle, blend, _ = _bundle()
    trees = from_lightgbm(model.booster_.dump_model())  # type: ignore[attr-defined]
    served = replace(bundle, reranker=trees, blend=replace(blend, home_rerank=True))
    loaded = load_bundle_dir(save_bundle(served, path=tmp_path / "b"))
    assert loaded.reranker is not None and loaded.blend.home_rerank
    # Format 2 with the trees; without them format 1 and no new key: services from before read it.
    assert json.loads((tmp_path / "b" / "config.json").read_text())["format_version"] == 2
    plain_config = json.loads((save_bundle(bundle, path=tmp_path / "p") / "config.json").read_text())
    assert plain_config["format_version"] == 1 and "home_rerank" not in plain_config["blend"]
    (tmp_path / "p" / "config.json").write_text(json.dumps({**plain_config, "format_version": 3}))
    with pytest.raises(InvalidBundle, match="format 3, expected one of 1, 2"):
        load_bundle_dir(tmp_path / "p")
    for name in ("feature", "threshold", "left", "right", "value", "roots"):
        assert np.array_equal(getattr(loaded.reranker, name), getattr(trees, name))
    users = ["u0", "u1", "nobody"]
    assert loaded.recommend_batch(users, k=4) == served.recommend_batch(users, k=4)
    # The same items as the blend's, and for a known customer the trees' order.
    for reranked, plain in zip(served.recommend_batch(users, k=4), bundle.recommend_batch(users, k=4), strict=True):
        assert {i for i, _ in reranked} == {i for i, _ in plain}
    signals = served.signals(rows=np.array([0]), now=None)
    top, x = rerank_features(signals, scores=blend_scores(signals, blend=blend, context="home"), blend=blend)
    expected = top[0][np.argsort(-trees.predict(x), kind="stable")]
    assert [i for i, _ in served.recommend_batch(["u0"], k=4)[0]] == [f"i{i}" for i in expected]


def test_the_gate_scores_the_champion_with_its_reranker() -> None:
    """The champion as served, rebuilt on the challenger's histories, keeps its trees (its blend asks
    for them: without them the gate would score it in the plain blend's order)."""
    from tests.unit.training.conftest import checkerboard
    from training.pipeline.gating import served_bundle
    from training.pipeline.prepare import prepare

    prepared = prepare(purchases=checkerboard(), catalog=None, eval_users=1000)
    model, _ = _fitted_trees()
    trees = from_lightgbm(model.booster_.dump_model())  # type: ignore[attr-defined]
    champion = prepared.lines.bundle(
        half_life=90.0,
        popularity_half_life=30.0,
        blend=Blend(repurchase=1.0, popularity=0.01, home_rerank=True),
        collaborative=None,
        catalog=prepared.catalog,
        reranker=trees,
    )
    assert served_bundle(champion, prepared=prepared).reranker is trees


def test_the_number_of_trees_is_chosen_on_the_most_recent_earlier_split(small_store: Path) -> None:
    """Four earlier splits of a synthetic store: the trees stop where the most recent split's NDCG@10
    stopped improving (at most MAX_TREES), and the re-ranker holds exactly that many."""
    import pyarrow.parquet as pq

    from training.pipeline import rerank as learning
    from training.pipeline.prepare import prepare

    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=1000)
    learnt = learning.learn(
        prepared=prepared,
        blend=Blend(repurchase=3.0, popularity=0.5, due=0.5),
        half_life=90.0,
        popularity_half_life=30.0,
        collaborative=None,
        params={},
        log=lambda _: None,
    )
    assert learnt.reranker is not None and learnt.customers >= learning.MIN_EXAMPLES_CUSTOMERS
    assert 1 <= learnt.trees < learning.MAX_TREES  # stopped early, not the cap
    assert len(learnt.reranker.roots) == learnt.trees
