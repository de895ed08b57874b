"""Online features for serving, read through Feast with short timeouts and a back-off.

* Customer features (feature service `recommend_v1`: profile + recent items) are read per request,
  bounded by `RECO_FEATURE_TIMEOUT_MS`: on Redis with one HMGET on the event loop (both views
  live in the customer's hash; `training.features_redis.HashReader`), on other stores through
  Feast's online_read in a small dedicated thread pool. A failed or slow read
  answers `None` with a reason; the caller then serves from the model bundle alone with
  `degraded: true`. After a failure the store is skipped for `RECO_FEATURE_BACKOFF_SECONDS`, so an
  outage costs one timeout, not one per request.
* Item attributes (name, category, brand, price, in_stock from `item_stats`) change slowly: they
  are read for the whole catalog in the background and kept in memory (`ItemCatalog`), so ranking
  never waits for them; on Redis only after item_stats was written (`item_writes`). Availability
  is pushed into the served bundle (ModelHolder.set_availability).
* Recaps (`recap_v1`) are read per request like customer features.
* Freshness: Feast does not enforce a feature view's `ttl` on online reads (feast#6821), so every
  read checks each row's event timestamp against its view's ttl (0 = never expires) on the
  service clock (`settings.clock()`). A stale customer row is treated as missing, a stale item row
  as unknown availability and popularity; both are counted in `reco_stale_features_total`.

Feast is imported and the feature services are resolved once, in `open()` (lifespan), never per
request, and `warm()` runs each read path once so the first request pays no lazy set-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from service.observability import FEATURE_SECONDS, STALE_FEATURES, labelled, redact
from training.core.columns import UNREQUESTABLE_ID

if TYPE_CHECKING:
    from service.config import ServiceSettings

log = logging.getLogger("reco.service.features")

ITEM_CHUNK = 500
ITEM_CHUNK_PAUSE = 0.001  # seconds between chunks of a refresh: requests get the GIL back in between
# Circuit breaker on timeouts: a share of the recent reads, not a run, because concurrent requests
# time out together when the process is starved of CPU for a moment (a load spike is not an outage,
# and backing off then would turn every answer degraded). A hung store times out every read.
BREAKER_WINDOW = 20
BREAKER_MIN_TIMEOUTS = 5
# What the service uses of recommend_v1 (CustomerFeatures; `orders` tells a known customer): per request
# only these are read and decoded, not the whole profile (14 features, two of them timestamps).
CUSTOMER_FIELDS = (
    "orders",
    "top_categories",
    "recent_items",
    "recent_item_times",
)
ITEM_FIELDS = ("name", "category", "brand", "price", "in_stock", "popularity_30d")
LIVE_ITEM_FIELDS = ("in_stock", "popularity_30d")  # what changes between full reads
RECAP_VIEW = "customer_year_recap"
ITEM_VIEW = "item_stats"


@dataclass(frozen=True)
class CustomerFeatures:
    """What the online store knows about one customer (None/empty when it knows nothing)."""

    known: bool
    recent_items: tuple[str, ...] = ()
    recent_item_times: tuple[int, ...] = ()  # epoch seconds UTC
    top_categories: tuple[str, ...] = ()

    def bought_since(self, since: datetime) -> set[str]:
        """Items last bought at or after `since`."""
        cutoff = since.timestamp()
        return {i for i, t in zip(self.recent_items, self.recent_item_times, strict=False) if t >= cutoff}


@dataclass(frozen=True)
class CustomerRead:
    """A customer-features read: the features, or why there are none (`degraded_reason`)."""

    features: CustomerFeatures | None
    degraded_reason: str | None = None


@dataclass(frozen=True)
class ItemInfo:
    """Catalog attributes of one item from item_stats."""

    name: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    in_stock: bool | None = None
    popularity_30d: int | None = None


@dataclass
class ItemCatalog:
    """In-memory copy of item_stats for the model's items (refreshed in the background)."""

    items: dict[str, ItemInfo] = field(default_factory=dict)
    refreshed_at: datetime | None = None
    stale: int = 0  # items whose item_stats row is older than the view's ttl (availability unknown)

    def name(self, item_id: str) -> str:
        info = self.items.get(item_id)
        return info.name if info is not None and info.name else item_id

    def get(self, item_id: str) -> ItemInfo:
        return self.items.get(item_id) or ItemInfo()


class OnlineStoreDown(Exception):
    """The online store could not answer in time (or is being skipped after a failure)."""


class OnlineFeatures:
    """Feast reads for the service (see module docstring)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.store: Any = None
        self.kind: str = "none"
        self.error: str | None = None
        self.catalog = ItemCatalog()
        self._services: dict[str, Any] = {}
        self._customer_views: list[tuple[Any, list[str]]] = []
        self._customer_ttls: list[float] = []  # seconds per customer view (0: never expires)
        self._recap_view: Any = None
        self._item_view: Any = None
        self._provider: Any = None
        self._reader: Any = None  # Redis: training.features_redis.HashReader over recommend_v1's views
        self._item_readers: dict[tuple[str, ...], Any] = {}  # Redis: HashReader per item_stats field set
        self._items_seen: dict[str, tuple[tuple[bytes | None, ...], datetime | None, bool]] = {}
        self._skip_until = 0.0
        self._recent_timeouts: deque[bool] = deque(maxlen=BREAKER_WINDOW)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="feast-read")
        self.timeout = settings.feature_timeout_ms / 1000.0

    # --- lifecycle ------------------------------------------------------------------------------

    def open(self) -> None:
        """Open the Feast store and resolve the feature services (blocking; call from a thread)."""
        if not self.settings.features:
            self.error = "disabled by RECO_FEATURES"
            return
        try:
            from training.features.store import online_store_kind, open_store

            store = open_store(self.settings, socket_timeout=max(self.timeout, 0.02))
            self._services = {
                name: store.get_feature_service(name) for name in ("recommend_v1", "items_v1", "recap_v1")
            }
            # Per-request customer reads go straight to the online store's `online_read` for the
            # views of recommend_v1: the same data as get_online_features at a fraction of its
            # per-call overhead (measured ~0.6 ms vs ~4 ms on SQLite). Each call gets its own copy
            # of the feature names: Feast's Redis store appends "_ts:<view>" to the list it is given,
            # so a shared list grows by one entry per request (reads slowed to timeouts under load).
            self._customer_views = [
                (store.get_feature_view(p.name), [f.name for f in p.features if f.name in CUSTOMER_FIELDS])
                for p in self._services["recommend_v1"].feature_view_projections
            ]
            self._customer_ttls = [view.ttl.total_seconds() if view.ttl else 0.0 for view, _ in self._customer_views]
            # Recaps too: get_online_features re-resolves the service whenever the registry cache
            # expires (every 60 s), a slow call on the request path.
            self._recap_view = store.get_feature_view(RECAP_VIEW)
            self._item_view = store.get_feature_view(ITEM_VIEW)
            self._provider = store._get_provider()
            self.store = store
            self.kind = online_store_kind(store.config)
            if self.kind == "redis":
                from service.online.redis_reader import HashReader

                # Both views are keyed by user_id, so they live in one Redis hash: one HMGET reads
                # them (Feast's online_read_async costs one round trip per view).
                self._reader = HashReader(self._provider.online_store, store.config, self._customer_views)
            self.error = None
        except Exception as exc:  # no registry yet, Feast missing, bad REDIS_URL: serve without features
            self.store = None
            self.error = redact(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            log.warning("online features unavailable, serving from the model alone: %s", self.error)

    def warm(self) -> None:
        """Run each per-request read once (blocking; at start-up): the first call of a Feast read
        path pays lazy imports and set-up (about 50 ms on SQLite, the whole RECO_FEATURE_TIMEOUT_MS)."""
        if self.store is None:
            return
        for name, read in (
            ("customer", lambda: self._read_customer_blocking(UNREQUESTABLE_ID)),
            ("recap", lambda: self._read_recap_blocking(UNREQUESTABLE_ID, 0)),
        ):
            try:
                read()
            except Exception as exc:  # the store may be down at start-up: requests degrade then
                log.warning("warming the %s read failed: %s", name, _first_line(exc))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def available(self) -> bool:
        return self.store is not None

    # --- per-request reads ----------------------------------------------------------------------

    async def customer(self, user_id: str) -> CustomerRead:
        """recommend_v1 for one customer, within the timeout; never raises."""
        try:
            if self.kind == "redis":
                row = await self._read_customer_async(user_id)
            else:
                row = await self._read(self._read_customer_blocking, user_id, group="customer")
        except OnlineStoreDown as exc:
            return CustomerRead(None, str(exc))
        return CustomerRead(_customer_features(row))

    def _customer_row(self, per_view: Sequence[tuple[datetime | None, dict[str, Any] | None]]) -> dict[str, Any]:
        """One {feature: python value} row from the views' reads, stale views left out."""
        now = self.settings.clock()
        kept = []
        for (view, _), (event_ts, values) in zip(self._customer_views, per_view, strict=True):
            if not _present(values):
                continue
            if not _fresh(event_ts, view.ttl, now):
                STALE_FEATURES.labels(view=view.name).inc()
                continue
            kept.append(values)
        return _decode(kept)

    async def _read_customer_async(self, user_id: str) -> dict[str, Any]:
        """Redis: both views in one HMGET on the event loop (no thread hop), decoded straight from
        the reply (`HashReader.python_row`: the row `_customer_row` makes of Feast's view reads)."""
        key = self._reader.key.string_key("user_id", user_id)
        raw = await self._bounded(lambda: self._reader.read_raw(key), group="customer")
        row, stale = self._reader.python_row(raw, now=self.settings.clock().timestamp(), ttls=self._customer_ttls)
        for view in stale:
            STALE_FEATURES.labels(view=self._customer_views[view][0].name).inc()
        return row

    async def recap(self, user_id: str, year: int) -> dict[str, Any] | None:
        """The stored recap record, None when there is none; raises OnlineStoreDown."""
        raw = await self._read(self._read_recap_blocking, user_id, year, group="recap")
        if not raw:
            return None
        record: dict[str, Any] = json.loads(raw)
        if str(record.get("user_id")) != user_id:  # never another customer's recap
            log.debug("recap row for %s holds user_id %s", user_id, record.get("user_id"))
            return None
        return record

    async def _read(self, fn: Callable[..., Any], *args: Any, group: str) -> Any:
        """A blocking read in the feature thread pool, bounded like every read (see `_bounded`)."""
        loop = asyncio.get_running_loop()
        return await self._bounded(lambda: loop.run_in_executor(self._pool, fn, *args), group=group)

    async def _bounded(self, start: Callable[[], Awaitable[Any]], *, group: str) -> Any:
        """Await the read `start()` begins within the timeout, through the breaker; raises OnlineStoreDown."""
        if self.store is None:
            raise OnlineStoreDown("online-store-unavailable")
        if time.monotonic() < self._skip_until:
            raise OnlineStoreDown("online-store-backoff")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):  # no extra task per read, unlike wait_for on 3.11
                result = await start()
        except TimeoutError:
            self._fail(group, "timeout", started)
            raise OnlineStoreDown("online-store-timeout") from None
        except Exception as exc:
            self._fail(group, "error", started)
            log.debug("online read failed: %s", exc)
            raise OnlineStoreDown("online-store-error") from None
        labelled(FEATURE_SECONDS, group, "ok").observe(time.perf_counter() - started)
        self._recent_timeouts.append(False)
        return result

    def _fail(self, group: str, outcome: str, started: float) -> None:
        labelled(FEATURE_SECONDS, group, outcome).observe(time.perf_counter() - started)
        # An error (refused, reset) means the store is down: back off at once. Timeouts open the
        # breaker when they are at least half of the recent reads (and BREAKER_MIN_TIMEOUTS).
        if outcome == "timeout":
            self._recent_timeouts.append(True)
            timeouts = sum(self._recent_timeouts)
            if timeouts < BREAKER_MIN_TIMEOUTS or 2 * timeouts < len(self._recent_timeouts):
                return
        self._recent_timeouts.clear()
        if self.settings.feature_backoff_seconds > 0:
            if time.monotonic() >= self._skip_until:
                log.warning("online store %s; skipping it for %.0f s", outcome, self.settings.feature_backoff_seconds)
            self._skip_until = time.monotonic() + self.settings.feature_backoff_seconds

    def _read_customer_blocking(self, user_id: str) -> dict[str, Any]:
        """recommend_v1's features of one customer as {feature: python value} (missing → absent)."""
        key = _entity_key(user_id)
        found = []
        for view, names in self._customer_views:
            [row] = self._provider.online_read(
                config=self.store.config, table=view, entity_keys=[key], requested_features=list(names)
            )
            found.append(row)
        return self._customer_row(found)

    def _read_recap_blocking(self, user_id: str, year: int) -> str | None:
        """recap_v1's recap_json for (customer, year), None when there is none (its ttl is 0: never stale)."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        key = EntityKey(join_keys=["user_id", "year"], entity_values=[Value(string_val=user_id), Value(int64_val=year)])
        [(event_ts, values)] = self._provider.online_read(
            config=self.store.config, table=self._recap_view, entity_keys=[key], requested_features=["recap_json"]
        )
        if not _present(values):
            return None
        if not _fresh(event_ts, self._recap_view.ttl, self.settings.clock()):
            STALE_FEATURES.labels(view=RECAP_VIEW).inc()
            return None
        raw = _decode([values]).get("recap_json")
        return str(raw) if raw else None

    # --- background item catalog ----------------------------------------------------------------

    def refresh_items(self, item_ids: Sequence[str], *, full: bool = True) -> ItemCatalog:
        """Read item_stats for these items (blocking, in chunks) into a new in-memory catalog.

        `full` reads every attribute (start-up, new model); otherwise only `in_stock` and the
        popularity are re-read and the other attributes kept. On Redis one HMGET per item
        (`HashReader`, pipelined per chunk), and a row whose bytes did not change since the last
        refresh is not decoded again: through Feast's online_read this cost about 1.2 s of CPU
        for 50k items, beside request handling in the same process.
        """
        if self.store is None:
            return self.catalog
        refresh = _ItemRefresh(self, full=full)
        for n, chunk in enumerate(refresh.chunks(item_ids)):
            if n:
                time.sleep(ITEM_CHUNK_PAUSE)
            requested = refresh.requested(chunk)
            if self.kind == "redis":
                reader = self._item_reader(requested)
                refresh.add_raw(chunk, reader, reader.raw_many([reader.key.string_key("item_id", i) for i in chunk]))
            else:
                refresh.add_rows(chunk, self._online_read_items(chunk, requested))
        return self._set_catalog(refresh)

    def item_writes(self) -> int | None:
        """How many batches were written to item_stats so far (Redis: the counter our writer bumps,
        `training.features_redis.writes_key`); None when the store cannot tell (SQLite, Redis down)."""
        if self.store is None or self.kind != "redis":
            return None
        from training.features.encoding import writes_key

        try:
            client = self._provider.online_store._get_client(self.store.config.online_store)
            value = client.get(writes_key(self.store.config, self._item_view))
        except Exception as exc:
            log.debug("item_stats write counter unreadable: %s", exc)
            return None
        return int(value or 0)

    def _item_reader(self, requested: tuple[str, ...]) -> Any:
        from service.online.redis_reader import HashReader

        reader = self._item_readers.get(requested)
        if reader is None:
            reader = self._item_readers[requested] = HashReader(
                self._provider.online_store, self.store.config, [(self._item_view, list(requested))]
            )
        return reader

    def _online_read_items(self, chunk: list[str], requested: tuple[str, ...]) -> list[Any]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        keys = [EntityKey(join_keys=["item_id"], entity_values=[Value(string_val=i)]) for i in chunk]
        return list(
            self._provider.online_read(
                config=self.store.config, table=self._item_view, entity_keys=keys, requested_features=list(requested)
            )
        )

    def _set_catalog(self, refresh: _ItemRefresh) -> ItemCatalog:
        if refresh.stale:
            STALE_FEATURES.labels(view=ITEM_VIEW).inc(refresh.stale)
            log.warning(
                "%d item_stats rows are older than the view's ttl: their availability is unknown", refresh.stale
            )
        self._items_seen = refresh.seen
        self.catalog = ItemCatalog(items=refresh.items, refreshed_at=datetime.now(UTC), stale=refresh.stale)
        return self.catalog


class _ItemRefresh:
    """One pass over item_stats: the new catalog, built chunk by chunk from raw Redis replies or Feast rows."""

    def __init__(self, features: OnlineFeatures, *, full: bool) -> None:
        self.full = full
        self.ttl = features._item_view.ttl
        self.now = features.settings.clock()
        self.previous = features.catalog.items
        self.previous_seen = features._items_seen
        self.items: dict[str, ItemInfo] = {}
        self.seen: dict[str, tuple[tuple[bytes | None, ...], datetime | None, bool]] = {}
        self.stale = 0

    @staticmethod
    def chunks(item_ids: Sequence[str]) -> Iterator[list[str]]:
        for start in range(0, len(item_ids), ITEM_CHUNK):
            yield [str(i) for i in item_ids[start : start + ITEM_CHUNK]]

    def requested(self, chunk: list[str]) -> tuple[str, ...]:
        # Items new to the catalog (e.g. of a newly loaded model) need every attribute.
        return ITEM_FIELDS if self.full or any(i not in self.previous for i in chunk) else LIVE_ITEM_FIELDS

    def add_raw(self, chunk: list[str], reader: Any, raws: list[list[bytes | None]]) -> None:
        for item_id, reply in zip(chunk, raws, strict=True):
            raw = tuple(reply)
            known = self.previous_seen.get(item_id)
            if known is not None and known[0] == raw and item_id in self.previous:
                fresh = _fresh(known[1], self.ttl, self.now)
                if fresh == known[2]:  # same bytes, same freshness: the same ItemInfo
                    self.items[item_id], self.seen[item_id] = self.previous[item_id], known
                    self.stale += not fresh
                    continue
            event_ts, values = reader.parse(raw)[0]
            added = self._add(item_id, event_ts, values)
            if added is not None:
                self.seen[item_id] = (raw, event_ts, added)

    def add_rows(self, chunk: list[str], rows: list[Any]) -> None:
        for item_id, (event_ts, values) in zip(chunk, rows, strict=True):
            self._add(item_id, event_ts, values)

    def _add(self, item_id: str, event_ts: datetime | None, values: dict[str, Any] | None) -> bool | None:
        """Add one item's row; returns its freshness (None: not in the online store)."""
        if not _present(values):
            return None
        row = _decode([values])
        old = self.previous.get(item_id) or ItemInfo()
        fresh = _fresh(event_ts, self.ttl, self.now)
        self.stale += not fresh
        self.items[item_id] = ItemInfo(
            name=row.get("name", old.name),
            category=row.get("category", old.category),
            brand=row.get("brand", old.brand),
            price=row.get("price", old.price),
            # A stale row's availability and popularity are unknown, not "as last written".
            in_stock=row.get("in_stock") if fresh else None,
            popularity_30d=row.get("popularity_30d") if fresh else None,
        )
        return fresh


def _entity_key(user_id: str) -> Any:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user_id)])


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def _present(values: dict[str, Any] | None) -> bool:
    """True when a view's read holds at least one value (Redis answers a missing key with empty values)."""
    return values is not None and any(v.WhichOneof("val") is not None for v in values.values())


def _fresh(event_ts: datetime | None, ttl: timedelta | None, now: datetime) -> bool:
    """Whether a row written at `event_ts` is still within its view's ttl (None or 0: never expires)."""
    if not ttl or event_ts is None:
        return True
    when = event_ts if event_ts.tzinfo else event_ts.replace(tzinfo=UTC)
    return now - when <= ttl


def _decode(per_view: list[dict[str, Any] | None]) -> dict[str, Any]:
    """ValueProtos of several views → one {feature: python value} row (a missing view adds nothing)."""
    from training.features.encoding import python_value

    return {name: python_value(value) for values in per_view for name, value in (values or {}).items()}


def _customer_features(row: dict[str, Any]) -> CustomerFeatures:
    recent = tuple(row.get("recent_items") or ())
    if not recent and row.get("orders") is None:
        return CustomerFeatures(known=False)
    return CustomerFeatures(
        known=True,
        recent_items=recent,
        recent_item_times=tuple(row.get("recent_item_times") or ()),  # Array(Int64): epoch seconds
        top_categories=tuple(row.get("top_categories") or ()),
    )
