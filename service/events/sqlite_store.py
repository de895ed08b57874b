"""The SQLite event log: the embedded default, a file under RECO_HOME that only this host sees.

WAL and synchronous=FULL: an acknowledged event survives a crash. `event_id` is UNIQUE, so a repost
is a duplicate (INSERT OR IGNORE). Export reads the not-yet-exported rows inside one transaction,
writes the file (store.write_export_file) and marks the rows exported in the same transaction: a
failed export marks nothing. Exported rows are kept for KEEP_DAYS (duplicate detection, "just
bought") and then deleted.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


class SQLiteEventStore:
    """The SQLite event log under RECO_HOME (one connection per thread)."""

    kind = "sqlite"

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
        result, valid = check_batch(raw_events, now=now)
        if not valid:
            return result
        received = to_us(datetime.now(UTC))
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                stored = []
                for e in valid:
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO events (event_id, user_id, item_id, ts_us, quantity, price, order_id,"
                        " received_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            e.event_id,
                            e.user_id,
                            e.item_id,
                            to_us(e.timestamp),
                            e.quantity,
                            e.price,
                            e.order_id,
                            received,
                        ),
                    )
                    stored.append(cursor.rowcount == 1)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            raise EventLogDown(f"{type(exc).__name__}: {exc}") from None
        result.accepted += sum(stored)
        result.duplicates += len(stored) - sum(stored)
        result.accepted_events.extend(e for e, new in zip(valid, stored, strict=True) if new)
        return result

    async def bought_since(self, user_id: str, since: datetime) -> set[str]:
        """Items this customer bought at or after `since` (a local indexed read, on the event loop)."""
        if not self._exists():
            return set()
        try:
            rows = (
                self._conn()
                .execute(
                    "SELECT DISTINCT item_id FROM events WHERE user_id = ? AND ts_us >= ?", (user_id, to_us(since))
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise EventLogDown(f"{type(exc).__name__}: {exc}") from None
        return {r[0] for r in rows}

    def pending(self) -> int:
        """Accepted events not exported yet."""
        if not self.path.exists():
            return 0
        try:
            return int(self._conn().execute("SELECT count(*) FROM events WHERE exported = 0").fetchone()[0])
        except sqlite3.Error as exc:
            raise EventLogDown(f"{type(exc).__name__}: {exc}") from None

    def export(self, out: Path, *, batch: int = EXPORT_BATCH) -> ExportResult:
        """Drain the pending events into `out/events-<first>-<last>.parquet` files of at most `batch`
        events, each marked exported in the transaction that wrote it (see module docstring)."""
        out.mkdir(parents=True, exist_ok=True)
        result = ExportResult(0, [])
        if not self.path.exists():
            return result
        conn = self._conn()
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute(
                    "SELECT seq, event_id, user_id, item_id, ts_us, quantity, price, order_id FROM events"
                    " WHERE exported = 0 ORDER BY seq LIMIT ?",
                    (batch,),
                ).fetchall()
                if rows:
                    first, last = rows[0][0], rows[-1][0]
                    path = out / f"events-{first:012d}-{last:012d}.parquet"
                    write_export_file([_event(r) for r in rows], path)
                    conn.execute("UPDATE events SET exported = 1 WHERE exported = 0 AND seq <= ?", (last,))
                    result = ExportResult(result.events + len(rows), [*result.files, path])
                else:
                    cutoff = to_us(datetime.now(UTC) - timedelta(days=KEEP_DAYS))
                    conn.execute("DELETE FROM events WHERE exported = 1 AND received_us < ?", (cutoff,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if not rows:
                return result

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _event(row: tuple[Any, ...]) -> Event:
    _, event_id, user_id, item_id, ts_us, quantity, price, order_id = row
    return Event(event_id, user_id, item_id, from_us(ts_us), quantity, price, order_id)
