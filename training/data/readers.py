"""Reading purchase and catalog files into Arrow, with each row's number.

A Parquet file is read by DuckDB (about twice pyarrow's speed on two cores) or, when the trainer
wants its ids dictionary-encoded, by pyarrow; CSV by pyarrow with every column as text, malformed
lines turned into rejections (they keep their row numbers). A file that cannot be read raises the
caller's error with one sentence.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from training.core.errors import RecoError
from training.data.contract import REJECTED_SCHEMA, ROW, is_text
from training.data.duck import connect, quote_name, sql_text

CSV_NULLS = [""]
SNIFF_BYTES = 65_536  # read before parsing a CSV file, to tell a binary file in one sentence


def read_raw(
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
            table, malformed = _read_parquet_file(path, dictionary=dictionary), REJECTED_SCHEMA.empty_table()
            if table.num_rows == 0:
                raise error(f"The {what} {path} has no rows.")
            return table, malformed
        elif name.endswith((".csv", ".csv.gz", ".txt")):
            table, malformed = _read_csv(path)
        else:
            raise error(f"The {what} {path} is neither CSV (.csv, .csv.gz) nor Parquet (.parquet).")
    except (pa.ArrowException, duckdb.Error, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        kind = "Parquet" if "parquet" in name or path.is_dir() else "CSV"
        raise error(f"The {what} {path} cannot be read as {kind}: {_printable(reason)}.") from None
    if path.is_dir():
        malformed = REJECTED_SCHEMA.empty_table()
    if table.num_rows == 0 and malformed.num_rows == 0:  # a header-only CSV, an empty Parquet file
        raise error(f"The {what} {path} has no rows.")
    rows = _row_numbers(table.num_rows, malformed.column("row").to_numpy())
    return table.append_column(ROW, pa.array(rows, pa.int64())), malformed


def _read_parquet_file(path: Path, *, dictionary: Sequence[str] = ()) -> pa.Table:
    """One Parquet file with its 1-based row numbers, read by DuckDB (about twice pyarrow's speed on
    two cores; insertion order is preserved, so rows stay in file order); by pyarrow when text
    columns named in `dictionary` are to stay dictionary-encoded (DuckDB decodes them)."""
    schema = pq.read_schema(path)
    encoded = [n for n in dictionary if n in schema.names and is_text(schema.field(n).type)]
    if encoded:
        # ParquetFile.read, not read_table (the dataset reader): one chunk per row group instead of
        # batches of 128k rows, and at 10 M lines a tenth less memory and a third less time.
        table = pq.ParquetFile(path, read_dictionary=encoded).read()
        return table.append_column(ROW, pa.array(np.arange(1, table.num_rows + 1), pa.int64()))
    con = connect()
    try:
        source = sql_text(str(path))
        return con.sql(
            f"SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS {quote_name(ROW)} "
            f"FROM read_parquet({source}, file_row_number = true)"
        ).to_arrow_table()
    finally:
        con.close()


def _read_csv(path: Path) -> tuple[pa.Table, pa.Table]:
    """Read a CSV file with the contract's columns as text; malformed lines become rejections."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as binary:
        _check_text(binary.read(SNIFF_BYTES))
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as stream:
        first_line = stream.readline()
    if not first_line.strip():
        raise ValueError("the file is empty")
    header = next(csv.reader([first_line]))
    convert = pcsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        null_values=CSV_NULLS,
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


def _check_text(head: bytes) -> None:
    """ValueError with the reason when a file's first bytes are not UTF-8 text: a NUL byte, invalid
    UTF-8 (a cut last character aside), a Parquet file named .csv."""
    if head.startswith(b"PAR1"):
        raise ValueError("it is a Parquet file; name it .parquet")
    if b"\x00" in head:
        raise ValueError("it holds NUL bytes: a binary file, or text in UTF-16")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut by the sniff's end
            raise ValueError(f"it is not UTF-8 text (byte {exc.start + 1} is not)") from None


def _printable(text: str, limit: int = 200) -> str:
    """A reason quoting file content, made safe for a terminal: control and replacement characters
    dropped, cut to `limit` characters."""
    kept = "".join(c for c in text if c.isprintable() and c != "\ufffd")
    return kept if len(kept) <= limit else kept[: limit - 1] + "…"


def _row_numbers(n_parsed: int, malformed_rows: np.ndarray) -> np.ndarray:
    """1-based row numbers of the parsed rows, skipping the numbers of malformed lines."""
    every = np.arange(1, n_parsed + len(malformed_rows) + 1, dtype=np.int64)
    return np.setdiff1d(every, malformed_rows, assume_unique=True) if len(malformed_rows) else every


def require_columns(table: pa.Table, required: tuple[str, ...], path: str | Path, error: type[RecoError]) -> None:
    missing = [name for name in required if name not in table.column_names]
    if missing:
        found = ", ".join(n for n in table.column_names if n != ROW) or "none"
        raise error(
            f"{path} has no column {', '.join(repr(m) for m in missing)} "
            f"(required: {', '.join(required)}; found: {found})."
        )
