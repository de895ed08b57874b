"""The Redis event log: what every replica writes to and reads from when REDIS_URL is set.

Layout (a single Redis and a Redis Cluster alike):

    reco:events:{log}:stream            the accepted events, in order (a Redis Stream)
    reco:events:{log}:id:<event_id>     "1" while the event_id is remembered (KEEP_DAYS)
    reco:bought:<user_id>               the customer's recent purchases: item_id → purchase time
                                        (epoch seconds; a sorted set, entries older than KEEP_DAYS
                                        trimmed)

Storing a batch is two steps, in this order:

1. Each customer's recent purchases get the batch's items with `ZADD GT` (a newer time replaces an
   older one, never the reverse), for every valid event, new or repeated. Writing it twice changes
   nothing. The customer's key lives on the customer's own slot: in a cluster, the per-request
   reads spread over the nodes with the customers.
2. `INGEST` (the Lua script below) claims each event_id with SET NX and appends the event to the
   stream only when the claim is new. A script runs alone on its node, so a claim and its append
   happen together or not at all, and two replicas posting the same event store it once. `{log}`
   is a hash tag: in a cluster the stream and every id key share one slot, as a script's keys
   must.

A failure at either step answers 503 having claimed nothing (the storefront retries the batch); at
worst step 1 already hid items the customer did buy. A call that redis-py retries after a lost
reply finds its events claimed and reports them as duplicates: stored once either way.

A replica reads `reco:bought:<user_id>` on each request (`bought_since`): a purchase posted to any
replica is "just bought" on every replica's next read.

Export (`reco events export`) reads the stream through the consumer group `reco-export` as the
consumer `reco-export` and acknowledges entries (XACK, then XDEL, in one MULTI on the stream's
key) only after their file is written, fsynced and renamed. A run first takes again the entries a
previous run read and never acknowledged (it died between reading and acknowledging): exactly the
entries of that run's last file, so the same name, written again, and nothing twice. Then new
entries, `batch` at a time. Run one export at a time (a cron job, a CronJob with
concurrencyPolicy: Forbid).

Connections are redis-py's own: a pool per client, socket timeouts, one retry on a fresh
connection (a connection that Redis closed on restart fails its first use).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from service.events.store import (
    EXPORT_BATCH,
    KEEP_DAYS,
    Event,
    EventLogDown,
    ExportResult,
    IngestResult,
    check_batch,
    from_us,
    to_us,
    write_export_file,
)

if TYPE_CHECKING:
    from service.config import ServiceSettings

STREAM = "reco:events:{log}:stream"
ID_KEY = "reco:events:{log}:id:"
BOUGHT_KEY = "reco:bought:"
GROUP = CONSUMER = "reco-export"
KEEP_SECONDS = int(timedelta(days=KEEP_DAYS).total_seconds())
FIELDS = ("event_id", "user_id", "item_id", "ts_us", "quantity", "price", "order_id")

# Claim each event's id and append the event to the stream, atomically (a script runs alone).
# KEYS[1]: the stream; KEYS[1 + i]: the id key of event i (same hash slot as the stream).
# ARGV[1]: seconds an id is remembered; then per event its 7 FIELDS, in order ('' for none).
# Returns per event 1 (stored) or 0 (a duplicate: its id was already claimed).
INGEST = """
local keep = ARGV[1]
local stored = {}
for i = 2, #KEYS do
  local at = 2 + (i - 2) * 7
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', keep) then
    redis.call('XADD', KEYS[1], '*',
      'event_id', ARGV[at], 'user_id', ARGV[at + 1], 'item_id', ARGV[at + 2], 'ts_us', ARGV[at + 3],
      'quantity', ARGV[at + 4], 'price', ARGV[at + 5], 'order_id', ARGV[at + 6])
    stored[#stored + 1] = 1
  else
    stored[#stored + 1] = 0
  end
end
return stored
"""


class RedisEventStore:
    """The event log on a Redis or a Redis Cluster (see module docstring)."""

    kind = "redis"

    def __init__(self, url: str, *, cluster: bool = False, timeout: float = 1.0) -> None:
        self.url, self.cluster, self.timeout = url, cluster, timeout
        self._client: Any = None
        self._async: Any = None
        self._ingest: Any = None
        self._lock = threading.Lock()  # concurrent ingests (worker threads) create one client

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> RedisEventStore:
        assert settings.redis_url
        return cls(settings.redis_url, cluster=settings.redis_cluster)

    # --- clients: redis-py's own, created on first use ----------------------------------------

    def client(self) -> Any:
        """The blocking client (ingest runs in worker threads, export in the CLI)."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
                self._ingest = self._client.register_script(INGEST)
            return self._client

    def _connect(self) -> Any:
        options: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),  # once, on a fresh connection
        }
        if self.cluster:
            return redis.RedisCluster.from_url(self.url, **options)
        return redis.Redis.from_url(self.url, health_check_interval=30, **options)

    def async_client(self) -> Any:
        """The asyncio client of the per-request read (its connections belong to the running loop)."""
        if self._async is None:
            options: dict[str, Any] = {
                "socket_timeout": self.timeout,
                "socket_connect_timeout": self.timeout,
                "retry": AsyncRetry(ExponentialBackoff(cap=0.1, base=0.01), 1),
            }
            if self.cluster:
                self._async = redis.asyncio.RedisCluster.from_url(self.url, **options)
            else:
                self._async = redis.asyncio.Redis.from_url(self.url, health_check_interval=30, **options)
        return self._async

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._async = None  # its connections close with their event loop

    # --- the interface ------------------------------------------------------------------------

    def ingest(self, raw_events: Iterable[Any], *, now: datetime) -> IngestResult:
        """Validate every event; update each customer's recent purchases, then claim and append the
        new events (INGEST; see module docstring); EventLogDown when Redis fails."""
        result, valid = check_batch(raw_events, now=now)
        if not valid:
            return result
        args: list[Any] = [KEEP_SECONDS]
        for e in valid:
            args += [e.event_id, e.user_id, e.item_id, to_us(e.timestamp), e.quantity, _text(e.price), e.order_id or ""]
        try:
            self._remember_purchases(self.client(), valid, now=now)
            stored = self._ingest(keys=[STREAM, *(ID_KEY + e.event_id for e in valid)], args=args)
        except redis.RedisError as exc:
            raise EventLogDown(f"{type(exc).__name__}: {exc}") from None
        result.accepted += sum(stored)
        result.duplicates += len(stored) - sum(stored)
        result.accepted_events.extend(e for e, new in zip(valid, stored, strict=True) if new)
        return result

    @staticmethod
    def _remember_purchases(client: Any, events: list[Event], *, now: datetime) -> None:
        """ZADD GT each customer's items at their purchase time, trim what is older than KEEP_DAYS."""
        by_customer: dict[str, dict[str, float]] = defaultdict(dict)
        for e in events:
            bought = by_customer[e.user_id]
            bought[e.item_id] = max(bought.get(e.item_id, 0.0), e.timestamp.timestamp())
        oldest = (now - timedelta(days=KEEP_DAYS)).timestamp()
        with client.pipeline(transaction=False) as pipe:
            for user_id, items in by_customer.items():
                key = BOUGHT_KEY + user_id
                pipe.zadd(key, items, gt=True)
                pipe.zremrangebyscore(key, "-inf", f"({oldest}")
                pipe.expire(key, KEEP_SECONDS)
            pipe.execute()

    async def bought_since(self, user_id: str, since: datetime) -> set[str]:
        """Items this customer bought at or after `since`, posted to any replica: one ZRANGEBYSCORE,
        on every request, bounded by the client's socket timeout (the caller bounds it tighter)."""
        key, low = (BOUGHT_KEY + user_id).encode(), repr(since.timestamp()).encode()
        try:
            items = await self.async_client().zrangebyscore(key, low, b"+inf")
        except (redis.RedisError, OSError) as exc:
            raise EventLogDown(f"{type(exc).__name__}: {exc}") from None
        return {i.decode() for i in items}

    def pending(self) -> int:
        """Events in the stream: accepted and not acknowledged by an export yet."""
        try:
            return int(self.client().xlen(STREAM))
        except redis.RedisError as exc:
            raise EventLogDown(f"{type(exc).__name__}: {exc}") from None

    def export(self, out: Path, *, batch: int = EXPORT_BATCH) -> ExportResult:
        """Write the stream's unexported events into `out/events-<first id>-<last id>.parquet` files,
        acknowledging each file's entries after its rename (see module docstring)."""
        out.mkdir(parents=True, exist_ok=True)
        result = ExportResult(0, [])
        try:
            client = self.client()
            try:
                client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            # "0": what this consumer read before and never acknowledged (all of it, as one file); ">": new entries.
            start = "0"
            while True:
                reply = client.xreadgroup(GROUP, CONSUMER, {STREAM: start}, count=None if start == "0" else batch)
                entries = reply[0][1] if reply else []
                if entries:
                    ids = [entry_id for entry_id, _ in entries]
                    events = [_event(fields) for _, fields in entries if fields]  # no fields: deleted meanwhile
                    path = out / f"events-{_id(ids[0])}-{_id(ids[-1])}.parquet"
                    write_export_file(events, path)
                    with client.pipeline(transaction=True) as pipe:
                        pipe.xack(STREAM, GROUP, *ids)
                        pipe.xdel(STREAM, *ids)
                        pipe.execute()
                    result = ExportResult(result.events + len(events), [*result.files, path])
                elif start == ">":
                    return result
                start = ">"
        except redis.RedisError as exc:
            raise EventLogDown(f"{type(exc).__name__}: {exc}") from None


def _text(value: float | None) -> str:
    return "" if value is None else repr(value)


def _id(entry_id: bytes) -> str:
    return entry_id.decode()


def _event(fields: dict[bytes, bytes]) -> Event:
    """A stream entry's fields (INGEST's FIELDS) → the Event it stored."""
    f = {k.decode(): v.decode() for k, v in fields.items()}
    return Event(
        event_id=f["event_id"],
        user_id=f["user_id"],
        item_id=f["item_id"],
        timestamp=from_us(int(f["ts_us"])),
        quantity=int(f["quantity"]),
        price=float(f["price"]) if f["price"] else None,
        order_id=f["order_id"] or None,
    )
