"""The home page as shelves on the known-answer shop (shop.py): order, no item twice, minimum size,
the customers the model does not know, no model at all; through the plain function and the route."""

from __future__ import annotations

from collections.abc import Callable

from service.model import LoadedModel
from service.online.features import CustomerFeatures
from service.online.items import ItemCatalog
from service.shelves.service import ShelfPage, shelves_for_customer
from tests.unit.service.shop import SENSITIVE, Shop


def _page(model: LoadedModel | None, catalog: ItemCatalog, user_id: str, **kwargs) -> ShelfPage:
    arguments = {"count": 5, "k": 3, "min_items": 1, "just_bought": set(), "features": None, "sensitive": SENSITIVE}
    return shelves_for_customer(model=model, catalog=catalog, user_id=user_id, **{**arguments, **kwargs})


def _rows(page: ShelfPage) -> list[tuple[str, list[str]]]:
    return [(s.id, [i for i, _, _ in s.items]) for s in page.shelves]


def test_a_known_customers_shelves_come_in_order_and_never_repeat_an_item(
    model: LoadedModel, catalog: ItemCatalog
) -> None:
    page = _page(model, catalog, "C1")
    assert page.source == "model"
    assert _rows(page) == [
        ("buy-again", ["I0", "I3"]),  # their own items
        ("picked-for-you", ["I4", "I1", "I5"]),  # new to them, discover's order
        # "Because you bought" and "New in Dairy" have nothing left that no earlier shelf took.
        ("popular-this-week", ["I6"]),  # bought in the last 7 days: I0 (C1), I4 and I6 (C2); two are taken
    ]
    titles = {s.id: (s.title, s.reason) for s in page.shelves}
    assert titles["buy-again"][0] == "Buy it again" and titles["picked-for-you"][0] == "Picked for you"
    reasons = {i: r for s in page.shelves for i, _, r in s.items}
    assert reasons["I0"] == "you buy this about every 10 days"
    assert reasons["I1"] == "because you bought Whole Milk" and reasons["I6"] == "bought by 1 customers this week"


def test_a_shelf_below_its_minimum_is_left_out_and_count_is_kept(model: LoadedModel, catalog: ItemCatalog) -> None:
    assert _rows(_page(model, catalog, "C1", min_items=3)) == [
        ("picked-for-you", ["I4", "I1", "I5"]),  # buy-again (two items) left out: the next shelves move up
        ("popular-this-week", ["I0", "I3", "I6"]),
    ]
    assert [s.id for s in _page(model, catalog, "C1", count=1).shelves] == ["buy-again"]


def test_because_you_bought_names_a_purchase_and_what_goes_with_it(model: LoadedModel, catalog: ItemCatalog) -> None:
    page = _page(model, catalog, "C3", count=2, k=2)  # C3 bought one croissant; two shelves wanted
    assert _rows(page) == [("buy-again", ["I5"]), ("picked-for-you", ["I3", "I1"])]
    # Without "Picked for you" taking them first, the croissant anchors its own shelf.
    page = _page(model, catalog, "C3", count=3, k=1)
    assert _rows(page) == [("buy-again", ["I5"]), ("picked-for-you", ["I3"]), ("because-you-bought-i5", ["I1"])]
    shelf = page.shelves[2]
    assert (shelf.title, shelf.anchor_item_id) == ("Because you bought Croissant", "I5")
    assert shelf.items[0][2] == "because you bought Croissant"


def test_a_sensitive_aisle_stays_off_the_shelves(model: LoadedModel, catalog: ItemCatalog) -> None:
    for sensitive, shown in (((), True), (SENSITIVE, False)):
        page = _page(model, catalog, "C2", k=9, sensitive=sensitive)  # bought Bagels, which go with Pain Relief
        assert ("I9" in {i for s in page.shelves for i, _, _ in s.items}) is shown


def test_a_customer_the_model_does_not_know(model: LoadedModel, catalog: ItemCatalog) -> None:
    seen = CustomerFeatures(known=True, recent_items=("I3",), recent_item_times=(0,), top_categories=("Fruit",))
    page = _page(model, catalog, "newcomer", features=seen)
    assert page.source == "item-to-item"
    assert _rows(page) == [
        ("because-you-bought-i3", ["I4", "I5"]),  # what goes with Sourdough, which they bought
        ("popular-in-fruit", ["I6", "I7"]),
        ("popular-this-week", ["I0"]),  # Sourdough is theirs; Bagels and Apples are on a shelf already
    ]
    assert page.shelves[0].title == "Because you bought Sourdough" and page.shelves[0].anchor_item_id == "I3"
    nobody = _page(model, catalog, "nobody")
    assert nobody.source == "popular" and _rows(nobody) == [("popular-this-week", ["I0", "I3", "I4"])]


def test_without_a_model_item_stats_best_sellers_answer(catalog: ItemCatalog) -> None:
    page = _page(None, catalog, "C1", just_bought={"I1"})
    assert page.source == "popular" and page.degraded_reasons == ["model-not-loaded"]
    assert _rows(page) == [("popular-this-month", ["I4", "I0", "I6"])]


def test_the_route_answers_shelves_with_version_source_and_request_id(
    make_shop: Callable[..., Shop], model: LoadedModel
) -> None:
    from service.shelves.schemas import Shelves

    shop = make_shop(model)
    r = shop.get("/v1/users/C1/shelves", params={"shelves": 2, "k": 3, "min_items": 1})
    assert r.status_code == 200, r.text
    body = Shelves.model_validate(r.json())
    assert [s.id for s in body.shelves] == ["buy-again", "picked-for-you"]
    assert (body.model_version, body.source, body.degraded) == ("7", "model", False)
    assert body.request_id == r.headers["x-request-id"]
    for params in ({"shelves": 0}, {"shelves": 7}, {"k": 101}, {"min_items": 0}):
        assert shop.get("/v1/users/C1/shelves", params=params).status_code == 422
    assert shop.get("/v1/users/C1/shelves", key="key-recaps").status_code == 403
    assert shop.get("/v1/users/C1/shelves", key=None).status_code == 401
