"""Shop by recipe on the known-answer shop (shop.py): the customer's usual items, what they have at
home, their price level, sold-out ingredients; through the plain functions and the route."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from service.errors import NotFound
from service.model import LoadedModel
from service.online.items import ItemCatalog
from service.recipes.service import CartLine, find_recipe, load_recipes, recipe_cart
from tests.unit.service.shop import NOW, RECIPES, Shop, without_stock

BREAKFAST = RECIPES["breakfast"]  # Dairy, Bakery, Spices (all Spices sold out)


def _cart(
    model: LoadedModel | None,
    catalog: ItemCatalog,
    user_id: str,
    *,
    now: datetime = NOW,
    just_bought: set[str] | None = None,
) -> tuple[dict[str, CartLine], str]:
    lines, source = recipe_cart(
        model=model, catalog=catalog, recipe=BREAKFAST, user_id=user_id, now=now, just_bought=just_bought or set()
    )
    assert [line.ingredient for line in lines] == ["Dairy", "Bakery", "Spices"]  # one line per ingredient
    return {line.ingredient: line for line in lines}, source


def test_what_the_customer_bought_within_their_rhythm_is_probably_at_home(
    model: LoadedModel, catalog: ItemCatalog
) -> None:
    lines, source = _cart(model, catalog, "C1")  # C1 buys Whole Milk every 10 days, last 2 days ago
    assert source == "model"
    dairy = lines["Dairy"]
    assert (dairy.item_id, dairy.status, dairy.in_cart) == ("I0", "probably-at-home", False)
    assert dairy.reason == "you bought Whole Milk 2 days ago and usually buy it every 10 days"
    assert (lines["Bakery"].item_id, lines["Bakery"].status, lines["Bakery"].reason) == ("I3", "added", "your usual")
    spices = lines["Spices"]
    assert (spices.item_id, spices.status, spices.in_cart) == (None, "unavailable", False)
    assert spices.reason == "nothing in Spices in stock"


def test_past_half_their_rhythm_their_usual_goes_in_the_cart(model: LoadedModel, catalog: ItemCatalog) -> None:
    lines, _ = _cart(model, catalog, "C1", now=NOW + timedelta(days=6))  # 8 days since: due soon
    dairy = lines["Dairy"]
    assert (dairy.item_id, dairy.status, dairy.in_cart, dairy.reason) == ("I0", "added", True, "your usual")
    assert dairy.name == "Whole Milk" and dairy.price == 1.0


def test_a_sold_out_usual_is_replaced_at_their_price_level(model: LoadedModel, catalog: ItemCatalog) -> None:
    sold_out = replace(model, bundle=without_stock(model.bundle, "I0"))
    lines, _ = _cart(sold_out, catalog, "C1", now=NOW + timedelta(days=6))
    dairy = lines["Dairy"]
    assert (dairy.item_id, dairy.status, dairy.in_cart) == ("I1", "added", True)  # the only Dairy in stock
    assert dairy.reason == "popular in Dairy at your usual price level"


def test_their_price_level_beats_popularity(model: LoadedModel, catalog: ItemCatalog) -> None:
    # C3 bought one croissant at about half its aisle's median price: the cheaper milk, not the popular one.
    lines, source = _cart(model, catalog, "C3")
    assert source == "model"
    assert (lines["Dairy"].item_id, lines["Dairy"].reason) == ("I0", "popular in Dairy at your usual price level")
    assert (lines["Bakery"].item_id, lines["Bakery"].reason) == ("I5", "your usual")


def test_an_item_just_bought_marks_its_ingredient_at_home(model: LoadedModel, catalog: ItemCatalog) -> None:
    lines, _ = _cart(model, catalog, "C1", now=NOW + timedelta(days=6), just_bought={"I1"})
    dairy = lines["Dairy"]
    assert (dairy.item_id, dairy.status, dairy.in_cart) == ("I1", "probably-at-home", False)
    assert dairy.reason == "you just bought Oat Milk"


def test_a_new_customer_gets_the_popular_item_of_each_ingredient(model: LoadedModel, catalog: ItemCatalog) -> None:
    lines, source = _cart(model, catalog, "newcomer")
    assert source == "popular-in-category"
    assert [(line.item_id, line.reason) for line in lines.values()] == [
        ("I1", "popular in Dairy"),  # Butter is more popular, but sold out
        ("I4", "popular in Bakery"),
        (None, "nothing in Spices in stock"),
    ]


def test_without_a_model_the_catalog_fills_the_cart(catalog: ItemCatalog) -> None:
    lines, source = _cart(None, catalog, "C1", just_bought={"I0"})
    assert source == "popular-in-category"
    assert (lines["Dairy"].item_id, lines["Dairy"].status) == ("I0", "probably-at-home")
    assert (lines["Bakery"].item_id, lines["Bakery"].status) == ("I4", "added")
    assert lines["Spices"].status == "unavailable"


def test_an_unknown_recipe_is_not_found_with_the_known_ones_named() -> None:
    assert find_recipe(recipes=RECIPES, recipe_id="breakfast") is BREAKFAST
    with pytest.raises(NotFound, match="known recipes: breakfast"):
        find_recipe(recipes=RECIPES, recipe_id="no-such-recipe")


def test_recipes_are_loaded_from_recipes_json(settings, tmp_path) -> None:
    import json

    assert load_recipes(settings=settings.model_copy(update={"recipes_path": tmp_path / "missing.json"})) == {}
    path = tmp_path / "recipes.json"
    path.write_text(json.dumps({"recipes": [BREAKFAST]}))
    assert load_recipes(settings=settings.model_copy(update={"recipes_path": path})) == {"breakfast": BREAKFAST}
    path.write_text("not json")
    assert load_recipes(settings=settings.model_copy(update={"recipes_path": path})) == {}


def test_the_route_answers_the_cart(make_shop: Callable[..., Shop], model: LoadedModel) -> None:
    shop = make_shop(model)
    r = shop.get("/v1/users/C1/recipes/breakfast/cart")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["recipe_id"], body["name"], body["model_version"], body["source"]) == (
        "breakfast",
        "Breakfast",
        "7",
        "model",
    )
    assert [(line["item_id"], line["status"]) for line in body["lines"]] == [
        ("I0", "probably-at-home"),
        ("I3", "added"),
        (None, "unavailable"),
    ]
    missing = shop.get("/v1/users/C1/recipes/no-such-recipe/cart")
    assert missing.status_code == 404 and "no-such-recipe" in missing.json()["detail"]


def _named_cart(
    model: LoadedModel, catalog: ItemCatalog, user_id: str, *ingredients: tuple[str, str]
) -> list[CartLine]:
    recipe = {"recipe_id": "r", "name": "R", "ingredients": [{"name": n, "category": c} for n, c in ingredients]}
    lines, _ = recipe_cart(model=model, catalog=catalog, recipe=recipe, user_id=user_id, now=NOW, just_bought=set())
    return lines


def test_a_product_named_like_the_ingredient_comes_before_the_aisle(model: LoadedModel, catalog: ItemCatalog) -> None:
    # C1's usual Dairy is Whole Milk, at home; an "Oat Milk" ingredient is oat milk all the same.
    [oat] = _named_cart(model, catalog, "C1", ("Oat Milk", "Dairy"))
    assert (oat.ingredient, oat.category, oat.item_id, oat.status) == ("Oat Milk", "Dairy", "I1", "added")
    [whole] = _named_cart(model, catalog, "C1", ("Whole Milk", "Dairy"))
    assert (whole.item_id, whole.status) == ("I0", "probably-at-home")
    assert whole.reason == "you bought Whole Milk 2 days ago and usually buy it every 10 days"  # the same item's days
    # No product by that name: the aisle, as before.
    [other] = _named_cart(model, catalog, "C1", ("Goat Milk", "Dairy"))
    assert (other.ingredient, other.item_id, other.status) == ("Goat Milk", "I0", "probably-at-home")


def test_a_first_purchase_is_never_probably_at_home(model: LoadedModel, catalog: ItemCatalog) -> None:
    # C1 bought Sourdough once, five days ago: no rhythm to be within, so it goes in the cart.
    [bread] = _named_cart(model, catalog, "C1", ("Sourdough", "Bakery"))
    assert (bread.item_id, bread.status, bread.in_cart, bread.reason) == ("I3", "added", True, "your usual")


def test_the_route_lists_the_recipes(make_shop: Callable[..., Shop], model: LoadedModel) -> None:
    shop = make_shop(model)
    r = shop.get("/v1/recipes")
    assert r.status_code == 200, r.text
    assert r.json()["recipes"] == [
        {
            "id": "breakfast",
            "name": "Breakfast",
            "ingredients": [
                {"name": "Dairy", "category": "Dairy"},
                {"name": "Bakery", "category": "Bakery"},
                {"name": "Spices", "category": "Spices"},
            ],
        }
    ]
    assert shop.get("/v1/recipes", key="key-recaps").status_code == 403
