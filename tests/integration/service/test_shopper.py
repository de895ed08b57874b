"""What the shopper sees, on a trained model over HTTP: reasons that are true, no sensitive cross-sells,
shelves without repeats, recipes, honest buy-again (issue "What the shopper sees")."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.integration.service.support import Live, World

pytestmark = pytest.mark.slow


def _bought(bundle: Any, user_id: str) -> np.ndarray:
    return bundle.history.indices[bundle.history.row(bundle.user_index[user_id])]


def test_every_because_you_bought_names_a_purchase_above_the_models_bar(live: Live, w: World, bundle: Any) -> None:
    model = live.app.state.services.holder.current
    catalog = live.app.state.services.features.catalog
    assert model.reason_floor > 0
    checked = generic = 0
    with live.client() as c:
        for user in w.users[:40]:
            bought = _bought(bundle, user)
            names: dict[str, list[int]] = {}
            for i in bought.tolist():
                names.setdefault(catalog.name(str(bundle.item_ids[i])), []).append(i)
            for context in ("discover", "home"):
                body = c.get(f"/v1/users/{user}/recommendations", params={"k": 10, "context": context, "explain": True})
                for item in body.json()["items"]:
                    reason = item["reason"]
                    if not reason.startswith("because you bought "):
                        generic += reason in ("popular with customers like you",) or reason.startswith("popular")
                        continue
                    anchors = names.get(reason.removeprefix("because you bought "), [])
                    assert anchors, (user, reason)  # an item the customer bought
                    target = bundle.item_index[item["item_id"]]
                    given = bundle.collaborative.contributions(target, np.array(anchors))
                    assert given.max() > model.reason_floor, (user, item)  # above the bar
                    checked += 1
    assert checked >= 100


def test_a_sensitive_category_is_never_cross_sold(live: Live, w: World, bundle: Any) -> None:
    pharmacy = set(np.flatnonzero(bundle.categories == "Pharmacy").tolist())
    assert pharmacy, "the synthetic store has a Pharmacy aisle"
    in_pharmacy = {str(i) for n, i in enumerate(bundle.item_ids) if bundle.item_category[n] in pharmacy}
    shown: list[str] = []
    with live.client() as c:
        for user in w.users[:60]:
            if {int(bundle.item_category[i]) for i in _bought(bundle, user)} & pharmacy:
                continue  # their own aisle: allowed
            for context in ("home", "discover"):
                body = c.get(f"/v1/users/{user}/recommendations", params={"k": 30, "context": context}).json()
                shown += [i["item_id"] for i in body["items"]]
            shelves = c.get(f"/v1/users/{user}/shelves", params={"shelves": 6, "k": 20, "min_items": 1}).json()
            shown += [i["item_id"] for s in shelves["shelves"] for i in s["items"]]
        for item in [i for i in w.items if i not in in_pharmacy][:40]:
            shown += [i["item_id"] for i in c.get(f"/v1/items/{item}/similar", params={"k": 30}).json()["items"]]
            body = c.post("/v1/baskets/complete", json={"items": [item], "k": 30}).json()
            shown += [i["item_id"] for i in body["items"]]
        # Beside a Pharmacy item, its own aisle may be offered.
        anchor = sorted(in_pharmacy - w.out_of_stock)[0]
        beside = c.get(f"/v1/items/{anchor}/similar", params={"k": 100}).json()["items"]
    assert len(shown) > 1000 and not set(shown) & in_pharmacy
    assert {i["item_id"] for i in beside} & in_pharmacy


def test_shelves_never_repeat_an_item_and_keep_their_minimum(live: Live, w: World, bundle: Any) -> None:
    kinds: set[str] = set()
    with live.client() as c:
        for user in [*w.users[:30], "no-such-customer"]:
            r = c.get(f"/v1/users/{user}/shelves", params={"shelves": 6, "k": 8, "min_items": 4})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["request_id"] == r.headers["x-request-id"] and body["degraded"] is False
            assert body["model_version"] == live.app.state.services.holder.current.version
            ids = [i["item_id"] for s in body["shelves"] for i in s["items"]]
            assert len(ids) == len(set(ids)) and not set(ids) & w.out_of_stock
            assert all(4 <= len(s["items"]) <= 8 and s["title"] and s["reason"] for s in body["shelves"])
            assert all(i["reason"] for s in body["shelves"] for i in s["items"])
            kinds |= {s["id"] for s in body["shelves"]}
            if user == "no-such-customer":
                assert body["source"] == "popular" and [s["id"] for s in body["shelves"]] == ["popular-this-week"]
                continue
            assert body["source"] == "model" and body["shelves"][0]["id"] == "buy-again"
            bought = {str(bundle.item_ids[i]) for i in _bought(bundle, user)}
            assert {i["item_id"] for i in body["shelves"][0]["items"]} <= bought
            for shelf in body["shelves"][1:]:
                if shelf["id"] != "popular-this-week":
                    assert not {i["item_id"] for i in shelf["items"]} & bought, shelf["id"]  # new to them
                if shelf.get("anchor_item_id"):
                    assert shelf["anchor_item_id"] in bought
    assert {"buy-again", "picked-for-you"} <= kinds
    assert any(k.startswith("because-you-bought-") for k in kinds) and any(k.startswith("new-in-") for k in kinds)


def test_buy_again_without_history_is_empty_and_home_still_falls_back(live: Live) -> None:
    with live.client() as c:
        again = c.get("/v1/users/no-such-customer/recommendations", params={"context": "buy-again"}).json()
        home = c.get("/v1/users/no-such-customer/recommendations").json()
    assert (again["items"], again["source"]) == ([], "no-history")
    assert home["source"] == "popular" and len(home["items"]) == 10


def test_recipes_are_listed_and_name_matched(live: Live, w: World) -> None:
    import json

    recipes = json.loads((w.store / "recipes.json").read_text())["recipes"]
    catalog = live.app.state.services.features.catalog
    with live.client() as c:
        listed = c.get("/v1/recipes").json()["recipes"]
        cart = c.get(f"/v1/users/{w.users[2]}/recipes/spaghetti-bolognese/cart").json()
    assert [r["id"] for r in listed] == sorted(r["recipe_id"] for r in recipes)
    assert listed[0]["ingredients"] and all({"name", "category"} <= set(i) for r in listed for i in r["ingredients"])
    for line in cart["lines"]:
        if line["item_id"] is not None and line["status"] == "added":
            name = catalog.name(line["item_id"]).lower()
            # Spaghetti is spaghetti when the shop has some in stock, not any pasta.
            assert line["ingredient"].lower() in name or not any(
                line["ingredient"].lower() in catalog.name(i).lower() for i in w.items if i not in w.out_of_stock
            ), line
