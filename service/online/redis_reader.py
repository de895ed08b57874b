"""The service's Redis reads: several feature views of one entity in one HMGET.

Views of the same entity share its Redis hash (training.features.encoding.RedisLayout), while
Feast's `online_read_async` costs one pipeline round trip per view. `HashReader` returns exactly
what `online_read_async` returns per view (`parse`; tests compare them), or the Python row the
service uses straight from the reply (`python_row`).

The fast path of the hot read lives here and nowhere else: the HMGET is pre-encoded in Redis's
wire format (RESP) and sent over plain asyncio connections beside redis-py's client, with the
commands of one event-loop turn sent together (`_DirectConnections`): about 110 µs of CPU per read
through `redis.asyncio.Redis.hmget` against about 30 µs (docs/performance.md). The connection
settings and pool are those of Feast's Redis store (`_get_client` / `_get_client_async`, private:
Feast configures the client from its connection string and exposes no public accessor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio
from feast import FeatureView, RepoConfig
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp
from redis.asyncio.connection import AbstractConnection

from training.features.encoding import RedisLayout, python_of, view_name


class HashReader:
    """`online_read` of several views for entity keys, one HMGET per key (see module docstring).

    `views` are (feature view, feature names) pairs of views keyed by the same entity; field names
    are hashed once here, not per read."""

    def __init__(self, store: RedisOnlineStore, config: RepoConfig, views: Sequence[tuple[FeatureView, list[str]]]):
        online = config.online_store
        assert isinstance(online, RedisOnlineStoreConfig)
        self._store, self._online = store, online
        self.key = RedisLayout(config.project, config.entity_key_serialization_version)
        self.fields: list[bytes | str] = []
        self._layout: list[tuple[int, list[tuple[str, int]]]] = []  # per view: ts field, (feature, field)
        for view, names in views:
            name = view_name(view, config)
            features = []
            for feature in names:
                features.append((feature, len(self.fields)))
                self.fields.append(self.key.field(name, feature))
            self._layout.append((len(self.fields), features))
            self.fields.append(self.key.ts_field(name))
        self._direct: _DirectConnections | None = None
        # The HMGET's field names in Redis's wire format (RESP), once: per read only the key is added.
        self._fields_wire = b"".join(_resp_bulk(f.encode() if isinstance(f, str) else f) for f in self.fields)
        self._hmget_head = b"*%d\r\n%b" % (2 + len(self.fields), _resp_bulk(b"HMGET"))

    async def read(self, entity_key: EntityKeyProto) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """One entity: per view, what `online_read_async` returns (async client, one round trip)."""
        return await self.read_key(self.key.key(entity_key))

    async def read_key(self, key: bytes) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """`read` by Redis key (e.g. `self.key.string_key("user_id", ...)`, without building an EntityKey)."""
        return self.parse(await self.read_raw(key))

    async def read_raw(self, key: bytes) -> list[bytes | None]:
        """The HMGET reply (in `fields` order) for a Redis key: for `parse` or `python_row`.

        Not bounded in time on a plain Redis (see `_DirectConnections`): callers bound it."""
        if self._direct is None:
            # Feast's store owns the connection settings (connection_string): its pool's, reused.
            client = await self._store._get_client_async(self._online)
            if type(getattr(client, "connection_pool", None)) is not redis.asyncio.ConnectionPool:  # cluster, sentinel
                return list(await client.hmget(key, self.fields))
            self._direct = _DirectConnections(client.connection_pool)
        reply: list[bytes | None] = await self._direct.execute(self._hmget_head + _resp_bulk(key) + self._fields_wire)
        return reply

    def raw_many(self, keys: Sequence[bytes]) -> list[list[bytes | None]]:
        """HMGET replies (in `fields` order) for Redis keys (`self.key(...)`), in one pipeline."""
        client = self.client()
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.execute_command("HMGET", key, *self.fields)
            return list(pipe.execute())

    def client(self) -> redis.Redis:
        """Feast's Redis client of this store (its connection settings, its pool)."""
        client: redis.Redis = self._store._get_client(self._online)
        return client

    def parse(self, raw: Sequence[bytes | None]) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """One HMGET reply → per view (event time, {feature: ValueProto}), as Feast's reads give them."""
        out: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
        for ts_at, features in self._layout:
            if not features:
                out.append((None, None))
                continue
            values: dict[str, ValueProto] = {}
            for feature, at in features:
                value = ValueProto()
                if raw[at]:
                    value.ParseFromString(raw[at])
                values[feature] = value
            stamp = Timestamp()
            if raw[ts_at]:
                stamp.ParseFromString(raw[ts_at])
            out.append((datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1_000_000_000.0, tz=UTC), values))
        return out

    def python_row(
        self, raw: Sequence[bytes | None], *, now: float, ttls: Sequence[float]
    ) -> tuple[dict[str, Any], list[int]]:
        """One HMGET reply → ({feature: python value} of the views that hold a value and are within
        their ttl, indices of the views left out as stale). `now` is in epoch seconds, `ttls` in
        seconds per view (0: never expires; a view without a timestamp counts as written at 0, as
        `parse` reads it).

        The same row as decoding `parse(raw)` view by view with `python_value` (a test compares
        them), without its per-view datetimes and dicts of ValueProtos: about 10 µs less per read,
        which the service pays on every recommendation."""
        row: dict[str, Any] = {}
        stale: list[int] = []
        for view, ((ts_at, features), ttl) in enumerate(zip(self._layout, ttls, strict=True)):
            decoded: dict[str, Any] = {}
            present = False  # Redis answers a missing key with empty fields
            for name, at in features:
                value = ValueProto.FromString(raw[at]) if raw[at] else None
                kind = None if value is None else value.WhichOneof("val")
                decoded[name] = None if value is None or kind is None else python_of(value, kind)
                present = present or kind is not None
            if not present:
                continue
            if ttl:
                stamp = Timestamp.FromString(raw[ts_at]) if raw[ts_at] else Timestamp()
                if now - (stamp.seconds + stamp.nanos / 1_000_000_000.0) > ttl:
                    stale.append(view)
                    continue
            row.update(decoded)
        return row, stale


def _resp_bulk(value: bytes) -> bytes:
    """One RESP bulk string (what redis-py's pack_command makes of each argument)."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


class _DirectConnections:
    """Plain asyncio Redis connections for one-command reads, beside the redis-py client, with the
    commands of one event-loop turn sent together.

    Through `redis.asyncio.Redis.hmget` one HMGET costs about 110 µs of CPU here (the pool's lock
    and observability hooks, a `wait_for` task per send for socket_timeout); on a bare `Connection`
    about 30 µs, a sixth of a cached recommendation. Connections are made with the client's pool
    settings minus socket_timeout: the caller bounds each read (the service by
    RECO_FEATURE_TIMEOUT_MS).

    Commands issued in the same turn of the event loop (requests that arrived together) go out as
    one pipeline on one connection, and their replies are read back in order: one write and one
    wake-up for the lot on both sides. Under the service benchmark's load this cut the CPU per
    cached recommendation (service and Redis) by 10–12%. An error reply answers only its own
    command. A caller that stops waiting (its timeout) leaves its reply to be read and dropped;
    when every caller of a batch has stopped waiting, the batch is cancelled, which closes its
    connection (redis-py disconnects on any exception) so no late reply is left on it; a closed
    connection reconnects on its next use."""

    def __init__(self, pool: redis.asyncio.ConnectionPool) -> None:
        self._connection_class, self._kwargs = pool.connection_class, {**pool.connection_kwargs, "socket_timeout": None}
        self._idle: list[AbstractConnection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queued: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._batches: set[asyncio.Task[None]] = set()

    async def execute(self, command: bytes) -> Any:
        """The reply to one command already in Redis's wire format (RESP)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a connection belongs to the event loop that opened it
            self._idle, self._queued, self._loop = [], [], loop
        reply: asyncio.Future[Any] = loop.create_future()
        self._queued.append((command, reply))
        if len(self._queued) == 1:
            loop.call_soon(self._send_queued)
        return await reply

    def _send_queued(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.ensure_future(self._round_trip(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

        def abandon(_: asyncio.Future[Any]) -> None:
            if all(reply.done() for _, reply in batch) and not task.done():
                task.cancel()  # every caller gave up (timeouts): the connection is closed, no reply left behind

        for _, reply in batch:
            reply.add_done_callback(abandon)

    async def _round_trip(self, batch: list[tuple[bytes, asyncio.Future[Any]]]) -> None:
        conn = self._idle.pop() if self._idle else self._connection_class(**self._kwargs)
        try:
            await conn.send_packed_command(b"".join(command for command, _ in batch), check_health=False)
            for _, reply in batch:
                try:
                    value = await conn.read_response()
                except redis.ResponseError as exc:  # an error reply: the connection is still in step
                    if not reply.done():
                        reply.set_exception(exc)
                    continue
                if not reply.done():
                    reply.set_result(value)
        except BaseException as exc:  # the connection is closed (redis-py disconnects on any exception)
            for _, reply in batch:
                if not reply.done():
                    reply.set_exception(exc if isinstance(exc, Exception) else ConnectionError("read cancelled"))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._idle.append(conn)
