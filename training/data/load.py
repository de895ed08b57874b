"""Load and validate purchase and catalog files: what every command that reads them calls.

    load_purchases(path) -> (accepted rows in PURCHASE_SCHEMA, ValidationReport)
    load_catalog(path) -> (accepted items in CATALOG_SCHEMA + extra columns, ValidationReport)
    load_training_inputs(purchases, catalog) -> what `reco train` reads

Files are read by training.data.readers and checked in one DuckDB pass (training.data.checks);
a Parquet file whose types and statistics show that no row can fail is checked in Arrow instead
(`_typed_purchases`). A file that cannot be used at all raises `InvalidPurchases` /
`InvalidCatalog` with one sentence.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.core import columns as col
from training.data.checks import (
    bool_expr,
    finish,
    id_checks,
    id_expr,
    number_expr,
    optional_text,
    quoted,
    text_expr,
    timestamp_expr,
    validate,
)
from training.data.contract import (
    CATALOG_SCHEMA,
    EPOCH_MAX,
    PURCHASE_SCHEMA,
    QUANTITY_MAX,
    ROW,
    InvalidCatalog,
    InvalidPurchases,
    ValidationReport,
    is_text,
)
from training.data.duck import quote_name
from training.data.readers import read_raw, require_columns


def load_purchases(path: str | Path, *, dictionary_ids: bool = False) -> tuple[pa.Table, ValidationReport]:
    """Read a purchase file and return (accepted rows in PURCHASE_SCHEMA, report).

    `dictionary_ids`: a Parquet file's text ids come as Arrow dictionary arrays, as Parquet stores
    them (cleaned and checked on each dictionary, not on every line), which
    `training.interactions.build_interactions` encodes without hashing a string per line (at 10 M lines,
    2.0 s to load and encode instead of 2.9 s)."""
    dictionary = (col.USER_ID, col.ITEM_ID, col.ORDER_ID) if dictionary_ids else ()
    raw, malformed = read_raw(Path(path), error=InvalidPurchases, what="purchase file", dictionary=dictionary)
    require_columns(raw, col.PURCHASE_REQUIRED, path, InvalidPurchases)
    types = {name: raw.schema.field(name).type for name in raw.column_names}
    select = {
        col.USER_ID: id_expr(col.USER_ID, types, InvalidPurchases),
        col.ITEM_ID: id_expr(col.ITEM_ID, types, InvalidPurchases),
        "ts_num": number_expr(col.TIMESTAMP, types, InvalidPurchases, allow_time=True),
        "ts_raw": text_expr(col.TIMESTAMP, types),
        "ts": timestamp_expr(col.TIMESTAMP, types),
        "q_num": number_expr(col.QUANTITY, types, InvalidPurchases) if col.QUANTITY in types else "NULL",
        "q_raw": text_expr(col.QUANTITY, types) if col.QUANTITY in types else "NULL",
        "p_num": number_expr(col.PRICE, types, InvalidPurchases) if col.PRICE in types else "NULL",
        "p_raw": text_expr(col.PRICE, types) if col.PRICE in types else "NULL",
        col.ORDER_ID: id_expr(col.ORDER_ID, types, InvalidPurchases) if col.ORDER_ID in types else "NULL",
        "first_same": f"min({ROW}) OVER (PARTITION BY {', '.join(_line_columns(raw))})",
    }
    earliest, latest = timestamp_bounds()
    checks = [
        *id_checks(col.USER_ID),
        *id_checks(col.ITEM_ID),
        ("ts_raw IS NULL", "missing timestamp", "'missing timestamp'"),
        (
            f"ts IS NULL AND ts_num >= 1e11 AND ts_num < {EPOCH_MAX}e3",
            "timestamp in epoch milliseconds",
            "'timestamp ' || CAST(ts_raw AS VARCHAR) || ' looks like epoch milliseconds; epoch seconds are expected'",
        ),
        ("ts IS NULL", "unparseable timestamp", "'unparseable timestamp ' || " + quoted("ts_raw")),
        (
            f"ts < TIMESTAMPTZ '{earliest.isoformat()}'",
            "timestamp before 1970",
            "'timestamp ' || CAST(ts AS VARCHAR) || ' is before 1970-01-01'",
        ),
        (
            f"ts > TIMESTAMPTZ '{latest.isoformat()}'",
            "timestamp in the future",
            f"'timestamp ' || CAST(ts AS VARCHAR) || ' is later than now plus a day ({latest:%Y-%m-%d %H:%M} UTC)'",
        ),
        (
            "q_raw IS NOT NULL AND q_num IS NULL",
            "quantity not a number",
            "'quantity ' || " + quoted("q_raw") + " || ' is not a number'",
        ),
        (
            f"q_num IS NOT NULL AND (q_num < 1 OR q_num <> trunc(q_num) OR q_num > {QUANTITY_MAX})",
            "quantity not a whole number from 1 to 1,000,000",
            f"'quantity must be a whole number from 1 to {QUANTITY_MAX:,} (got ' || CAST(q_raw AS VARCHAR) || ')'",
        ),
        (
            "p_raw IS NOT NULL AND p_num IS NULL",
            "price not a number",
            "'price ' || " + quoted("p_raw") + " || ' is not a number'",
        ),
        ("p_num IS NOT NULL AND (isnan(p_num) OR isinf(p_num))", "price not finite", "'price is not a finite number'"),
        ("p_num < 0", "negative price", "'negative price ' || CAST(p_raw AS VARCHAR)"),
        (f"first_same < {ROW}", "duplicate line", "'the same line as row ' || first_same"),
    ]
    numeric = {
        col.TIMESTAMP: "ts",
        col.QUANTITY: "CAST(coalesce(q_num, 1) AS INTEGER)",
        col.PRICE: "p_num",
    }
    text = [col.USER_ID, col.ITEM_ID, col.ORDER_ID]
    accepted, rejected = validate(raw, select, checks, numeric=numeric, text=text, typed=_typed_purchases)
    accepted = accepted.select(PURCHASE_SCHEMA.names)
    kept = [
        accepted.schema.field(f.name) if pa.types.is_dictionary(accepted.schema.field(f.name).type) else f
        for f in PURCHASE_SCHEMA
    ]
    return finish("purchases", path, accepted.cast(pa.schema(kept)), rejected, malformed)


DEFAULT_MAX_REJECTED = 0.01


def check_usable(purchases: pa.Table, report: ValidationReport, *, max_rejected: float = 1.0) -> None:
    """InvalidPurchases with one sentence when the accepted purchases cannot make recommendations:
    no row accepted, every line of one customer, or more than `max_rejected` of the rows rejected."""
    reasons = ", ".join(f"{n:,} {code}" for code, n in list(report.reason_counts().items())[:3])
    if report.rows_accepted == 0:
        raise InvalidPurchases(f"No row of {report.source} was accepted ({reasons}).")
    users = purchases.column(col.USER_ID)
    ids = users.combine_chunks() if users.num_chunks != 1 else users.chunk(0)
    # A dictionary column (the trainer's) holds each id once in its dictionary: count the indices.
    distinct = pc.count_distinct(ids.indices if pa.types.is_dictionary(ids.type) else ids).as_py()
    if distinct < 2:
        raise InvalidPurchases(
            f"Every accepted line of {report.source} is of one customer ({users[0].as_py()}): "
            "recommendations need the purchases of many customers."
        )
    share = report.rows_rejected / max(report.rows_read, 1)
    if share > max_rejected:
        raise InvalidPurchases(
            f"{report.rows_rejected:,} of {report.rows_read:,} rows of {report.source} were rejected ({share:.1%}: "
            f"{reasons}), more than the {max_rejected:.1%} allowed (--max-rejected); `reco data validate` lists them."
        )


def timestamp_bounds() -> tuple[datetime, datetime]:
    """The purchase times the contract accepts: from 1970-01-01 (earlier dates are export defaults,
    not purchases) to a day after now (clocks and time zones)."""
    return col.EARLIEST_TIMESTAMP, datetime.now(UTC) + col.FUTURE_SLACK


def _line_columns(raw: pa.Table) -> list[str]:
    """The contract's columns of the file as they were read: two rows equal in all of them are the
    same line twice."""
    return [quote_name(name) for name in col.PURCHASE_COLUMNS if name in raw.column_names]


def load_training_inputs(
    purchases: str | Path, catalog: str | Path | None
) -> tuple[pa.Table, ValidationReport, pa.Table | None, ValidationReport | None]:
    """What `reco train`, `reco evaluate` and the sweep read: (purchases, report, catalog or None, its
    report), the purchases' Parquet ids dictionary-encoded. The catalog first: DuckDB, which checks
    it, trims the C library's heap when its queries end (`malloc_trim`), and after the purchases
    that gave back about a gigabyte that the next arrays faulted in again."""
    catalog_table, catalog_report = (None, None) if catalog is None else load_catalog(catalog)
    table, report = load_purchases(purchases, dictionary_ids=True)
    return table, report, catalog_table, catalog_report


def give_back_read_memory() -> None:
    """Give the system back what Arrow's memory pool kept after reading (about a gigabyte at 10 M
    lines: the pool keeps freed blocks for its own next buffers, and after the read there are few).
    Called once the table is let go, before the split's numpy arrays are made: they then take those
    pages instead of new ones, which this project's virtual machine hands out at 0.2-8 s per GB.
    Arrow's documentation keeps `release_unused` for benchmarks; here it is a fast path that pays
    for itself (docs/architecture.md), one call that takes milliseconds."""
    pa.default_memory_pool().release_unused()


def _typed_purchases(raw: pa.Table) -> dict[str, pa.ChunkedArray] | None:
    """The purchases' numeric columns computed in Arrow, when the columns' types and statistics show
    that every row passes every check (a Parquet file as `reco data generate` or a warehouse export
    writes it: a timestamp column, integer quantities, float prices, ids cleaned). The values equal
    the SQL pass's. None (the SQL pass runs and names each failing row's reason) when any row might
    fail: at 10 M lines this takes 0.1 s against 2.6 s for the SQL pass, most of it in page faults."""
    n = raw.num_rows
    ts = raw.column(col.TIMESTAMP)
    if not (pa.types.is_timestamp(ts.type) and ts.type.unit in ("s", "ms", "us")) or ts.null_count:
        return None  # a naive time is taken as UTC, as the SQL pass does; nanoseconds would be cut
    for name in (col.USER_ID, col.ITEM_ID):
        ids = raw.column(name)
        values = ids.combine_chunks().dictionary if pa.types.is_dictionary(ids.type) else ids
        if ids.null_count or (pc.max(pc.binary_length(values)).as_py() or 0) > col.ID_MAX_LENGTH:
            return None  # bytes ≥ characters: within the limit in bytes is within it in characters
    numbers = {col.TIMESTAMP: ts.cast(PURCHASE_SCHEMA.field(col.TIMESTAMP).type)}
    earliest, latest = timestamp_bounds()
    low, high = pc.min_max(numbers[col.TIMESTAMP]).values()
    if low.is_valid and (low.as_py() < earliest or high.as_py() > latest):
        return None
    if col.QUANTITY in raw.column_names:
        quantity = raw.column(col.QUANTITY)
        low, high = pc.min_max(quantity).values()
        if not pa.types.is_integer(quantity.type) or (
            low.is_valid and (low.as_py() < 1 or high.as_py() > QUANTITY_MAX)
        ):
            return None
        numbers[col.QUANTITY] = quantity.fill_null(1).cast(pa.int32())
    else:
        numbers[col.QUANTITY] = pa.chunked_array([np.ones(n, dtype=np.int32)])
    if col.PRICE in raw.column_names:
        price = raw.column(col.PRICE)
        if not (pa.types.is_floating(price.type) or pa.types.is_integer(price.type)):
            return None
        if pa.types.is_floating(price.type) and pc.any(pc.invert(pc.is_finite(price))).as_py():
            return None
        low = pc.min(price)
        if low.is_valid and low.as_py() < 0:
            return None
        numbers[col.PRICE] = price.cast(pa.float64())
    else:
        numbers[col.PRICE] = pa.chunked_array([pa.nulls(n, pa.float64())])
    if _has_duplicate_lines(raw):
        return None
    return numbers


def _has_duplicate_lines(raw: pa.Table) -> bool:
    """Whether two rows may be the same line (equal in every contract column of the file): a 64-bit
    hash of each row's values, sorted. A collision only sends the file to the SQL pass, which
    compares the values themselves. At 2.3 M lines this takes about 0.3 s against 1.6 s for a
    DuckDB DISTINCT over the columns."""
    hashes = np.zeros(raw.num_rows, dtype=np.uint64)
    mix = np.uint64(0x9E3779B97F4A7C15)
    for name in col.PURCHASE_COLUMNS:
        if name not in raw.column_names:
            continue
        values = raw.column(name)
        if is_text(values.type) and not pa.types.is_dictionary(values.type):
            values = pc.dictionary_encode(values)
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        if pa.types.is_dictionary(values.type):
            numbers = values.indices.cast(pa.int64()).fill_null(-1).to_numpy()
        elif pa.types.is_floating(values.type):
            numbers = values.cast(pa.float64()).fill_null(-1.0).to_numpy().view(np.int64)
        else:
            numbers = values.cast(pa.int64()).fill_null(-1).to_numpy()
        hashes ^= numbers.astype(np.uint64, copy=False)
        hashes *= mix
        hashes ^= hashes >> np.uint64(29)
    hashes.sort()
    return bool(np.any(hashes[1:] == hashes[:-1]))


def load_catalog(path: str | Path) -> tuple[pa.Table, ValidationReport]:
    """Read a catalog file and return (accepted items: CATALOG_SCHEMA + extra columns, report)."""
    raw, malformed = read_raw(Path(path), error=InvalidCatalog, what="catalog file")
    require_columns(raw, col.CATALOG_REQUIRED, path, InvalidCatalog)
    types = {name: raw.schema.field(name).type for name in raw.column_names}
    extras = [n for n in raw.column_names if n not in col.CATALOG_COLUMNS and n != ROW]
    select: dict[str, str] = {
        col.ITEM_ID: id_expr(col.ITEM_ID, types, InvalidCatalog),
        "first_row": f"min({ROW}) OVER (PARTITION BY {id_expr(col.ITEM_ID, types, InvalidCatalog)})",
        "p_num": number_expr(col.PRICE, types, InvalidCatalog) if col.PRICE in types else "NULL",
        "p_raw": text_expr(col.PRICE, types) if col.PRICE in types else "NULL",
        "stock_raw": text_expr(col.IN_STOCK, types) if col.IN_STOCK in types else "NULL",
        "stock": bool_expr(col.IN_STOCK, types) if col.IN_STOCK in types else "TRUE",
        **{name: optional_text(name, types) for name in (col.NAME, col.CATEGORY, col.BRAND)},
        **{name: quote_name(name) for name in extras},
    }
    checks = [
        *id_checks(col.ITEM_ID),
        (f"first_row < {ROW}", "duplicate item_id", "'duplicate item_id (first at row ' || first_row || ')'"),
        (
            "p_raw IS NOT NULL AND p_num IS NULL",
            "price not a number",
            "'price ' || " + quoted("p_raw") + " || ' is not a number'",
        ),
        ("p_num < 0 OR isnan(p_num) OR isinf(p_num)", "invalid price", "'invalid price ' || CAST(p_raw AS VARCHAR)"),
        (
            "stock IS NULL",
            "in_stock not a boolean",
            "'in_stock ' || " + quoted("stock_raw") + " || ' is not true/false'",
        ),
    ]
    numeric = {col.PRICE: "p_num", col.IN_STOCK: "stock"}
    text = [col.ITEM_ID, col.NAME, col.CATEGORY, col.BRAND]
    accepted, rejected = validate(raw, select, checks, numeric=numeric, text=text, passthrough=extras)
    accepted = accepted.set_column(
        accepted.schema.get_field_index(col.NAME), col.NAME, pc.coalesce(accepted[col.NAME], accepted[col.ITEM_ID])
    )
    accepted = accepted.set_column(
        accepted.schema.get_field_index(col.CATEGORY), col.CATEGORY, pc.coalesce(accepted[col.CATEGORY], "Other")
    )
    accepted = accepted.select([*CATALOG_SCHEMA.names, *extras])
    accepted = accepted.cast(pa.schema([*CATALOG_SCHEMA, *[accepted.schema.field(n) for n in extras]]))
    return finish("catalog", path, accepted, rejected, malformed)
