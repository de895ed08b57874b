"""The feature store built and materialized once for these tests: on SQLite and on the real Redis
(DB 14, flushed before and after), from the `messy_store` fixture (lines without order ids and prices)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import redis_url_or_skip
from training.features.build import build
from training.features.materialize import materialize
from training.features.store import open_store
from training.settings import Settings, load_settings

REDIS_DB = 14
SAMPLE = 25


def purchases_frame(store: Path) -> pd.DataFrame:
    df = pq.read_table(store / "purchases.parquet").to_pandas()
    df["basket"] = df["order_id"].where(df["order_id"].notna(), "row" + df.index.astype(str))
    return df


def settings_for(home: Path, redis_url: str | None) -> Settings:
    """Settings of a home of its own, on SQLite (no URL) or that Redis."""
    return load_settings(home=home, redis_url=redis_url)


def read_service(settings: Settings, service: str, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    store = open_store(settings)
    return store.get_online_features(features=store.get_feature_service(service), entity_rows=rows).to_dict()


def redis_client(settings: Settings) -> Any:
    """A redis-py client on the settings' Redis (Any: redis-py's types mix sync and async replies)."""
    import redis

    assert settings.redis_url
    return redis.Redis.from_url(settings.redis_url)


def feast_hashes(client: Any) -> dict[bytes, dict[bytes, bytes]]:
    """Every Feast hash in the DB (our writer's `reco:writes:*` counters left out)."""
    return {key: client.hgetall(key) for key in client.scan_iter(count=1000) if not key.startswith(b"reco:")}


def flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


@pytest.fixture(scope="package")
def frames(messy_store: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return purchases_frame(messy_store), pq.read_table(messy_store / "catalog.parquet").to_pandas()


@pytest.fixture(scope="package")
def sample(frames: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[list[str], list[str]]:
    df, catalog = frames
    users = sorted(df.user_id.unique())
    items = sorted(catalog.item_id)
    step_u, step_i = max(1, len(users) // SAMPLE), max(1, len(items) // SAMPLE)
    sampled = df[df.user_id.isin(users[::step_u][:SAMPLE])]
    assert sampled.order_id.isna().any() and sampled.price.isna().any(), "sample lines without order id and price"
    return users[::step_u][:SAMPLE], items[::step_i][:SAMPLE]


@pytest.fixture(scope="module")
def sqlite_home(messy_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = settings_for(tmp_path_factory.mktemp("sqlite_home"), None)
    build(settings=settings, purchases=messy_store / "purchases.parquet", catalog=messy_store / "catalog.parquet")
    materialize(settings=settings)
    return settings


@pytest.fixture(scope="module")
def redis_home(messy_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    url = redis_url_or_skip(REDIS_DB)
    flush(url)
    settings = settings_for(tmp_path_factory.mktemp("redis_home"), url)
    build(settings=settings, purchases=messy_store / "purchases.parquet", catalog=messy_store / "catalog.parquet")
    materialize(settings=settings)
    yield settings
    flush(url)
