"""The checks of the data contract, as one vectorized DuckDB pass over the raw rows.

Each check is (SQL condition, reason code, SQL for the reason shown with the row); the first
failing check names a row's reason. Text columns are cleaned once in Arrow (trimmed, empty →
missing, integer ids as digits) and checked as kept, so the checks see the values training uses.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.core import columns as col
from training.core.errors import RecoError
from training.data.contract import EPOCH_MAX, REJECTED_SCHEMA, ROW, ValidationReport, is_text
from training.data.duck import connect, quote_name

# --- SQL pieces ------------------------------------------------------------------------------


def quoted(expr: str) -> str:
    """SQL for a value shown in a reason: quoted and cut to 40 characters."""
    return f"'''' || left(CAST({expr} AS VARCHAR), 40) || ''''"


def wrong_type(name: str, typ: pa.DataType, expected: str, error: type[RecoError]) -> RecoError:
    return error(f"Column {name!r} has type {typ}, expected {expected}.")


def id_expr(name: str, types: dict[str, pa.DataType], error: type[RecoError]) -> str:
    """The id as the checks see it: already cleaned by `_clean_text` (text, integer or integral-float ids)."""
    typ = types[name]
    if not (is_text(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ)):
        raise wrong_type(name, typ, "text or integer ids", error)
    return quote_name(name)


def id_checks(name: str) -> list[tuple[str, str, str]]:
    return [
        (f"{name} IS NULL", f"missing {name}", f"'missing {name}'"),
        (
            f"length({name}) > {col.ID_MAX_LENGTH}",
            f"{name} too long",
            f"'{name} longer than {col.ID_MAX_LENGTH} characters'",
        ),
    ]


def text_expr(name: str, types: dict[str, pa.DataType]) -> str:
    """The raw value, for telling 'missing' from 'bad' (text is trimmed; other types stay as they
    are, and are only turned into text inside the reasons of rejected rows)."""
    q = quote_name(name)
    return f"NULLIF(trim(CAST({q} AS VARCHAR)), '')" if is_text(types[name]) else q


def optional_text(name: str, types: dict[str, pa.DataType]) -> str:
    return quote_name(name) if name in types else "CAST(NULL AS VARCHAR)"


def number_expr(name: str, types: dict[str, pa.DataType], error: type[RecoError], *, allow_time: bool = False) -> str:
    typ, q = types[name], quote_name(name)
    if is_text(typ):
        return f"TRY_CAST(trim(CAST({q} AS VARCHAR)) AS DOUBLE)"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return f"CAST({q} AS DOUBLE)"
    if allow_time and (pa.types.is_timestamp(typ) or pa.types.is_date(typ)):
        return "NULL"
    expected = "ISO-8601 text, epoch seconds or a timestamp" if allow_time else "a number"
    raise wrong_type(name, typ, expected, error)


def timestamp_expr(name: str, types: dict[str, pa.DataType]) -> str:
    """TIMESTAMPTZ in UTC, or NULL when unparseable. Naive times are taken as UTC."""
    typ, q = types[name], quote_name(name)
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return f"CAST({q} AS TIMESTAMPTZ)"
    epoch = f"CASE WHEN {{n}} >= 0 AND {{n}} < {EPOCH_MAX} THEN to_timestamp({{n}}) END"
    if is_text(typ):
        text = f"trim(CAST({q} AS VARCHAR))"
        number = f"TRY_CAST({text} AS DOUBLE)"
        return f"CASE WHEN {number} IS NOT NULL THEN {epoch.format(n=number)} ELSE TRY_CAST({text} AS TIMESTAMPTZ) END"
    return epoch.format(n=f"CAST({q} AS DOUBLE)")


def bool_expr(name: str, types: dict[str, pa.DataType]) -> str:
    typ, q = types[name], quote_name(name)
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


# --- the pass --------------------------------------------------------------------------------


def validate(
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
    """The SQL pass of `validate`: (mask of accepted rows or None when all are, rejected rows,
    the accepted rows' `numeric` columns)."""
    code = "CASE " + " ".join(f"WHEN {cond} THEN '{c}'" for cond, c, _ in checks) + " END"
    reason = "CASE " + " ".join(f"WHEN {cond} THEN {msg}" for cond, _, msg in checks) + " END"
    parsed = ", ".join(f"{expr} AS {quote_name(alias)}" for alias, expr in select.items())
    # Only accepted rows are converted: a rejected row's value may not fit (3e9 in an INTEGER, inf).
    outputs = ", ".join(
        f"CASE WHEN code IS NULL THEN {expr} END AS {quote_name(alias)}" for alias, expr in numeric.items()
    )
    sql = (
        f"WITH parsed AS (SELECT {ROW}, {parsed} FROM raw), "
        f"checked AS (SELECT *, {code} AS code, {reason} AS reason FROM parsed) "
        f"SELECT {ROW} AS row, code, reason, {outputs} FROM checked"
    )
    con = connect()
    try:
        con.register("raw", raw)
        result = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    if not result.column("row").equals(raw.column(ROW)):  # window functions may reorder rows
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
    if pa.types.is_dictionary(typ) and is_text(typ.value_type) and not pa.types.is_dictionary(typ.value_type):
        return _clean_dictionary(values)
    if pa.types.is_dictionary(typ):
        values, typ = values.cast(typ.value_type), typ.value_type
    if pa.types.is_floating(typ):
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, typ), values)  # NaN is a missing id
        integral = pc.equal(values, pc.trunc(values))
        if pc.all(pc.or_kleene(integral, pc.is_null(values))).as_py():
            values = values.cast(pa.int64())
    if not is_text(values.type):
        return values.cast(pa.string())
    values = values.cast(pa.string())
    trimmed = pc.utf8_trim_whitespace(values)
    lengths = pc.binary_length(values)
    if pc.sum(pc.binary_length(trimmed)).as_py() == pc.sum(lengths).as_py() and (pc.min(lengths).as_py() or 0) > 0:
        return values  # nothing to trim and nothing empty (the common case): the column as it is
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _clean_dictionary(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """`_clean_text` of dictionary-encoded text, done on the dictionaries (a Parquet file read by row
    group: one per chunk); the chunks come back as one array with one dictionary. Entries that
    cleaning makes equal (" a", "a") become one, and rows whose entry becomes empty become null rows
    (Arrow and DuckDB see nulls in the indices)."""
    if not values.num_chunks:
        return values
    dictionaries = [chunk.dictionary for chunk in values.chunks]
    entries = _clean_text(pa.chunked_array(dictionaries, type=values.type.value_type))
    encoded = pc.dictionary_encode(entries.combine_chunks())  # an emptied entry's position is null
    starts = np.cumsum([0, *(len(d) for d in dictionaries)])
    parts = [
        pc.take(encoded.indices.slice(start, len(chunk.dictionary)), chunk.indices)
        for start, chunk in zip(starts, values.chunks, strict=False)
    ]
    return pa.chunked_array([pa.DictionaryArray.from_arrays(pa.concat_arrays(parts), encoded.dictionary)])


def finish(
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
