"""Fixtures of the service's integration tests: the shared world (a trained model in a real MLflow
registry, features in Feast's SQLite online store) and a live uvicorn server on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.service.support import Live, World, live_server, world


@pytest.fixture(scope="session")
def w() -> World:
    return world()


@pytest.fixture(scope="module")
def live(w: World) -> Iterator[Live]:
    with live_server(w.env()) as server:
        yield server


@pytest.fixture(scope="module")
def bundle(live: Live) -> Any:
    return live.app.state.services.holder.current.bundle
