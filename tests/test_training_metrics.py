"""Ranking metrics against hand-computed answers, the chronological split, and a checkerboard store
where the withheld item must come back first."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import purchase_lines
from training.interactions import build_interactions
from training.metrics import ranking_metrics
from training.pipeline.fit import evaluate_on_test, fit_configuration
from training.pipeline.prepare import prepare
from training.split import chronological_split


def test_ranking_metrics_match_hand_computed_values() -> None:
    # Customer 0: targets {1, 3}; ranked [1, 2, 3]: hits at ranks 1 and 3.
    # Customer 1: target {4}; ranked [0, 2, 3]: no hit.  Customer 2: no target → not counted.
    top = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 2]])
    targets = np.zeros((3, 5), dtype=bool)
    targets[0, [1, 3]] = True
    targets[1, 4] = True
    m = ranking_metrics(top=top, targets=targets, k=3)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg"][0] == pytest.approx(dcg / idcg)
    assert m["recall"][0] == pytest.approx(1.0)
    assert m["precision"][0] == pytest.approx(2 / 3)
    assert m["map"][0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m["hit_rate"][0] == 1.0
    assert m["ndcg"][1] == 0.0 and m["hit_rate"][1] == 0.0 and m["recall"][1] == 0.0
    assert all(math.isnan(v[2]) for v in m.values())


def test_ranking_metrics_ignore_padding_and_cut_at_k() -> None:
    top = np.array([[-1, 2, 0]])  # −1: the list was shorter than k
    targets = np.zeros((1, 3), dtype=bool)
    targets[0, 0] = True
    at2 = ranking_metrics(top=top, targets=targets, k=2)
    at3 = ranking_metrics(top=top, targets=targets, k=3)
    assert at2["hit_rate"][0] == 0.0
    assert at3["ndcg"][0] == pytest.approx(1 / math.log2(4))


def _checkerboard(customers: int = 40, items: int = 20) -> pa.Table:
    """Even customers buy even items, odd customers odd items; each customer's last basket holds
    the one item of their half they never bought before (a different one per customer)."""
    rows = []
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for u in range(customers):
        mine = [i for i in range(items) if i % 2 == u % 2]
        withheld = mine[(u // 2) % len(mine)]
        for week in range(4):
            for i in mine:
                if i != withheld:
                    rows.append((f"U{u:03d}", f"I{i:03d}", start + timedelta(days=7 * week, hours=u), f"O{u}-{week}"))
        rows.append((f"U{u:03d}", f"I{withheld:03d}", start + timedelta(days=35, hours=u), f"O{u}-last"))
    return purchase_lines(rows, price=1.0)


def test_split_holds_out_each_customers_last_basket() -> None:
    inter = build_interactions(purchases=_checkerboard())
    split = chronological_split(inter)
    assert (split.train & split.test).sum() == 0 and (split.validation & split.test).sum() == 0
    assert (split.train | split.validation | split.test).all()
    last_day = np.full(inter.n_users, -np.inf)
    np.maximum.at(last_day, inter.user, inter.day)
    # Every test line is its customer's latest line, and each customer has exactly one test item.
    assert np.allclose(inter.day[split.test], last_day[inter.user[split.test]])
    assert split.test_holdout.targets.sum() == inter.n_users
    assert split.validation_holdout.now.max() < split.test_holdout.now.min()


@pytest.mark.parametrize("model", ["ease", "knn-cosine"])
def test_checkerboard_withheld_item_ranks_first_in_discover(model: str) -> None:
    prepared = prepare(purchases=_checkerboard(), catalog=None, eval_users=1000)
    fitted = fit_configuration(model=model, params={"half_life": "inf"}, prepared=prepared, log=lambda _: None)
    results = evaluate_on_test(fitted=fitted, prepared=prepared)
    assert results[model]["discover/ndcg_at_10"] == pytest.approx(1.0)
    assert results[model]["discover/hit_rate_at_10"] == pytest.approx(1.0)
    # Popularity cannot tell the halves apart: every item is equally popular among the others.
    assert results["popularity"]["discover/ndcg_at_10"] < 0.9


def _catalogue_style(customers: int = 240, items: int = 90, seed: int = 5) -> pa.Table:
    """Films, not groceries: three taste groups, nobody watches the same title twice, one title a day."""
    rng = np.random.default_rng(seed)
    rows = []
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for u in range(customers):
        group = np.arange(items)[np.arange(items) % 3 == u % 3]
        weights = np.linspace(2.0, 0.5, len(group))
        seen = rng.choice(group, size=12, replace=False, p=weights / weights.sum())
        for day, item in enumerate(seen):
            rows.append((f"U{u:03d}", f"F{item:03d}", start + timedelta(days=3 * day, hours=u % 24)))
    return purchase_lines(rows)


def test_default_hybrid_adapts_to_data_without_repeat_purchases() -> None:
    """On catalogue-style data the validation split must steer the hybrid away from re-recommending
    what the customer already has (no order_id: a basket is a customer's day)."""
    prepared = prepare(purchases=_catalogue_style(), catalog=None, eval_users=1000)
    fitted = fit_configuration(model="hybrid", params={}, prepared=prepared, log=lambda _: None)
    results = evaluate_on_test(fitted=fitted, prepared=prepared)
    hybrid = results[fitted.label]["home/ndcg_at_10"]
    assert hybrid > 2 * results["frequency"]["home/ndcg_at_10"]
    assert hybrid > results["popularity"]["home/ndcg_at_10"]
    assert fitted.blend.home_excludes_bought or fitted.blend.repurchase == 0.0


def test_basket_index_groups_lines_by_customer_and_order() -> None:
    """Lines sharing a customer and an order_id are one basket: order ids unique to a customer take the
    unsorted path, an order id two customers use takes the sorted one; both number a customer's
    baskets in the order they first appear."""
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    own = [("A", "i1", t0, "o2"), ("B", "i1", t0, "o1"), ("A", "i2", t0, "o3"), ("A", "i3", t0, "o2")]
    shared = [*own, ("B", "i2", t0, "o3")]  # o3: A's and B's, two baskets
    for rows in (own, shared):
        inter = build_interactions(purchases=purchase_lines(rows))
        users, orders = [r[0] for r in rows], [r[3] for r in rows]
        same = [[users[a] == users[b] and orders[a] == orders[b] for b in range(len(rows))] for a in range(len(rows))]
        assert (inter.basket[:, None] == inter.basket[None, :]).tolist() == same
        assert sorted(set(inter.basket.tolist())) == list(
            range(len({(u, o) for u, o in zip(users, orders, strict=True)}))
        )
        for customer in "AB":
            firsts = [inter.basket[i] for i, u in enumerate(users) if u == customer]
            assert list(dict.fromkeys(firsts)) == sorted(dict.fromkeys(firsts))
