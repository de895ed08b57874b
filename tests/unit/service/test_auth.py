"""API keys and scopes (docs/api.md: no key → 401, wrong scope → 403), as a plain function and on every
endpoint of the app, both lanes of the hot GET routes included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service import fastlane
from service.config import ServiceSettings
from service.deps import authorize
from service.errors import MissingApiKey, MissingScope, UnknownApiKey
from service.model import LoadedModel
from tests.unit.service.shop import KEYS, Shop, StubFeatures

RECORD = {"user_id": "C1", "year": 2025, "orders": 3}

ENDPOINTS: list[tuple[str, str, Any, str]] = [
    ("GET", "/v1/users/C1/recommendations?k=2", None, "recommend"),
    ("GET", "/v1/items/I0/similar?k=2", None, "recommend"),
    ("POST", "/v1/baskets/complete", {"items": ["I0"], "k": 2}, "recommend"),
    ("GET", "/v1/users/C1/recipes/breakfast/cart", None, "recommend"),
    ("GET", "/v1/users/C1/recaps/2025", None, "recaps"),
    ("POST", "/v1/events", {"events": [{"event_id": "a", "user_id": "u", "item_id": "i", "timestamp": 0}]}, "events"),
    ("POST", "/admin/reload", None, "admin"),
]


def test_authorize_checks_key_then_scope(settings: ServiceSettings) -> None:
    assert authorize(settings, "key-all", "admin") == "admin"
    assert authorize(settings, "key-recaps", "recaps") == "recaps"
    with pytest.raises(MissingApiKey):
        authorize(settings, None, "recommend")
    with pytest.raises(MissingApiKey):
        authorize(settings, "", "recommend")
    with pytest.raises(UnknownApiKey):
        authorize(settings, "key-al", "recommend")  # a prefix of a key is no key
    with pytest.raises(MissingScope, match="'admin' scope"):
        authorize(settings, "key-recommend", "admin")


def test_authorize_lets_everyone_in_only_when_auth_is_disabled(settings: ServiceSettings) -> None:
    assert authorize(settings.model_copy(update={"auth": "disabled"}), None, "admin") == "anonymous"


@pytest.mark.parametrize("fast_lane", [True, False], ids=["fast-lane", "fastapi-lane"])
@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=[e[1].split("?")[0] for e in ENDPOINTS])
def test_every_endpoint_wants_a_key_with_its_scope(
    make_shop: Callable[..., Shop],
    model: LoadedModel,
    monkeypatch: pytest.MonkeyPatch,
    fast_lane: bool,
    method: str,
    path: str,
    body: Any,
    scope: str,
) -> None:
    monkeypatch.setattr(fastlane, "ENABLED", fast_lane)
    shop = make_shop(model, features=StubFeatures(recaps={("C1", 2025): RECORD}))
    wrong_scope = next(key for key, scopes in KEYS.items() if scope not in scopes)
    for key, status in ((None, 401), ("not-a-key", 401), (wrong_scope, 403), (f"key-{scope}", 200)):
        r = shop.client.request(method, path, json=body, headers={"X-API-Key": key} if key else {})
        assert r.status_code == status, (key, r.text)
        if status != 200:
            assert r.json()["detail"] and r.json()["request_id"] == r.headers["x-request-id"]
            assert "not-a-key" not in r.text
        if status == 401:
            assert r.headers["www-authenticate"] == "APIKey"


def test_health_and_metrics_need_no_key(make_shop: Callable[..., Shop], model: LoadedModel) -> None:
    shop = make_shop(model)
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert shop.get(path, key=None).status_code == 200, path


def test_with_auth_disabled_no_key_is_needed(
    make_shop: Callable[..., Shop], model: LoadedModel, settings: ServiceSettings
) -> None:
    shop = make_shop(model)
    shop.services.settings = settings.model_copy(update={"auth": "disabled"})
    assert shop.get("/v1/users/C1/recommendations", key=None).status_code == 200
    assert shop.post("/admin/reload", key=None).status_code == 200
