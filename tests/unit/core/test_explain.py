"""What the service's reasons and shelves read from the core: each bought item's contribution to a
score, the bar for "similar", customers who bought two items, recent buyers, excluded categories and
explore slots, on hand-made arrays with known answers and on the trained hybrid."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from training.core.blend import explore_slots, mix_explore
from training.core.bundle import ModelBundle
from training.core.collaborative import Factors, ItemSimilarity, ItemWeights, contribution_floor
from training.core.copurchase import CategoryBaskets
from training.core.history import CoBuyers, History
from training.registry.bundle_file import load_bundle_dir, save_bundle


def _history(rows: list[list[tuple[int, float]]]) -> History:
    """Customers' (item, last day) pairs, one basket each."""
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    pairs = [p for r in rows for p in r]
    n = len(pairs)
    return History(
        indptr=indptr,
        indices=np.array([i for i, _ in pairs], dtype=np.int32),
        baskets=np.ones(n, dtype=np.float32),
        first_day=np.array([d for _, d in pairs], dtype=np.float64),
        last_day=np.array([d for _, d in pairs], dtype=np.float64),
        decayed=np.ones(n, dtype=np.float32),
        reference_day=100.0,
        half_life=30.0,
    )


def test_item_based_contributions_are_the_terms_of_the_score() -> None:
    # An asymmetric similarity (BM25-like): item 0 adds 0.9 to item 2's score, item 2 adds 0.1 to item 0's.
    matrix = sp.csr_matrix(np.array([[0, 0, 0.9], [0, 0, 0.2], [0.1, 0, 0]], dtype=np.float32))
    knn = ItemSimilarity(similarity=matrix)
    bought = np.array([0, 1])
    assert knn.contributions(2, bought).tolist() == np.float32([0.9, 0.2]).tolist()
    scores = knn.user_scores(users=np.array([0]), bought=sp.csr_matrix(np.array([[1, 1, 0]], dtype=np.float32)))
    assert np.isclose(scores[0, 2], knn.contributions(2, bought).sum())
    dense = ItemWeights(item_dense=matrix.toarray())
    assert dense.contributions(2, bought).tolist() == np.float32([0.9, 0.2]).tolist()


def test_factor_contributions_are_the_factors_cosine() -> None:
    factors = Factors(
        user_factors=np.zeros((1, 2), dtype=np.float32),
        item_factors=np.array([[1, 0], [0, 1], [2, 2]], dtype=np.float32),
    )
    assert np.allclose(factors.contributions(2, np.array([0, 1])), [np.sqrt(0.5)] * 2, atol=1e-6)
    assert np.allclose(factors.contributions(0, np.array([1])), [0.0], atol=1e-6)


def test_the_floor_is_a_quantile_of_the_contributions_between_items() -> None:
    values = np.arange(16, dtype=np.float32).reshape(4, 4)
    dense = ItemWeights(item_dense=values)
    # Every pair but the diagonal: 1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14.
    off = values[~np.eye(4, dtype=bool)]
    assert contribution_floor(dense, n_items=4, quantile=0.5) == float(np.quantile(off, 0.5))
    assert contribution_floor(dense, n_items=4, quantile=1.0) == 14.0
    assert contribution_floor(dense, n_items=1, quantile=0.9) == 0.0


def test_co_buyers_count_the_customers_who_bought_both_items() -> None:
    history = _history([[(0, 90), (1, 99)], [(0, 95)], [(1, 50), (2, 98)], [], [(0, 10), (1, 60), (2, 97)]])
    co = CoBuyers.of(history, n_items=4)
    assert co.n_customers == 4 and [co.buyers(i) for i in range(4)] == [3, 3, 2, 0]
    assert co.together(0, np.array([0, 1, 2, 3])).tolist() == [3, 2, 1, 0]
    assert co.together(3, np.array([0, 1])).tolist() == [0, 0]
    # Customers who bought an item on day 95 or later (their last purchase of it is then or later).
    assert history.buyers_since(95.0, n_items=4).tolist() == [1, 1, 2, 0]


def test_co_buyers_match_a_dense_count_on_the_trained_bundle(hybrid: ModelBundle) -> None:
    h = hybrid.history
    dense = np.zeros((h.n_users, hybrid.n_items), dtype=bool)
    dense[np.repeat(np.arange(h.n_users), np.diff(h.indptr)), h.indices] = True
    items = np.arange(hybrid.n_items)
    for anchor in (0, 7, hybrid.n_items - 1):
        expected = (dense[:, anchor][:, None] & dense).sum(axis=0)
        assert hybrid.co_buyers.together(anchor, items).tolist() == expected.tolist()
    # Kept by the shallow copies the service makes when availability changes.
    assert replace(hybrid, in_stock=hybrid.in_stock.copy()).co_buyers is hybrid.co_buyers


def test_excluded_categories_leave_every_list(hybrid: ModelBundle) -> None:
    user = hybrid.user_ids[0]
    top = [i for i, _ in hybrid.recommend_batch([user], k=20)[0]]
    category = hybrid.category_of(top[0])
    assert category is not None
    allowed = hybrid.allowed_items(exclude_categories=[category, "No Such Aisle"])
    codes = hybrid.item_category[allowed]
    assert not (hybrid.categories[codes[codes >= 0]] == category).any()
    code = hybrid.item_category[hybrid.item_index[top[0]]]
    assert allowed.sum() == (hybrid.in_stock & (hybrid.item_category != code)).sum()
    listed = [i for i, _ in hybrid.recommend_batch([user], k=20, exclude_categories=[category])[0]]
    assert listed and all(hybrid.category_of(i) != category for i in listed)
    similar = hybrid.similar_items(top[1], k=20, exclude_categories=[category])
    assert all(hybrid.category_of(i) != category for i, _ in similar)
    h = hybrid.history
    bought = hybrid.item_ids[h.indices[h.row(hybrid.user_index[user])]]
    categories = sorted({hybrid.category_of(i) for i in bought} - {None})
    others = sorted(set(hybrid.categories.tolist()) - set(categories))
    assert hybrid.bought_in(user, [*categories, *others]) == categories
    assert hybrid.bought_in("nobody", categories) == []
    assert hybrid.categories_named([c.upper() for c in categories]) == categories


def test_explore_slots_spread_the_share_over_the_list() -> None:
    assert explore_slots(k=10, share=0.2) == [2, 7]
    assert explore_slots(k=10, share=0.3) == [1, 5, 8]
    assert explore_slots(k=10, share=0.0) == [] and explore_slots(k=1, share=0.2) == []
    assert explore_slots(k=3, share=1.0) == [0, 1, 2]


def test_mix_explore_never_repeats_and_fills_up_from_the_other_side() -> None:
    assert mix_explore([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [20, 21], k=10, share=0.2) == [1, 2, 20, 3, 4, 5, 6, 21, 7, 8]
    # 3 is on both lists: once; explore runs short: regular items fill its slots, and the other way round.
    assert mix_explore([1, 2, 3, 4], [3], k=4, share=0.5) == [1, 3, 2, 4]
    assert mix_explore([1], [20, 21, 22], k=4, share=0.25) == [1, 20, 21, 22]
    assert mix_explore([], [], k=3, share=0.5) == []


def test_category_baskets_count_the_baskets_holding_both_aisles() -> None:
    # Baskets 0: pasta + tomatoes (two pasta lines), 1: pasta + tomatoes + milk, 2: milk, 3: an unknown item.
    counted = CategoryBaskets.count(
        basket=np.array([0, 0, 0, 1, 1, 1, 2, 3]), category=np.array([0, 0, 1, 0, 1, 2, 2, -1]), n_categories=3
    )
    assert counted.baskets == 4
    assert counted.together.tolist() == [[2, 2, 1], [2, 2, 1], [1, 1, 2]]
    assert counted.share(0, 1) == 1.0 and counted.lift(0, 1) == 2.0  # tomatoes in every pasta basket, half of all
    assert counted.share(0, 2) == 0.5 and counted.lift(0, 2) == 1.0
    assert CategoryBaskets.count(basket=np.array([0]), category=np.array([-1]), n_categories=2).baskets == 1


def test_the_trained_bundle_counts_aisles_and_keeps_them_on_disk(hybrid: ModelBundle, tmp_path: Path) -> None:
    counted = hybrid.category_baskets
    assert counted is not None and counted.baskets > 0
    assert np.array_equal(counted.together, counted.together.T)
    assert (np.diag(counted.together) >= counted.together).all()  # no pair in more baskets than either aisle
    loaded = load_bundle_dir(save_bundle(hybrid, path=tmp_path / "bundle"))
    assert loaded.category_baskets is not None and loaded.category_baskets.baskets == counted.baskets
    assert np.array_equal(loaded.category_baskets.together, counted.together)
