"""The bundle as the service uses it: contexts, filters, fallbacks, similar items, and the bundle on disk."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from training.core.bundle import ModelBundle
from training.core.errors import UnknownContext
from training.registry import bundle_file
from training.registry.bundle_file import load_bundle_dir, save_bundle


def _bought(bundle: ModelBundle, user_id: str) -> set[str]:
    row = bundle.user_index[user_id]
    h = bundle.history
    return set(bundle.item_ids[h.indices[h.indptr[row] : h.indptr[row + 1]]].tolist())


def test_contexts_respect_what_the_customer_bought(hybrid: ModelBundle) -> None:
    user = hybrid.user_ids[0]
    bought = _bought(hybrid, user)
    again = hybrid.recommend_batch([user], k=10, context="buy-again")[0]
    new = hybrid.recommend_batch([user], k=10, context="discover")[0]
    home = hybrid.recommend_batch([user], k=10, context="home")[0]
    assert len(again) == min(10, len(bought)) and {i for i, _ in again} <= bought
    assert len(new) == 10 and not {i for i, _ in new} & bought
    assert len(home) == 10 and len({i for i, _ in home}) == 10
    assert [s for _, s in home] == sorted((s for _, s in home), reverse=True)


def test_unknown_customer_gets_popular_fallback_never_an_error(hybrid: ModelBundle) -> None:
    assert not hybrid.knows_user("nobody") and hybrid.knows_user(hybrid.user_ids[0])
    lists = hybrid.recommend_batch(["nobody", "", "also-unknown"], k=5, context="buy-again")
    popular = np.argsort(-hybrid.popularity, kind="stable")
    popular_in_stock = [hybrid.item_ids[i] for i in popular if hybrid.in_stock[i]][:5]
    assert all([i for i, _ in rec] == popular_in_stock for rec in lists)


def test_filters_exclude_items_out_of_stock_and_category(hybrid: ModelBundle) -> None:
    user = hybrid.user_ids[1]
    first = hybrid.recommend_batch([user], k=10)[0]
    excluded = [first[0][0], first[1][0]]
    again = hybrid.recommend_batch([user], k=10, exclude_items=excluded)[0]
    assert not {i for i, _ in again} & set(excluded)
    out_of_stock = set(hybrid.item_ids[~hybrid.in_stock].tolist())
    assert out_of_stock, "the synthetic catalog has sold-out items"
    assert not {i for i, _ in hybrid.recommend_batch(hybrid.user_ids[:50].tolist(), k=20)[0]} & out_of_stock
    category = hybrid.categories[hybrid.item_category[hybrid.in_stock][0]]
    in_category = hybrid.recommend_batch([user, "nobody"], k=3, category=category)
    codes = {hybrid.item_category[hybrid.item_index[i]] for rec in in_category for i, _ in rec}
    assert [hybrid.categories[c] for c in codes] == [category]
    # An unknown (or sold-out) category allows nothing: never items of another category.
    assert hybrid.recommend_batch([user, "nobody"], k=3, category="no such category") == [[], []]


def test_similar_items_and_unknown_item_fallback(hybrid: ModelBundle) -> None:
    item = hybrid.item_ids[np.argmax(hybrid.popularity)]
    similar = hybrid.similar_items(item, k=5)
    assert len(similar) == 5 and item not in {i for i, _ in similar}
    unknown = hybrid.similar_items("no-such-item", k=5)
    assert len(unknown) == 5 and all(s == 0.0 for _, s in unknown)


def test_unknown_context_is_one_clear_error(hybrid: ModelBundle) -> None:
    with pytest.raises(UnknownContext, match="home, buy-again, discover"):
        hybrid.recommend_batch(["x"], k=3, context="cart")


def test_bundle_save_load_gives_identical_recommendations(hybrid: ModelBundle, tmp_path: Path) -> None:
    save_bundle(hybrid, path=tmp_path / "b")
    start = time.perf_counter()
    loaded = load_bundle_dir(tmp_path / "b", version="7")
    assert time.perf_counter() - start < 1.0
    assert loaded.version == "7"
    users = [*hybrid.user_ids[:30].tolist(), "nobody"]
    for context in ("home", "buy-again", "discover"):
        assert loaded.recommend_batch(users, k=10, context=context) == hybrid.recommend_batch(
            users, k=10, context=context
        )
    item = hybrid.item_ids[3]
    assert loaded.similar_items(item, k=5) == hybrid.similar_items(item, k=5)
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "b").iterdir())


def test_a_loaded_bundle_builds_nothing_per_customer(
    hybrid: ModelBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a serving worker holds per customer (the id lookup, the co-buyers index) comes from the
    # model file, so workers share it and their own memory does not grow with the customers.
    monkeypatch.setattr(bundle_file, "_MAP_MIN_BYTES", 0)  # this small model's arrays mapped as big ones are
    save_bundle(hybrid, path=tmp_path / "b")
    loaded = load_bundle_dir(tmp_path / "b")
    arrays = tmp_path / "b" / "arrays.npz"
    for array in (loaded.user_index.ids, loaded.co_buyers.customers, loaded.co_buyers.indptr):
        base = array
        while not isinstance(base, np.memmap) and base.base is not None:
            base = base.base
        assert isinstance(base, np.memmap) and Path(base.filename) == arrays
    assert loaded.user_index._order is None  # the saved ids are sorted: no permutation of their own
    built = hybrid.co_buyers
    assert np.array_equal(loaded.co_buyers.indptr, built.indptr)
    assert np.array_equal(loaded.co_buyers.customers, built.customers)
    assert loaded.co_buyers.n_customers == built.n_customers


def test_the_filter_on_some_items_equals_the_catalog_filter(hybrid: ModelBundle) -> None:
    """`allowed_items(among=...)` (the candidate cache filters its few listed items) gives what the
    catalog-wide filter gives for those items, whatever the filters."""
    rng = np.random.default_rng(3)
    among = rng.choice(hybrid.n_items, size=120, replace=True)
    some = hybrid.item_ids[rng.choice(hybrid.n_items, size=15)].tolist()
    category = str(hybrid.categories[0])
    for filters in (
        {},
        {"exclude_items": some},
        {"category": category},
        {"category": "No Such Aisle"},
        {"exclude_categories": [category, str(hybrid.categories[1]), "No Such Aisle"]},
        {"exclude_items": some, "category": category, "exclude_categories": [str(hybrid.categories[2])]},
    ):
        full = hybrid.allowed_items(**filters)
        np.testing.assert_array_equal(hybrid.allowed_items(**filters, among=among), full[among], err_msg=str(filters))
