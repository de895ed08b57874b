"""Blends: evaluation's shared-work ranking equals the service's, and `discover` keeps its own mix."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from training.algorithms.blends import DISCOVERY_ONLY, HYBRID_START, baseline_blend
from training.core.blend import Blend, Signals, blend_scores, top_blended
from training.core.bundle import ModelBundle
from training.core.topk import top_k
from training.pipeline.prepare import Lines, prepare
from training.registry.bundle_file import load_bundle_dir, save_bundle


def test_top_blended_equals_ranking_every_item(hybrid: ModelBundle) -> None:
    """Evaluation's shared-work ranking gives the lists `blend_scores` + `top_k` give, ties and
    padding included, for every context, blend and list length (and falls back for unknown customers)."""
    rng = np.random.default_rng(4)
    rows = rng.choice(len(hybrid.user_ids), size=300, replace=False)
    now = hybrid.history.reference_day + rng.uniform(0, 60, size=len(rows))
    blends = [
        HYBRID_START,
        replace(HYBRID_START, repurchase=30.0, collaborative=3.0, popularity=0.05, due=2.0),
        replace(HYBRID_START, discover_collaborative=1.0, discover_popularity=0.5, due=1.0),
        DISCOVERY_ONLY,
        baseline_blend("frequency"),
        baseline_blend("popularity"),
        baseline_blend("als"),
        Blend(repurchase=2.0, collaborative=0.0, popularity=0.0),
    ]
    signals = hybrid.signals(rows=rows, now=now)
    assert signals.collaborative is not None
    tied = replace(  # few distinct values: ties everywhere, and popularity per customer
        signals,
        repurchase={},
        collaborative=np.round(signals.collaborative * 4) / 4,
        popular=np.round(rng.random(signals.bought.shape) * 3).astype(np.float32) / 3,
    )
    unknown = hybrid.signals(rows=np.r_[rows[:5], -1], now=now[:6])
    for name, sig in (("scores", signals), ("ties", tied), ("unknown customer", unknown)):
        shared: dict[object, object] = {}
        for blend in blends:
            for context in ("home", "buy-again", "discover"):
                for k in (1, 10, 20, hybrid.n_items + 5):
                    ids, vals = top_blended(sig, blend=blend, context=context, k=k, shared=shared)
                    want_ids, want_vals = top_k(blend_scores(sig, blend=blend, context=context), k=k)
                    label = f"{name}, {blend}, {context}, k={k}"
                    np.testing.assert_array_equal(vals, want_vals, err_msg=label)
                    np.testing.assert_array_equal(
                        ids[np.isfinite(vals)], want_ids[np.isfinite(want_vals)], err_msg=label
                    )


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


def test_home_is_evaluated_as_served_with_its_explore_slots(hybrid: ModelBundle) -> None:
    """Offline `home` metrics rank the list the service serves: the home list with its explore slots
    filled from the customer's discover list (core.blend.mix_explore). Known answer: each customer's
    held-out item is the served list's explore item, so the served list hits every time."""
    import scipy.sparse as sp

    from training.core.blend import mix_explore
    from training.evaluate import Candidate, evaluate
    from training.split import Holdout

    hybrid = replace(hybrid, in_stock=np.ones(hybrid.n_items, dtype=bool))  # evaluation knows no stock
    mixed = replace(hybrid.blend, home_explore=0.1)
    plain = replace(hybrid.blend, home_explore=0.0)
    users = np.arange(0, len(hybrid.user_ids), 7)[:60]
    home = hybrid.with_blend(plain).recommend_batch(hybrid.user_ids[users].tolist(), k=10, context="home")
    new = hybrid.with_blend(plain).recommend_batch(hybrid.user_ids[users].tolist(), k=10, context="discover")
    explore = [
        mix_explore([hybrid.item_index[i] for i, _ in h], [hybrid.item_index[i] for i, _ in n], k=10, share=0.1)[5]
        for h, n in zip(home, new, strict=True)
    ]
    targets = sp.csr_matrix(
        (np.ones(len(users), dtype=bool), (np.arange(len(users)), explore)), shape=(len(users), hybrid.n_items)
    )
    holdout = Holdout(users, np.full(len(users), hybrid.history.reference_day), targets, np.full(len(users), 5))
    results = evaluate(
        candidates=[Candidate("mixed", hybrid, mixed, ("home",)), Candidate("plain", hybrid, plain, ("home",))],
        holdout=holdout,
        ks=(10,),
        detail=False,
    )
    assert results["mixed"]["home/hit_rate_at_10"] == 1.0
    assert results["plain"]["home/hit_rate_at_10"] < 0.5
