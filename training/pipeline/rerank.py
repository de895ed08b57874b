"""The learned re-ranker of `home` (training.core.rerank), fitted for basket data and kept only
when it beats the blend beyond the interval on validation.

It learns from earlier baskets only: EARLIER splits taken again, each on the previous one's
training lines (so each goes two baskets further back), each with the chosen collaborative model
fitted again on its own training lines; the examples are those splits' validation baskets, the
blend's first rerank.CANDIDATES items of each customer labelled 1 when in the basket. LightGBM's
LambdaRank fits the trees, as many as its early stopping finds best on the most recent earlier split
when learning from the older ones; they are kept as arrays (core.rerank.Reranker), which rank with
numpy alone, in the service as here.

On The Complete Journey (docs/quality.md) it lifts the home list as served by about 4-5% on
validation and on the test; where it learns nothing that holds, the interval keeps the blend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from training import algorithms
from training.algorithms.repurchase import history_matrix
from training.core.blend import Blend, blend_scores, rerank_features
from training.core.bundle import ModelBundle
from training.core.errors import RecoError
from training.core.rerank import Reranker
from training.pipeline.prepare import Prepared, prepare_interactions
from training.split import Holdout
from training.tuning import better_beyond_interval, per_customer

EARLIER = 4  # earlier splits learnt from
LEAVES, LEARNING_RATE, MIN_LEAF = 7, 0.05, 50  # LightGBM's LambdaRank
# The number of trees is chosen on the most recent earlier split (LightGBM's early stopping on its
# NDCG@10, the others learnt from), up to MAX_TREES; TREES with a single earlier split.
TREES, MAX_TREES, STOP_ROUNDS = 200, 800, 100
MIN_EXAMPLES_CUSTOMERS = 200  # fewer customers with an earlier basket to learn from: no re-ranker
# Customers learnt from per earlier split, at most (a seeded sample): the trees' fit grows with the
# examples (50 per customer), and a few thousand baskets per split already carry what they learn.
SPLIT_CUSTOMERS = 5_000
_BATCH = 500  # customers whose features are computed at once


@dataclass(frozen=True)
class Learnt:
    """The re-ranker fitted (None when there was too little to learn from) and how."""

    reranker: Reranker | None
    customers: int  # earlier baskets learnt from
    seconds: float
    trees: int = 0


def learn(
    *,
    prepared: Prepared,
    blend: Blend,
    half_life: float,
    popularity_half_life: float,
    collaborative: str | None,
    params: dict[str, Any],
    log: Callable[[str], None],
) -> Learnt:
    """Fit the re-ranker of `blend` (its home list without explore slots) on EARLIER earlier splits."""
    import lightgbm

    start = time.perf_counter()
    blend = replace(blend, home_explore=0.0, home_rerank=False)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    customers = 0
    earlier = prepared
    for _ in range(EARLIER):
        lines = earlier.interactions.subset(earlier.split.train)
        if lines.n_lines == 0:
            break
        try:
            earlier = prepare_interactions(interactions=lines, catalog=None, eval_users=len(lines.user_ids))
        except RecoError:  # no customer has two baskets this far back: learn from the splits so far
            break
        if len(earlier.validation.users) == 0:  # a few test customers, all in the gate: none moved to validation
            break
        cf = None
        if collaborative is not None:
            matrix = history_matrix(earlier.train.history(half_life), n_items=lines.n_items)
            cf = algorithms.fit_collaborative(name=collaborative, matrix=matrix, params=params).scorer
        bundle = earlier.train.bundle(
            half_life=half_life,
            popularity_half_life=popularity_half_life,
            blend=blend,
            collaborative=cf,
            catalog=earlier.catalog,
            timeline=True,
        )
        holdout = earlier.validation
        if len(holdout.users) > SPLIT_CUSTOMERS:
            rng = np.random.default_rng(len(xs))
            holdout = holdout.take(np.sort(rng.choice(len(holdout.users), SPLIT_CUSTOMERS, replace=False)))
        x, y = examples(bundle, blend=blend, holdout=holdout)
        xs.append(x)
        ys.append(y)
        customers += len(holdout.users)
    seconds = time.perf_counter() - start
    if customers < MIN_EXAMPLES_CUSTOMERS:
        log(f"  re-ranker: {customers:,} earlier baskets to learn from (< {MIN_EXAMPLES_CUSTOMERS}): none fitted")
        return Learnt(None, customers, seconds)
    width = sum(map(len, ys)) // customers  # rerank.CANDIDATES, or every item of a smaller catalogue

    def ranker(trees: int) -> Any:
        return lightgbm.LGBMRanker(
            objective="lambdarank",
            n_estimators=trees,
            num_leaves=LEAVES,
            learning_rate=LEARNING_RATE,
            min_child_samples=MIN_LEAF,
            random_state=0,
            n_jobs=1,
            verbose=-1,
        )

    def group(y: np.ndarray) -> np.ndarray:
        return np.full(len(y) // width, width)

    trees = TREES
    if len(xs) >= 2:  # the number of trees: learnt on the older splits, stopped on the most recent
        probe = ranker(MAX_TREES)
        older_y = np.concatenate(ys[1:])
        probe.fit(
            np.concatenate(xs[1:]),
            older_y,
            group=group(older_y),
            eval_X=(xs[0],),
            eval_y=(ys[0],),
            eval_group=[group(ys[0])],
            eval_at=[10],
            callbacks=[lightgbm.early_stopping(STOP_ROUNDS, verbose=False)],
        )
        trees = max(int(probe.best_iteration_ or MAX_TREES), 1)
    y = np.concatenate(ys)
    model = ranker(trees)
    model.fit(np.concatenate(xs), y, group=group(y))
    return Learnt(from_lightgbm(model.booster_.dump_model()), customers, time.perf_counter() - start, trees)


def choose(
    learnt: Learnt, *, bundle: ModelBundle, blend: Blend, holdout: Holdout, log: Callable[[str], None]
) -> tuple[bool, dict[str, Any]]:
    """Whether the re-ranked `home` list (as served: with the blend's explore slots) beats the
    blend's beyond the interval on the validation customers of `holdout`; the comparison, to record."""
    record: dict[str, Any] = {
        "learnt_from_customers": learnt.customers,
        "trees": learnt.trees,
        "seconds": round(learnt.seconds, 1),
    }
    if learnt.reranker is None:
        return False, record
    with_trees = replace(bundle, reranker=learnt.reranker)  # one bundle: its signals serve both lists
    scores = per_customer(
        {"blend": (with_trees, blend), "re-ranked": (with_trees, replace(blend, home_rerank=True))},
        holdout=holdout,
        context="home",
    )
    wins, comparison = better_beyond_interval(scores["re-ranked"], scores["blend"])
    record.update(comparison.to_dict(), kept=wins)
    log(
        f"  re-ranker ({learnt.trees} trees learnt from {learnt.customers:,} earlier baskets in "
        f"{learnt.seconds:.1f} s): validation home ndcg_at_10 {comparison.challenger:.4f} against the blend's "
        f"{comparison.reference:.4f}, difference {comparison.difference:+.4f} ({comparison.difference_low:+.4f} "
        f"to {comparison.difference_high:+.4f}): " + ("kept" if wins else "not kept (within the interval)")
    )
    return wins, record


def examples(bundle: ModelBundle, *, blend: Blend, holdout: Holdout) -> tuple[np.ndarray, np.ndarray]:
    """(the features of each customer's re-ranking candidates, as core.rerank computes them for
    serving; 1 where the candidate is in the customer's held-out basket)."""
    xs, ys = [], []
    for start in range(0, len(holdout.users), _BATCH):
        batch = holdout.take(np.arange(start, min(start + _BATCH, len(holdout.users))))
        signals = bundle.signals(rows=batch.users, now=batch.now)
        scores = blend_scores(signals, blend=blend, context="home")
        top, x = rerank_features(signals, scores=scores, blend=blend)
        rows = np.repeat(np.arange(len(batch.users)), top.shape[1])
        xs.append(x)
        ys.append(np.asarray(batch.targets[rows, top.ravel()]).ravel().astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def from_lightgbm(model: dict[str, Any]) -> Reranker:
    """A LightGBM model's `dump_model()` as arrays: numerical splits "≤ threshold goes left" only
    (the features have no missing values and no categories)."""
    feature: list[int] = []
    left: list[int] = []
    right: list[int] = []
    roots: list[int] = []
    threshold: list[float] = []
    value: list[float] = []
    depth = 0

    def add(node: dict[str, Any], level: int) -> int:
        nonlocal depth
        depth = max(depth, level)
        at = len(feature)
        feature.append(-1)
        threshold.append(0.0)
        left.append(at)
        right.append(at)
        value.append(float(node.get("leaf_value", 0.0)))
        if "split_feature" in node:
            # Numerical "≤ goes left" splits without missing values: what `Reranker.predict` does.
            assert node["decision_type"] == "<=" and node["missing_type"] == "None", node
            feature[at] = int(node["split_feature"])
            threshold[at] = float(node["threshold"])
            left[at] = add(node["left_child"], level + 1)
            right[at] = add(node["right_child"], level + 1)
        return at

    for tree in model["tree_info"]:
        roots.append(add(tree["tree_structure"], 0))
    return Reranker(
        feature=np.array(feature, dtype=np.int32),
        threshold=np.array(threshold, dtype=np.float64),
        left=np.array(left, dtype=np.int32),
        right=np.array(right, dtype=np.int32),
        value=np.array(value, dtype=np.float64),
        roots=np.array(roots, dtype=np.int32),
        depth=depth,
    )
