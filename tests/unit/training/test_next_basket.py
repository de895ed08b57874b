"""experiments/next_basket.py's building blocks on hand-made histories: basket order, TIFU-KNN's
vectors, neighbours and the repeat share by count (the study on real data,
`make bench-next-basket`, takes minutes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import scipy.sparse as sp

from tests.unit.training.conftest import hand_made
from training.algorithms.repurchase import basket_events

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def study() -> ModuleType:
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location("next_basket", ROOT / "experiments" / "next_basket.py")
    assert spec and spec.loader
    module = sys.modules.setdefault("next_basket", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def test_basket_order_counts_later_baskets_by_day_not_by_index(study: ModuleType) -> None:
    # Customer 0's basket 7 is on day 1, basket 3 on day 5: basket 3 is the last one.
    inter = hand_made([(0, 0, 5.0, 3), (0, 1, 1.0, 7), (0, 1, 5.0, 3), (1, 0, 2.0, 1)], n_users=2, n_items=2)
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
    events = basket_events(hand_made(lines, n_users=1, n_items=2))
    after, _ = study.basket_order(events)
    counts = study.per_pair(events, np.ones(len(after)))
    decayed = study.per_pair(events, np.exp2(-after / 1.0))
    assert counts[0] > counts[1]  # by plain frequency the old bulk buy wins
    assert decayed[1] > decayed[0]  # by basket order the recent regular does


def test_tifu_vectors_weigh_groups_and_baskets_by_order(study: ModuleType) -> None:
    # Four baskets, one item each, two groups of two: r_b within a group, r_g across, each averaged.
    lines = [(0, i, float(i), i) for i in range(4)]
    events = basket_events(hand_made(lines, n_users=1, n_items=4))
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
