"""Purchase events posted by the storefront: validated one by one, stored durably, exported as Parquet.

Accepted events go to a SQLite file under RECO_HOME (WAL, synchronous=FULL: an acknowledged event
survives a crash). `reco events export --out DIR` drains the not-yet-exported events into one
Parquet file with the purchase contract's columns plus `event_id`, inside one transaction: the
rows are marked exported only after the file is complete, so a failed export loses nothing.
Exported rows are kept for `KEEP_DAYS` (duplicate detection by event_id, "just bought" filtering)
and then deleted.

Every rejected event is counted and reported with its index and reason; the batch is never
rejected as a whole for a bad event.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.events.schemas import CUSTOM, REASONS, PurchaseEvent
from service.schemas import has_control_or_surrogate
from training.core import columns as col

KEEP_DAYS = 7

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    price REAL,
    order_id TEXT,
    received_us INTEGER NOT NULL,
    exported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, ts_us);
CREATE INDEX IF NOT EXISTS events_pending ON events (exported, seq);
"""


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
    """What `reco events export` wrote."""

    events: int
    path: Path | None


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


def _us(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


class EventStore:
    """The SQLite event log under RECO_HOME (one connection per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._seen_file = False
        self._next_look = 0.0

    def _exists(self) -> bool:
        """Whether the log file exists; once seen it is not looked up again, and until then at most
        once a second (another worker creates it with the shop's first event)."""
        if not self._seen_file and time.monotonic() >= self._next_look:
            self._seen_file = self.path.exists()
            self._next_look = time.monotonic() + 1.0
        return self._seen_file

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            self._local.conn = conn
            self._seen_file = True
        return conn

    def ingest(self, raw_events: Iterable[Any], *, now: datetime) -> IngestResult:
        """Validate every event, store the valid new ones in one transaction, report the rest."""
        result = IngestResult()
        valid: list[tuple[int, Event]] = []
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
                valid.append((index, checked))
        if not valid:
            return result
        received = _us(datetime.now(UTC))
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for _, e in valid:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO events (event_id, user_id, item_id, ts_us, quantity, price, order_id,"
                    " received_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (e.event_id, e.user_id, e.item_id, _us(e.timestamp), e.quantity, e.price, e.order_id, received),
                )
                if cursor.rowcount == 1:
                    result.accepted += 1
                    result.accepted_events.append(e)
                else:
                    result.duplicates += 1
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result

    def bought_since(self, user_id: str, since: datetime) -> set[str]:
        """Items this customer bought at or after `since`, according to posted events."""
        if not self._exists():
            return set()
        rows = (
            self._conn()
            .execute("SELECT DISTINCT item_id FROM events WHERE user_id = ? AND ts_us >= ?", (user_id, _us(since)))
            .fetchall()
        )
        return {r[0] for r in rows}

    def pending(self) -> int:
        """Accepted events not exported yet."""
        if not self.path.exists():
            return 0
        return int(self._conn().execute("SELECT count(*) FROM events WHERE exported = 0").fetchone()[0])

    def export(self, out: Path) -> ExportResult:
        """Drain the pending events into `out/events-<first>-<last>.parquet` (atomic; see module docstring)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            return ExportResult(0, None)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                "SELECT seq, event_id, user_id, item_id, ts_us, quantity, price, order_id FROM events"
                " WHERE exported = 0 ORDER BY seq"
            ).fetchall()
            path = None
            if rows:
                first, last = rows[0][0], rows[-1][0]
                table = pa.table(
                    {
                        col.USER_ID: pa.array([r[2] for r in rows], pa.string()),
                        col.ITEM_ID: pa.array([r[3] for r in rows], pa.string()),
                        col.TIMESTAMP: pa.array([r[4] for r in rows], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                        col.QUANTITY: pa.array([r[5] for r in rows], pa.int64()),
                        col.PRICE: pa.array([r[6] for r in rows], pa.float64()),
                        col.ORDER_ID: pa.array([r[7] for r in rows], pa.string()),
                        "event_id": pa.array([r[1] for r in rows], pa.string()),
                    }
                )
                path = out / f"events-{first:012d}-{last:012d}.parquet"
                tmp = path.with_name(f".{path.name}.{time.time_ns()}.tmp")
                pq.write_table(table, tmp)
                tmp.replace(path)
                conn.execute("UPDATE events SET exported = 1 WHERE exported = 0 AND seq <= ?", (last,))
            cutoff = _us(datetime.now(UTC) - timedelta(days=KEEP_DAYS))
            conn.execute("DELETE FROM events WHERE exported = 1 AND received_us < ?", (cutoff,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ExportResult(len(rows), path)
