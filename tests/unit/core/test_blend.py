"""Blends: evaluation's shared-work ranking equals the service's, and `discover` keeps its own mix."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from training.algorithms.blends import DISCOVERY_ONLY, HYBRID_START, baseline_blend
from training.core.blend import Blend, Signals, blend_scores, top_blended
from training.core.bundle import ModelBundle
from training.core.topk import top_k
from training.pipeline.prepare import Catalog, Lines, encode, prepare
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
        replace(HYBRID_START, repurchase=3.0, popularity=0.05, due=0.5, item_repeat=0.5, customer_repeat=1.0),
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
        repurchase={(0.0, 0.0, 0.0): np.array([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32)},
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


def test_repeat_and_explore_follow_the_items_repeat_rate_and_the_customers_habits() -> None:
    """Known answer. Milk comes back (its buyers buy it again), a card does not; H buys the same
    thing again and again, E never does. With `item_repeat`, milk bought once outranks a card bought
    twice; with `customer_repeat`, H's own staple stays above the popular item while E's own items
    drop below it (the popular item stands in for the explore part)."""
    from tests.conftest import purchase_lines

    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows: list[tuple] = []
    for u in range(20):  # milk rebought by everyone, cards bought once
        rows += [(f"M{u}", "milk", start + timedelta(days=7 * w), f"M{u}-{w}") for w in range(3)]
        rows += [(f"M{u}", f"card{u % 2}", start + timedelta(days=1), f"M{u}-c")]
    rows += [(f"P{u}", "popular", start + timedelta(days=30), f"P{u}") for u in range(100)]
    rows += [("T", "card0", start + timedelta(days=d), f"T{d}") for d in (2, 9)]
    rows += [("T", "milk", start + timedelta(days=9), "T9")]
    rows += [("H", "staple", start + timedelta(days=d), f"H{d}") for d in (3, 10, 17, 24)]
    rows += [("E", f"card{d % 2}", start + timedelta(days=d), f"E{d}") for d in (3, 10)]
    inter = prepare_interactions_only(purchase_lines(rows))
    bundle = Lines(inter).bundle(
        half_life=float("inf"),
        popularity_half_life=1e6,
        blend=Blend(repurchase=1.0, popularity=1e-3),
        collaborative=None,
        catalog=_no_catalog(inter),
    )

    def first(user: str, blend: Blend) -> str:
        return bundle.with_blend(blend).recommend_batch([user], k=1, context="home")[0][0][0]

    assert first("T", Blend(repurchase=1.0, popularity=1e-3)) == "card0"
    assert first("T", Blend(repurchase=1.0, popularity=1e-3, item_repeat=1.0)) == "milk"
    mixed = Blend(repurchase=1.0, popularity=0.9, customer_repeat=1.0)
    assert first("H", Blend(repurchase=1.0, popularity=0.9)) == "staple"
    assert first("E", Blend(repurchase=1.0, popularity=0.9)) in {"card0", "card1"}
    assert first("H", mixed) == "staple" and first("E", mixed) == "popular"


def prepare_interactions_only(purchases: Any) -> Any:
    return encode(purchases, None)


def _no_catalog(inter: Any) -> Catalog:
    n = inter.n_items
    return Catalog(
        in_stock=np.ones(n, dtype=bool),
        item_category=np.full(n, -1, dtype=np.int32),
        categories=np.array([], dtype=str),
    )
