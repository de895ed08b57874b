"""The recap endpoint over a stub online store: the record as stored, its email page for the shop's
brand, the page opened with the customer's view-in-browser token, a missing recap, an outage."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from service.config import ServiceSettings, load_service_settings
from service.model import LoadedModel
from service.recaps.schemas import EXAMPLE
from tests.unit.service.shop import KEYS, NOW, Shop, StubFeatures
from training.recaps.brand import recap_token
from training.recaps.render import render_recap_html

RECORD = copy.deepcopy(EXAMPLE) | {"user_id": "C1"}
RECORD["persona"]["name"] = "Weekend <b>Planner</b>"
SIGNING_KEY = "test-signing-key-0123456789"


@pytest.fixture
def settings(tmp_path: Path) -> ServiceSettings:
    """The shop's settings with a brand file and a signing key, as `reco serve` reads them."""
    brand = tmp_path / "brand.json"
    brand.write_text(json.dumps({"name": "Corner <Grocer>", "currency": "EUR", "locale": "de_DE"}))
    return load_service_settings(
        home=str(tmp_path),
        api_keys_json=json.dumps(KEYS),
        auth="enabled",
        now=NOW,
        recap_brand_file=str(brand),
        recap_signing_key=SIGNING_KEY,
    )


def test_the_stored_record_is_answered_as_json_or_as_its_email_page(
    make_shop: Callable[..., Shop], model: LoadedModel
) -> None:
    shop = make_shop(model, features=StubFeatures(recaps={("C1", 2025): RECORD}))
    record = shop.get("/v1/users/C1/recaps/2025", key="key-recaps")
    page = shop.get("/v1/users/C1/recaps/2025", key="key-recaps", params={"format": "html"})
    assert record.status_code == 200 and record.json() == RECORD
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    settings = shop.services.settings
    assert page.text == render_recap_html(RECORD, brand=settings.recap_brand)
    assert "Weekend &lt;b&gt;Planner&lt;/b&gt;" in page.text and "<b>Planner" not in page.text
    # The shop of RECO_BRAND, its money in its locale: the page the email was.
    assert "Your year with Corner &lt;Grocer&gt;" in page.text and "2.315,40\xa0€" in page.text


def test_the_view_in_browser_token_opens_the_page_and_nothing_else(
    make_shop: Callable[..., Shop], model: LoadedModel
) -> None:
    shop = make_shop(model, features=StubFeatures(recaps={("C1", 2025): RECORD, ("C2", 2025): RECORD}))
    token = recap_token(SIGNING_KEY.encode(), "C1", 2025)
    page = shop.get("/v1/users/C1/recaps/2025", key=None, params={"format": "html", "t": token})
    assert page.status_code == 200 and "Your year with Corner" in page.text
    # Another customer's, another year's or a made-up token; the JSON record; no token at all.
    for path, params in (
        ("/v1/users/C2/recaps/2025", {"format": "html", "t": token}),
        ("/v1/users/C1/recaps/2024", {"format": "html", "t": token}),
        ("/v1/users/C1/recaps/2025", {"format": "html", "t": "0" * 32}),
    ):
        answer = shop.get(path, key=None, params=params)
        assert answer.status_code == 403 and "link" in answer.json()["detail"], (path, params)
    assert shop.get("/v1/users/C1/recaps/2025", key=None, params={"t": token}).status_code == 401
    assert shop.get("/v1/users/C1/recaps/2025", key=None, params={"format": "html"}).status_code == 401


def test_without_a_signing_key_no_token_opens_a_page(
    make_shop: Callable[..., Shop], model: LoadedModel, tmp_path: Path
) -> None:
    shop = make_shop(model, features=StubFeatures(recaps={("C1", 2025): RECORD}))
    shop.services.settings = load_service_settings(home=str(tmp_path), api_keys_json=json.dumps(KEYS), auth="enabled")
    token = recap_token(SIGNING_KEY.encode(), "C1", 2025)
    answer = shop.get("/v1/users/C1/recaps/2025", key=None, params={"format": "html", "t": token})
    assert answer.status_code == 403


def test_with_auth_disabled_a_stale_token_does_not_lock_the_page(
    make_shop: Callable[..., Shop], model: LoadedModel, tmp_path: Path
) -> None:
    shop = make_shop(model, features=StubFeatures(recaps={("C1", 2025): RECORD}))
    shop.services.settings = load_service_settings(home=str(tmp_path), auth="disabled")
    answer = shop.get("/v1/users/C1/recaps/2025", key=None, params={"format": "html", "t": "0" * 32})
    assert answer.status_code == 200


def test_a_missing_recap_is_a_404_and_an_outage_a_503(make_shop: Callable[..., Shop], model: LoadedModel) -> None:
    shop = make_shop(model, features=StubFeatures(recaps={("C1", 2025): RECORD}))
    missing = shop.get("/v1/users/C1/recaps/2024", key="key-recaps")
    assert missing.status_code == 404 and "2024" in missing.json()["detail"]
    shop.features.down = "online-store-error"
    down = shop.get("/v1/users/C1/recaps/2025", key="key-recaps")
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    assert "online-store-error" in down.json()["detail"]


def test_the_year_is_bounded(make_shop: Callable[..., Shop], model: LoadedModel) -> None:
    shop = make_shop(model)
    for year in ("1969", "2101", "last"):
        assert shop.get(f"/v1/users/C1/recaps/{year}", key="key-recaps").status_code == 422, year
