"""Feature store: feature_repo/ applies, build + materialize on SQLite and the real Redis (DB 14),
values read back through the feature services equal an independent pandas computation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import redis_url_or_skip
from training.core.errors import RecoError
from training.features.build import build
from training.features.materialize import materialize
from training.features.store import FEATURE_REPO, open_store, redis_connection_string
from training.settings import Settings, load_settings

REDIS_DB = 14
SAMPLE = 25
CUSTOMER_FIELDS = (
    "orders",
    "items",
    "spend",
    "distinct_items",
    "first_purchase",
    "last_purchase",
    "avg_basket_items",
    "avg_basket_spend",
    "rebuy_interval_days",
    "top_categories",
    "recent_items",
    "recent_item_times",
    "buy_again_items",
    "buy_again_orders",
)


# --- independent expectations (pandas, straight from the files) --------------------------------


def _purchases(store: Path) -> pd.DataFrame:
    df = pq.read_table(store / "purchases.parquet").to_pandas()
    df["basket"] = df["order_id"].where(df["order_id"].notna(), "row" + df.index.astype(str))
    return df


def expected_customer(df: pd.DataFrame, catalog: pd.DataFrame, user: str) -> dict[str, Any]:
    """What recommend_v1 must return for one customer, computed without DuckDB or Feast."""
    mine = df[df.user_id == user]
    orders = mine.basket.nunique()
    items = int(mine.quantity.sum())
    spend = float((mine.quantity * mine.price).sum())
    order_times = mine.groupby("basket").timestamp.min().sort_values()
    gaps = order_times.diff().dropna().dt.total_seconds() / 86400
    cats = mine.merge(catalog, on="item_id").groupby("category").quantity.sum().reset_index()
    cats = cats.sort_values(["quantity", "category"], ascending=[False, True])
    per_item = mine.groupby("item_id").agg(last=("timestamp", "max"), n=("basket", "nunique")).reset_index()
    recent = per_item.sort_values(["last", "item_id"], ascending=[False, True]).head(20)
    again = per_item[per_item.n >= 2].sort_values(["n", "item_id"], ascending=[False, True]).head(20)
    return {
        "orders": orders,
        "items": items,
        "spend": pytest.approx(spend, abs=1e-3),
        "distinct_items": mine.item_id.nunique(),
        "first_purchase": mine.timestamp.min().to_pydatetime().replace(microsecond=0),
        "last_purchase": mine.timestamp.max().to_pydatetime().replace(microsecond=0),
        "avg_basket_items": pytest.approx(items / orders, abs=1e-3),
        "avg_basket_spend": pytest.approx(spend / orders, abs=1e-3),
        "rebuy_interval_days": pytest.approx(gaps.median(), abs=1e-3) if len(gaps) else None,
        "top_categories": list(cats.category.head(3)),
        "recent_items": list(recent.item_id),
        "recent_item_times": [int(t.timestamp()) for t in recent["last"]],
        "buy_again_items": list(again.item_id),
        "buy_again_orders": [int(n) for n in again.n],
    }


def expected_item(df: pd.DataFrame, catalog: pd.DataFrame, item: str) -> dict[str, Any]:
    """What items_v1 must return for one item."""
    as_of = df.timestamp.max()
    sold = df[df.item_id == item]
    row = catalog.set_index("item_id").loc[item]

    def units(days: int) -> int:
        return int(sold[sold.timestamp > as_of - pd.Timedelta(days=days)].quantity.sum())

    return {
        "category": row.category,
        "price": pytest.approx(row.price),
        "in_stock": bool(row.in_stock),
        "popularity_7d": units(7),
        "popularity_30d": units(30),
        "popularity_365d": units(365),
        "buyers_365d": sold[sold.timestamp > as_of - pd.Timedelta(days=365)].user_id.nunique(),
        "last_sold": sold.timestamp.max().to_pydatetime().replace(microsecond=0) if len(sold) else None,
    }


# --- fixtures ----------------------------------------------------------------------------------


def _settings(home: Path, redis_url: str | None) -> Settings:
    return load_settings(home=home, redis_url=redis_url)


def _read(settings: Settings, service: str, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    store = open_store(settings)
    return store.get_online_features(features=store.get_feature_service(service), entity_rows=rows).to_dict()


def _redis(settings: Settings) -> Any:
    """A redis-py client on the settings' Redis (Any: redis-py's types mix sync and async replies)."""
    import redis

    assert settings.redis_url
    return redis.Redis.from_url(settings.redis_url)


def _hashes(client: Any) -> dict[bytes, dict[bytes, bytes]]:
    """Every Feast hash in the DB (our writer's `reco:writes:*` counters left out)."""
    return {key: client.hgetall(key) for key in client.scan_iter(count=1000) if not key.startswith(b"reco:")}


def _flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


@pytest.fixture(scope="module")
def frames(messy_store: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _purchases(messy_store), pq.read_table(messy_store / "catalog.parquet").to_pandas()


@pytest.fixture(scope="module")
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
    settings = _settings(tmp_path_factory.mktemp("sqlite_home"), None)
    build(settings=settings, purchases=messy_store / "purchases.parquet", catalog=messy_store / "catalog.parquet")
    materialize(settings=settings)
    return settings


@pytest.fixture(scope="module")
def redis_home(messy_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    url = redis_url_or_skip(REDIS_DB)
    _flush(url)
    settings = _settings(tmp_path_factory.mktemp("redis_home"), url)
    build(settings=settings, purchases=messy_store / "purchases.parquet", catalog=messy_store / "catalog.parquet")
    materialize(settings=settings)
    yield settings
    _flush(url)


# --- tests -------------------------------------------------------------------------------------


def test_redis_url_becomes_a_fail_fast_connection_string() -> None:
    assert redis_connection_string("redis://127.0.0.1:6379/14") == (
        "127.0.0.1:6379,db=14,socket_timeout=0.1,socket_connect_timeout=0.1,retry=null"
    )
    assert redis_connection_string("rediss://u:s3cret@cache:6380", socket_timeout=5).endswith(
        "username=u,password=s3cret,ssl=true"
    )
    with pytest.raises(RecoError, match="database must be a number"):
        redis_connection_string("redis://h:1/x")


def test_entity_keys_from_wire_form_equal_feasts() -> None:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from training.features.encoding import string_entity_keys as _string_entity_keys

    ids = ["C1", "", "é" * 62, "x" * 125, "y" * 126, "z" * 300]
    want = [EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=i)]) for i in ids]
    assert _string_entity_keys("user_id", pa.array(ids)) == want


def test_plain_feast_apply_accepts_the_repo(tmp_path: Path) -> None:
    """`feast apply` from inside feature_repo/ with only RECO_HOME set (as the Makefile does)."""
    env = {**os.environ, "RECO_HOME": str(tmp_path)}
    env.pop("REDIS_URL", None)
    feast = Path(sys.executable).with_name("feast")
    done = subprocess.run([str(feast), "apply"], cwd=FEATURE_REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "feast" / "registry.db").exists()
    assert not list(FEATURE_REPO.glob("*.db")), "Feast state must live under RECO_HOME, not in the repo"


def _assert_values_match_independent_computation(settings: Settings, frames, sample) -> None:
    df, catalog = frames
    users, items = sample
    got = _read(settings, "recommend_v1", [{"user_id": u} for u in users])
    for i, user in enumerate(users):
        assert {f: got[f][i] for f in CUSTOMER_FIELDS} == expected_customer(df, catalog, user), user
    got_items = _read(settings, "items_v1", [{"item_id": i} for i in items])
    for i, item in enumerate(items):
        want = expected_item(df, catalog, item)
        assert {f: got_items[f][i] for f in want} == want, item


def test_sqlite_values_match_independent_computation(sqlite_home: Settings, frames, sample) -> None:
    _assert_values_match_independent_computation(sqlite_home, frames, sample)


@pytest.mark.redis
def test_redis_values_match_independent_computation(redis_home: Settings, frames, sample) -> None:
    _assert_values_match_independent_computation(redis_home, frames, sample)


@pytest.mark.redis
def test_sqlite_and_redis_give_identical_values(sqlite_home: Settings, redis_home: Settings, sample) -> None:
    users, items = sample
    rows = [{"user_id": u} for u in [*users, "no-such-customer"]]
    assert _read(sqlite_home, "recommend_v1", rows) == _read(redis_home, "recommend_v1", rows)
    item_rows = [{"item_id": i} for i in [*items, "no-such-item"]]
    assert _read(sqlite_home, "items_v1", item_rows) == _read(redis_home, "items_v1", item_rows)


@pytest.mark.redis
def test_unknown_entities_read_as_none(redis_home: Settings) -> None:
    got = _read(redis_home, "recommend_v1", [{"user_id": "no-such-customer"}])
    assert got["orders"] == [None] and got["recent_items"] == [None]


@pytest.mark.redis
def test_build_and_materialize_twice_is_idempotent(redis_home: Settings, messy_store: Path, sample) -> None:
    users, items = sample
    rows = [{"user_id": u} for u in users]
    before = _read(redis_home, "recommend_v1", rows)
    items_before = _read(redis_home, "items_v1", [{"item_id": i} for i in items])
    files = {p.name: p.read_bytes() for p in redis_home.feature_data_dir.glob("*.parquet")}
    build(settings=redis_home, purchases=messy_store / "purchases.parquet", catalog=messy_store / "catalog.parquet")
    assert {p.name: pq.read_table(p) for p in redis_home.feature_data_dir.glob("*.parquet")} == {
        name: pq.read_table(pa.BufferReader(data)) for name, data in files.items()
    }
    again = materialize(settings=redis_home)
    assert again.rows_written == 0, again.format_text()  # nothing changed, nothing sent
    full = materialize(settings=redis_home, full=True)
    assert full.rows_written > 0
    assert _read(redis_home, "recommend_v1", rows) == before
    assert _read(redis_home, "items_v1", [{"item_id": i} for i in items]) == items_before


@pytest.mark.redis
def test_parallel_writers_give_the_same_online_values(redis_home: Settings, sample) -> None:
    """Big Redis loads are split over forked writer processes: same keys, same values."""

    from training.features.materialize import write_view

    client = _redis(redis_home)
    snapshot = _hashes(client)
    client.flushdb()
    store = open_store(redis_home, skip_dedup=True)
    for name in ("customer_profile", "customer_recent_items", "item_stats"):
        path = redis_home.feature_data_dir / f"{name}.parquet"
        result = write_view(store, store.get_feature_view(name), path, workers=2, batch_rows=50)
        assert result.rows_written == pq.read_metadata(path).num_rows
    assert _hashes(client) == snapshot


@pytest.mark.redis
def test_feature_view_ttls_and_redis_key_ttl(redis_home: Settings, sample) -> None:
    """View TTLs are as declared; Feast does not enforce them on online reads (feast#6821), so
    rows older than their TTL still come back with their event timestamp (the caller checks);
    the Redis key TTL, when configured, expires the whole key."""

    store = open_store(redis_home)
    ttls = {v.name: v.ttl for v in store.list_feature_views()}
    assert ttls == {
        "customer_profile": timedelta(0),
        "customer_recent_items": timedelta(days=365),
        "item_stats": timedelta(days=30),
        "customer_year_recap": timedelta(0),
    }
    _, items = sample
    got = store.get_online_features(
        features=store.get_feature_service("items_v1"), entity_rows=[{"item_id": items[0]}]
    ).to_dict(include_event_timestamps=True)
    age = datetime.now(UTC) - datetime.fromtimestamp(got["popularity_30d__ts"][0], UTC)  # epoch seconds
    assert age > timedelta(days=30), "the synthetic data ends in 2025: item_stats rows are past their TTL"
    assert got["popularity_30d"][0] is not None, "Feast started enforcing TTL online: revisit the serving checks"

    client = _redis(redis_home)
    key = next(iter(_hashes(client)))
    assert client.ttl(key) == -1, "no key TTL unless configured"
    from training.features.materialize import write_view

    with_ttl = open_store(redis_home, key_ttl_seconds=3600, skip_dedup=True)
    write_view(with_ttl, with_ttl.get_feature_view("item_stats"), redis_home.feature_data_dir / "item_stats.parquet")
    ttl_keys = [k for k in client.scan_iter(count=1000) if client.ttl(k) > 0]
    assert ttl_keys and all(0 < client.ttl(k) <= 3600 for k in ttl_keys)
    assert len(ttl_keys) == pq.read_metadata(redis_home.feature_data_dir / "item_stats.parquet").num_rows

    # The key TTL really evicts: an item rewritten with a 1-second TTL is read back as missing.
    from training.features.materialize import iter_rows

    source = pq.read_table(redis_home.feature_data_dir / "item_stats.parquet")
    one_item = source.filter(pc.equal(source.column("item_id"), items[0]))
    short = open_store(redis_home, key_ttl_seconds=1, skip_dedup=True)
    fv = short.get_feature_view("item_stats")
    for rows in iter_rows(one_item, fv):
        short._get_provider().online_write_batch(short.config, fv, rows, None)
    assert _read(redis_home, "items_v1", [{"item_id": items[0]}])["popularity_30d"] != [None]
    deadline = time.monotonic() + 5
    while _read(redis_home, "items_v1", [{"item_id": items[0]}])["popularity_30d"] != [None]:
        assert time.monotonic() < deadline, "a key written with a 1 s TTL is still there after 5 s"
        time.sleep(0.2)
    assert _read(redis_home, "items_v1", [{"item_id": items[1]}])["popularity_30d"] != [None]
    write_view(with_ttl, with_ttl.get_feature_view("item_stats"), redis_home.feature_data_dir / "item_stats.parquet")


def test_rebuild_keeps_timestamps_of_unchanged_rows(messy_store: Path, tmp_path: Path) -> None:
    """Unchanged rows keep their event time; a file from an older schema counts as all changed."""
    settings = _settings(tmp_path, None)
    args = {"purchases": messy_store / "purchases.parquet", "catalog": messy_store / "catalog.parquet"}
    first = build(settings=settings, **args)
    path = settings.feature_data_dir / "item_stats.parquet"
    stamps = pq.read_table(path).column("event_timestamp")
    assert pc.unique(stamps).to_pylist() == [first.as_of]
    pq.write_table(pq.read_table(path).drop_columns(["brand"]), path)  # as if `brand` were new
    build(settings=settings, **args)
    bumped = pc.unique(pq.read_table(path).column("event_timestamp")).to_pylist()
    assert bumped == [first.as_of + timedelta(seconds=1)]
    build(settings=settings, **args)
    assert pc.unique(pq.read_table(path).column("event_timestamp")).to_pylist() == bumped


def test_dead_redis_fails_fast(tmp_path: Path, sqlite_home: Settings) -> None:
    """A Redis that does not answer costs one short timeout, not 7.5 s of retries (PITFALLS)."""
    settings = _settings(sqlite_home.home, "redis://127.0.0.1:1/14")
    store = open_store(settings)
    started = time.perf_counter()
    with pytest.raises(Exception):  # noqa: B017 - redis-py's ConnectionError, whatever Feast wraps it in
        store.get_online_features(
            features=store.get_feature_service("recommend_v1"), entity_rows=[{"user_id": "C0001"}]
        ).to_dict()
    assert time.perf_counter() - started < 1.5
    with pytest.raises(RecoError, match="does not answer"):
        materialize(settings=settings, views=["item_stats"])


def test_cli_build_and_materialize(messy_store: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from training.cli import app

    env = {"RECO_HOME": str(tmp_path), "REDIS_URL": ""}
    runner = CliRunner()
    built = runner.invoke(
        app,
        [
            "features",
            "build",
            "--purchases",
            str(messy_store / "purchases.parquet"),
            "--catalog",
            str(messy_store / "catalog.parquet"),
        ],
        env=env,
    )
    assert built.exit_code == 0, built.output
    assert "customer_profile" in built.output
    done = runner.invoke(app, ["features", "materialize"], env=env)
    assert done.exit_code == 0, done.output
    assert "materialized to sqlite (incremental)" in done.output
    assert "customer_year_recap" in done.output and "skipped" in done.output
    again = runner.invoke(app, ["features", "materialize"], env=env)
    assert "nothing newer" in again.output


@pytest.mark.redis
@pytest.mark.parametrize("skip_dedup", [False, True])
def test_fast_redis_store_writes_the_same_bytes_as_feasts(redis_home: Settings, skip_dedup: bool) -> None:
    """FastRedisOnlineStore.online_write_batch = RedisOnlineStore's, byte for byte (one- and two-key views)."""
    from feast.infra.online_stores.redis import RedisOnlineStore

    from training.features.encoding import writes_key
    from training.features.materialize import iter_rows
    from training.features.redis_store import FastRedisOnlineStore

    client = _redis(redis_home)
    store = open_store(redis_home, skip_dedup=skip_dedup)
    recap = pa.table(
        {
            "user_id": ["C0001", "C0002", "C0001"],
            "year": pa.array([2024, 2025, 2025], pa.int64()),
            "recap_json": ['{"a": 1}', '{"b": 2}', "{}"],
            "schema_version": pa.array([1, 1, 1], pa.int64()),
            "model_version": ["3", None, "3"],
            "event_timestamp": pa.array([datetime(2025, 12, 31, tzinfo=UTC)] * 3, pa.timestamp("us", tz="UTC")),
        }
    )
    tables = {
        "customer_profile": pq.read_table(redis_home.feature_data_dir / "customer_profile.parquet").slice(0, 40),
        "item_stats": pq.read_table(redis_home.feature_data_dir / "item_stats.parquet").slice(0, 40),
        "customer_year_recap": recap,
    }

    def dump(writer: Any) -> dict[bytes, dict[bytes, bytes]]:
        client.flushdb()
        for name, table in tables.items():
            fv = store.get_feature_view(name)
            for rows in iter_rows(table, fv):
                writer.online_write_batch(store.config, fv, rows, None)
        return _hashes(client)

    stock, fast = dump(RedisOnlineStore()), dump(FastRedisOnlineStore())
    # The one addition: a write counter per view written (what the service polls).
    counters = {key: int(client.get(key)) for key in client.scan_iter(match="reco:writes:*")}
    client.flushdb()
    materialize(settings=redis_home, full=True)  # leave DB 14 as the other tests expect it
    assert len(stock) == 40 + 40 + 3 and fast == stock
    assert set(counters) == {writes_key(store.config, store.get_feature_view(v)).encode() for v in tables}
    assert all(counters.values())


def _recommend_views(store: Any) -> list[tuple[Any, list[str]]]:
    """recommend_v1's (feature view, feature names) pairs."""
    return [
        (store.get_feature_view(p.name), [f.name for f in p.features])
        for p in store.get_feature_service("recommend_v1").feature_view_projections
    ]


@pytest.mark.redis
def test_one_hmget_reader_returns_what_feasts_async_read_returns(redis_home: Settings, sample) -> None:
    """HashReader (the service's Redis read of recommend_v1) = Feast's online_read_async per view."""
    import asyncio

    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from service.online.redis_reader import HashReader

    users, _ = sample
    store = open_store(redis_home)
    provider = store._get_provider()
    views = _recommend_views(store)
    reader = HashReader(provider.online_store, store.config, views)

    async def both(user: str) -> tuple[list[Any], list[Any]]:
        key = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user)])
        feast_rows = [
            (await provider.online_read_async(store.config, view, [key], list(names)))[0] for view, names in views
        ]
        return await reader.read(key), feast_rows

    async def all_users() -> list[tuple[list[Any], list[Any]]]:
        return [await both(u) for u in [*users, "no-such-customer"]]

    pairs = asyncio.run(all_users())
    assert len(views) == 2 and all(ours == theirs for ours, theirs in pairs)
    found = [v for ours, _ in pairs[:-1] for _, values in ours for v in (values or {}).values() if v.WhichOneof("val")]
    assert found, "the known customers have values"


def _recommend_reader(settings: Settings) -> Any:
    from service.online.redis_reader import HashReader

    store = open_store(settings)
    return HashReader(store._get_provider().online_store, store.config, _recommend_views(store))


@pytest.mark.redis
def test_concurrent_reads_each_get_their_own_row(redis_home: Settings, sample) -> None:
    """Reads in flight together (each on its own connection) each get their own customer's row."""
    import asyncio

    users, _ = sample
    reader = _recommend_reader(redis_home)
    keys = [reader.key.string_key("user_id", u) for u in [*users, "no-such-customer"]]

    async def scenario() -> tuple[list[Any], list[Any]]:
        one_by_one = [await reader.read_key(key) for key in keys]
        together = await asyncio.gather(*(reader.read_key(key) for key in reversed(keys)))
        return one_by_one, list(reversed(together))

    one_by_one, together = asyncio.run(scenario())
    assert together == one_by_one and len({str(rows) for rows in one_by_one}) == len(keys)


@pytest.mark.redis
def test_an_error_reply_in_a_batch_answers_only_its_own_read(redis_home: Settings, sample) -> None:
    """Reads in flight together share one pipeline: a key that is not a hash (WRONGTYPE) fails its
    own read only, and the reads around it, then and after, get their own customer's row."""
    import asyncio

    import redis

    users, _ = sample
    reader = _recommend_reader(redis_home)
    first, second = (reader.key.string_key("user_id", u) for u in users[:2])
    wrong = b"reco-test:not-a-hash"
    _redis(redis_home).set(wrong, b"plain string")

    async def scenario() -> tuple[Any, ...]:
        alone = await reader.read_key(first), await reader.read_key(second)
        together = await asyncio.gather(
            reader.read_key(first), reader.read_key(wrong), reader.read_key(second), return_exceptions=True
        )
        return *alone, *together, await reader.read_key(second)

    try:
        first_row, second_row, first_again, failed, second_again, after = asyncio.run(scenario())
    finally:
        _redis(redis_home).delete(wrong)
    assert first_row != second_row
    assert isinstance(failed, redis.ResponseError) and "WRONGTYPE" in str(failed)
    assert (first_again, second_again, after) == (first_row, second_row, second_row)


@pytest.mark.redis
def test_python_row_is_the_decoded_view_reads_minus_stale_views(redis_home: Settings, sample) -> None:
    """HashReader.python_row (the service's per-request decode) = parse()'s view reads decoded with
    python_value, views without a value left out; a view past its ttl is left out and named."""
    import asyncio

    from training.features.encoding import python_value

    users, _ = sample
    reader = _recommend_reader(redis_home)
    keys = [reader.key.string_key("user_id", u) for u in [*users, "no-such-customer"]]

    async def read_all() -> list[Any]:
        return [await reader.read_raw(key) for key in keys]

    known = 0
    for raw in asyncio.run(read_all()):
        views = reader.parse(raw)
        # (view index, written at, {feature: python value}) of the views holding a value
        held = [
            (n, ts.timestamp(), {name: python_value(v) for name, v in values.items()})
            for n, (ts, values) in enumerate(views)
            if values and any(v.WhichOneof("val") for v in values.values())
        ]
        everything = {name: value for _, _, row in held for name, value in row.items()}
        assert reader.python_row(raw, now=0.0, ttls=[0.0] * len(views)) == (everything, [])
        if not held:
            continue
        known += 1
        # The first view with a value under a 5 s ttl: fresh 4 s after it was written, stale after 10 s.
        first, written, _ = held[0]
        ttls = [5.0 if n == first else 0.0 for n in range(len(views))]
        rest = {name: value for n, _, row in held if n != first for name, value in row.items()}
        assert reader.python_row(raw, now=written + 4, ttls=ttls) == (everything, [])
        assert reader.python_row(raw, now=written + 10, ttls=ttls) == (rest, [first])
    assert known == len(users)


@pytest.mark.redis
def test_a_read_cut_short_never_answers_another(redis_home: Settings, sample) -> None:
    """An HMGET timed out while Redis stalls leaves no reply behind: a read in flight beside it and the
    next read on its connection get their own customer's row, never the late reply (one customer's
    data in another's answer)."""
    import asyncio

    users, _ = sample
    reader = _recommend_reader(redis_home)
    first, second = (reader.key.string_key("user_id", u) for u in users[:2])

    async def cut_short(key: bytes) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await reader.read_key(key)

    async def scenario() -> tuple[Any, ...]:
        rows = await reader.read_key(first), await reader.read_key(second)
        _redis(redis_home).execute_command("CLIENT", "PAUSE", 300, "ALL")
        same_batch, _ = await asyncio.gather(reader.read_key(second), cut_short(first))
        _redis(redis_home).execute_command("CLIENT", "PAUSE", 300, "ALL")
        await cut_short(first)
        await asyncio.sleep(0.4)  # the pause is over: Redis sends the first read's reply now
        return *rows, same_batch, await reader.read_key(second)

    first_row, second_row, same_batch, after = asyncio.run(scenario())
    assert first_row != second_row and same_batch == second_row and after == second_row


@pytest.mark.redis
def test_recaps_are_published_through_recap_v1(redis_home: Settings) -> None:
    """The recap job writes customer_year_recap.parquet and calls materialize(views=[...])."""
    path = redis_home.feature_data_dir / "customer_year_recap.parquet"
    stamp = datetime(2026, 1, 2, tzinfo=UTC)
    table = pa.table(
        {
            "user_id": ["C0001", "C0001", "C0002"],
            "year": pa.array([2025, 2025, 2025], pa.int64()),
            "recap_json": ['{"old": true}', '{"orders": 3}', '{"orders": 9}'],
            "schema_version": pa.array([1, 1, 1], pa.int64()),
            "model_version": ["2", "3", "3"],
            "event_timestamp": pa.array([stamp - timedelta(days=1), stamp, stamp], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, path)
    try:
        result = materialize(settings=redis_home, views=["customer_year_recap"])
        assert [v.rows_written for v in result.views] == [2]  # the newest row per (customer, year)
        got = _read(redis_home, "recap_v1", [{"user_id": "C0001", "year": 2025}, {"user_id": "C0002", "year": 2024}])
        assert got["recap_json"] == ['{"orders": 3}', None]
        assert got["model_version"] == ["3", None] and got["schema_version"] == [1, None]
    finally:
        path.unlink()


@pytest.mark.redis
def test_new_purchases_update_only_what_changed(messy_store: Path, tmp_path: Path, frames) -> None:
    """Runs last: it reuses DB 14 for its own home (flushes it first)."""
    url = redis_url_or_skip(REDIS_DB)
    _flush(url)
    settings = _settings(tmp_path / "home", url)
    purchases = pq.read_table(messy_store / "purchases.parquet")
    build(settings=settings, purchases=messy_store / "purchases.parquet", catalog=messy_store / "catalog.parquet")
    first = materialize(settings=settings)
    assert first.rows_written > 0

    df, catalog = frames
    user = sorted(df.user_id.unique())[3]
    when = df.timestamp.max().to_pydatetime() + timedelta(hours=2)
    extra = pa.table(
        {
            "user_id": [user],
            "item_id": [catalog.item_id.iloc[0]],
            "timestamp": [when],
            "quantity": [2],
            "price": [3.5],
            "order_id": ["new-order-1"],
        },
        schema=purchases.schema,
    )
    more = tmp_path / "more.parquet"
    pq.write_table(pa.concat_tables([purchases, extra]), more)
    build(settings=settings, purchases=more, catalog=messy_store / "catalog.parquet")
    second = materialize(settings=settings)
    per_view = {v.view: v.rows_written for v in second.views}
    assert per_view["customer_profile"] == 1 and per_view["customer_recent_items"] == 1, second.format_text()
    # item_stats is re-confirmed by every build (its ttl measures the build's age): every row moves up.
    assert per_view["item_stats"] == len(catalog), second.format_text()
    stamps = pq.read_table(settings.feature_data_dir / "item_stats.parquet").column("event_timestamp")
    assert pc.unique(stamps).to_pylist() == [when.replace(tzinfo=UTC)]
    got = _read(settings, "recommend_v1", [{"user_id": user}])
    new_df = _purchases(messy_store)
    new_df = pd.concat([new_df, extra.to_pandas().assign(basket="new-order-1")], ignore_index=True)
    want = expected_customer(new_df, catalog, user)
    assert {f: got[f][0] for f in CUSTOMER_FIELDS} == want
    assert got["recent_items"][0][0] == catalog.item_id.iloc[0]
    _flush(url)
