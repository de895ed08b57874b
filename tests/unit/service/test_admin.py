"""Reload and health over stubs: what /admin/reload and /health/ready answer, as plain functions and
through the routes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.admin.service import event_log_status, readiness, reload_model
from service.errors import ReloadFailed
from service.model import LoadedModel
from tests.unit.service.shop import Shop, StubFeatures, StubHolder


def test_a_failed_reload_keeps_the_old_model_and_says_so(model: LoadedModel) -> None:
    holder = StubHolder(current=model, reload_error=RuntimeError("registry unreachable"))
    with pytest.raises(ReloadFailed, match="still serving the previous model: registry unreachable"):
        reload_model(holder=holder, features=StubFeatures(), force=False)  # type: ignore[arg-type]
    assert holder.current is model


def test_the_reload_route_passes_force_and_reports_the_swap(make_shop: Callable[..., Shop], model: LoadedModel) -> None:
    shop = make_shop(model)
    plain = shop.post("/admin/reload", key="key-admin").json()
    forced = shop.post("/admin/reload", key="key-admin", params={"force": "true"}).json()
    assert shop.holder.reloads == [False, True]
    assert len(shop.features.reload_signals) == 2  # every worker is told
    assert (plain["changed"], forced["changed"], forced["version"]) == (False, True, "7")
    shop.holder.reload_error = RuntimeError("boom")
    failed = shop.post("/admin/reload", key="key-admin")
    assert failed.status_code == 409 and "previous model" in failed.json()["detail"]


def test_readiness_says_what_is_loaded(settings, model: LoadedModel) -> None:
    features = StubFeatures()
    ready = readiness(
        holder=StubHolder(current=model),  # type: ignore[arg-type]
        features=features,  # type: ignore[arg-type]
        settings=settings,
        events={"pending": 0, "error": None},
    )
    assert ready.ready is True
    assert (ready.model["version"], ready.model["items"], ready.model["customers"]) == ("7", 10, 3)
    assert ready.features["items_cached"] == 10 and ready.features["online_store"] == "stub"
    empty = readiness(
        holder=StubHolder(current=None),  # type: ignore[arg-type]
        features=features,  # type: ignore[arg-type]
        settings=settings,
        events={"pending": 0, "error": None},
    )
    assert empty.ready is False and empty.model["loaded"] is False and empty.model["uri"] == settings.model_uri


def test_a_broken_event_log_is_reported_not_raised(tmp_path) -> None:
    from service.events.sqlite_store import SQLiteEventStore

    (tmp_path / "events.db").mkdir()  # a directory where the SQLite file belongs
    status = event_log_status(store=SQLiteEventStore(tmp_path / "events.db"))
    assert status == {"store": "sqlite", "pending": None, "error": "OperationalError"}


def test_ready_is_503_until_a_model_is_loaded(make_shop: Callable[..., Shop], model: LoadedModel) -> None:
    shop = make_shop(None)
    assert shop.get("/health/ready", key=None).status_code == 503
    shop.holder.current = model
    ready = shop.get("/health/ready", key="key-admin")
    assert ready.status_code == 200 and ready.json()["model"]["version"] == "7"
    assert ready.json()["events"] == {"store": "sqlite", "pending": 0, "error": None}


def test_ready_shows_details_only_to_an_admin_key(make_shop: Callable[..., Shop]) -> None:
    shop = make_shop(None)
    shop.holder.last_error = "OperationalError: unable to open database file /srv/reco/mlflow.db (SELECT ...)"
    for key in (None, "wrong", "key-recommend"):
        ready = shop.get("/health/ready", key=key)
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "checks": {"model": False, "online_store": True, "event_log": True}}
    details = shop.get("/health/ready", key="key-admin").json()
    assert details["model"]["last_error"].startswith("OperationalError")
