"""`reco features build`: purchase file (+ catalog) → one Parquet source per feature view.

One vectorized DuckDB pass per view. Values are a function of the data only: windows end at the
as-of time, the newest purchase in the file, so the same file always gives the same values.
Event timestamps say when a row's values were computed (processing time, as Feast's incremental
materialization assumes: it loads the rows stamped after its last run, whatever the data's own
dates): a row whose values did not change keeps the event_timestamp of the previous build, a
changed or new row gets the build's time (the wall clock, or one second after the previous build's
newest timestamp, whichever is later, so that the Redis store, which ignores writes not newer than
what it holds, still accepts a correction). Incremental materialization, ours or `feast
materialize-incremental`, then writes only the changed rows, also for data that ends years ago.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from training.core import columns as col
from training.core.errors import RecoError
from training.data.contract import CATALOG_SCHEMA
from training.data.duck import connect, sql_text
from training.data.load import load_catalog, load_purchases
from training.features.names import (
    BUILT_VIEWS,
    CUSTOMER_PROFILE,
    CUSTOMER_RECENT_ITEMS,
    EVENT_TIMESTAMP,
    ITEM_STATS,
)
from training.features.store import source_path, write_missing_sources
from training.settings import Settings

RECENT_ITEMS = 20
BUY_AGAIN_ITEMS = 20
TOP_CATEGORIES = 3
POPULARITY_WINDOWS_DAYS = (7, 30, 365)

# Entity key columns and feature columns of each built view, in source file order.
VIEW_KEYS = {CUSTOMER_PROFILE: (col.USER_ID,), CUSTOMER_RECENT_ITEMS: (col.USER_ID,), ITEM_STATS: (col.ITEM_ID,)}
# Views whose ttl means "stale once builds stop": every build re-confirms each row (moves an unchanged
# row's event time up to the build's time), so the service's freshness check measures the age of the
# build, not of the last change. Cheap: one row per catalog item.
RECONFIRMED_VIEWS = (ITEM_STATS,)

_BASE = f"""
CREATE TEMP TABLE lines AS
SELECT {col.USER_ID}, {col.ITEM_ID}, {col.TIMESTAMP} AS ts, coalesce({col.QUANTITY}, 1)::BIGINT AS qty,
       {col.PRICE} AS unit_price,
       -- a line without order_id is one order on its own
       coalesce('o:' || {col.ORDER_ID}, 'r:' || row_number() OVER ()) AS basket
FROM purchases;
CREATE TEMP TABLE baskets AS
SELECT {col.USER_ID}, basket, min(ts) AS ts FROM lines GROUP BY ALL;
"""

_CUSTOMER_PROFILE = f"""
WITH totals AS (
    SELECT {col.USER_ID}, count(DISTINCT basket) AS orders, sum(qty)::BIGINT AS items,
           -- an exact decimal sum: a float sum depends on thread order, and a rebuild of the same file
           -- must give the same values (else unchanged customers look changed and are rewritten)
           round(coalesce(sum(CAST(qty * unit_price AS DECIMAL(38, 6))), 0), 4)::DOUBLE AS spend,
           count(DISTINCT {col.ITEM_ID}) AS distinct_items,
           min(ts) AS first_purchase, max(ts) AS last_purchase
    FROM lines GROUP BY ALL
), gaps AS (
    SELECT {col.USER_ID}, epoch(ts - lag(ts) OVER (PARTITION BY {col.USER_ID} ORDER BY ts, basket)) / 86400.0 AS gap
    FROM baskets
), rhythm AS (
    SELECT {col.USER_ID}, round(median(gap), 4) AS rebuy_interval_days FROM gaps WHERE gap IS NOT NULL GROUP BY ALL
), cat_qty AS (
    SELECT l.{col.USER_ID}, c.{col.CATEGORY} AS category, sum(l.qty) AS q
    FROM lines l JOIN catalog c USING ({col.ITEM_ID})
    WHERE c.{col.CATEGORY} IS NOT NULL GROUP BY ALL
), cats AS (
    SELECT {col.USER_ID}, list(category ORDER BY q DESC, category) AS top_categories
    FROM (SELECT *, row_number() OVER (PARTITION BY {col.USER_ID} ORDER BY q DESC, category) AS rk FROM cat_qty)
    WHERE rk <= {TOP_CATEGORIES} GROUP BY ALL
)
SELECT t.{col.USER_ID}, t.orders, t.items, t.spend, t.distinct_items, t.first_purchase, t.last_purchase,
       round(t.items / t.orders, 4) AS avg_basket_items, round(t.spend / t.orders, 4) AS avg_basket_spend,
       r.rebuy_interval_days, coalesce(c.top_categories, []::VARCHAR[]) AS top_categories
FROM totals t LEFT JOIN rhythm r USING ({col.USER_ID}) LEFT JOIN cats c USING ({col.USER_ID})
"""

_CUSTOMER_RECENT_ITEMS = f"""
WITH per_item AS (
    SELECT {col.USER_ID}, {col.ITEM_ID}, max(ts) AS last_ts, count(DISTINCT basket) AS n_orders
    FROM lines GROUP BY ALL
), recent AS (
    SELECT {col.USER_ID},
           list({col.ITEM_ID} ORDER BY last_ts DESC, {col.ITEM_ID}) AS recent_items,
           list(floor(epoch(last_ts))::BIGINT ORDER BY last_ts DESC, {col.ITEM_ID}) AS recent_item_times
    FROM (SELECT *, row_number() OVER (PARTITION BY {col.USER_ID} ORDER BY last_ts DESC, {col.ITEM_ID}) AS rk
          FROM per_item)
    WHERE rk <= {RECENT_ITEMS} GROUP BY ALL
), again AS (
    SELECT {col.USER_ID},
           list({col.ITEM_ID} ORDER BY n_orders DESC, {col.ITEM_ID}) AS buy_again_items,
           list(n_orders ORDER BY n_orders DESC, {col.ITEM_ID}) AS buy_again_orders
    FROM (SELECT *, row_number() OVER (PARTITION BY {col.USER_ID} ORDER BY n_orders DESC, {col.ITEM_ID}) AS rk
          FROM per_item WHERE n_orders >= 2)
    WHERE rk <= {BUY_AGAIN_ITEMS} GROUP BY ALL
)
SELECT r.{col.USER_ID}, r.recent_items, r.recent_item_times,
       coalesce(a.buy_again_items, []::VARCHAR[]) AS buy_again_items,
       coalesce(a.buy_again_orders, []::BIGINT[]) AS buy_again_orders
FROM recent r LEFT JOIN again a USING ({col.USER_ID})
"""

_ITEM_STATS = f"""
WITH sold AS (
    SELECT {col.ITEM_ID},
           {
    ", ".join(
        f"sum(qty) FILTER (WHERE ts > $as_of - INTERVAL {d} DAY)::BIGINT AS popularity_{d}d"
        for d in POPULARITY_WINDOWS_DAYS
    )
},
           count(DISTINCT {col.USER_ID}) FILTER (WHERE ts > $as_of - INTERVAL 365 DAY) AS buyers_365d,
           max(ts) AS last_sold,
           arg_max(unit_price, ts) FILTER (WHERE unit_price IS NOT NULL) AS last_price
    FROM lines GROUP BY ALL
)
SELECT {col.ITEM_ID}, c.{col.NAME} AS name, c.{col.CATEGORY} AS category, c.{col.BRAND} AS brand,
       coalesce(c.{col.PRICE}, s.last_price) AS price, c.{col.IN_STOCK} AS in_stock,
       {", ".join(f"coalesce(s.popularity_{d}d, 0) AS popularity_{d}d" for d in POPULARITY_WINDOWS_DAYS)},
       coalesce(s.buyers_365d, 0) AS buyers_365d, s.last_sold
FROM catalog c FULL OUTER JOIN sold s USING ({col.ITEM_ID})
"""

_QUERIES = {
    CUSTOMER_PROFILE: _CUSTOMER_PROFILE,
    CUSTOMER_RECENT_ITEMS: _CUSTOMER_RECENT_ITEMS,
    ITEM_STATS: _ITEM_STATS,
}


@dataclass(frozen=True)
class BuildResult:
    """What `reco features build` wrote."""

    rows: dict[str, int]  # rows per feature view
    as_of: datetime  # newest purchase: the end of the popularity windows
    stamped_at: datetime  # the build's time: event time of changed rows (and of re-confirmed views' rows)
    purchases_rejected: int  # rows of the purchase file that failed validation (not used)

    def format_text(self) -> str:
        lines = [f"{view:<24} {n:>10,} rows" for view, n in self.rows.items()]
        lines.append(f"as of {self.as_of.isoformat()}")
        if self.purchases_rejected:
            lines.append(f"{self.purchases_rejected:,} purchase rows rejected (reco data validate shows why)")
        return "\n".join(lines)


def build(*, settings: Settings, purchases: Path, catalog: Path | None = None) -> BuildResult:
    """Write `<feature_data_dir>/<view>.parquet` for every built view."""
    purchase_table, report = load_purchases(purchases)
    if purchase_table.num_rows == 0:
        raise RecoError(f"{purchases} has no valid purchase rows ({report.rows_rejected} rejected).")
    catalog_table = load_catalog(catalog)[0] if catalog is not None else CATALOG_SCHEMA.empty_table()
    out_dir = settings.feature_data_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    con = connect()
    try:
        con.register("purchases", purchase_table)
        con.register("catalog", catalog_table.select(list(CATALOG_SCHEMA.names)))
        con.execute(_BASE)
        as_of = con.execute("SELECT max(ts) FROM lines").fetchall()[0][0]
        stamped_at = max(as_of, datetime.now(UTC))
        rows = {}
        for view in BUILT_VIEWS:
            path = source_path(view, settings)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE fresh AS {_QUERIES[view]}",
                {"as_of": as_of} if "$as_of" in _QUERIES[view] else None,
            )
            table = _stamp(con, path, keys=VIEW_KEYS[view], now=stamped_at, reconfirm=view in RECONFIRMED_VIEWS)
            _write_atomically(table, path)
            rows[view] = table.num_rows
        write_missing_sources(settings)  # the views other jobs write: empty until they run
        return BuildResult(rows=rows, as_of=as_of, stamped_at=stamped_at, purchases_rejected=report.rows_rejected)
    finally:
        con.close()


def _stamp(con: Any, previous_path: Path, *, keys: tuple[str, ...], now: datetime, reconfirm: bool) -> pa.Table:
    """`fresh` plus event_timestamp: the previous build's for unchanged rows (or, with `reconfirm`, the
    later of it and `now`), a newer one for changed rows. Rebuilding the same file changes no values
    and, but for re-confirmed views, no timestamps."""
    features = [c for c in con.sql("SELECT * FROM fresh LIMIT 0").to_arrow_table().column_names if c not in keys]
    order = ", ".join(keys)
    previous_columns = _columns(previous_path)
    if not {*keys, *features, EVENT_TIMESTAMP} <= previous_columns:
        # First build, or the view gained columns: every row is new.
        previous_newest = _newest(previous_path) if EVENT_TIMESTAMP in previous_columns else None
        stamp = now if previous_newest is None or previous_newest < now else previous_newest + timedelta(seconds=1)
        return (
            con.sql(
                f"SELECT *, $stamp::TIMESTAMPTZ AS {EVENT_TIMESTAMP} FROM fresh ORDER BY {order}",
                params={"stamp": stamp},
            )
            .to_arrow_table()
            .cast(_schema(con))
        )
    con.execute(f"CREATE OR REPLACE TEMP VIEW previous AS SELECT * FROM read_parquet({sql_text(str(previous_path))})")
    previous_newest = _newest(previous_path)
    changed_ts = now if previous_newest is None or previous_newest < now else previous_newest + timedelta(seconds=1)
    same = " AND ".join(f"f.{c} IS NOT DISTINCT FROM p.{c}" for c in features)
    join = " AND ".join(f"f.{k} = p.{k}" for k in keys)
    unchanged = f"greatest(p.{EVENT_TIMESTAMP}, $now::TIMESTAMPTZ)" if reconfirm else f"p.{EVENT_TIMESTAMP}"
    query = f"""
        SELECT f.*, CASE WHEN p.{EVENT_TIMESTAMP} IS NOT NULL AND {same} THEN {unchanged}
                         ELSE $changed::TIMESTAMPTZ END AS {EVENT_TIMESTAMP}
        FROM fresh f LEFT JOIN previous p ON {join}
        ORDER BY {", ".join(f"f.{k}" for k in keys)}
    """
    params = {"changed": changed_ts, **({"now": now} if reconfirm else {})}
    return con.sql(query, params=params).to_arrow_table().cast(_schema(con))


def _columns(path: Path) -> set[str]:
    """Column names of a previous build's file; empty when there is none (or it is unreadable)."""
    try:
        return set(pq.read_schema(path).names)
    except (OSError, pa.ArrowInvalid):
        return set()


def _newest(path: Path) -> datetime | None:
    """Newest event_timestamp of a previous build's file."""
    return pc.max(pq.read_table(path, columns=[EVENT_TIMESTAMP]).column(EVENT_TIMESTAMP)).as_py()


def _schema(con: Any) -> pa.Schema:
    """Arrow schema of `fresh` + event_timestamp, timestamps as timestamp[us, UTC]."""
    fresh = con.sql("SELECT * FROM fresh LIMIT 0").to_arrow_table().schema
    fields = []
    for f in fresh:
        typ = pa.timestamp("us", tz="UTC") if pa.types.is_timestamp(f.type) else f.type
        fields.append(pa.field(f.name, typ))
    fields.append(pa.field(EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")))
    return pa.schema(fields)


def _write_atomically(table: pa.Table, path: Path) -> None:
    """Readers (Feast, materialize) never see a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
