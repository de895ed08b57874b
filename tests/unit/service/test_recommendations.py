"""Recommendations and similar items on the known-answer shop (shop.py): the fallback chain link by
link, the live filters, the reasons, through the plain functions and through the routes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from service.errors import UnknownCategory, UnknownItem
from service.model import LoadedModel
from service.online.features import Candidates, CustomerFeatures
from service.online.items import ItemCatalog
from service.recommendations.reasons import explain_for_customer
from service.recommendations.service import recommend_for_customer, similar_to_item
from tests.unit.service.shop import SENSITIVE, Shop, StubFeatures, without_stock
from training.core.bundle import ModelBundle
from training.features.candidates import candidate_lists

SOLD_OUT = {"I2", "I8"}


def _recommend(
    model: LoadedModel | None,
    catalog: ItemCatalog,
    user_id: str,
    *,
    k: int = 3,
    context: str = "home",
    category: str | None = None,
    exclude: tuple[str, ...] = (),
    just_bought: frozenset[str] = frozenset(),
    features: CustomerFeatures | None = None,
    explain: bool = False,
) -> tuple[list[str], str, list[str | None]]:
    ranked = recommend_for_customer(
        model=model,
        catalog=catalog,
        user_id=user_id,
        k=k,
        context=context,
        category=category,
        exclude=list(exclude),
        just_bought=set(just_bought),
        features=features,
        explain=explain,
    )
    return [i for i, _, _ in ranked.items], ranked.source, [r for _, _, r in ranked.items]


# --- a customer the model knows ---------------------------------------------------------------------


def test_a_known_customer_gets_the_cores_ranking(model: LoadedModel, catalog: ItemCatalog) -> None:
    ids, source, reasons = _recommend(model, catalog, "C1", k=3)
    core = model.bundle.recommend_batch(["C1"], k=3)[0]
    assert source == "model" and ids == [i for i, _ in core] == ["I0", "I4", "I1"]
    assert reasons == [None, None, None]


def test_contexts_keep_to_what_the_customer_bought_or_not(model: LoadedModel, catalog: ItemCatalog) -> None:
    again, _, _ = _recommend(model, catalog, "C1", k=5, context="buy-again")
    new, _, _ = _recommend(model, catalog, "C1", k=9, context="discover")
    assert again == ["I0", "I3"]
    assert new and not {"I0", "I3"} & set(new) and not SOLD_OUT & set(new)


def test_excluded_and_just_bought_items_are_left_out(model: LoadedModel, catalog: ItemCatalog) -> None:
    ids, source, _ = _recommend(model, catalog, "C1", k=3, exclude=("I0",), just_bought=frozenset({"I4"}))
    assert source == "model" and ids == ["I1", "I3", "I5"]


def test_a_sold_out_item_leaves_the_answer(model: LoadedModel, catalog: ItemCatalog) -> None:
    sold_out = replace(model, bundle=without_stock(model.bundle, "I4"))
    ids, _, _ = _recommend(sold_out, catalog, "C1", k=3)
    assert ids == ["I0", "I1", "I3"]


def offline(bundle: ModelBundle, user: str, *, version: str = "7", size: int = 4) -> CustomerFeatures:
    """The customer's features with the candidates `reco candidates build` computes for `version`."""
    lists = candidate_lists(bundle, np.array([bundle.user_index[user]]), size=size)
    return CustomerFeatures(
        known=True, candidates=(Candidates.unpacked(version, lists["home"][0], lists["discover"][0]),)
    )


def test_offline_candidates_answer_as_the_core_ranks(bundle: ModelBundle, catalog: ItemCatalog) -> None:
    served = LoadedModel(bundle, "7", "uri", "uri/7", loaded_at=None, load_seconds=0.0)  # type: ignore[arg-type]
    for user, exclude in (("C1", ()), ("C1", ("I0", "I4")), ("C2", ("I6",)), ("C3", ())):
        ids, _, _ = _recommend(served, catalog, user, k=3, exclude=exclude, features=offline(bundle, user))
        assert ids == [i for i, _ in bundle.recommend_batch([user], k=3, exclude_items=exclude)[0]], (user, exclude)
    # The answer comes from the lists: reversed lists give a reversed answer.
    [lists] = offline(bundle, "C1").candidates
    flipped = replace(lists, home=lists.home[::-1], home_scores=lists.home_scores[::-1])
    ids, _, _ = _recommend(served, catalog, "C1", k=3, features=CustomerFeatures(known=True, candidates=(flipped,)))
    assert (
        ids
        == [i for i in bundle.item_ids[flipped.home].tolist() if i not in SOLD_OUT][:3]
        != [i for i, _ in bundle.recommend_batch(["C1"], k=3)[0]]
    )
    # The store holds the lists of two versions: the served version's are used, whichever slot.
    newer = replace(flipped, version="8")
    ids, _, _ = _recommend(served, catalog, "C1", k=3, features=CustomerFeatures(known=True, candidates=(newer, lists)))
    assert ids == [i for i, _ in bundle.recommend_batch(["C1"], k=3)[0]]
    # Lists of another model version (flipped: used, they would give another answer), or more
    # excluded than the lists hold: the core ranks on the spot.
    for features, exclude in (
        (CustomerFeatures(known=True, candidates=(replace(flipped, version="6"),)), ()),
        (offline(bundle, "C1"), ("I0", "I4", "I1")),
    ):
        ids, _, _ = _recommend(served, catalog, "C1", k=3, exclude=exclude, features=features)
        assert ids == [i for i, _ in bundle.recommend_batch(["C1"], k=3, exclude_items=exclude)[0]]


def test_a_category_keeps_the_answer_inside_it(model: LoadedModel, catalog: ItemCatalog) -> None:
    fruit, source, _ = _recommend(model, catalog, "C1", k=5, category="Fruit")
    assert source == "model" and fruit == ["I6", "I7"]
    # A sold-out category: popular, and `source` says so (never other categories as "model").
    ids, source, _ = _recommend(model, catalog, "C1", k=3, category="Spices")
    assert source == "popular" and ids == ["I1", "I4", "I0"]


def test_an_unknown_category_is_not_found_unless_popular_is_asked_for(model: LoadedModel, catalog: ItemCatalog) -> None:
    # Changed by the issue "What the shopper sees": an unknown category used to answer the top sellers.
    for user in ("C1", "nobody"):
        with pytest.raises(UnknownCategory, match="No category 'No Such Aisle'"):
            _recommend(model, catalog, user, k=3, category="No Such Aisle")
    ranked = recommend_for_customer(
        model=model,
        catalog=catalog,
        user_id="C1",
        k=3,
        context="home",
        category="No Such Aisle",
        exclude=[],
        just_bought=set(),
        features=None,
        explain=False,
        fallback="popular",
    )
    assert (ranked.source, ranked.fallback) == ("popular", "unknown category 'No Such Aisle'")
    assert [i for i, _, _ in ranked.items] == ["I1", "I4", "I0"]


def test_reasons_name_the_customers_own_purchases(model: LoadedModel, catalog: ItemCatalog) -> None:
    reasons = explain_for_customer(model=model, catalog=catalog, user_id="C1", items=["I0", "I3", "I1", "I7"])
    assert reasons == [
        "you buy this about every 10 days",  # three baskets, 20 days apart end to end
        "you bought this before",  # one basket: no rhythm
        "because you bought Whole Milk",  # Oat Milk is bought with Whole Milk, which C1 bought
        "popular in Fruit",  # nothing C1 bought goes with Pears
    ]
    _, _, explained = _recommend(model, catalog, "C1", k=3, explain=True)
    assert explained == explain_for_customer(model=model, catalog=catalog, user_id="C1", items=["I0", "I4", "I1"])


# --- the fallback chain for customers the model does not know -----------------------------------------


def test_an_unknown_customer_gets_popular_items_in_stock(model: LoadedModel, catalog: ItemCatalog) -> None:
    ids, source, reasons = _recommend(model, catalog, "nobody", k=3, explain=True)
    assert source == "popular" and ids == ["I1", "I4", "I0"]  # Butter is the most popular, but sold out
    assert reasons == ["popular in Dairy", "popular in Bakery", "popular in Dairy"]


def test_recent_purchases_seed_item_to_item(model: LoadedModel, catalog: ItemCatalog) -> None:
    seen = CustomerFeatures(known=True, recent_items=("I3",), recent_item_times=(0,))
    ids, source, reasons = _recommend(model, catalog, "newcomer", k=5, features=seen, explain=True)
    assert source == "item-to-item" and ids == ["I4", "I5"]  # the neighbours of Sourdough, strongest first
    assert reasons == ["because you bought Sourdough"] * 2


def test_a_posted_purchase_seeds_item_to_item_too(model: LoadedModel, catalog: ItemCatalog) -> None:
    ids, source, _ = _recommend(model, catalog, "newcomer", k=5, just_bought=frozenset({"I0"}))
    assert source == "item-to-item" and ids == ["I1", "I4"]  # never the sold-out Butter, nor Whole Milk itself


def test_buy_again_never_serves_someone_elses_items(model: LoadedModel, catalog: ItemCatalog) -> None:
    # Changed by the issue "What the shopper sees": buy-again for an unknown customer used to be popular items.
    ids, source, _ = _recommend(model, catalog, "nobody", context="buy-again")
    assert (ids, source) == ([], "no-history")
    seen = CustomerFeatures(known=True, recent_items=("I3", "I2", "unknown-item"), recent_item_times=(0, 0, 0))
    ids, source, reasons = _recommend(model, catalog, "newcomer", context="buy-again", features=seen, explain=True)
    assert (ids, source, reasons) == (["I3"], "recent-purchases", ["you bought this recently"])  # Butter: sold out
    # A known customer with nothing of theirs in the category: empty, not someone else's items.
    ids, source, _ = _recommend(model, catalog, "C1", context="buy-again", category="Fruit")
    assert (ids, source) == ([], "model")


def test_a_category_the_neighbours_miss_moves_on_to_popular_in_category(
    model: LoadedModel, catalog: ItemCatalog
) -> None:
    seen = CustomerFeatures(known=True, recent_items=("I3",), recent_item_times=(0,))
    ids, source, _ = _recommend(model, catalog, "newcomer", k=5, category="Fruit", features=seen)
    assert source == "popular-in-category" and ids == ["I6", "I7"]


def test_an_unknown_customers_favourite_category_comes_first(model: LoadedModel, catalog: ItemCatalog) -> None:
    fruit_first = CustomerFeatures(known=True, top_categories=("Fruit", "Dairy"))
    ids, source, _ = _recommend(model, catalog, "newcomer", k=3, features=fruit_first)
    assert source == "popular-in-category" and ids == ["I6", "I7"]
    # A favourite aisle that is sold out is not served as "popular in" it: plain popular, named so.
    spices_first = CustomerFeatures(known=True, top_categories=("Spices", "Fruit"))
    ids, source, _ = _recommend(model, catalog, "newcomer", k=3, features=spices_first)
    assert source == "popular" and ids == ["I1", "I4", "I0"]


def test_without_a_model_item_stats_popularity_answers_degraded(catalog: ItemCatalog) -> None:
    ranked = recommend_for_customer(
        model=None,
        catalog=catalog,
        user_id="C1",
        k=3,
        context="home",
        category=None,
        exclude=[],
        just_bought={"I1"},
        features=None,
        explain=True,
    )
    assert ranked.source == "popular" and ranked.degraded_reasons == ["model-not-loaded"]
    assert [(i, s) for i, s, _ in ranked.items] == [("I4", 1.0), ("I0", pytest.approx(8 / 9)), ("I6", 7 / 9)]
    fruit, source, _ = _recommend(None, catalog, "C1", k=3, category="Fruit")
    assert source == "popular-in-category" and fruit == ["I6", "I7"]
    nothing, source, _ = _recommend(None, ItemCatalog(), "C1")
    assert source == "none" and nothing == []


# --- similar items ----------------------------------------------------------------------------------------


def test_similar_items_are_the_neighbours_then_popular(model: LoadedModel, catalog: ItemCatalog) -> None:
    ranked = similar_to_item(model=model, catalog=catalog, item_id="I0", k=3, explain=True)
    assert ranked.source == "model"
    # No customer of the shop bought Whole Milk with either: the model's neighbours, not "also bought".
    assert ranked.items == [
        ("I1", pytest.approx(0.9), "similar to Whole Milk"),
        ("I4", pytest.approx(0.3), "similar to Whole Milk"),
        ("I6", 0.0, "popular in Fruit"),  # the core's fill-up: not bought together, so not said to be
    ]


def test_an_item_without_neighbours_gets_popular(model: LoadedModel, catalog: ItemCatalog) -> None:
    ranked = similar_to_item(model=model, catalog=catalog, item_id="I8", k=3, explain=False)  # its aisle sold out
    assert ranked.source == "popular" and [i for i, _, _ in ranked.items] == ["I1", "I4", "I0"]


def test_an_unknown_item_is_not_found_unless_popular_is_asked_for(model: LoadedModel, catalog: ItemCatalog) -> None:
    # Changed by the issue "What the shopper sees": an unknown item used to answer popular items.
    with pytest.raises(UnknownItem, match="No item 'no-such-item'"):
        similar_to_item(model=model, catalog=catalog, item_id="no-such-item", k=3, explain=False)
    ranked = similar_to_item(
        model=model, catalog=catalog, item_id="no-such-item", k=3, explain=False, fallback="popular"
    )
    assert (ranked.source, ranked.fallback) == ("popular", "unknown item 'no-such-item'")
    assert [i for i, _, _ in ranked.items] == ["I1", "I4", "I0"]


def test_similar_items_without_a_model_come_from_the_items_category(catalog: ItemCatalog) -> None:
    ranked = similar_to_item(model=None, catalog=catalog, item_id="I3", k=3, explain=False)
    assert ranked.source == "popular-in-category" and [i for i, _, _ in ranked.items] == ["I4", "I5"]
    assert ranked.degraded


# --- through the routes ---------------------------------------------------------------------------------


def test_the_route_answers_the_cores_list_with_version_and_request_id(make_shop, model: LoadedModel) -> None:
    shop: Shop = make_shop(model)
    r = shop.get("/v1/users/C1/recommendations", params={"k": 3, "explain": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["item_id"] for i in body["items"]] == ["I0", "I4", "I1"]
    assert body["items"][0]["reason"] == "you buy this about every 10 days"
    assert (body["model_version"], body["source"], body["degraded"]) == ("7", "model", False)
    assert body["request_id"] == r.headers["x-request-id"]


def test_the_route_splits_exclude_and_bounds_it(make_shop, model: LoadedModel) -> None:
    shop: Shop = make_shop(model)
    r = shop.get("/v1/users/C1/recommendations", params=[("k", "3"), ("exclude", "I0,I4"), ("exclude", "I1")])
    assert [i["item_id"] for i in r.json()["items"]] == ["I3", "I5", "I6"]
    # The bounds are the query model's, so OpenAPI states them: at most 100 values of at most 128 characters.
    many = shop.get("/v1/users/C1/recommendations", params=[("exclude", f"x{n}") for n in range(101)])
    assert many.status_code == 422 and "at most 100" in many.json()["detail"][0]["msg"]
    long = shop.get("/v1/users/C1/recommendations", params={"exclude": "x" * 129})
    assert long.status_code == 422 and "at most 128" in long.json()["detail"][0]["msg"]
    assert shop.get("/v1/users/C1/recommendations", params={"exclude": "x" * 128}).status_code == 200
    exclude = next(
        p
        for p in shop.client.get("/openapi.json").json()["paths"]["/v1/users/{user_id}/recommendations"]["get"][
            "parameters"
        ]
        if p["name"] == "exclude"
    )["schema"]["anyOf"][0]
    assert (exclude["maxItems"], exclude["items"]["maxLength"]) == (100, 128)


def test_an_online_store_outage_is_a_degraded_answer_not_an_error(make_shop, model: LoadedModel) -> None:
    shop: Shop = make_shop(model, features=StubFeatures(down="online-store-timeout"))
    body = shop.get("/v1/users/C1/recommendations", params={"k": 3}).json()
    assert body["source"] == "model" and body["degraded"] is True
    assert body["degraded_reasons"] == ["online-store-timeout"]


def test_recent_items_from_the_online_store_count_as_just_bought(make_shop, model: LoadedModel) -> None:
    from tests.unit.service.shop import NOW

    recent = CustomerFeatures(known=True, recent_items=("I4", "I1"), recent_item_times=(int(NOW.timestamp()) - 60, 0))
    shop: Shop = make_shop(model, features=StubFeatures(customers={"C1": recent}))
    body = shop.get("/v1/users/C1/recommendations", params={"k": 3}).json()
    assert [i["item_id"] for i in body["items"]] == ["I0", "I1", "I3"]  # I4 a minute ago; I1 long ago


def test_a_posted_purchase_is_not_recommended_again(make_shop, model: LoadedModel) -> None:
    shop: Shop = make_shop(model)
    event = {
        "event_id": "e1",
        "user_id": "C1",
        "item_id": "I0",
        "timestamp": shop.services.settings.clock().isoformat(),
    }
    assert shop.post("/v1/events", key="key-events", json={"events": [event]}).json()["accepted"] == 1
    body = shop.get("/v1/users/C1/recommendations", params={"k": 3}).json()
    assert "I0" not in [i["item_id"] for i in body["items"]]


def test_no_model_answers_fallbacks_marked_degraded(make_shop) -> None:
    shop: Shop = make_shop(None)
    answers = {
        path: shop.get(path, params={"k": 2}).json()
        for path in ("/v1/users/C1/recommendations", "/v1/items/I0/similar")
    }
    for body in answers.values():
        assert body["model_version"] is None and body["degraded_reasons"] == ["model-not-loaded"]
    assert [i["item_id"] for i in answers["/v1/users/C1/recommendations"]["items"]] == ["I1", "I4"]
    assert [i["item_id"] for i in answers["/v1/items/I0/similar"]["items"]] == ["I1"]  # the rest of Dairy in stock


# --- sensitive categories and home's explore slots ----------------------------------------------------


def test_a_sensitive_category_is_not_cross_sold(model: LoadedModel, catalog: ItemCatalog) -> None:
    # Pain Relief goes with Bagels (0.35): offered beside them only without the policy.
    for sensitive, offered in (((), True), (SENSITIVE, False)):
        similar = similar_to_item(model=model, catalog=catalog, item_id="I4", k=9, explain=False, sensitive=sensitive)
        assert ("I9" in [i for i, _, _ in similar.items]) is offered
        ranked = recommend_for_customer(
            model=model,
            catalog=catalog,
            user_id="C2",  # bought Bagels, never anything of Pharmacy
            k=9,
            context="discover",
            category=None,
            exclude=[],
            just_bought=set(),
            features=None,
            explain=False,
            sensitive=sensitive,
        )
        assert ("I9" in [i for i, _, _ in ranked.items]) is offered
    # The anchor in the same category: asked for the aisle, or the item itself.
    asked, source, _ = _recommend(model, catalog, "C2", k=3, category="Pharmacy")
    assert (asked, source) == (["I9"], "model")
    ranked = recommend_for_customer(
        model=model,
        catalog=catalog,
        user_id="C2",
        k=3,
        context="home",
        category="Pharmacy",
        exclude=[],
        just_bought=set(),
        features=None,
        explain=False,
        sensitive=SENSITIVE,
    )
    assert [i for i, _, _ in ranked.items] == ["I9"]


def test_home_gives_a_share_of_its_slots_to_items_new_to_the_customer(
    bundle: ModelBundle, catalog: ItemCatalog
) -> None:
    def home(model: LoadedModel, share: float, features: CustomerFeatures | None) -> list[str]:
        ranked = recommend_for_customer(
            model=model,
            catalog=catalog,
            user_id="C2",
            k=2,
            context="home",
            category=None,
            exclude=[],
            just_bought=set(),
            features=features,
            explain=False,
            explore_share=share,
        )
        return [i for i, _, _ in ranked.items]

    model = LoadedModel(bundle, "7", "uri", "uri/7", loaded_at=None, load_seconds=0.0)  # type: ignore[arg-type]
    for features in (None, offline(bundle, "C2")):  # ranked on the spot, and from the offline lists: the same
        assert home(model, 0.0, features) == ["I6", "I4"]  # both bought before: the plain blend is buy-again here
        # Half the slots (the second): discover's best, Sourdough, which C2 never bought.
        assert home(model, 0.5, features) == ["I6", "I3"]
        assert home(model, 1.0, features) == ["I3", "I7"]


def test_unknown_items_and_categories_answer_404_with_one_sentence(make_shop, model: LoadedModel) -> None:
    shop: Shop = make_shop(model)
    for path, params, detail in (
        ("/v1/items/no-such-item/similar", {}, "No item 'no-such-item' in the catalog."),
        ("/v1/users/C1/recommendations", {"category": "NoSuchCat"}, "No category 'NoSuchCat' in the catalog."),
    ):
        r = shop.get(path, params=params)
        assert r.status_code == 404 and r.json()["detail"] == detail and r.json()["request_id"]
        asked = shop.get(path, params={**params, "fallback": "popular", "k": 2}).json()
        assert asked["source"] == "popular" and asked["fallback"].startswith("unknown ") and len(asked["items"]) == 2
    plain = shop.get("/v1/users/C1/recommendations", params={"k": 2}).json()
    assert plain["fallback"] is None
    bad = shop.get("/v1/users/C1/recommendations", params={"fallback": "anything"})
    assert bad.status_code == 422


def test_buy_again_for_a_customer_without_history_is_empty_and_says_so(make_shop, model: LoadedModel) -> None:
    shop: Shop = make_shop(model)
    body = shop.get("/v1/users/nobody/recommendations", params={"context": "buy-again"}).json()
    assert (body["items"], body["source"]) == ([], "no-history")
    home = shop.get("/v1/users/nobody/recommendations").json()
    assert home["source"] == "popular" and home["items"]  # the home page still gets the fallback chain


@pytest.mark.parametrize(
    ("features", "reason"),
    [
        (StubFeatures(down="online-store-error"), "online-store-error"),
        (StubFeatures(down="online-store-empty"), "online-store-empty"),
        # The model knows C1 but the online store has no row for them: it lost it (emptied a moment ago).
        (StubFeatures(customers={"C1": CustomerFeatures(known=False)}), "customer-features-missing"),
    ],
)
def test_without_features_buy_again_leaves_out_what_the_history_says_was_just_bought(
    make_shop, model: LoadedModel, features: StubFeatures, reason: str
) -> None:
    """Features missing (down, emptied) must not make buy-again offer what was bought a day ago: the
    model's own history stands in (by whole days), and the answer says it is degraded and why."""
    shop: Shop = make_shop(model, features=features)
    shop.services.settings = shop.services.settings.model_copy(update={"just_bought_hours": 48.0})
    body = shop.get("/v1/users/C1/recommendations", params={"k": 3, "context": "buy-again"}).json()
    assert body["degraded"] is True and body["degraded_reasons"] == [reason]
    assert [i["item_id"] for i in body["items"]] == ["I3"]  # I0, last bought two days ago, left out
