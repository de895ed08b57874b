"""Basket completion on the known-answer shop (shop.py), through the plain function and the route."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.baskets.service import complete_basket
from service.deps import get_model
from service.model import LoadedModel
from service.online.items import ItemCatalog
from tests.unit.service.shop import Shop


def _complete(
    model: LoadedModel | None,
    catalog: ItemCatalog,
    basket: list[str],
    *,
    user_id: str | None = None,
    just_bought: set[str] | None = None,
    k: int = 5,
) -> tuple[list[tuple[str, float, str | None]], str, list[str]]:
    ranked = complete_basket(
        model=model,
        catalog=catalog,
        user_id=user_id,
        basket=basket,
        k=k,
        just_bought=just_bought or set(),
        explain=True,
    )
    return ranked.items, ranked.source, ranked.degraded_reasons


def test_a_cart_is_completed_with_what_goes_with_it(model: LoadedModel, catalog: ItemCatalog) -> None:
    items, source, _ = _complete(model, catalog, ["I0"])
    # Butter goes best with Whole Milk but is sold out; nothing else was ever bought with it.
    assert source == "model"
    assert items == [
        ("I1", pytest.approx(0.9 / 0.95), "goes with Whole Milk"),
        ("I4", pytest.approx(0.3 / 0.95), "goes with Whole Milk"),
    ]


def test_each_item_names_the_cart_item_it_goes_with_best(model: LoadedModel, catalog: ItemCatalog) -> None:
    items, _, _ = _complete(model, catalog, ["I0", "I3"])
    reasons = {i: r for i, _, r in items}
    assert reasons == {"I1": "goes with Whole Milk", "I4": "goes with Sourdough", "I5": "goes with Sourdough"}
    assert [i for i, _, _ in items] == ["I4", "I1", "I5"]  # Bagels go with both: 0.3/0.95 + 0.8/0.8


def test_just_bought_items_are_not_offered(model: LoadedModel, catalog: ItemCatalog) -> None:
    items, _, _ = _complete(model, catalog, ["I0"], just_bought={"I1"})
    assert [i for i, _, _ in items] == ["I4"]


def test_a_known_customers_own_taste_joins_the_cart(model: LoadedModel, catalog: ItemCatalog) -> None:
    anonymous, _, _ = _complete(model, catalog, ["I0"], k=9)
    personal, source, _ = _complete(model, catalog, ["I0"], user_id="C2", k=9)
    assert source == "model"
    ids = [i for i, _, _ in personal]
    assert "I6" in ids and "I6" not in [i for i, _, _ in anonymous]  # C2's apples, bought with nothing here
    assert not {"I0", "I2", "I8"} & set(ids)  # the cart, and what is sold out
    assert dict((i, r) for i, _, r in personal)["I6"] == "picked for you"


def test_a_cart_the_model_does_not_know_gets_popular(model: LoadedModel, catalog: ItemCatalog) -> None:
    items, source, _ = _complete(model, catalog, ["no-such-item"], k=3)
    assert source == "popular" and [i for i, _, _ in items] == ["I1", "I4", "I0"]


def test_without_a_model_the_catalogs_popular_items_answer(catalog: ItemCatalog) -> None:
    items, source, reasons = _complete(None, catalog, ["I1"], just_bought={"I4"}, k=2)
    assert source == "popular" and [i for i, _, _ in items] == ["I0", "I6"] and reasons == ["model-not-loaded"]


def test_the_route_completes_the_cart_for_the_customer(make_shop: Callable[..., Shop], model: LoadedModel) -> None:
    shop = make_shop(model)
    anonymous = shop.post("/v1/baskets/complete", json={"items": ["I0"], "k": 5, "explain": True})
    personal = shop.post("/v1/baskets/complete", json={"items": ["I0"], "k": 5, "user_id": "C2"})
    assert anonymous.status_code == 200, anonymous.text
    assert [i["item_id"] for i in anonymous.json()["items"]] == ["I1", "I4"]
    assert anonymous.json()["items"][0]["reason"] == "goes with Whole Milk"
    assert "I6" in [i["item_id"] for i in personal.json()["items"]]
    assert personal.json()["model_version"] == "7" and personal.json()["degraded"] is False


def test_the_route_serves_the_model_its_dependency_gives(make_shop: Callable[..., Shop], model: LoadedModel) -> None:
    shop = make_shop(model)
    shop.app.dependency_overrides[get_model] = lambda: None  # as if no model were loaded
    body = shop.post("/v1/baskets/complete", json={"items": ["I1"], "k": 2}).json()
    assert body["model_version"] is None and body["degraded_reasons"] == ["model-not-loaded"]
    assert [i["item_id"] for i in body["items"]] == ["I4", "I0"]


def test_the_route_checks_the_carts_bounds(make_shop: Callable[..., Shop], model: LoadedModel) -> None:
    shop = make_shop(model)
    for body in (
        {"items": []},
        {"items": [f"i{n}" for n in range(101)]},
        {"items": ["i" * 129]},
        {"items": ["I0"], "k": 0},
        {"items": ["I0"], "k": 101},
        {"items": ["I0"], "surprise": 1},
    ):
        r = shop.post("/v1/baskets/complete", json=body)
        assert r.status_code == 422 and r.json()["detail"], body
