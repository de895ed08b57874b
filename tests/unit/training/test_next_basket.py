"""experiments/next_basket.py's building blocks on hand-made histories: basket order, TIFU-KNN's
vectors, neighbours, the repeat share by count and the re-ranker's features (the study on real data,
`make bench-next-basket`, takes minutes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import scipy.sparse as sp

from training.algorithms.repurchase import basket_events
from training.interactions import Interactions

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def study() -> ModuleType:
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location("next_basket", ROOT / "experiments" / "next_basket.py")
    assert spec and spec.loader
    module = sys.modules.setdefault("next_basket", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def _interactions(lines: list[tuple[int, int, float, int]], n_users: int, n_items: int) -> Interactions:
    """(customer, item, day, basket) lines as Interactions."""
    user, item, day, basket = (np.array(column) for column in zip(*lines, strict=True))
    return Interactions(
        user_ids=np.array([f"u{i}" for i in range(n_users)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        day=day.astype(np.float64),
        basket=basket.astype(np.int64),
        quantity=np.ones(len(lines), dtype=np.float32),
        ordered=True,
    )


def test_basket_order_counts_later_baskets_by_day_not_by_index(study: ModuleType) -> None:
    # Customer 0's basket 7 is on day 1, basket 3 on day 5: basket 3 is the last one.
    inter = _interactions([(0, 0, 5.0, 3), (0, 1, 1.0, 7), (0, 1, 5.0, 3), (1, 0, 2.0, 1)], n_users=2, n_items=2)
    events = basket_events(inter)
    after, count = study.basket_order(events)
    by_event = {
        (int(events.keys[p] // 2), int(events.keys[p] % 2), int(b)): (int(a), int(c))
        for p, b, a, c in zip(events.pair, events.basket, after, count, strict=True)
    }
    assert by_event == {(0, 0, 3): (0, 2), (0, 1, 3): (0, 2), (0, 1, 7): (1, 2), (1, 0, 1): (0, 1)}


def test_basket_order_decay_ranks_a_recent_regular_above_an_old_bulk_buy(study: ModuleType) -> None:
    # Item 0 filled the customer's first three baskets (a bulk phase); item 1 is in each of the last two.
    lines = [(0, 0, d, b) for d, b in ((1.0, 0), (2.0, 1), (3.0, 2))] + [(0, 1, d, b) for d, b in ((4.0, 3), (5.0, 4))]
    events = basket_events(_interactions(lines, n_users=1, n_items=2))
    after, _ = study.basket_order(events)
    counts = study.per_pair(events, np.ones(len(after)))
    decayed = study.per_pair(events, np.exp2(-after / 1.0))
    assert counts[0] > counts[1]  # by plain frequency the old bulk buy wins
    assert decayed[1] > decayed[0]  # by basket order the recent regular does


def test_tifu_vectors_weigh_groups_and_baskets_by_order(study: ModuleType) -> None:
    # Four baskets, one item each, two groups of two: r_b within a group, r_g across, each averaged.
    lines = [(0, i, float(i), i) for i in range(4)]
    events = basket_events(_interactions(lines, n_users=1, n_items=4))
    after, count = study.basket_order(events)
    vectors = study.tifu_vectors(events, after, count, m=2, r_b=0.5, r_g=0.25).toarray()[0]
    expected = np.array([0.5 / 2 * 0.25 / 2, 1 / 2 * 0.25 / 2, 0.5 / 2 / 2, 1 / 2 / 2])
    np.testing.assert_allclose(vectors, expected)


def test_neighbour_mean_averages_the_most_similar_customers(study: ModuleType) -> None:
    vectors = sp.csr_matrix(np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.2]]))
    mean = study.neighbour_mean(vectors, np.array([0]), k=2).toarray()[0]
    np.testing.assert_allclose(mean, [0.95, 0.05, 0.1])  # customers 1 and 3, never itself


def test_repeat_by_count_is_the_share_who_came_back_after_k_baskets(study: ModuleType) -> None:
    # Item 0: buyers with 1, 2, 2 and 3 baskets of it. After one basket 3 of 4 came back; after two, 1 of 3.
    baskets = np.array([1, 2, 2, 3], dtype=np.float32)
    items = np.zeros(4, dtype=np.int64)
    rate = study.repeat_by_count(baskets, items, n_items=1, prior=0.0)
    np.testing.assert_allclose(rate, [3 / 4, 1 / 3, 1 / 3, 0.0])


def test_rerank_features_describe_the_blends_list_and_label_the_held_out_basket(study: ModuleType) -> None:
    from training.core.blend import Blend
    from training.pipeline.prepare import Catalog, Lines
    from training.split import Holdout

    # Customer 0 bought item 0 on days 1 and 5, item 1 on day 5; customer 1 bought items 2 and 3.
    lines = [(0, 0, 1.0, 0), (0, 0, 5.0, 1), (0, 1, 5.0, 1), (1, 2, 2.0, 2), (1, 3, 2.0, 2)]
    catalog = Catalog(
        in_stock=np.ones(4, dtype=bool), item_category=np.zeros(4, dtype=np.int64), categories=np.array(["c"])
    )
    blend = Blend(repurchase=1.0, popularity=0.01)
    bundle = Lines(_interactions(lines, n_users=2, n_items=4)).bundle(
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
    features, labels, top = study.rerank_features(bundle, blend, holdout)
    assert features.shape == (8, 16)
    assert top.tolist() == [[2, 3, 0, 1], [0, 1, 2, 3]]  # own items first (0: two baskets), then by popularity
    assert labels.tolist() == [0, 1, 0, 0, 0, 1, 0, 0]
    score, bought, baskets, decayed, since, interval = (features[:, c] for c in (0, 2, 3, 4, 5, 6))
    assert np.all(np.diff(score.reshape(2, 4), axis=1) <= 0)  # each list in the blend's order
    assert bought.tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
    assert baskets.tolist() == [1, 1, 0, 0, 2, 1, 0, 0]
    assert decayed.tolist() == [1, 1, 0, 0, 2, 1, 0, 0]  # no decay at an infinite half-life
    assert since.tolist()[:2] == [2.0, 2.0] and since.tolist()[4:6] == [5.0, 5.0]  # to the held-out basket's day
    assert interval[4] == 4.0  # customer 0 bought item 0 on days 1 and 5
    assert since[6] == interval[6] == 9999.0  # never bought: the fill value
