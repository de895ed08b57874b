"""Shared fixtures: a small synthetic store (made once per session) and access to the real Redis."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.synthetic import generate_store

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-year synthetic store of 1,500 customers and 400 items (about a second to make)."""
    out = tmp_path_factory.mktemp("store")
    generate_store(out, users=1_500, items=400, years=2, seed=7)
    return out


def redis_url_or_skip(db: int) -> str:
    """URL of the real Redis on loopback with a dedicated DB; skip when it does not answer,
    fail instead when CI=true (there the Redis tests must run)."""
    import redis

    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.exceptions.ConnectionError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but Redis does not answer at {REDIS_HOST}:{REDIS_PORT} ({exc})")
        pytest.skip(f"Redis does not answer at {REDIS_HOST}:{REDIS_PORT}; start redis-server to run this test")
    return url
