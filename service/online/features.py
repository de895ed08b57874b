"""Online features for serving, read through Feast with short timeouts and a back-off.

* Customer features (feature service `recommend_v1`: profile, recent items and the customer's offline
  candidates of a model version, service.candidates) are read per request,
  bounded by `RECO_FEATURE_TIMEOUT_MS`: on Redis with one HMGET on the event loop (both views
  live in the customer's hash; service.online.redis_reader.HashReader), on other stores through
  the online store's `online_read` in a small dedicated thread pool. A failed or slow read
  answers `None` with a reason; the caller then serves from the model bundle alone with
  `degraded: true`. After a failure the store is skipped for `RECO_FEATURE_BACKOFF_SECONDS`, so an
  outage costs one timeout, not one per request (the breaker: `_fail`); then one read probes it
  while the others still skip it, and the first that succeeds closes the breaker, so answers are
  whole again within a back-off of the store's return.
* An emptied store (FLUSHDB, a restart without persistence, a load cut short) answers every read
  with nothing, not an error: `check_state` (polled every `RECO_STATE_POLL_SECONDS`) looks for the
  marker a complete materialization leaves (training.features.online_state); without it every
  answer is `degraded` (`online-store-empty`) and `/health/ready` says so.
* Recaps (`recap_v1`) are read per request like customer features.
* Item attributes and availability (`item_stats`) are read in the background into an in-memory
  catalog: service.online.items, attached to the store opened here.
* Freshness: Feast does not enforce a feature view's `ttl` on online reads (feast#6821), so every
  read checks each row's event timestamp against its view's ttl (0 = never expires) on the
  service clock (`settings.clock()`). A stale customer row is treated as missing; it is counted in
  `reco_stale_features_total`.

Feast is imported and the feature services are resolved once, in `open()` (lifespan), never per
request, and `warm()` runs each read path once so the first request pays no lazy set-up. Reads go
to the online store that Feast's public `get_online_store_from_config` builds from the store's
config: one instance for every read. Feast and training.features.encoding (which imports Feast and
pyarrow) are imported inside the functions that read: importing this module loads neither.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from service.observability import FEATURE_SECONDS, STALE_FEATURES, labelled, redact
from service.online.items import ItemCatalog, ItemStats
from training.core.columns import UNREQUESTABLE_ID
from training.features.names import (
    CUSTOMER_YEAR_RECAP,
    ITEM_STATS,
    ITEMS_SERVICE,
    RECAP_SERVICE,
    RECOMMEND_SERVICE,
    USER_ID,
)
from training.features.online_state import MATERIALIZED, RELOAD, OnlineState

if TYPE_CHECKING:
    from service.config import ServiceSettings

log = logging.getLogger("reco.service.features")

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
    "model_version",
    "home",
    "discover",
    "previous_version",
    "previous_home",
    "previous_discover",
)
RECAP_FIELD = "recap_json"
EMPTY = "online-store-empty"  # the degraded reason of an online store without a complete materialization


@dataclass(frozen=True)
class Candidates:
    """A customer's offline candidates (view customer_candidates): unfiltered, best first, as item
    indices of the model version that ranked them and their scores."""

    version: str
    home: np.ndarray  # int32 item indices
    home_scores: np.ndarray  # float32
    discover: np.ndarray
    discover_scores: np.ndarray

    @classmethod
    def unpacked(cls, version: str, home: bytes | None, discover: bytes | None) -> Candidates:
        """From the view's packed lists (training.features.encoding.pack_ranked)."""
        from training.features.encoding import unpack_ranked

        return cls(version, *unpack_ranked(home or b""), *unpack_ranked(discover or b""))


@dataclass(frozen=True)
class CustomerFeatures:
    """What the online store knows about one customer (None/empty when it knows nothing)."""

    known: bool
    recent_items: tuple[str, ...] = ()
    recent_item_times: tuple[int, ...] = ()  # epoch seconds UTC
    top_categories: tuple[str, ...] = ()
    candidates: tuple[Candidates, ...] = ()  # the lists of up to two model versions

    def candidates_of(self, version: str) -> Candidates | None:
        """The candidates ranked by model `version`, None when the store holds none of it."""
        return next((c for c in self.candidates if c.version == version), None)

    def bought_since(self, since: datetime) -> set[str]:
        """Items last bought at or after `since`."""
        cutoff = since.timestamp()
        return {i for i, t in zip(self.recent_items, self.recent_item_times, strict=False) if t >= cutoff}


@dataclass(frozen=True)
class CustomerRead:
    """A customer-features read: the features, or why there are none (`degraded_reason`)."""

    features: CustomerFeatures | None
    degraded_reason: str | None = None


class OnlineStoreDown(Exception):
    """The online store could not answer in time (or is being skipped after a failure)."""


class OnlineFeatures:
    """Feast reads for the service (see module docstring)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.store: Any = None
        self.kind: str = "none"
        self.error: str | None = None
        self.items = ItemStats(settings)
        self._services: dict[str, Any] = {}
        self._customer_views: list[tuple[Any, list[str]]] = []
        self._customer_ttls: list[float] = []  # seconds per customer view (0: never expires)
        self._recap_view: Any = None
        self._online_store: Any = None  # the one online store instance every read goes through
        self._reader: Any = None  # Redis: HashReader over recommend_v1's views
        self._skip_until = 0.0  # breaker open until then; then one read probes (half-open)
        self._probing = False
        self.state: OnlineState | None = None
        self.populated: bool | None = None  # the materialization marker is there (None: not known yet)
        self.state_error: str | None = None
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
            from feast.infra.online_stores.helpers import get_online_store_from_config

            from training.features.store import online_store_kind, open_store

            store = open_store(self.settings, socket_timeout=max(self.timeout, 0.02))
            self._services = {
                name: store.get_feature_service(name) for name in (RECOMMEND_SERVICE, ITEMS_SERVICE, RECAP_SERVICE)
            }
            # Per-request customer reads go straight to the online store's `online_read` for the
            # views of recommend_v1: the same data as get_online_features at a fraction of its
            # per-call overhead (measured ~0.6 ms vs ~4 ms on SQLite). Each call gets its own copy
            # of the feature names: Feast's Redis store appends "_ts:<view>" to the list it is given,
            # so a shared list grows by one entry per request (reads slowed to timeouts under load).
            self._customer_views = [
                (store.get_feature_view(p.name), [f.name for f in p.features if f.name in CUSTOMER_FIELDS])
                for p in self._services[RECOMMEND_SERVICE].feature_view_projections
            ]
            self._customer_ttls = [view.ttl.total_seconds() if view.ttl else 0.0 for view, _ in self._customer_views]
            # Recaps too: get_online_features re-resolves the service whenever the registry cache
            # expires (every 60 s), a slow call on the request path.
            self._recap_view = store.get_feature_view(CUSTOMER_YEAR_RECAP)
            item_view = store.get_feature_view(ITEM_STATS)
            self._online_store = get_online_store_from_config(store.config.online_store)
            self.kind = online_store_kind(store.config)
            if self.kind == "redis":
                from service.online.redis_reader import HashReader

                # Both views are keyed by user_id, so they live in one Redis hash: one HMGET reads
                # them (Feast's online_read_async costs one round trip per view).
                self._reader = HashReader(self._online_store, store.config, self._customer_views)
            self.items.attach(online_store=self._online_store, config=store.config, view=item_view, kind=self.kind)
            self.state = OnlineState(config=store.config, online_store=self._online_store)
            self.store = store
            self.error = None
            self.check_state()
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

    def check_state(self) -> str | None:
        """Read the shared state (blocking): whether the marker of a complete materialization is
        there (`populated`), and the reload signal's value, returned. A store that does not answer
        leaves `populated` as it was (its reads fail and degrade on their own)."""
        if self.state is None:
            return None
        try:
            values = self.state.get_many((MATERIALIZED, RELOAD))
        except Exception as exc:
            self.state_error = _first_line(exc)
            log.debug("online state unreadable: %s", self.state_error)
            return None
        populated = values[MATERIALIZED] is not None
        if populated != self.populated:
            if not populated:
                log.warning("the online store holds no complete materialization: answers are degraded")
            elif self.populated is False:
                log.info("the online store is materialized again")
        self.populated, self.state_error = populated, None
        return values[RELOAD]

    def signal_reload(self, value: str) -> None:
        """Tell every worker to reload (blocking; see check_state); a store that does not answer is logged."""
        if self.state is None:
            return
        try:
            self.state.set(RELOAD, value)
        except Exception as exc:
            log.warning("could not signal the reload to the other workers: %s", _first_line(exc))

    @property
    def catalog(self) -> ItemCatalog:
        """The in-memory item catalog (service.online.items), as of its last refresh."""
        return self.items.catalog

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
        if self.populated is False:  # whatever was found may be a few rows of a load under way
            return CustomerRead(None, EMPTY)
        return CustomerRead(_customer_features(row))

    def _customer_row(self, per_view: Sequence[tuple[datetime | None, dict[str, Any] | None]]) -> dict[str, Any]:
        """One {feature: python value} row from the views' reads, stale views left out."""
        from training.features.encoding import decode, fresh, present

        now = self.settings.clock()
        kept = []
        for (view, _), (event_ts, values) in zip(self._customer_views, per_view, strict=True):
            if not present(values):
                continue
            if not fresh(event_ts, view.ttl, now):
                STALE_FEATURES.labels(view=view.name).inc()
                continue
            kept.append(values)
        return decode(kept)

    async def _read_customer_async(self, user_id: str) -> dict[str, Any]:
        """Redis: both views in one HMGET on the event loop (no thread hop), decoded straight from
        the reply (`HashReader.python_row`: the row `_customer_row` makes of Feast's view reads)."""
        key = self._reader.key.string_key(USER_ID, user_id)
        raw = await self._bounded(lambda: self._reader.read_raw(key), group="customer")
        row, stale = self._reader.python_row(raw, now=self.settings.clock().timestamp(), ttls=self._customer_ttls)
        for view in stale:
            STALE_FEATURES.labels(view=self._customer_views[view][0].name).inc()
        return row

    async def recap(self, user_id: str, year: int) -> dict[str, Any] | None:
        """The stored recap record, None when there is none; raises OnlineStoreDown."""
        raw = await self._read(self._read_recap_blocking, user_id, year, group="recap")
        if not raw:
            if self.populated is False:
                raise OnlineStoreDown(EMPTY)
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
        if self._skip_until and (self._probing or time.monotonic() < self._skip_until):
            raise OnlineStoreDown("online-store-backoff")
        probe = self._skip_until > 0  # the breaker is open and its back-off over: this read probes
        self._probing = probe
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):  # no extra task per read, unlike wait_for on 3.11
                result = await start()
        except TimeoutError:
            self._fail(group, "timeout", started, probe=probe)
            raise OnlineStoreDown("online-store-timeout") from None
        except Exception as exc:
            self._fail(group, "error", started, probe=probe)
            log.debug("online read failed: %s", exc)
            raise OnlineStoreDown("online-store-error") from None
        finally:
            if probe:
                self._probing = False
        labelled(FEATURE_SECONDS, group, "ok").observe(time.perf_counter() - started)
        self._recent_timeouts.append(False)
        if probe:
            self._skip_until = 0.0
            log.info("online store answers again")
        return result

    def _fail(self, group: str, outcome: str, started: float, *, probe: bool = False) -> None:
        labelled(FEATURE_SECONDS, group, outcome).observe(time.perf_counter() - started)
        # An error (refused, reset) means the store is down: back off at once. Timeouts open the
        # breaker when they are at least half of the recent reads (and BREAKER_MIN_TIMEOUTS), or
        # when the read was the probe of an open breaker.
        if outcome == "timeout" and not probe:
            self._recent_timeouts.append(True)
            timeouts = sum(self._recent_timeouts)
            if timeouts < BREAKER_MIN_TIMEOUTS or 2 * timeouts < len(self._recent_timeouts):
                return
        self._recent_timeouts.clear()
        if self.settings.feature_backoff_seconds > 0:
            if not probe and time.monotonic() >= self._skip_until:
                log.warning("online store %s; skipping it for %.1f s", outcome, self.settings.feature_backoff_seconds)
            self._skip_until = time.monotonic() + self.settings.feature_backoff_seconds

    def _read_customer_blocking(self, user_id: str) -> dict[str, Any]:
        """recommend_v1's features of one customer as {feature: python value} (missing → absent)."""
        from training.features.encoding import customer_key

        key = customer_key(user_id)
        found = []
        for view, names in self._customer_views:
            [row] = self._online_store.online_read(
                config=self.store.config, table=view, entity_keys=[key], requested_features=list(names)
            )
            found.append(row)
        return self._customer_row(found)

    def _read_recap_blocking(self, user_id: str, year: int) -> str | None:
        """recap_v1's recap_json for (customer, year), None when there is none (its ttl is 0: never stale)."""
        from training.features.encoding import decode, fresh, present, recap_key

        [(event_ts, values)] = self._online_store.online_read(
            config=self.store.config,
            table=self._recap_view,
            entity_keys=[recap_key(user_id, year)],
            requested_features=[RECAP_FIELD],
        )
        if not present(values):
            return None
        if not fresh(event_ts, self._recap_view.ttl, self.settings.clock()):
            STALE_FEATURES.labels(view=CUSTOMER_YEAR_RECAP).inc()
            return None
        raw = decode([values]).get(RECAP_FIELD)
        return str(raw) if raw else None


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def _customer_features(row: dict[str, Any]) -> CustomerFeatures:
    recent = tuple(row.get("recent_items") or ())
    if not recent and row.get("orders") is None:
        return CustomerFeatures(known=False)
    return CustomerFeatures(
        known=True,
        recent_items=recent,
        recent_item_times=tuple(row.get("recent_item_times") or ()),  # Array(Int64): epoch seconds
        top_categories=tuple(row.get("top_categories") or ()),
        candidates=tuple(
            Candidates.unpacked(row[version], row.get(f"{prefix}home"), row.get(f"{prefix}discover"))
            for version, prefix in (("model_version", ""), ("previous_version", "previous_"))
            if row.get(version) is not None
        ),
    )
