"""Load and validate purchase and catalog files (DESIGN.md, "Data contract").

Files are read with DuckDB (a Parquet file) or pyarrow (CSV, a Parquet directory) and checked in
one vectorized DuckDB pass; text columns are cleaned once in Arrow and checked as kept. Every
row is either accepted or rejected with its row number and a reason: rows read = rows accepted
+ rows rejected, always. A file that cannot be used at all raises `InvalidPurchases` /
`InvalidCatalog` with one sentence.

Row numbers count data rows from 1 in file order, so in a CSV file row N is line N + 1 (the
header is line 1).
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from training import columns as col
from training.duck import connect
from training.errors import InvalidCatalog, InvalidPurchases, RecoError

PURCHASE_SCHEMA = pa.schema(
    [
        (col.USER_ID, pa.string()),
        (col.ITEM_ID, pa.string()),
        (col.TIMESTAMP, pa.timestamp("us", tz="UTC")),
        (col.QUANTITY, pa.int32()),
        (col.PRICE, pa.float64()),
        (col.ORDER_ID, pa.string()),
    ]
)
CATALOG_SCHEMA = pa.schema(
    [
        (col.ITEM_ID, pa.string()),
        (col.NAME, pa.string()),
        (col.CATEGORY, pa.string()),
        (col.BRAND, pa.string()),
        (col.PRICE, pa.float64()),
        (col.IN_STOCK, pa.bool_()),
    ]
)
REJECTED_SCHEMA = pa.schema([("row", pa.int64()), ("code", pa.string()), ("reason", pa.string())])

_ROW = "__row"
# Epoch seconds from 1970 up to 2100; larger numbers are most often epoch milliseconds.
_EPOCH_MAX = 4102444800
_QUANTITY_MAX = 1_000_000
_CSV_NULLS = [""]


@dataclass(frozen=True)
class ValidationReport:
    """What validation found in one file: counts, and every rejected row with its reason."""

    kind: str
    source: str
    rows_read: int
    rows_accepted: int
    rejected: pa.Table  # REJECTED_SCHEMA, sorted by row

    @property
    def rows_rejected(self) -> int:
        return self.rejected.num_rows

    @property
    def ok(self) -> bool:
        return self.rows_rejected == 0

    def reason_counts(self) -> dict[str, int]:
        """Rejected rows per kind of problem, most frequent first."""
        if not self.rows_rejected:
            return {}
        counts = pc.value_counts(self.rejected.column("code")).to_pylist()
        return dict(sorted(((c["values"], c["counts"]) for c in counts), key=lambda kv: (-kv[1], kv[0])))

    def to_dict(self, *, max_rows: int | None = None) -> dict[str, Any]:
        """JSON-ready report; `max_rows` caps the listed rows (the counts always cover all)."""
        rows = self.rejected if max_rows is None else self.rejected.slice(0, max_rows)
        return {
            "kind": self.kind,
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_accepted": self.rows_accepted,
            "rows_rejected": self.rows_rejected,
            "reasons": self.reason_counts(),
            "rejected": rows.select(["row", "reason"]).to_pylist(),
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def format_text(self, *, max_rows: int = 20) -> str:
        """A report for a terminal: counts, reasons, and the first `max_rows` rejected rows."""
        lines = [
            f"{self.kind} {self.source}: {self.rows_read:,} rows read, "
            f"{self.rows_accepted:,} accepted, {self.rows_rejected:,} rejected"
        ]
        for code, count in self.reason_counts().items():
            lines.append(f"  {count:>10,}  {code}")
        if self.rows_rejected:
            lines.append("rejected rows:")
            for entry in self.rejected.slice(0, max_rows).to_pylist():
                lines.append(f"  row {entry['row']}: {entry['reason']}")
            if self.rows_rejected > max_rows:
                lines.append(f"  … and {self.rows_rejected - max_rows:,} more (use --report FILE for all)")
        return "\n".join(lines)


def load_purchases(path: str | Path, *, dictionary_ids: bool = False) -> tuple[pa.Table, ValidationReport]:
    """Read a purchase file and return (accepted rows in PURCHASE_SCHEMA, report).

    `dictionary_ids`: a Parquet file's text ids come as Arrow dictionary arrays, as Parquet stores
    them (cleaned and checked on each dictionary, not on every line), which
    `training.matrix.build_interactions` encodes without hashing a string per line (at 10 M lines,
    2.0 s to load and encode instead of 2.9 s)."""
    dictionary = (col.USER_ID, col.ITEM_ID, col.ORDER_ID) if dictionary_ids else ()
    raw, malformed = _read_raw(Path(path), error=InvalidPurchases, what="purchase file", dictionary=dictionary)
    _require(raw, col.PURCHASE_REQUIRED, path, InvalidPurchases)
    types = {name: raw.schema.field(name).type for name in raw.column_names}
    select = {
        col.USER_ID: _id_expr(col.USER_ID, types, InvalidPurchases),
        col.ITEM_ID: _id_expr(col.ITEM_ID, types, InvalidPurchases),
        "ts_num": _number_expr(col.TIMESTAMP, types, InvalidPurchases, allow_time=True),
        "ts_raw": _text_expr(col.TIMESTAMP, types),
        "ts": _timestamp_expr(col.TIMESTAMP, types),
        "q_num": _number_expr(col.QUANTITY, types, InvalidPurchases) if col.QUANTITY in types else "NULL",
        "q_raw": _text_expr(col.QUANTITY, types) if col.QUANTITY in types else "NULL",
        "p_num": _number_expr(col.PRICE, types, InvalidPurchases) if col.PRICE in types else "NULL",
        "p_raw": _text_expr(col.PRICE, types) if col.PRICE in types else "NULL",
        col.ORDER_ID: _id_expr(col.ORDER_ID, types, InvalidPurchases) if col.ORDER_ID in types else "NULL",
    }
    checks = [
        *_id_checks(col.USER_ID),
        *_id_checks(col.ITEM_ID),
        ("ts_raw IS NULL", "missing timestamp", "'missing timestamp'"),
        (
            f"ts IS NULL AND ts_num >= 1e11 AND ts_num < {_EPOCH_MAX}e3",
            "timestamp in epoch milliseconds",
            "'timestamp ' || CAST(ts_raw AS VARCHAR) || ' looks like epoch milliseconds; epoch seconds are expected'",
        ),
        ("ts IS NULL", "unparseable timestamp", "'unparseable timestamp ' || " + _quoted("ts_raw")),
        (
            "q_raw IS NOT NULL AND q_num IS NULL",
            "quantity not a number",
            "'quantity ' || " + _quoted("q_raw") + " || ' is not a number'",
        ),
        (
            f"q_num IS NOT NULL AND (q_num < 1 OR q_num <> trunc(q_num) OR q_num > {_QUANTITY_MAX})",
            "quantity not a whole number >= 1",
            "'quantity must be a whole number >= 1 (got ' || CAST(q_raw AS VARCHAR) || ')'",
        ),
        (
            "p_raw IS NOT NULL AND p_num IS NULL",
            "price not a number",
            "'price ' || " + _quoted("p_raw") + " || ' is not a number'",
        ),
        ("p_num IS NOT NULL AND (isnan(p_num) OR isinf(p_num))", "price not finite", "'price is not a finite number'"),
        ("p_num < 0", "negative price", "'negative price ' || CAST(p_raw AS VARCHAR)"),
    ]
    numeric = {
        col.TIMESTAMP: "ts",
        col.QUANTITY: "CAST(coalesce(q_num, 1) AS INTEGER)",
        col.PRICE: "p_num",
    }
    text = [col.USER_ID, col.ITEM_ID, col.ORDER_ID]
    accepted, rejected = _validate(raw, select, checks, numeric=numeric, text=text, typed=_typed_purchases)
    accepted = accepted.select(PURCHASE_SCHEMA.names)
    kept = [
        accepted.schema.field(f.name) if pa.types.is_dictionary(accepted.schema.field(f.name).type) else f
        for f in PURCHASE_SCHEMA
    ]
    return _finish("purchases", path, accepted.cast(pa.schema(kept)), rejected, malformed)


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
    if col.QUANTITY in raw.column_names:
        quantity = raw.column(col.QUANTITY)
        low, high = pc.min_max(quantity).values()
        if not pa.types.is_integer(quantity.type) or (
            low.is_valid and (low.as_py() < 1 or high.as_py() > _QUANTITY_MAX)
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
    return numbers


def load_catalog(path: str | Path) -> tuple[pa.Table, ValidationReport]:
    """Read a catalog file and return (accepted items: CATALOG_SCHEMA + extra columns, report)."""
    raw, malformed = _read_raw(Path(path), error=InvalidCatalog, what="catalog file")
    _require(raw, col.CATALOG_REQUIRED, path, InvalidCatalog)
    types = {name: raw.schema.field(name).type for name in raw.column_names}
    extras = [n for n in raw.column_names if n not in col.CATALOG_COLUMNS and n != _ROW]
    select: dict[str, str] = {
        col.ITEM_ID: _id_expr(col.ITEM_ID, types, InvalidCatalog),
        "first_row": f"min({_ROW}) OVER (PARTITION BY {_id_expr(col.ITEM_ID, types, InvalidCatalog)})",
        "p_num": _number_expr(col.PRICE, types, InvalidCatalog) if col.PRICE in types else "NULL",
        "p_raw": _text_expr(col.PRICE, types) if col.PRICE in types else "NULL",
        "stock_raw": _text_expr(col.IN_STOCK, types) if col.IN_STOCK in types else "NULL",
        "stock": _bool_expr(col.IN_STOCK, types) if col.IN_STOCK in types else "TRUE",
        **{name: _optional_text(name, types) for name in (col.NAME, col.CATEGORY, col.BRAND)},
        **{name: _q(name) for name in extras},
    }
    checks = [
        *_id_checks(col.ITEM_ID),
        (f"first_row < {_ROW}", "duplicate item_id", "'duplicate item_id (first at row ' || first_row || ')'"),
        (
            "p_raw IS NOT NULL AND p_num IS NULL",
            "price not a number",
            "'price ' || " + _quoted("p_raw") + " || ' is not a number'",
        ),
        ("p_num < 0 OR isnan(p_num) OR isinf(p_num)", "invalid price", "'invalid price ' || CAST(p_raw AS VARCHAR)"),
        (
            "stock IS NULL",
            "in_stock not a boolean",
            "'in_stock ' || " + _quoted("stock_raw") + " || ' is not true/false'",
        ),
    ]
    numeric = {col.PRICE: "p_num", col.IN_STOCK: "stock"}
    text = [col.ITEM_ID, col.NAME, col.CATEGORY, col.BRAND]
    accepted, rejected = _validate(raw, select, checks, numeric=numeric, text=text, passthrough=extras)
    accepted = accepted.set_column(
        accepted.schema.get_field_index(col.NAME), col.NAME, pc.coalesce(accepted[col.NAME], accepted[col.ITEM_ID])
    )
    accepted = accepted.set_column(
        accepted.schema.get_field_index(col.CATEGORY), col.CATEGORY, pc.coalesce(accepted[col.CATEGORY], "Other")
    )
    accepted = accepted.select([*CATALOG_SCHEMA.names, *extras])
    accepted = accepted.cast(pa.schema([*CATALOG_SCHEMA, *[accepted.schema.field(n) for n in extras]]))
    return _finish("catalog", path, accepted, rejected, malformed)


# --- reading ---------------------------------------------------------------------------------


def _read_raw(
    path: Path, *, error: type[RecoError], what: str, dictionary: Sequence[str] = ()
) -> tuple[pa.Table, pa.Table]:
    """The file as an Arrow table with a 1-based `__row` column, and its malformed CSV lines; a
    Parquet file's text columns named in `dictionary` come dictionary-encoded."""
    if not path.exists():
        raise error(f"The {what} {path} does not exist.")
    name = path.name.lower()
    try:
        if path.is_dir():  # a Parquet dataset: rows numbered in pyarrow's file order
            table = pq.read_table(path)
        elif name.endswith((".parquet", ".pq")):
            return _read_parquet_file(path, dictionary=dictionary), REJECTED_SCHEMA.empty_table()
        elif name.endswith((".csv", ".csv.gz", ".txt")):
            table, malformed = _read_csv(path)
        else:
            raise error(f"The {what} {path} is neither CSV (.csv, .csv.gz) nor Parquet (.parquet).")
    except (pa.ArrowException, duckdb.Error, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        kind = "Parquet" if "parquet" in name or path.is_dir() else "CSV"
        raise error(f"The {what} {path} cannot be read as {kind}: {reason}.") from None
    if path.is_dir():
        malformed = REJECTED_SCHEMA.empty_table()
    rows = _row_numbers(table.num_rows, malformed.column("row").to_numpy())
    return table.append_column(_ROW, pa.array(rows, pa.int64())), malformed


def _read_parquet_file(path: Path, *, dictionary: Sequence[str] = ()) -> pa.Table:
    """One Parquet file with its 1-based row numbers, read by DuckDB (about twice pyarrow's speed on
    two cores; insertion order is preserved, so rows stay in file order); by pyarrow when text
    columns named in `dictionary` are to stay dictionary-encoded (DuckDB decodes them)."""
    schema = pq.read_schema(path)
    encoded = [n for n in dictionary if n in schema.names and _is_text(schema.field(n).type)]
    if encoded:
        table = pq.read_table(path, read_dictionary=encoded)
        return table.append_column(_ROW, pa.array(np.arange(1, table.num_rows + 1), pa.int64()))
    con = connect()
    try:
        source = "'" + str(path).replace("'", "''") + "'"
        return con.sql(
            f"SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS {_q(_ROW)} "
            f"FROM read_parquet({source}, file_row_number = true)"
        ).to_arrow_table()
    finally:
        con.close()


def _read_csv(path: Path) -> tuple[pa.Table, pa.Table]:
    """Read a CSV file with the contract's columns as text; malformed lines become rejections."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as stream:
        first_line = stream.readline()
    if not first_line.strip():
        raise ValueError("the file is empty")
    header = next(csv.reader([first_line]))
    convert = pcsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        null_values=_CSV_NULLS,
        strings_can_be_null=True,
    )
    malformed: list[tuple[int | None, str]] = []

    def skip(row: Any) -> str:
        reason = f"malformed CSV line: {row.actual_columns} fields, expected {row.expected_columns}"
        malformed.append((row.number, reason))
        return "skip"

    parse = pcsv.ParseOptions(invalid_row_handler=skip)
    table = pcsv.read_csv(path, convert_options=convert, parse_options=parse)
    if malformed and any(number is None for number, _ in malformed):
        # The parallel reader does not know line numbers; read again on one thread to report them.
        malformed.clear()
        table = pcsv.read_csv(
            path, read_options=pcsv.ReadOptions(use_threads=False), convert_options=convert, parse_options=parse
        )
    rows = [(number - 1 if number is not None else 0, "malformed CSV line", reason) for number, reason in malformed]
    return table, pa.Table.from_pylist(
        [dict(zip(REJECTED_SCHEMA.names, r, strict=True)) for r in rows], schema=REJECTED_SCHEMA
    )


def _row_numbers(n_parsed: int, malformed_rows: np.ndarray) -> np.ndarray:
    """1-based row numbers of the parsed rows, skipping the numbers of malformed lines."""
    every = np.arange(1, n_parsed + len(malformed_rows) + 1, dtype=np.int64)
    return np.setdiff1d(every, malformed_rows, assume_unique=True) if len(malformed_rows) else every


def _require(table: pa.Table, required: tuple[str, ...], path: str | Path, error: type[RecoError]) -> None:
    missing = [name for name in required if name not in table.column_names]
    if missing:
        found = ", ".join(n for n in table.column_names if n != _ROW) or "none"
        raise error(
            f"{path} has no column {', '.join(repr(m) for m in missing)} "
            f"(required: {', '.join(required)}; found: {found})."
        )


# --- SQL pieces ------------------------------------------------------------------------------


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quoted(expr: str) -> str:
    """SQL for a value shown in a reason: quoted and cut to 40 characters."""
    return f"'''' || left(CAST({expr} AS VARCHAR), 40) || ''''"


def _is_text(typ: pa.DataType) -> bool:
    return (
        pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_string_view(typ)
        or (pa.types.is_dictionary(typ) and _is_text(typ.value_type))
    )


def _wrong_type(name: str, typ: pa.DataType, expected: str, error: type[RecoError]) -> RecoError:
    return error(f"Column {name!r} has type {typ}, expected {expected}.")


def _id_expr(name: str, types: dict[str, pa.DataType], error: type[RecoError]) -> str:
    """The id as the checks see it: already cleaned by `_clean_text` (text, integer or integral-float ids)."""
    typ = types[name]
    if not (_is_text(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ)):
        raise _wrong_type(name, typ, "text or integer ids", error)
    return _q(name)


def _id_checks(name: str) -> list[tuple[str, str, str]]:
    return [
        (f"{name} IS NULL", f"missing {name}", f"'missing {name}'"),
        (
            f"length({name}) > {col.ID_MAX_LENGTH}",
            f"{name} too long",
            f"'{name} longer than {col.ID_MAX_LENGTH} characters'",
        ),
    ]


def _text_expr(name: str, types: dict[str, pa.DataType]) -> str:
    """The raw value, for telling 'missing' from 'bad' (text is trimmed; other types stay as they
    are, and are only turned into text inside the reasons of rejected rows)."""
    q = _q(name)
    return f"NULLIF(trim(CAST({q} AS VARCHAR)), '')" if _is_text(types[name]) else q


def _optional_text(name: str, types: dict[str, pa.DataType]) -> str:
    return _q(name) if name in types else "CAST(NULL AS VARCHAR)"


def _number_expr(name: str, types: dict[str, pa.DataType], error: type[RecoError], *, allow_time: bool = False) -> str:
    typ, q = types[name], _q(name)
    if _is_text(typ):
        return f"TRY_CAST(trim(CAST({q} AS VARCHAR)) AS DOUBLE)"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return f"CAST({q} AS DOUBLE)"
    if allow_time and (pa.types.is_timestamp(typ) or pa.types.is_date(typ)):
        return "NULL"
    expected = "ISO-8601 text, epoch seconds or a timestamp" if allow_time else "a number"
    raise _wrong_type(name, typ, expected, error)


def _timestamp_expr(name: str, types: dict[str, pa.DataType]) -> str:
    """TIMESTAMPTZ in UTC, or NULL when unparseable. Naive times are taken as UTC."""
    typ, q = types[name], _q(name)
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return f"CAST({q} AS TIMESTAMPTZ)"
    epoch = f"CASE WHEN {{n}} >= 0 AND {{n}} < {_EPOCH_MAX} THEN to_timestamp({{n}}) END"
    if _is_text(typ):
        text = f"trim(CAST({q} AS VARCHAR))"
        number = f"TRY_CAST({text} AS DOUBLE)"
        return f"CASE WHEN {number} IS NOT NULL THEN {epoch.format(n=number)} ELSE TRY_CAST({text} AS TIMESTAMPTZ) END"
    return epoch.format(n=f"CAST({q} AS DOUBLE)")


def _bool_expr(name: str, types: dict[str, pa.DataType]) -> str:
    typ, q = types[name], _q(name)
    if pa.types.is_boolean(typ):
        return f"coalesce({q}, TRUE)"
    if pa.types.is_integer(typ):
        return f"coalesce({q} <> 0, TRUE)"
    text = f"lower(trim(CAST({q} AS VARCHAR)))"
    return (
        f"CASE WHEN {q} IS NULL OR {text} = '' THEN TRUE "
        f"WHEN {text} IN ('true', 't', 'yes', 'y', '1') THEN TRUE "
        f"WHEN {text} IN ('false', 'f', 'no', 'n', '0') THEN FALSE END"
    )


# --- validation ------------------------------------------------------------------------------


def _validate(
    raw: pa.Table,
    select: dict[str, str],
    checks: list[tuple[str, str, str]],
    *,
    numeric: dict[str, str],
    text: list[str],
    passthrough: list[str] | None = None,
    typed: Callable[[pa.Table], dict[str, pa.ChunkedArray] | None] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Run the checks in one SQL pass (the first failing check names a row's reason) and return
    (accepted rows, rejected rows). Parsed values (times, numbers) come from SQL; text columns are
    cleaned with Arrow, which avoids copying every string through DuckDB and back.

    `typed` may compute the `numeric` columns in Arrow instead, when the file's types show that no
    row can fail a check (see `_typed_purchases`); it returns None otherwise, and the SQL pass runs."""
    # Text first: the checks see the same cleaned values that are returned.
    # Arrow's kernels release the GIL: the text columns are cleaned side by side.
    names = [name for name in text if name in raw.column_names]
    with ThreadPoolExecutor(2, thread_name_prefix="clean") as pool:
        cleaned = dict(zip(names, pool.map(lambda name: _clean_text(raw.column(name)), names), strict=True))
    for name, values in cleaned.items():
        raw = raw.set_column(raw.schema.get_field_index(name), name, values)
    numbers = typed(raw) if typed is not None else None
    if numbers is not None:  # no row can fail a check: nothing is rejected, nothing copied
        good, rejected, accepted = None, REJECTED_SCHEMA.empty_table(), pa.table(numbers)
    else:
        good, rejected, accepted = _checked(raw, select, checks, numeric=numeric)
    for name in text:
        values = cleaned.get(name, pa.chunked_array([pa.nulls(raw.num_rows, pa.string())]))
        accepted = accepted.append_column(name, values if good is None else values.filter(good))
    for name in passthrough or []:
        values = raw.column(name)
        accepted = accepted.append_column(name, values if good is None else values.filter(good))
    return accepted, rejected


def _checked(
    raw: pa.Table, select: dict[str, str], checks: list[tuple[str, str, str]], *, numeric: dict[str, str]
) -> tuple[pa.ChunkedArray | None, pa.Table, pa.Table]:
    """The SQL pass of `_validate`: (mask of accepted rows or None when all are, rejected rows,
    the accepted rows' `numeric` columns)."""
    code = "CASE " + " ".join(f"WHEN {cond} THEN '{c}'" for cond, c, _ in checks) + " END"
    reason = "CASE " + " ".join(f"WHEN {cond} THEN {msg}" for cond, _, msg in checks) + " END"
    parsed = ", ".join(f"{expr} AS {_q(alias)}" for alias, expr in select.items())
    outputs = ", ".join(f"{expr} AS {_q(alias)}" for alias, expr in numeric.items())
    sql = (
        f"WITH parsed AS (SELECT {_ROW}, {parsed} FROM raw), "
        f"checked AS (SELECT *, {code} AS code, {reason} AS reason FROM parsed) "
        f"SELECT {_ROW} AS row, code, reason, {outputs} FROM checked"
    )
    con = connect()
    try:
        con.register("raw", raw)
        result = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    if not result.column("row").equals(raw.column(_ROW)):  # window functions may reorder rows
        result = result.take(pc.sort_indices(result, [("row", "ascending")]))
    bad = pc.is_valid(result.column("reason"))
    if pc.any(bad).as_py():
        good = pc.invert(bad)
        rejected = result.filter(bad).select(["row", "code", "reason"])
        accepted = result.filter(good).drop_columns(["row", "code", "reason"])
    else:  # the common case: no copy of every column
        good = None
        rejected = result.select(["row", "code", "reason"]).slice(0, 0)
        accepted = result.drop_columns(["row", "code", "reason"])
    return good, rejected, accepted


def _clean_text(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text as it is checked and kept: trimmed of Unicode whitespace, empty → null; integer (or
    integral float) ids as digits. Dictionary-encoded text stays so, cleaned on its dictionaries."""
    typ = values.type
    if pa.types.is_dictionary(typ) and _is_text(typ.value_type) and not pa.types.is_dictionary(typ.value_type):
        return _clean_dictionary(values)
    if pa.types.is_dictionary(typ):
        values, typ = values.cast(typ.value_type), typ.value_type
    if pa.types.is_floating(typ):
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, typ), values)  # NaN is a missing id
        integral = pc.equal(values, pc.trunc(values))
        if pc.all(pc.or_kleene(integral, pc.is_null(values))).as_py():
            values = values.cast(pa.int64())
    if not _is_text(values.type):
        return values.cast(pa.string())
    values = values.cast(pa.string())
    trimmed = pc.utf8_trim_whitespace(values)
    lengths = pc.binary_length(values)
    if pc.sum(pc.binary_length(trimmed)).as_py() == pc.sum(lengths).as_py() and (pc.min(lengths).as_py() or 0) > 0:
        return values  # nothing to trim and nothing empty (the common case): the column as it is
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _clean_dictionary(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """`_clean_text` of dictionary-encoded text, done on the dictionaries; the chunks come back as one
    array with one dictionary. A Parquet row group's batches share their dictionary, so each distinct
    one is cleaned and hashed once (pyarrow's `combine_chunks` hashes every chunk's: 17 M order ids
    for 10 M lines in 80 batches). Entries that cleaning makes equal (" a", "a") become one, and rows
    whose entry becomes empty become null rows (Arrow and DuckDB see nulls in the indices)."""
    if not values.num_chunks:
        return values
    keys = [(len(c.dictionary), *(b.address if b else 0 for b in c.dictionary.buffers())) for c in values.chunks]
    first: dict[tuple[int, ...], pa.Array] = {}  # each distinct dictionary, in order of first use
    for key, chunk in zip(keys, values.chunks, strict=True):
        first.setdefault(key, chunk.dictionary)
    number = {key: n for n, key in enumerate(first)}
    entries = _clean_text(pa.chunked_array(list(first.values()), type=values.type.value_type))
    encoded = pc.dictionary_encode(entries.combine_chunks())  # an emptied entry's position is null
    starts = np.cumsum([0, *(len(d) for d in first.values())])
    parts = [
        pc.take(encoded.indices.slice(starts[number[key]], key[0]), chunk.indices)
        for key, chunk in zip(keys, values.chunks, strict=True)
    ]
    return pa.chunked_array([pa.DictionaryArray.from_arrays(pa.concat_arrays(parts), encoded.dictionary)])


def _finish(
    kind: str, path: str | Path, accepted: pa.Table, rejected: pa.Table, malformed: pa.Table
) -> tuple[pa.Table, ValidationReport]:
    rejected = pa.concat_tables([malformed, rejected.cast(REJECTED_SCHEMA)])
    rejected = rejected.take(pc.sort_indices(rejected, [("row", "ascending")]))
    report = ValidationReport(
        kind=kind,
        source=str(path),
        rows_read=accepted.num_rows + rejected.num_rows,
        rows_accepted=accepted.num_rows,
        rejected=rejected,
    )
    return accepted, report
