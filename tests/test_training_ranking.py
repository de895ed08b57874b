"""The ranking core: contexts, filters, fallbacks, the bundle on disk, and agreement with implicit."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import training.pipeline.fit as fit_module
from training import algorithms
from training.algorithms.blends import DISCOVERY_ONLY, HYBRID_START, baseline_blend
from training.algorithms.popularity import _snapshot_after, popularity_events, popularity_lines
from training.algorithms.repurchase import basket_events, baskets_of, build_history, history_matrix
from training.core.bundle import ModelBundle
from training.core.errors import UnknownContext
from training.pipeline.fit import fit_configuration, refit_all
from training.pipeline.prepare import prepare
from training.registry.bundle_file import load_bundle_dir, save_bundle


@pytest.fixture(scope="module")
def hybrid(small_store: Path) -> ModelBundle:
    """The default hybrid with ALS as its discovery part, refit on all of the small store."""
    prepared = prepare(
        purchases=pq.read_table(small_store / "purchases.parquet"),
        catalog=pq.read_table(small_store / "catalog.parquet"),
        eval_users=300,
    )
    fitted = fit_configuration(model="hybrid", params={"candidates": "als"}, prepared=prepared, log=lambda _: None)
    bundle, _ = refit_all(fitted=fitted, prepared=prepared, refit="full", log=lambda _: None)
    return bundle


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


def test_collaborative_scores_agree_with_implicit_recommend(small_store: Path) -> None:
    """Pure ALS in `discover` through the ranking core = implicit's recommend(filter_already_liked_items=True)."""
    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=100)
    inter = prepared.interactions
    history = build_history(interactions=inter, reference_day=float(inter.day.max()), half_life=90.0)
    matrix = history_matrix(history, n_items=inter.n_items)
    fitted = algorithms.fit_collaborative(name="als", matrix=matrix, params={"iterations": 5})
    from training.pipeline.prepare import Lines

    bundle = Lines(inter).bundle(
        half_life=90.0,
        popularity_half_life=60.0,
        blend=baseline_blend("als").__class__(collaborative=1.0, popularity=0.0),
        collaborative=fitted.scorer,
        catalog=prepared.catalog,
    )
    rows = np.arange(20)
    ids, _ = fitted.model.recommend(rows, matrix[rows], N=10, filter_already_liked_items=True)
    ours = bundle.recommend_batch(inter.user_ids[rows].tolist(), k=10, context="discover")
    for expected, got in zip(ids, ours, strict=True):
        assert [inter.item_ids[i] for i in expected][:5] == [i for i, _ in got][:5]


def test_split_events_taken_from_all_lines_equal_events_built_from_the_split(small_store: Path) -> None:
    """The trainer builds the (basket, item) events once and gives each split its baskets' events."""
    from training.data.load import load_purchases
    from training.interactions import build_interactions
    from training.split import chronological_split

    inter = build_interactions(purchases=load_purchases(small_store / "purchases.parquet")[0])
    split = chronological_split(inter)
    every = basket_events(inter)
    for lines in (split.train, split.train | split.validation, split.test):
        direct = basket_events(inter.subset(lines))
        taken = every.of_baskets(baskets_of(inter, lines))
        for name in ("keys", "pair", "day", "baskets", "first_day", "last_day", "basket"):
            np.testing.assert_array_equal(getattr(taken, name), getattr(direct, name), err_msg=name)
        popular = popularity_lines(inter).events(lines)
        for got, expected in zip(popular, popularity_events(inter.subset(lines)), strict=True):
            np.testing.assert_array_equal(got, expected)


def test_packed_sorts_equal_numpy() -> None:
    """The trainer's fast stable argsort and unique agree with numpy's, packed or not (keys too large to pack)."""
    from training.sorting import stable_argsort, unique_inverse

    rng = np.random.default_rng(5)
    for high in (50, 10**9, 2**62):  # the last cannot be packed beside a position: numpy's path
        keys = rng.integers(0, high, 20_000, dtype=np.int64)
        np.testing.assert_array_equal(stable_argsort(keys), np.argsort(keys, kind="stable"))
        distinct, inverse = unique_inverse(keys)
        expected = np.unique(keys, return_inverse=True)
        np.testing.assert_array_equal(distinct, expected[0])
        np.testing.assert_array_equal(inverse, expected[1])


def test_fold_in_of_every_customer_matches_the_exact_solve(small_store: Path) -> None:
    """The refit's conjugate-gradient user step (customers seen at fit time) ranks as recalculate_user
    does; customers unseen at fit time are solved exactly."""
    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=100)
    inter, split = prepared.interactions, prepared.split
    early = split.train & (inter.user >= 20)  # customers 0–19 have no lines at fit time
    history = build_history(interactions=inter.subset(early), reference_day=float(inter.day.max()), half_life=90.0)
    fitted = algorithms.fit_collaborative(name="als", matrix=history_matrix(history, n_items=inter.n_items), params={})
    everything = history_matrix(
        build_history(interactions=inter, reference_day=float(inter.day.max()), half_life=90.0), n_items=inter.n_items
    )
    seen = np.bincount(inter.user[early], minlength=inter.n_users) > 0
    assert not seen[:20].any() and seen[20:].sum() > 100
    exact = algorithms.fold_in(fitted=fitted, matrix=everything).scorer.user_factors
    fast = algorithms.fold_in(fitted=fitted, matrix=everything, seen=seen).scorer.user_factors
    assert exact is not None and fast is not None
    np.testing.assert_allclose(fast[~seen], exact[~seen], rtol=1e-5, atol=1e-6)
    item = fitted.scorer.item_factors
    top_exact = np.argsort(-(exact[seen] @ item.T), axis=1)[:, :10]
    top_fast = np.argsort(-(fast[seen] @ item.T), axis=1)[:, :10]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_exact, top_fast, strict=True)])
    assert overlap >= 0.95, overlap
    assert not np.allclose(fast[seen], fitted.scorer.user_factors[seen])  # the new lines were taken in


def test_snapshot_of_each_line_equals_searchsorted() -> None:
    """Evenly spaced snapshot days: the arithmetic bucket equals np.searchsorted, boundaries included."""
    rng = np.random.default_rng(2)
    days = 19_000.25 + (730.5 / 256) * (1 + 1e-9) * np.arange(257)
    day = np.concatenate([rng.uniform(days[0] - 1, days[-1] + 1, 50_000), days, np.nextafter(days, -np.inf)])
    np.testing.assert_array_equal(_snapshot_after(days, day), np.searchsorted(days, day, side="right"))


def test_top_k_equals_a_full_sort_on_ties_and_missing_scores() -> None:
    """top_k's group-maximum threshold keeps exactly what a full sort keeps: the k best, ties towards
    the lower item index, rows with fewer than k finite scores padded with −inf."""
    from training.core.topk import top_k

    rng = np.random.default_rng(9)
    n = 5_000  # above and below the grouped path's cut-off: 78 groups against 2k = 20 or 200
    rows = {
        "random": rng.random((40, n)),
        "mostly -inf (buy-again)": np.where(rng.random((40, n)) < 0.997, -np.inf, rng.random((40, n))),
        "mostly 0": np.where(rng.random((40, n)) < 0.99, 0.0, rng.random((40, n))),
        "few distinct values": rng.integers(0, 4, (40, n)).astype(float),
        "all -inf": np.full((40, n), -np.inf),
        "ascending": np.tile(np.linspace(0.0, 1.0, n), (40, 1)),
        "negative, with −0 and +0 (which tie)": np.where(
            rng.random((40, n)) < 0.5, rng.choice([-0.0, 0.0], (40, n)), -np.abs(rng.standard_normal((40, n)))
        ),
    }
    for name, scores in rows.items():
        scores = scores.astype(np.float32)
        for k in (1, 10, 20, 100):
            ids, vals = top_k(scores, k=k)
            order = np.lexsort((np.tile(np.arange(n), (len(scores), 1)), -scores), axis=1)[:, :k]
            expected = np.take_along_axis(scores, order, axis=1)
            np.testing.assert_array_equal(vals, expected, err_msg=f"{name}, k={k}")
            finite = np.isfinite(expected)
            np.testing.assert_array_equal(ids[finite], order[finite], err_msg=f"{name}, k={k}")


def test_top_blended_equals_ranking_every_item(hybrid: ModelBundle) -> None:
    """Evaluation's shared-work ranking gives the lists `blend_scores` + `top_k` give, ties and
    padding included, for every context, blend and list length (and falls back for unknown customers)."""
    from dataclasses import replace

    from training.core.blend import Blend, blend_scores, top_blended
    from training.core.topk import top_k

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


def test_fit_beside_the_tuning_gives_the_same_configuration(small_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the model-search size the collaborative fit runs in a thread beside the recency tuning:
    the same fit, choices and test bundle as one after the other."""
    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=200)
    params = {"candidates": "als", "regularization": "0.05"}  # no search either way
    inline = fit_configuration(model="hybrid", params=params, prepared=prepared, log=lambda _: None)
    monkeypatch.setattr(fit_module, "SEARCH_MAX_PAIRS", 0)
    threads: list[str] = []
    fit = algorithms.fit_collaborative
    monkeypatch.setattr(
        algorithms, "fit_collaborative", lambda **kw: threads.append(threading.current_thread().name) or fit(**kw)
    )
    beside = fit_configuration(model="hybrid", params=params, prepared=prepared, log=lambda _: None)
    assert threads and all(name.startswith("fit") for name in threads)
    assert beside.blend == inline.blend and beside.half_life == inline.half_life
    assert beside.popularity_half_life == inline.popularity_half_life
    assert beside.test_bundle.collaborative is not None and inline.test_bundle.collaborative is not None
    np.testing.assert_allclose(
        beside.test_bundle.collaborative.user_factors, inline.test_bundle.collaborative.user_factors, rtol=1e-5
    )
