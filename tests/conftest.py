"""Shared fixtures: a small synthetic store (made once per session) and access to the real Redis."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from training.core import columns as col
from training.data.synthetic import generate_store

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

    # Two checkouts testing at once keep apart with RECO_TEST_REDIS_DB_OFFSET (e.g. -6: DBs 6 and 8).
    db += int(os.environ.get("RECO_TEST_REDIS_DB_OFFSET", "0"))
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.exceptions.ConnectionError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but Redis does not answer at {REDIS_HOST}:{REDIS_PORT} ({exc})")
        pytest.skip(f"Redis does not answer at {REDIS_HOST}:{REDIS_PORT}; start redis-server to run this test")
    return url


@pytest.fixture(scope="session")
def messy_store(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`small_store` with the contract's optional gaps the generator never makes: about one line in
    nine without an order_id (an order on its own) and one in thirteen without a price."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = tmp_path_factory.mktemp("messy_store")
    table = pq.read_table(small_store / "purchases.parquet")
    line = np.arange(table.num_rows)
    for name, every, offset in (("order_id", 9, 4), ("price", 13, 6)):
        column = table.column(name)
        gapped = pc.if_else(pa.array(line % every == offset), pa.nulls(table.num_rows, column.type), column)
        table = table.set_column(table.schema.get_field_index(name), name, gapped)
    pq.write_table(table, out / "purchases.parquet")
    for extra in ("catalog.parquet", "recipes.json"):
        (out / extra).write_bytes((small_store / extra).read_bytes())
    return out


def purchase_lines(rows: list[tuple], *, price: float | None = None) -> pa.Table:
    """Known-answer purchases: (user, item, time[, order_id]) rows → a contract table, quantity 1 and
    `price` on every line (no order_id column values when the rows have none)."""
    from training.data.contract import PURCHASE_SCHEMA

    n = len(rows)
    return pa.table(
        {
            col.USER_ID: [r[0] for r in rows],
            col.ITEM_ID: [r[1] for r in rows],
            col.TIMESTAMP: pa.array([r[2] for r in rows], type=pa.timestamp("us", tz="UTC")),
            col.QUANTITY: pa.array([1] * n, type=pa.int32()),
            col.PRICE: pa.array([price] * n, type=pa.float64()),
            col.ORDER_ID: pa.array([r[3] if len(r) > 3 else None for r in rows], type=pa.string()),
        },
        schema=PURCHASE_SCHEMA,
    )
