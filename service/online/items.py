"""The item catalog: item_stats of the served items, read in the background and kept in memory.

Item attributes (name, category, brand, price, in_stock, popularity_30d) change slowly: they are
read for the whole catalog in the background (`ItemStats.refresh`), so ranking never waits for
them; on Redis only after item_stats was written (`ItemStats.writes`, the counter our writer
bumps). The caller pushes availability into the served bundle (ModelHolder.set_availability).

Freshness: Feast does not enforce a feature view's `ttl` on online reads (feast#6821): a row older
than item_stats' ttl on the service clock has unknown availability and popularity (its other
attributes are kept), counted in `reco_stale_features_total`.

Feast and training.features.encoding (which imports Feast and pyarrow) are imported inside the
functions that read, never when this module is imported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from service.observability import STALE_FEATURES
from training.features.names import ITEM_ID, ITEM_STATS

if TYPE_CHECKING:
    from service.config import ServiceSettings

log = logging.getLogger("reco.service.features")

ITEM_CHUNK = 500
ITEM_CHUNK_PAUSE = 0.001  # seconds between chunks of a refresh: requests get the GIL back in between
ITEM_FIELDS = ("name", "category", "brand", "price", "in_stock", "popularity_30d")
LIVE_ITEM_FIELDS = ("in_stock", "popularity_30d")  # what changes between full reads


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

    def availability(self) -> dict[str, bool]:
        """item_id → in stock, for the items whose availability is known."""
        return {item_id: bool(info.in_stock) for item_id, info in self.items.items() if info.in_stock is not None}


class ItemStats:
    """Reads item_stats into a new `catalog` (see module docstring); attached to the online store by
    OnlineFeatures.open(), it reads nothing before."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.catalog = ItemCatalog()
        self._online_store: Any = None
        self._config: Any = None
        self._view: Any = None
        self._kind = "none"
        self._readers: dict[tuple[str, ...], Any] = {}  # Redis: HashReader per item_stats field set
        self._seen: dict[str, tuple[tuple[bytes | None, ...], datetime | None, bool]] = {}

    def attach(self, *, online_store: Any, config: Any, view: Any, kind: str) -> None:
        """Read item_stats (`view`) through this online store from now on."""
        self._online_store, self._config, self._view, self._kind = online_store, config, view, kind

    def refresh(self, item_ids: Sequence[str], *, full: bool = True) -> ItemCatalog:
        """Read item_stats for these items (blocking, in chunks) into a new in-memory catalog.

        `full` reads every attribute (start-up, new model); otherwise only `in_stock` and the
        popularity are re-read and the other attributes kept. On Redis one HMGET per item
        (`HashReader`, pipelined per chunk), and a row whose bytes did not change since the last
        refresh is not decoded again: through Feast's online_read this cost about 1.2 s of CPU
        for 50k items, beside request handling in the same process.
        """
        if self._view is None:
            return self.catalog
        refresh = _ItemRefresh(self, full=full)
        for n, chunk in enumerate(refresh.chunks(item_ids)):
            if n:
                time.sleep(ITEM_CHUNK_PAUSE)
            requested = refresh.requested(chunk)
            if self._kind == "redis":
                reader = self._reader(requested)
                refresh.add_raw(chunk, reader, reader.raw_many([reader.key.string_key(ITEM_ID, i) for i in chunk]))
            else:
                refresh.add_rows(chunk, self._online_read(chunk, requested))
        return self._set_catalog(refresh)

    def writes(self) -> int | None:
        """How many batches were written to item_stats so far (Redis: the counter our writer bumps,
        `training.features.encoding.writes_key`); None when the store cannot tell (SQLite, Redis down)."""
        if self._view is None or self._kind != "redis":
            return None
        from training.features.encoding import writes_key

        try:
            value = self._reader(LIVE_ITEM_FIELDS).client().get(writes_key(self._config, self._view))
        except Exception as exc:
            log.debug("item_stats write counter unreadable: %s", exc)
            return None
        return int(value or 0)

    def _reader(self, requested: tuple[str, ...]) -> Any:
        from service.online.redis_reader import HashReader

        reader = self._readers.get(requested)
        if reader is None:
            reader = self._readers[requested] = HashReader(
                self._online_store, self._config, [(self._view, list(requested))]
            )
        return reader

    def _online_read(self, chunk: list[str], requested: tuple[str, ...]) -> list[Any]:
        from training.features.encoding import item_key

        return list(
            self._online_store.online_read(
                config=self._config,
                table=self._view,
                entity_keys=[item_key(i) for i in chunk],
                requested_features=list(requested),
            )
        )

    def _set_catalog(self, refresh: _ItemRefresh) -> ItemCatalog:
        if refresh.stale:
            STALE_FEATURES.labels(view=ITEM_STATS).inc(refresh.stale)
            log.warning(
                "%d item_stats rows are older than the view's ttl: their availability is unknown", refresh.stale
            )
        self._seen = refresh.seen
        self.catalog = ItemCatalog(items=refresh.items, refreshed_at=datetime.now(UTC), stale=refresh.stale)
        return self.catalog


class _ItemRefresh:
    """One pass over item_stats: the new catalog, built chunk by chunk from raw Redis replies or Feast rows."""

    def __init__(self, stats: ItemStats, *, full: bool) -> None:
        from training.features import encoding  # Feast's value decoding, once the store is open

        self.encoding = encoding
        self.full = full
        self.ttl = stats._view.ttl
        self.now = stats.settings.clock()
        self.previous = stats.catalog.items
        self.previous_seen = stats._seen
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
                fresh = self.encoding.fresh(known[1], self.ttl, self.now)
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
        if not self.encoding.present(values):
            return None
        row = self.encoding.decode([values])
        old = self.previous.get(item_id) or ItemInfo()
        fresh = self.encoding.fresh(event_ts, self.ttl, self.now)
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


def offline_item_ids(settings: ServiceSettings) -> list[str]:
    """Without a model, the item ids of item_stats' offline source (to read their online values)."""
    import pyarrow.parquet as pq

    from training.features.store import source_path

    path = source_path(ITEM_STATS, settings)
    if not path.exists():
        return []
    return [str(i) for i in pq.read_table(path, columns=[ITEM_ID]).column(ITEM_ID).to_pylist()]
