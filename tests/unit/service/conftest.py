"""Fixtures of the service's unit tests: the known-answer shop of shop.py, and the app over its stubs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from service.config import ServiceSettings, load_service_settings
from service.deps import get_events, get_features, get_model, get_services
from service.events.sqlite_store import SQLiteEventStore
from service.model import LoadedModel
from service.online.items import ItemCatalog
from service.state import Services
from tests.unit.service.shop import (
    KEYS,
    NOW,
    RECIPES,
    Shop,
    StubFeatures,
    StubHolder,
    make_bundle,
    make_catalog,
    make_model,
)
from training.core.bundle import ModelBundle


@pytest.fixture
def settings(tmp_path: Path) -> ServiceSettings:
    return load_service_settings(
        home=str(tmp_path),
        api_keys_json=json.dumps(KEYS),
        auth="enabled",
        now=NOW,
        just_bought_hours=24.0,
        max_events_per_request=3,
    )


@pytest.fixture
def bundle() -> ModelBundle:
    return make_bundle()


@pytest.fixture
def model(bundle: ModelBundle) -> LoadedModel:
    return make_model(bundle)


@pytest.fixture
def catalog() -> ItemCatalog:
    return make_catalog()


@pytest.fixture
def make_shop(settings: ServiceSettings, tmp_path: Path) -> Iterator[Callable[..., Shop]]:
    """Builds the app over stubs: `app.dependency_overrides` hand the routes the stubs, and the app
    state holds them too (the key check and the fast lane of the hot GET routes read it directly).
    The lifespan does not run: nothing is loaded."""
    from service.app import create_app

    clients: list[TestClient] = []

    def build(model: LoadedModel | None = None, *, features: StubFeatures | None = None) -> Shop:
        holder = StubHolder(current=model)
        stub = features or StubFeatures()
        services = Services(
            settings=settings,
            holder=holder,  # type: ignore[arg-type]
            features=stub,  # type: ignore[arg-type]
            events=SQLiteEventStore(tmp_path / "events" / "events.db"),
            recipes=dict(RECIPES),
        )
        app = create_app(settings)
        app.state.services = services
        app.dependency_overrides[get_services] = lambda: services
        app.dependency_overrides[get_model] = lambda: holder.current
        app.dependency_overrides[get_features] = lambda: stub
        app.dependency_overrides[get_events] = lambda: services.events
        client = TestClient(app, raise_server_exceptions=True)
        clients.append(client)
        return Shop(client=client, app=app, services=services, holder=holder, features=stub)

    yield build
    for client in clients:
        client.close()
