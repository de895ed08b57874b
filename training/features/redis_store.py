"""Feast's Redis online store with a faster `online_write_batch`, same layout.

Configured as `online_store.type: training.features.redis_store.FastRedisOnlineStore` (what
training.features.store.repo_config does when REDIS_URL is set). It writes the very layout of
`feast.infra.online_stores.redis.RedisOnlineStore` (training.features.encoding.RedisLayout), so
Feast's `online_read` / `get_online_features` read it back; tests compare the bytes with the stock
store's. Per batch instead of per row: field names hashed once, event timestamps serialized once,
HSET sent as one flat command. It adds one thing: a batch that writes rows increments
`writes_key(view)`, so the service re-reads a view only after it was written. The timestamp dedup
(skip rows not newer than the stored ones) and `skip_dedup` behave as in Feast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal

from feast import FeatureView, RepoConfig, utils
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

from training.features.encoding import RedisLayout, view_name, writes_key
from training.features.store import STORE_TYPE


class FastRedisOnlineStoreConfig(RedisOnlineStoreConfig):
    """Same options as Feast's Redis store (connection_string, key_ttl_seconds, skip_dedup, ...)."""

    type: Literal["training.features.redis_store.FastRedisOnlineStore"] = STORE_TYPE  # type: ignore[assignment]


class FastRedisOnlineStore(RedisOnlineStore):
    """RedisOnlineStore whose batch write does per batch what the stock one does per row."""

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: Sequence[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        online = config.online_store
        assert isinstance(online, RedisOnlineStoreConfig)
        client = self._get_client(online)
        view = view_name(table, config)
        layout = RedisLayout(config.project, config.entity_key_serialization_version)
        ts_key = layout.ts_field(view)
        field_names: dict[str, bytes] = {}
        stamps: dict[datetime, tuple[bytes, int]] = {}
        ttl = online.key_ttl_seconds

        def stamp(when: datetime) -> tuple[bytes, int]:
            found = stamps.get(when)
            if found is None:
                ts = Timestamp()
                ts.FromDatetime(utils.make_tzaware(when))
                found = stamps[when] = (ts.SerializeToString(), ts.seconds * 1_000_000_000 + ts.nanos)
            return found

        def fields(ts_bytes: bytes, values: dict[str, ValueProto]) -> list[Any]:
            """HSET's field/value arguments, flat (skips redis-py's per-call mapping handling)."""
            args: list[Any] = [ts_key, ts_bytes]
            for name, value in values.items():
                name_key = field_names.get(name)
                if name_key is None:
                    name_key = field_names[name] = layout.field(view, name)
                args.append(name_key)
                args.append(value.SerializeToString())
            return args

        with client.pipeline(transaction=False) as pipe:
            if online.skip_dedup:
                for entity_key, values, when, _ in data:
                    key = layout.key(entity_key)
                    pipe.execute_command("HSET", key, *fields(stamp(when)[0], values))
                    if ttl:
                        pipe.expire(name=key, time=ttl)
                if data:
                    pipe.incr(writes_key(config, table))
                pipe.execute()
                if progress:
                    progress(len(data))
                return

            keys = [layout.key(entity_key) for entity_key, _, _, _ in data]
            for key in keys:
                pipe.hmget(key, ts_key)
            previous = [reply[0] for reply in pipe.execute()]
            latest: dict[bytes, int] = {}  # newest timestamp queued per key in this batch (as Feast does)
            for key, stored, (_, values, when, _) in zip(keys, previous, data, strict=True):
                ts_bytes, nanos = stamp(when)
                seen = latest.get(key, 0)
                if stored:
                    old = Timestamp()
                    old.ParseFromString(stored)
                    seen = max(seen, old.seconds * 1_000_000_000 + old.nanos)
                if seen and nanos <= seen:
                    continue
                latest[key] = nanos
                pipe.execute_command("HSET", key, *fields(ts_bytes, values))
                if ttl:
                    pipe.expire(name=key, time=ttl)
            if latest:
                pipe.incr(writes_key(config, table))
            pipe.execute()
            if progress:
                progress(len(data))  # written + skipped
