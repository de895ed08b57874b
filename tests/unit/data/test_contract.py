"""The purchase and catalog data contract (docs/data-contract.md): what is accepted, what is rejected and why."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.data.contract import InvalidCatalog, InvalidPurchases
from training.data.load import load_catalog, load_purchases

HEADER = "user_id,item_id,timestamp,quantity,price,order_id\n"
GOOD_ROWS = [
    ("u1", "i1", "2025-03-01T10:00:00Z", "2", "2.50", "o1"),
    ("u1", "i2", "2025-03-01T12:00:00+02:00", "1", "1.00", "o1"),
    ("u2", "i1", "1740823200", "", "", ""),  # epoch seconds; quantity defaults to 1; no price, no order
    ("7", "42", "2025-03-02", "3", "0", "o2"),  # integer-looking ids stay strings; a free item is fine
]


def write_csv(path: Path, rows: list[tuple[str, ...]], header: str = HEADER) -> Path:
    path.write_text(header + "".join(",".join(r) + "\n" for r in rows))
    return path


def run_reco(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "training.cli", *args], capture_output=True, text=True, timeout=120)


def test_valid_csv_and_parquet_load_identically(tmp_path: Path) -> None:
    csv_table, csv_report = load_purchases(write_csv(tmp_path / "p.csv", GOOD_ROWS))
    parquet = tmp_path / "p.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["u1", "u1", "u2", "7"],
                "item_id": ["i1", "i2", "i1", "42"],
                "timestamp": pa.array(
                    [
                        datetime(2025, 3, 1, 10, tzinfo=UTC),
                        datetime(2025, 3, 1, 10, tzinfo=UTC),
                        datetime(2025, 3, 1, 10, tzinfo=UTC),
                        datetime(2025, 3, 2, tzinfo=UTC),
                    ],
                    pa.timestamp("ms", tz="UTC"),
                ),
                "quantity": pa.array([2, 1, None, 3], pa.int64()),
                "price": [2.5, 1.0, None, 0.0],
                "order_id": ["o1", "o1", None, "o2"],
            }
        ),
        parquet,
    )
    parquet_table, parquet_report = load_purchases(parquet)
    assert csv_report.ok and parquet_report.ok
    assert csv_table.equals(parquet_table)
    first = csv_table.slice(0, 3).to_pylist()
    assert first[1]["timestamp"] == datetime(2025, 3, 1, 10, tzinfo=UTC)  # +02:00 converted to UTC
    assert first[2]["quantity"] == 1 and first[2]["price"] is None and first[2]["order_id"] is None
    assert csv_table.column("user_id").to_pylist()[3] == "7"


def test_integer_ids_in_parquet_are_kept_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"user_id": [1, 2], "item_id": [10.0, 11.0], "timestamp": [1740823200, 1740823201]}), path)
    table, report = load_purchases(path)
    assert report.ok
    assert table.column("user_id").to_pylist() == ["1", "2"]
    assert table.column("item_id").to_pylist() == ["10", "11"]


@pytest.mark.parametrize(
    ("row", "code", "reason_part"),
    [
        (("", "i1", "2025-03-01", "1", "1", "o"), "missing user_id", "missing user_id"),
        (("u1", " ", "2025-03-01", "1", "1", "o"), "missing item_id", "missing item_id"),
        (("u1", "i1", "", "1", "1", "o"), "missing timestamp", "missing timestamp"),
        (("u1", "i1", "yesterday", "1", "1", "o"), "unparseable timestamp", "'yesterday'"),
        (("u1", "i1", "2025-02-30", "1", "1", "o"), "unparseable timestamp", "2025-02-30"),
        (("u1", "i1", "1740823200000", "1", "1", "o"), "timestamp in epoch milliseconds", "milliseconds"),
        (("u1", "i1", "2025-03-01", "0", "1", "o"), "quantity not a whole number from 1 to 1,000,000", "got 0"),
        (("u1", "i1", "2025-03-01", "-2", "1", "o"), "quantity not a whole number from 1 to 1,000,000", "got -2"),
        (("u1", "i1", "2025-03-01", "1.5", "1", "o"), "quantity not a whole number from 1 to 1,000,000", "got 1.5"),
        (("u1", "i1", "2025-03-01", "two", "1", "o"), "quantity not a number", "'two'"),
        (("u1", "i1", "2025-03-01", "1", "-0.01", "o"), "negative price", "-0.01"),
        (("u1", "i1", "2025-03-01", "1", "cheap", "o"), "price not a number", "'cheap'"),
        (("u" * 129, "i1", "2025-03-01", "1", "1", "o"), "user_id too long", "longer than 128"),
    ],
)
def test_each_kind_of_bad_row_is_rejected_with_its_reason(
    tmp_path: Path, row: tuple[str, ...], code: str, reason_part: str
) -> None:
    table, report = load_purchases(write_csv(tmp_path / "p.csv", [GOOD_ROWS[0], row, GOOD_ROWS[1]]))
    assert report.rows_read == 3 and report.rows_accepted == 2 and report.rows_rejected == 1
    rejected = report.rejected.to_pylist()[0]
    assert rejected["row"] == 2 and rejected["code"] == code and reason_part in rejected["reason"]
    assert table.num_rows == 2


def test_counts_are_conserved_and_row_numbers_point_at_the_file(tmp_path: Path) -> None:
    rows = [GOOD_ROWS[0], ("", "i", "2025-01-01", "1", "1", "o"), GOOD_ROWS[1], ("u", "i", "nope", "1", "1", "o")]
    text = (
        HEADER
        + "".join(",".join(r) + "\n" for r in rows)
        + "u9,i9,2025-01-01,1,1,o9,EXTRA\n"
        + "u3,i3,2025-01-05,1,1,o3\n"
    )
    path = tmp_path / "p.csv"
    path.write_text(text)
    table, report = load_purchases(path)
    assert report.rows_read == 6 == report.rows_accepted + report.rows_rejected
    assert [(r["row"], r["code"]) for r in report.rejected.to_pylist()] == [
        (2, "missing user_id"),
        (4, "unparseable timestamp"),
        (5, "malformed CSV line"),
    ]
    assert table.column("user_id").to_pylist() == ["u1", "u1", "u3"]
    assert report.reason_counts() == {"malformed CSV line": 1, "missing user_id": 1, "unparseable timestamp": 1}
    assert report.to_dict()["rows_rejected"] == 3


def test_ids_are_checked_as_they_are_kept_whitespace_and_nan(tmp_path: Path) -> None:
    """A tab or a no-break space around an id is trimmed, an id of only whitespace (or a NaN float
    id) is missing: the checks and the kept values agree, so no accepted row has a null id."""
    path = tmp_path / "p.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["\tu1\n", "\u00a0u2", "\t", "u4"],
                "item_id": [1.0, 2.0, 3.0, float("nan")],
                "timestamp": [1740823200] * 4,
            }
        ),
        path,
    )
    table, report = load_purchases(path)
    assert table.column("user_id").to_pylist() == ["u1", "u2"]
    assert table.column("item_id").to_pylist() == ["1", "2"]
    rejected = [(r["row"], r["code"]) for r in report.rejected.to_pylist()]
    assert rejected == [(3, "missing user_id"), (4, "missing item_id")]


def test_dictionary_ids_load_and_encode_as_text_ids_do(tmp_path: Path) -> None:
    """`dictionary_ids` (what `reco train` reads with) keeps a Parquet file's ids dictionary-encoded:
    the same rows are accepted and rejected for the same reasons, the ids read the same, and the
    encoded lines are identical, across row groups with their own dictionaries, ids that cleaning
    makes equal (" u1" and "u1") or empty, and ids only rejected rows use."""
    import numpy as np

    from training.interactions import build_interactions

    users = ["u1", " u1", "u2", "\t", "u3", "u9", "u2\u00a0", "u4", "u1", "u3"]
    items = ["i1", "i2", " i1", "i3", "i4", "i9", "i2", "i1\t", "i3", "i2"]
    orders = ["o1", "o1", "o2", "o3", "o4", "o9", None, " o5", "o5", "o4"]
    quantity = [1, 2, 1, 1, 1, -1, 1, 1, 1, 3]  # row 6 rejected: u9, i9 and o9 appear nowhere else
    path = tmp_path / "p.parquet"
    table = pa.table(
        {
            "user_id": users,
            "item_id": items,
            "timestamp": [1740823200 + 3600 * n for n in range(len(users))],
            "quantity": quantity,
            "order_id": orders,
        }
    )
    pq.write_table(table, path, row_group_size=3)  # four row groups, four dictionaries per column
    text, text_report = load_purchases(path)
    encoded, encoded_report = load_purchases(path, dictionary_ids=True)
    assert pa.types.is_dictionary(encoded.schema.field("user_id").type)
    assert encoded_report.to_dict() == text_report.to_dict()
    assert [(r["row"], r["code"]) for r in text_report.rejected.to_pylist()] == [
        (4, "missing user_id"),
        (6, "quantity not a whole number from 1 to 1,000,000"),
    ]
    assert encoded.cast(text.schema).equals(text)
    a, b = build_interactions(purchases=text), build_interactions(purchases=encoded)
    for name in ("user_ids", "item_ids", "user", "item", "day", "basket"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.user_ids.tolist() == ["u1", "u2", "u3", "u4"] and a.item_ids.tolist() == ["i1", "i2", "i3", "i4"]
    # o1, o2, o4, the line without an order, and o5 twice: " o5" (u4) and "o5" (u1) are two customers'.
    assert len(np.unique(a.basket)) == 6


@pytest.mark.parametrize("dictionary_ids", [False, True])
def test_typed_files_skip_the_sql_pass_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dictionary_ids: bool
) -> None:
    """A Parquet file whose columns have their types is checked in Arrow (`_typed_purchases`) and
    gives the table the SQL pass gives: timestamps of any zone or none (taken as UTC) in UTC
    microseconds, missing quantities 1, integer prices as floats, missing prices and orders null.
    One row that a check rejects sends the whole file through the SQL pass, which names it."""
    import training.data.load as data

    paris = [datetime(2025, 3, 1, 10, tzinfo=UTC).timestamp() * 1000 + 3_600_000 * n for n in range(4)]
    files = {
        "zoned": {
            "timestamp": pa.array([int(t) for t in paris], pa.timestamp("ms", tz="Europe/Paris")),
            "quantity": pa.array([2, None, 1, 1_000_000], pa.int64()),
            "price": pa.array([2.5, None, 0.0, 1.25], pa.float32()),
            "order_id": ["o1", "o1", None, "o2"],
        },
        "naive": {
            "timestamp": pa.array([int(t) * 1000 for t in paris], pa.timestamp("us")),
            "price": pa.array([3, 0, None, 7], pa.int32()),
        },
    }
    ids = {"user_id": ["u1", " u1", "u2", "7"], "item_id": ["i1", "i2\t", "i1", "42"]}
    calls = []
    typed = data._typed_purchases
    monkeypatch.setattr(data, "_typed_purchases", lambda raw: calls.append(typed(raw)) or calls[-1])
    for name, columns in files.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({**ids, **columns}), path)
        fast, fast_report = load_purchases(path, dictionary_ids=dictionary_ids)
        assert calls.pop() is not None, name
        with monkeypatch.context() as m:
            m.setattr(data, "_typed_purchases", lambda raw: None)
            sql, sql_report = load_purchases(path, dictionary_ids=dictionary_ids)
        assert fast_report.to_dict() == sql_report.to_dict()
        assert fast.schema == sql.schema and fast.equals(sql), name
    assert fast.column("timestamp").to_pylist()[0] == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert fast.column("quantity").to_pylist() == [1, 1, 1, 1] and fast.column("price").to_pylist()[2] is None

    bad = [
        ("price", [1.0, -0.5, 2.0, 3.0], "negative price"),
        ("price", [1.0, float("inf"), 2.0, None], "price not finite"),
        ("quantity", [1, 0, 1, 1], "quantity not a whole number from 1 to 1,000,000"),
        ("quantity", [1, 1_000_001, 1, 1], "quantity not a whole number from 1 to 1,000,000"),
        ("user_id", ["u1", "u" * 129, "u2", "7"], "user_id too long"),
        ("item_id", ["i1", "\t", "i1", "42"], "missing item_id"),
        ("timestamp", pa.array([1740823200, None, 1740823200, 1740823200], pa.timestamp("s")), "missing timestamp"),
        (
            "timestamp",
            pa.array([1740823200, -2208988800, 1740823200, 1740823200], pa.timestamp("s")),
            "timestamp before 1970",
        ),
        (
            "timestamp",
            pa.array([1740823200, 1956528000, 1740823200, 1740823200], pa.timestamp("s")),
            "timestamp in the future",
        ),
        ("order_id", ["o1", "o1", "o2", "o3"], None),  # with the two lines below: row 2 repeats row 1
    ]
    for column, values, code in bad:
        path = tmp_path / "bad.parquet"
        columns = {**ids, **files["zoned"], column: values}
        if code is None:  # every contract column of row 2 equal to row 1's
            code = "duplicate line"
            columns |= {"item_id": ["i1", "i1", "i1", "42"], "quantity": [2, 2, 1, 1], "price": [2.5, 2.5, 0.0, 1.0]}
            columns["timestamp"] = pa.array([1740823200, 1740823200, 1740823201, 1740823202], pa.timestamp("s"))
        pq.write_table(pa.table(columns), path)
        table, report = load_purchases(path, dictionary_ids=dictionary_ids)
        assert calls.pop() is None, code
        assert [(r["row"], r["code"]) for r in report.rejected.to_pylist()] == [(2, code)]
        assert table.num_rows == 3


def test_missing_column_is_one_clear_sentence(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [("u1", "i1")], header="user_id,item_id\n")
    with pytest.raises(InvalidPurchases, match=r"has no column 'timestamp' \(required: user_id, item_id, timestamp"):
        load_purchases(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p.parquet", b"this is not parquet at all", "cannot be read as Parquet"),
        ("p.csv", b"", "cannot be read as CSV"),
        ("p.xlsx", b"PK", "neither CSV"),
    ],
)
def test_unreadable_files_are_one_clear_sentence(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidPurchases, match=message) as info:
        load_purchases(path)
    assert str(info.value).endswith(".") and "\n" not in str(info.value)


def test_missing_file_and_wrong_column_type(tmp_path: Path) -> None:
    with pytest.raises(InvalidPurchases, match="does not exist"):
        load_purchases(tmp_path / "nowhere.csv")
    path = tmp_path / "typed.parquet"
    pq.write_table(
        pa.table({"user_id": ["u"], "item_id": ["i"], "timestamp": [1740823200], "quantity": [[1, 2]]}), path
    )
    with pytest.raises(InvalidPurchases, match=r"Column .quantity. has type list<.*>, expected a number"):
        load_purchases(path)


def test_catalog_defaults_duplicates_and_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text(
        "item_id,name,category,brand,price,in_stock,colour\n"
        "i1,Oat Milk,Milk,Nordhof,1.2,true,white\n"
        "i2,,,,,,\n"
        "i1,Oat Milk again,Milk,Nordhof,1.2,yes,white\n"
        "i3,Bread,Bakery,Old Mill,-1,no,brown\n"
        "i4,Eggs,Eggs,Red Barn,2.9,maybe,\n"
        "i5,Tea,Tea,Highland,2.8,0,green\n"
    )
    table, report = load_catalog(path)
    assert report.rows_read == 6 and report.rows_accepted == 3
    assert [(r["row"], r["code"]) for r in report.rejected.to_pylist()] == [
        (3, "duplicate item_id"),
        (4, "invalid price"),
        (5, "in_stock not a boolean"),
    ]
    rows = {r["item_id"]: r for r in table.to_pylist()}
    assert rows["i2"]["name"] == "i2" and rows["i2"]["category"] == "Other" and rows["i2"]["in_stock"] is True
    assert rows["i5"]["in_stock"] is False and rows["i1"]["colour"] == "white"


def test_catalog_without_item_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text("sku,name\n1,Milk\n")
    with pytest.raises(InvalidCatalog, match="has no column 'item_id'"):
        load_catalog(path)


def test_cli_validate_exits_1_on_rejected_rows_and_2_on_unusable_file(tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", [GOOD_ROWS[0], GOOD_ROWS[2], ("", "i2", "2025-03-01", "1", "1", "o1")])
    result = run_reco("data", "validate", str(bad), "--report", str(tmp_path / "report.json"))
    assert result.returncode == 1, result.stderr
    assert "3 rows read, 2 accepted, 1 rejected" in result.stdout and "row 3: missing user_id" in result.stdout
    assert (tmp_path / "report.json").exists() and "Traceback" not in result.stdout + result.stderr

    good = write_csv(tmp_path / "good.csv", GOOD_ROWS)
    assert run_reco("data", "validate", str(good)).returncode == 0

    missing = write_csv(tmp_path / "cols.csv", [("u1",)], header="user_id\n")
    result = run_reco("data", "validate", str(missing))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "has no column 'item_id'" in result.stderr
