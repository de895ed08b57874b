"""Input the schema refuses, on both lanes of the hot routes: a count written as a decimal, an id with a
NUL; and every bound the code checks is one OpenAPI states."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service import fastlane
from service.model import LoadedModel
from tests.unit.service.shop import Shop


@pytest.mark.parametrize("fast_lane", [True, False], ids=["fast-lane", "fastapi-lane"])
def test_a_count_must_be_a_whole_number(
    make_shop: Callable[..., Shop], model: LoadedModel, monkeypatch: pytest.MonkeyPatch, fast_lane: bool
) -> None:
    monkeypatch.setattr(fastlane, "ENABLED", fast_lane)
    shop = make_shop(model)
    for path in ("/v1/users/C1/recommendations", "/v1/items/I0/similar", "/v1/users/C1/shelves"):
        assert shop.get(path, params={"k": "3"}).status_code == 200, path
        for bad in ("10.0", "3.5", "1e1", "true", "+-3", ""):
            r = shop.get(path, params={"k": bad})
            assert r.status_code == 422, (path, bad)
            assert "whole number" in r.json()["detail"][0]["msg"], (path, bad)
        # A whole number out of range hears the range, a negative one too.
        for bad, says in (("-1", "greater than or equal to 1"), ("0", "greater than or equal to 1")):
            r = shop.get(path, params={"k": bad})
            assert r.status_code == 422 and says in r.json()["detail"][0]["msg"], (path, bad, r.json())
    # In a JSON body 3.0 is an integer (for JSON Schema too), 3.5 is not.
    for k, status in ((3, 200), (3.0, 200), (3.5, 422), ("3", 422), (True, 422)):
        assert shop.post("/v1/baskets/complete", json={"items": ["I0"], "k": k}).status_code == status, k
    assert shop.post("/v1/baskets/complete", json={"items": ["I0"], "explain": 0}).status_code == 422


@pytest.mark.parametrize("fast_lane", [True, False], ids=["fast-lane", "fastapi-lane"])
def test_an_id_with_a_control_character_is_refused(
    make_shop: Callable[..., Shop], model: LoadedModel, monkeypatch: pytest.MonkeyPatch, fast_lane: bool
) -> None:
    monkeypatch.setattr(fastlane, "ENABLED", fast_lane)
    shop = make_shop(model)
    for path in ("/v1/users/C1%00/recommendations", "/v1/items/I0%0A/similar", "/v1/users/C%001/shelves"):
        r = shop.get(path)
        assert r.status_code == 422, path
        assert r.json()["detail"][0]["loc"][0] == "path"
    assert shop.post("/v1/baskets/complete", json={"items": ["I0\x00"], "k": 3}).status_code == 422


def test_every_refusal_the_app_can_answer_is_documented(make_shop: Callable[..., Shop], model: LoadedModel) -> None:
    """401 and 403 on every keyed operation; 413 on every operation with a body; 503 (in-flight limit)
    everywhere; 422 wherever there is input."""
    shop = make_shop(model)
    paths = shop.client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            if operation.get("security"):
                assert {"401", "403"} <= documented, (method, path)
            if "requestBody" in operation or method == "post":
                assert "413" in documented, (method, path)
            if operation.get("parameters") or "requestBody" in operation:
                assert "422" in documented, (method, path)
            if not path.startswith("/health/"):
                assert "503" in documented, (method, path)
