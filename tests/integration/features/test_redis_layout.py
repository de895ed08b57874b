"""The Redis layout both sides share: our batch writer writes the bytes Feast's stock store writes,
and the service's one-HMGET reader returns what Feast's own async read returns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.integration.features.conftest import feast_hashes, redis_client
from training.features.materialize import materialize
from training.features.store import open_store
from training.settings import Settings


def _recommend_views(store: Any) -> list[tuple[Any, list[str]]]:
    """recommend_v1's (feature view, feature names) pairs."""
    return [
        (store.get_feature_view(p.name), [f.name for f in p.features])
        for p in store.get_feature_service("recommend_v1").feature_view_projections
    ]


def _recommend_reader(settings: Settings) -> Any:
    from service.online.redis_reader import HashReader

    store = open_store(settings)
    return HashReader(store._get_provider().online_store, store.config, _recommend_views(store))


@pytest.mark.redis
@pytest.mark.parametrize("skip_dedup", [False, True])
def test_fast_redis_store_writes_the_same_bytes_as_feasts(redis_home: Settings, skip_dedup: bool) -> None:
    """FastRedisOnlineStore.online_write_batch = RedisOnlineStore's, byte for byte (one- and two-key views)."""
    from feast.infra.online_stores.redis import RedisOnlineStore

    from training.features.encoding import writes_key
    from training.features.materialize import iter_rows
    from training.features.redis_store import FastRedisOnlineStore

    client = redis_client(redis_home)
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
        return feast_hashes(client)

    stock, fast = dump(RedisOnlineStore()), dump(FastRedisOnlineStore())
    # The one addition: a write counter per view written (what the service polls).
    counters = {key: int(client.get(key)) for key in client.scan_iter(match="reco:writes:*")}
    client.flushdb()
    materialize(settings=redis_home, full=True)  # leave DB 14 as the other tests expect it
    assert len(stock) == 40 + 40 + 3 and fast == stock
    assert set(counters) == {writes_key(store.config, store.get_feature_view(v)).encode() for v in tables}
    assert all(counters.values())


@pytest.mark.redis
def test_one_hmget_reader_returns_what_feasts_async_read_returns(redis_home: Settings, sample) -> None:
    """HashReader (the service's Redis read of recommend_v1) = Feast's online_read_async per view."""
    import asyncio

    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from service.online.redis_reader import HashReader
    from training.features.encoding import pack_ranked
    from training.features.materialize import iter_rows

    users, _ = sample
    store = open_store(redis_home)
    provider = store._get_provider()
    views = _recommend_views(store)
    reader = HashReader(provider.online_store, store.config, views)
    # Candidates for half the customers, in the same hash as their other views.
    fv = store.get_feature_view("customer_candidates")
    candidates = pa.table(
        {
            "user_id": users[::2],
            "model_version": ["4"] * len(users[::2]),
            "home": [pack_ranked(np.array([3, 1, 2]), np.array([0.9, 0.5, 0.25]))] * len(users[::2]),
            "discover": [pack_ranked(np.array([7]), np.array([0.125]))] * len(users[::2]),
            "previous_version": ["3"] * len(users[::2]),
            "previous_home": [pack_ranked(np.array([1, 2]), np.array([0.5, 0.25]))] * len(users[::2]),
            "previous_discover": pa.nulls(len(users[::2]), pa.binary()),
            "event_timestamp": pa.array([datetime.now(UTC)] * len(users[::2]), pa.timestamp("us", tz="UTC")),
        }
    )
    for rows in iter_rows(candidates, fv):
        provider.online_store.online_write_batch(store.config, fv, rows, None)

    async def both(user: str) -> tuple[list[Any], list[Any]]:
        key = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user)])
        feast_rows = [
            (await provider.online_read_async(store.config, view, [key], list(names)))[0] for view, names in views
        ]
        return await reader.read(key), feast_rows

    async def all_users() -> list[tuple[list[Any], list[Any]]]:
        return [await both(u) for u in [*users, "no-such-customer"]]

    pairs = asyncio.run(all_users())
    assert len(views) == 3 and all(ours == theirs for ours, theirs in pairs)
    found = [v for ours, _ in pairs[:-1] for _, values in ours for v in (values or {}).values() if v.WhichOneof("val")]
    assert found, "the known customers have values"


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
def test_an_error_reply_in_a_batch_answers_only_its_ownread_service(redis_home: Settings, sample) -> None:
    """Reads in flight together share one pipeline: a key that is not a hash (WRONGTYPE) fails its
    own read only, and the reads around it, then and after, get their own customer's row."""
    import asyncio

    import redis

    users, _ = sample
    reader = _recommend_reader(redis_home)
    first, second = (reader.key.string_key("user_id", u) for u in users[:2])
    wrong = b"reco-test:not-a-hash"
    redis_client(redis_home).set(wrong, b"plain string")

    async def scenario() -> tuple[Any, ...]:
        alone = await reader.read_key(first), await reader.read_key(second)
        together = await asyncio.gather(
            reader.read_key(first), reader.read_key(wrong), reader.read_key(second), return_exceptions=True
        )
        return *alone, *together, await reader.read_key(second)

    try:
        first_row, second_row, first_again, failed, second_again, after = asyncio.run(scenario())
    finally:
        redis_client(redis_home).delete(wrong)
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
        redis_client(redis_home).execute_command("CLIENT", "PAUSE", 300, "ALL")
        same_batch, _ = await asyncio.gather(reader.read_key(second), cut_short(first))
        redis_client(redis_home).execute_command("CLIENT", "PAUSE", 300, "ALL")
        await cut_short(first)
        await asyncio.sleep(0.4)  # the pause is over: Redis sends the first read's reply now
        return *rows, same_batch, await reader.read_key(second)

    first_row, second_row, same_batch, after = asyncio.run(scenario())
    assert first_row != second_row and same_batch == second_row and after == second_row
