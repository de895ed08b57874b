"""Small state shared through the online store beside Feast's rows: what every worker and replica
must see the same way.

* `MATERIALIZED`: written by `reco features materialize` when a run has written every view (JSON:
  when, rows per view). Its absence means the online store holds no complete load: emptied
  (FLUSHDB, a restart without persistence) or filled by a run cut short. The service then answers
  `degraded` (reason `online-store-empty`) and the next materialization rewrites every row.
  Kept apart from the materialization watermark, which says what was sent, not what is there.
* `RELOAD`: bumped by `POST /admin/reload` on one worker; every worker polls it and reloads.

Redis: one hash `reco:<project>:state`, in the same database as the rows, so a FLUSHDB or an empty
restart removes the marker with them. SQLite: a table `reco_state` in the online store's file.
Importing this module is free: nothing here imports Feast.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

MATERIALIZED = "materialized"
RELOAD = "reload"
SQLITE_TABLE = "reco_state"


class OnlineState:
    """Get and set named values in the online store of a Feast repo config (see module docstring)."""

    def __init__(self, *, config: Any, online_store: Any) -> None:
        self.project = config.project
        self._redis = "redis" in config.online_store.type.lower()
        if self._redis:
            self._client = online_store._get_client(config.online_store)  # Feast's client: its connection settings
            self.key = f"reco:{self.project}:state".encode()
        else:
            self.path = Path(config.online_store.path)

    def get(self, name: str) -> str | None:
        """The value, None when unset (or when the online store was emptied); raises when it does not answer."""
        if self._redis:
            value = self._client.hget(self.key, name)
            return value.decode() if value is not None else None
        if not self.path.exists():
            return None
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1.0)
        try:
            row = con.execute(f"SELECT value FROM {SQLITE_TABLE} WHERE name = ?", (name,)).fetchone()
        except sqlite3.OperationalError:  # no such table: never written
            return None
        finally:
            con.close()
        return str(row[0]) if row else None

    def get_many(self, names: tuple[str, ...]) -> dict[str, str | None]:
        """Several values in one round trip."""
        if self._redis:
            values = self._client.hmget(self.key, list(names))
            return {n: v.decode() if v is not None else None for n, v in zip(names, values, strict=True)}
        return {name: self.get(name) for name in names}

    def set(self, name: str, value: str) -> None:
        if self._redis:
            self._client.hset(self.key, name, value)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=5.0)
        try:
            with con:
                con.execute(f"CREATE TABLE IF NOT EXISTS {SQLITE_TABLE} (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
                con.execute(f"INSERT OR REPLACE INTO {SQLITE_TABLE} (name, value) VALUES (?, ?)", (name, value))
        finally:
            con.close()
