"""The model families on known answers: the checkerboard's withheld item, agreement with implicit, the
ALS fold-in, and the histories and popularity each split takes from all lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import purchase_lines
from tests.unit.training.conftest import checkerboard
from training import algorithms
from training.algorithms.blends import baseline_blend
from training.algorithms.popularity import _snapshot_after, popularity, popularity_timeline
from training.algorithms.repurchase import basket_events, baskets_of, build_history, history_matrix
from training.core.blend import blend_scores
from training.core.copurchase import CategoryBaskets
from training.interactions import build_interactions
from training.pipeline.fit import evaluate_on_test, fit_configuration
from training.pipeline.prepare import Catalog, Lines, customer_cuts, prepare
from training.split import chronological_split


@pytest.mark.parametrize("model", ["ease", "knn-cosine"])
def test_checkerboard_withheld_item_ranks_first_in_discover(model: str) -> None:
    prepared = prepare(purchases=checkerboard(), catalog=None, eval_users=1000)
    fitted = fit_configuration(model=model, params={"half_life": "inf"}, prepared=prepared, log=lambda _: None)
    results = evaluate_on_test(fitted=fitted, prepared=prepared)
    assert results[model]["discover/ndcg_at_10"] == pytest.approx(1.0)
    assert results[model]["discover/hit_rate_at_10"] == pytest.approx(1.0)
    # Popularity cannot tell the halves apart: every item is equally popular among the others.
    assert results["popularity"]["discover/ndcg_at_10"] < 0.9


def test_collaborative_scores_agree_with_implicit_recommend(small_store: Path) -> None:
    """Pure ALS in `discover` through the ranking core = implicit's recommend(filter_already_liked_items=True)."""
    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=100)
    inter = prepared.interactions
    history = build_history(interactions=inter, reference_day=float(inter.day.max()), half_life=90.0)
    matrix = history_matrix(history, n_items=inter.n_items)
    fitted = algorithms.fit_collaborative(name="als", matrix=matrix, params={"iterations": 5})
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


def test_als_stops_at_the_first_score_not_above_the_best_and_keeps_the_best(small_store: Path) -> None:
    """Early stopping: scored after 4 iterations, then every 2; the first score not above the best
    stops the fit, whose factors are then the best count's, as a plain fit of that many gives them.
    Without a validation score (NaN) or with `iterations` given, a plain fit of the limit."""
    prepared = prepare(purchases=pq.read_table(small_store / "purchases.parquet"), catalog=None, eval_users=100)
    inter = prepared.interactions
    history = build_history(interactions=inter, reference_day=float(inter.day.max()), half_life=90.0)
    matrix = history_matrix(history, n_items=inter.n_items)
    said = iter([0.10, 0.30, 0.30, 0.50])  # after 4, 6 and 8 iterations: the tie at 8 stops the fit

    def score(scorer: object) -> float:
        return next(said)

    fitted = algorithms.fit_collaborative(name="als", matrix=matrix, params={}, score=score)
    assert fitted.chosen == {"iterations": 6}
    assert fitted.scores == {"iterations_4": 0.10, "iterations_6": 0.30, "iterations_8": 0.30}
    plain = algorithms.fit_collaborative(name="als", matrix=matrix, params={"iterations": 6})
    np.testing.assert_allclose(fitted.scorer.user_factors, plain.scorer.user_factors, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fitted.scorer.item_factors, plain.scorer.item_factors, rtol=1e-4, atol=1e-6)
    assert fitted.model.iterations == 6

    limit = algorithms.fit_collaborative(name="als", matrix=matrix, params={})
    unscored = algorithms.fit_collaborative(name="als", matrix=matrix, params={}, score=lambda _: float("nan"))
    assert unscored.chosen == {} and unscored.model.iterations == 15
    np.testing.assert_allclose(unscored.scorer.item_factors, limit.scorer.item_factors, rtol=1e-4, atol=1e-6)

    def never(scorer: object) -> float:
        raise AssertionError("iterations were given: nothing to stop on")

    given = algorithms.fit_collaborative(name="als", matrix=matrix, params={"iterations": "3"}, score=never)
    assert given.chosen == {} and given.model.iterations == 3


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


def test_basket_events_are_one_per_basket_and_item_on_its_earliest_line() -> None:
    """Lines in any order, a basket listing an item on several lines at different times: one event per
    (basket, item) on the day of its earliest line, grouped by (customer, item), each pair's events
    in basket order; as a loop over the lines defines them."""
    from training.interactions import Interactions

    rng = np.random.default_rng(3)
    n, n_users, n_items = 3_000, 40, 25
    user = rng.integers(0, n_users, n).astype(np.int32)
    basket = user * 10 + rng.integers(0, 10, n)  # ten baskets per customer: many items on several lines
    inter = Interactions(
        user_ids=np.array([f"U{u}" for u in range(n_users)]),
        item_ids=np.array([f"I{i}" for i in range(n_items)]),
        user=user,
        item=rng.integers(0, n_items, n).astype(np.int32),
        day=rng.uniform(19_000, 19_100, n),
        basket=basket.astype(np.int64),
    )
    earliest: dict[tuple[int, int], float] = {}  # (customer * n_items + item, basket) -> day
    for u, i, b, d in zip(inter.user, inter.item, inter.basket, inter.day, strict=True):
        key = (int(u) * n_items + int(i), int(b))
        earliest[key] = min(earliest.get(key, np.inf), float(d))
    expected = sorted(earliest)  # by pair, then basket
    pairs = [pair for pair, _ in expected]
    events = basket_events(inter)
    assert len(events.day) == len(expected) < n
    np.testing.assert_array_equal(events.keys[events.pair], pairs)
    np.testing.assert_array_equal(events.basket, [b for _, b in expected])
    np.testing.assert_array_equal(events.day, [earliest[key] for key in expected])
    np.testing.assert_array_equal(events.baskets, np.unique(pairs, return_counts=True)[1])


def test_split_events_taken_from_all_lines_equal_events_built_from_the_split(small_store: Path) -> None:
    """The trainer builds the (basket, item) events once and gives each split its baskets' events."""
    from training.data.load import load_purchases

    inter = build_interactions(purchases=load_purchases(small_store / "purchases.parquet")[0])
    split = chronological_split(inter)
    every = basket_events(inter)
    for lines in (split.train, split.train | split.validation, split.test):
        direct = basket_events(inter.subset(lines))
        taken = every.of_baskets(baskets_of(inter, lines))
        for name in ("keys", "pair", "day", "baskets", "first_day", "last_day", "basket"):
            np.testing.assert_array_equal(getattr(taken, name), getattr(direct, name), err_msg=name)


def test_aisle_counts_in_parts_cut_between_customers_equal_one_count(small_store: Path) -> None:
    """Counted a part at a time, cut where one customer's events end, the aisles' basket counts are
    those of one count over all events; no cut falls inside a customer's events."""
    from training.data.load import load_purchases

    inter = build_interactions(purchases=load_purchases(small_store / "purchases.parquet")[0])
    events = basket_events(inter)
    item = (events.keys % events.n_items)[events.pair]
    category = np.where(item % 7 == 0, -1, item % 5)  # five aisles, some items without one
    cuts = customer_cuts(events, every=len(events.pair) // 9)
    assert len(cuts) >= 5
    customer = (events.keys // events.n_items)[events.pair]
    assert all(customer[cut - 1] != customer[cut] for cut in cuts)
    whole = CategoryBaskets.count(basket=events.basket, category=category, n_categories=5)
    parts = CategoryBaskets.count(basket=events.basket, category=category, n_categories=5, cuts=cuts)
    np.testing.assert_array_equal(parts.together, whole.together)
    assert parts.baskets == whole.baskets and whole.together.sum() > 0


def test_released_events_keep_what_was_computed_and_come_back_equal(small_store: Path) -> None:
    """After `release_events` (the refit's lines, once their figures are computed) the figures asked
    for before are the same objects, and the events, asked for again, are computed equal."""
    from training.data.load import load_purchases

    lines = Lines(build_interactions(purchases=load_purchases(small_store / "purchases.parquet")[0]))
    history, popular = lines.history(90.0), lines.popularity(14.0)
    before = lines.events
    lines.release_events()
    assert lines._events is None and lines._popularity_events is None
    assert lines.history(90.0) is history and lines.popularity(14.0) is popular
    again = lines.events
    assert again is not before
    for name in ("keys", "pair", "day", "baskets", "first_day", "last_day", "basket"):
        np.testing.assert_array_equal(getattr(again, name), getattr(before, name), err_msg=name)


def test_popularity_counts_a_customer_once_per_basket() -> None:
    """An order listing an item on two lines counts once, two orders of it on one day twice; without
    order ids a basket is the customer's day. Counted on the day of the basket's earliest line."""
    day = datetime(2025, 3, 1, 9, tzinfo=UTC)
    rows = [
        ("U", "A", day, "o1"),
        ("U", "A", day + timedelta(minutes=1), "o1"),  # the same order: once
        ("U", "A", day + timedelta(hours=5), "o2"),  # a second order the same day: counted
        ("V", "A", day - timedelta(days=7), "o3"),  # a week earlier: weighs half at a 7-day half-life
        ("V", "B", day, "o4"),
    ]
    inter = build_interactions(purchases=purchase_lines(rows))
    a, b = (int(np.flatnonzero(inter.item_ids == i)[0]) for i in "AB")
    now = float(inter.day.max())
    counted = popularity(interactions=inter, reference_day=now, half_life=np.inf)
    assert counted[a] == 3.0 and counted[b] == 1.0
    weighted = popularity(interactions=inter, reference_day=now, half_life=7.0)
    hours = np.array([5 / 24, 0.0, 7 + 5 / 24]) * -1 / 7.0  # the two orders' and V's ages in half-lives
    assert weighted[a] == pytest.approx(float(np.exp2(hours).sum()), rel=1e-6)
    no_orders = build_interactions(purchases=purchase_lines([r[:3] for r in rows]))
    assert popularity(interactions=no_orders, reference_day=now, half_life=np.inf)[a] == 2.0  # U's day, V's day


def test_snapshot_of_each_line_equals_searchsorted() -> None:
    """Evenly spaced snapshot days: the arithmetic bucket equals np.searchsorted, boundaries included."""
    rng = np.random.default_rng(2)
    days = 19_000.25 + (730.5 / 256) * (1 + 1e-9) * np.arange(257)
    day = np.concatenate([rng.uniform(days[0] - 1, days[-1] + 1, 50_000), days, np.nextafter(days, -np.inf)])
    np.testing.assert_array_equal(_snapshot_after(days, day), np.searchsorted(days, day, side="right"))


def test_evaluation_ranks_with_the_popularity_of_the_baskets_own_day() -> None:
    """Item A sells in January, item B in June: a January basket must see A as the popular item,
    without June's lines (which production could not have known then), and the end of the data B."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [(f"U{u}", "A", start + timedelta(days=u)) for u in range(6)]
    rows += [(f"V{u}", "B", start + timedelta(days=150 + u)) for u in range(9)]
    rows += [("W", "C", start + timedelta(days=165))]
    table = purchase_lines(rows)

    inter = build_interactions(purchases=table)
    timeline = popularity_timeline(interactions=inter, half_life=14.0)
    a, b, c = (int(np.flatnonzero(inter.item_ids == i)[0]) for i in "ABC")
    january, june = inter.day.min() + 10, inter.day.min() + 160
    early, late, first = timeline.at(np.array([january, june, inter.day.min() - 1]))
    assert early[a] == 1.0 and early[b] == 0.0 and early[c] == 0.0  # nothing from later lines
    assert late[b] == 1.0 and late[a] < 0.01
    assert not first.any()  # before the first line nobody has bought anything
    # The last snapshot is the bundle's own popularity (what is served at the end of the data).
    end = popularity(interactions=inter, reference_day=float(inter.day.max()), half_life=14.0)
    assert np.allclose(timeline.values[-1], end / end.max())
    bundle = Lines(inter).bundle(
        half_life=90.0,
        popularity_half_life=14.0,
        blend=baseline_blend("popularity"),
        collaborative=None,
        catalog=Catalog(
            in_stock=np.ones(inter.n_items, bool),
            item_category=np.full(inter.n_items, -1, np.int32),
            categories=np.array([], dtype=str),
        ),
        timeline=True,
    )
    unknown = np.array([-1, -1])
    scores = blend_scores(
        bundle.signals(rows=unknown, now=np.array([january, june])), blend=bundle.blend, context="home"
    )
    assert scores.argmax(axis=1).tolist() == [a, b]
    # Without a day (serving), the popularity at the end of the data.
    assert blend_scores(bundle.signals(rows=unknown), blend=bundle.blend, context="home").argmax(axis=1).tolist() == [
        b,
        b,
    ]


def test_families_are_fitted_and_folded_in_through_the_registry() -> None:
    """One registry, no name branches: every collaborative name is a family; a name that is none is one
    sentence; families without a fold-in return the very fit they were given."""
    assert algorithms.COLLABORATIVE == ("als", "bpr", "knn-cosine", "knn-bm25", "ease")
    assert ("hybrid", "popularity", "frequency", *algorithms.COLLABORATIVE) == algorithms.MODELS
    assert all(algorithms.FAMILIES[name].name == name for name in algorithms.COLLABORATIVE)
    inter = build_interactions(purchases=checkerboard())
    history = build_history(interactions=inter, reference_day=float(inter.day.max()), half_life=90.0)
    matrix = history_matrix(history, n_items=inter.n_items)
    for name in ("knn-cosine", "knn-bm25", "ease"):
        fitted = algorithms.fit_collaborative(name=name, matrix=matrix, params={})
        assert fitted.name == name and fitted.seconds > 0
        assert algorithms.fold_in(fitted=fitted, matrix=matrix, users=np.arange(3)) is fitted
    with pytest.raises(algorithms.UnknownModel, match="'hybrid' is not a collaborative model: use one of als, "):
        algorithms.fit_collaborative(name="hybrid", matrix=matrix, params={})
    with pytest.raises(algorithms.UnknownModel, match="Unknown model 'deep-magic'"):
        algorithms.check_model("deep-magic")
