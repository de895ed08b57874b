"""experiments/real_data.py turns the packaged datasets into the data contract: every line accepted,
ids and times as the sources hold them (tiny files in each source's layout; the real ones are
fetched by `make bench-quality`)."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.parquet as pq

from training.data.load import load_purchases

ROOT = Path(__file__).resolve().parents[3]


def _real_data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("real_data", ROOT / "experiments" / "real_data.py")
    assert spec and spec.loader
    module = sys.modules.setdefault("real_data", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def test_movielens_ratings_become_purchase_lines(tmp_path: Path) -> None:
    source = tmp_path / "ml-100k.inter"
    source.write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n7\t1\t5\t874724710\n"
    )
    out = tmp_path / "purchases.parquet"
    _real_data()._movielens(source, out)
    table, report = load_purchases(out)
    assert report.rows_read == report.rows_accepted == 2
    assert table.column("user_id").to_pylist() == ["196", "7"] and table.column("item_id").to_pylist() == ["242", "1"]
    assert table.column("timestamp")[0].as_py() == datetime.fromtimestamp(881250949, tz=UTC)  # 1997: accepted
    assert "order_id" not in table.column_names or table.column("order_id").null_count == 2


def test_complete_journey_baskets_become_orders_and_returns_are_left_out(tmp_path: Path) -> None:
    source = tmp_path / "transactions.parquet"
    pq.write_table(
        pa.table(
            {
                "household_id": [900, 900, 1228],
                "basket_id": [31198570044, 31198570044, 31198655051],
                "product_id": [1095275, 9878513, 1041453],
                "quantity": [2, 0, 1],
                "sales_value": [1.5, 2.99, 1.29],
                "transaction_timestamp": pa.array(
                    [datetime(2017, 1, 1, 11, 53), datetime(2017, 1, 1, 11, 53), datetime(2017, 1, 1, 12, 26)],
                    type=pa.timestamp("ns"),
                ),
            }
        ),
        source,
    )
    out = tmp_path / "purchases.parquet"
    kept = _real_data()._complete_journey(source, out)
    table, report = load_purchases(out)
    assert report.rows_read == report.rows_accepted == 2 and kept.startswith("2 of 3 lines")
    assert table.column("order_id").to_pylist() == ["31198570044", "31198655051"]
    assert table.column("price").to_pylist() == [0.75, 1.29]
    assert table.column("quantity").to_pylist() == [2, 1]
