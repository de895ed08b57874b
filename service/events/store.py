"""Purchase events posted by the storefront: validated one by one, stored, exported as Parquet.

One interface (`EventStore`), one implementation per backend, chosen by `open_event_store`:

* SQLite (`sqlite_store.py`), the embedded default: a file under RECO_HOME, seen by this host only.
* Redis (`redis_store.py`), when REDIS_URL is set: a Redis Stream every replica writes to, with
  atomic de-duplication by event_id and each customer's recent purchases beside it, so a purchase
  posted to one replica is "just bought" on every replica's next read.

Both keep an event_id for `KEEP_DAYS` (a repost within that window is a duplicate), and both
export the same way: `reco events export --out DIR` writes the not-yet-exported events into
Parquet files with the purchase contract's columns plus `event_id` (`write_export_file`: written
to a temporary name, fsynced, renamed), and marks them exported only after the rename. A crash
mid-export loses nothing; a re-run writes the same file again under the same name, so nothing is
exported twice.

Every rejected event is counted and reported with its index and reason; the batch is never
rejected as a whole for a bad event.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from service.events.schemas import CUSTOM, REASONS, PurchaseEvent
from service.schemas import has_control_or_surrogate
from training.core import columns as col

if TYPE_CHECKING:
    from service.config import ServiceSettings

KEEP_DAYS = 7  # how long an event_id is remembered (a repost within it is a duplicate)
EXPORT_BATCH = 100_000  # events per exported file at most


@dataclass(frozen=True)
class Event:
    """One validated purchase event."""

    event_id: str
    user_id: str
    item_id: str
    timestamp: datetime
    quantity: int
    price: float | None
    order_id: str | None


@dataclass(frozen=True)
class Rejection:
    """Why one posted event was not stored."""

    index: int
    event_id: str | None
    reason: str


@dataclass
class IngestResult:
    """Counts of one POST /v1/events (received = accepted + duplicates + rejected)."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    accepted_events: list[Event] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.rejections)


@dataclass(frozen=True)
class ExportResult:
    """What `reco events export` wrote: how many events, in which files (none: nothing was pending)."""

    events: int
    files: list[Path]


def validate_event(raw: Any, *, now: datetime) -> Event | str:
    """A valid Event, or the reason it is rejected (PurchaseEvent: the purchase contract's rules plus
    an event_id)."""
    if not isinstance(raw, Mapping):
        return "an event must be a JSON object"
    try:
        event = PurchaseEvent.model_validate(raw, context={"now": now})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "missing":
            return REASONS.get(field, f"missing {field}")
        return REASONS.get(field, error["msg"]) if error["type"] not in CUSTOM else error["msg"]
    return Event(
        event_id=event.event_id,
        user_id=event.user_id,
        item_id=event.item_id,
        timestamp=event.timestamp,
        quantity=event.quantity,
        price=event.price,
        order_id=event.order_id,
    )


def _echo_id(raw: Any) -> str | None:
    """A rejected event's event_id as the answer can quote it (None when it cannot be written as
    UTF-8 or holds control characters: the index identifies the event then)."""
    event_id = raw.get("event_id") if isinstance(raw, Mapping) else None
    if isinstance(event_id, bool) or not isinstance(event_id, str | int):
        return None
    text = str(event_id)[: col.ID_MAX_LENGTH]
    return None if has_control_or_surrogate(text) else text


def to_us(when: datetime) -> int:
    """An aware datetime → epoch microseconds."""
    return int(when.timestamp() * 1_000_000)


class EventLogDown(Exception):
    """The event log cannot be read or written right now (the backend's error, in one sentence)."""


class EventStore(Protocol):
    """Where accepted events live until exported; one implementation per backend."""

    kind: str  # "sqlite" or "redis", for /health/ready

    def ingest(self, raw_events: Iterable[Any], *, now: datetime) -> IngestResult:
        """Validate every event, store the valid new ones, report the rest (blocking); EventLogDown
        when nothing could be stored."""
        ...

    async def bought_since(self, user_id: str, since: datetime) -> set[str]:
        """Items this customer bought at or after `since`, according to posted events; EventLogDown."""
        ...

    def pending(self) -> int:
        """Accepted events not exported yet (blocking); EventLogDown."""
        ...

    def export(self, out: Path, *, batch: int = EXPORT_BATCH) -> ExportResult:
        """Write the pending events into Parquet files under `out`, then mark them exported (blocking)."""
        ...

    def close(self) -> None: ...


def open_event_store(settings: ServiceSettings) -> EventStore:
    """The event log of these settings: Redis when REDIS_URL is set, else the SQLite file under RECO_HOME."""
    if settings.redis_url:
        from service.events.redis_store import RedisEventStore

        return RedisEventStore.from_settings(settings)
    from service.events.sqlite_store import SQLiteEventStore

    return SQLiteEventStore(settings.events_db)


def check_batch(raw_events: Iterable[Any], *, now: datetime) -> tuple[IngestResult, list[Event]]:
    """Validate a posted batch: the counts so far (rejections, repeats within the batch) and the
    valid events to store, in order, each event_id once."""
    result = IngestResult()
    valid: list[Event] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_events):
        result.received += 1
        checked = validate_event(raw, now=now)
        if isinstance(checked, str):
            result.rejections.append(Rejection(index, _echo_id(raw), checked))
        elif checked.event_id in seen:
            result.duplicates += 1
        else:
            seen.add(checked.event_id)
            valid.append(checked)
    return result, valid


def write_export_file(events: Sequence[Event], path: Path) -> None:
    """Write `events` as a purchase file (+ event_id) at `path`, durably: a temporary name in the
    same directory, fsynced, renamed over `path`, then the directory fsynced (the rename survives a
    crash). Writing the same events again gives the same file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            col.USER_ID: pa.array([e.user_id for e in events], pa.string()),
            col.ITEM_ID: pa.array([e.item_id for e in events], pa.string()),
            col.TIMESTAMP: pa.array([to_us(e.timestamp) for e in events], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            col.QUANTITY: pa.array([e.quantity for e in events], pa.int64()),
            col.PRICE: pa.array([e.price for e in events], pa.float64()),
            col.ORDER_ID: pa.array([e.order_id for e in events], pa.string()),
            "event_id": pa.array([e.event_id for e in events], pa.string()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pq.write_table(table, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def from_us(us: int) -> datetime:
    """Epoch microseconds → an aware UTC datetime."""
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)
