"""The recap endpoint over a stub online store: the record as stored, its email page, a missing recap,
an outage."""

from __future__ import annotations

import copy
from collections.abc import Callable

from service.model import LoadedModel
from service.recaps.schemas import EXAMPLE
from tests.unit.service.shop import Shop, StubFeatures
from training.recaps.render import render_recap_html

RECORD = copy.deepcopy(EXAMPLE) | {"user_id": "C1"}
RECORD["persona"]["name"] = "Weekend <b>Planner</b>"


def test_the_stored_record_is_answered_as_json_or_as_its_email_page(
    make_shop: Callable[..., Shop], model: LoadedModel
) -> None:
    shop = make_shop(model, features=StubFeatures(recaps={("C1", 2025): RECORD}))
    record = shop.get("/v1/users/C1/recaps/2025", key="key-recaps")
    page = shop.get("/v1/users/C1/recaps/2025", key="key-recaps", params={"format": "html"})
    assert record.status_code == 200 and record.json() == RECORD
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    settings = shop.services.settings
    assert page.text == render_recap_html(RECORD, store=settings.recap_store_name, currency=settings.recap_currency)
    assert "Weekend &lt;b&gt;Planner&lt;/b&gt;" in page.text and "<b>Planner" not in page.text


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
