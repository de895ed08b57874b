"""One way to open DuckDB for batch steps (UTC, bounded memory, all cores), and SQL quoting."""

from __future__ import annotations

import os

import duckdb


def total_memory_bytes() -> int:
    """Physical memory of this machine (falls back to 8 GiB where sysconf cannot tell)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def connect(*, memory_fraction: float = 0.5) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection in UTC whose memory is capped (its default is 80% of RAM)."""
    con = duckdb.connect(config={"memory_limit": f"{int(total_memory_bytes() * memory_fraction) >> 20}MB"})
    con.execute("SET TimeZone = 'UTC'")
    return con


def quote_name(name: str) -> str:
    """A column or table name as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_text(value: str) -> str:
    """A string (a value, a file path) as an SQL literal."""
    return "'" + value.replace("'", "''") + "'"
