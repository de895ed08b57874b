"""The synthetic store: deterministic for a seed, and it has the properties models and recaps rely on."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from training.data.load import load_catalog, load_purchases
from training.data.synthetic import generate_store


@pytest.fixture(scope="module")
def sql(small_store: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW purchases AS SELECT * FROM '{small_store / 'purchases.parquet'}'")
    con.execute(f"CREATE VIEW catalog AS SELECT * FROM '{small_store / 'catalog.parquet'}'")
    return con


def one(con: duckdb.DuckDBPyConnection, query: str) -> float:
    row = con.execute(query).fetchone()
    assert row is not None
    return float(row[0])


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate_store(tmp_path / name, users=300, items=200, years=2, seed=seed)
    for file in ("purchases.parquet", "catalog.parquet", "recipes.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    assert not pq.read_table(tmp_path / "a" / "purchases.parquet").equals(
        pq.read_table(tmp_path / "c" / "purchases.parquet")
    )


def test_files_meet_the_data_contract(small_store: Path) -> None:
    _, purchases = load_purchases(small_store / "purchases.parquet")
    _, catalog = load_catalog(small_store / "catalog.parquet")
    assert purchases.ok and catalog.ok
    assert purchases.rows_read > 50_000  # about 55 lines per customer over two years
    recipes = json.loads((small_store / "recipes.json").read_text())["recipes"]
    categories = set(pq.read_table(small_store / "catalog.parquet").column("category").to_pylist())
    assert recipes and all(i["category"] in categories for r in recipes for i in r["ingredients"])


def test_baskets_have_several_lines(sql: duckdb.DuckDBPyConnection) -> None:
    multi = one(sql, "SELECT avg((n > 1)::INT) FROM (SELECT order_id, count(*) n FROM purchases GROUP BY 1)")
    assert multi > 0.6


def test_staples_are_rebought_on_a_rhythm(sql: duckdb.DuckDBPyConnection) -> None:
    repeat_share = one(
        sql,
        "SELECT avg((rn > 1)::INT) FROM (SELECT row_number() OVER (PARTITION BY user_id, item_id ORDER BY timestamp)"
        " rn FROM purchases)",
    )
    assert repeat_share > 0.35
    # Gaps between purchases of a customer's most re-bought item are regular: a memoryless shopper
    # would give a coefficient of variation near 1.
    cv = one(
        sql,
        """
        WITH gaps AS (
            SELECT user_id, item_id,
                   epoch(timestamp - lag(timestamp) OVER (PARTITION BY user_id, item_id ORDER BY timestamp)) g
            FROM purchases),
        per_pair AS (SELECT user_id, item_id, count(g) n, stddev(g) / avg(g) cv FROM gaps GROUP BY 1, 2),
        top AS (SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY n DESC) r FROM per_pair WHERE n >= 5)
        SELECT median(cv) FROM top WHERE r = 1
        """,
    )
    assert cv < 0.6


def test_december_peak_and_weekly_pattern(sql: duckdb.DuckDBPyConnection) -> None:
    for year in (2024, 2025):
        ratio = one(
            sql,
            f"""SELECT avg(CASE WHEN m = 12 THEN n END) / avg(CASE WHEN m < 12 THEN n END)
                FROM (SELECT month(timestamp) m,
                             count(DISTINCT order_id) / count(DISTINCT date_trunc('day', timestamp)) n
                      FROM purchases WHERE year(timestamp) = {year} GROUP BY 1)""",
        )
        assert ratio > 1.3, year
    saturday_vs_tuesday = one(
        sql,
        "SELECT count(DISTINCT CASE WHEN dayofweek(timestamp) = 6 THEN order_id END)"
        " / count(DISTINCT CASE WHEN dayofweek(timestamp) = 2 THEN order_id END) FROM purchases",
    )
    assert saturday_vs_tuesday > 1.3


def test_customers_arrive_and_churn(sql: duckdb.DuckDBPyConnection) -> None:
    arrived_later = one(
        sql,
        "SELECT avg((first >= '2024-07-01')::INT) FROM (SELECT min(timestamp) first FROM purchases GROUP BY user_id)",
    )
    assert 0.2 < arrived_later < 0.8
    churned = one(
        sql,
        "SELECT avg((last < '2025-07-01')::INT) FROM (SELECT min(timestamp) first, max(timestamp) last"
        " FROM purchases GROUP BY user_id) WHERE first < '2024-07-01'",
    )
    assert 0.1 < churned < 0.7


def test_catalog_has_out_of_stock_items_and_structure(sql: duckdb.DuckDBPyConnection) -> None:
    out_of_stock = one(sql, "SELECT avg((NOT in_stock)::INT) FROM catalog")
    assert 0.005 < out_of_stock < 0.15
    assert one(sql, "SELECT count(DISTINCT category) FROM catalog") >= 30
    assert one(sql, "SELECT count(DISTINCT brand) FROM catalog") >= 10
    assert one(sql, "SELECT count(*) FROM catalog WHERE price <= 0") == 0


def test_tastes_differ_between_customers(sql: duckdb.DuckDBPyConnection) -> None:
    """Collaborative filtering needs signal: customers' category mixes differ far more than they would
    if every line were drawn from the store's overall mix (same customers and line counts, categories
    shuffled across lines). Measured as the mean total-variation distance to the overall mix."""
    lines = "SELECT user_id, category, item_id, timestamp FROM purchases JOIN catalog USING (item_id)"
    shuffled = f"""SELECT u.user_id, c.category
        FROM (SELECT user_id, row_number() OVER (ORDER BY user_id, hash(category)) r FROM ({lines})) u
        JOIN (SELECT category, row_number() OVER (ORDER BY hash(timestamp, item_id, user_id)) r FROM ({lines})) c
        USING (r)"""

    def spread(source: str) -> float:
        return one(
            sql,
            f"""
            WITH mix AS (SELECT user_id, category, count(*) n FROM ({source}) GROUP BY 1, 2),
            shares AS (SELECT user_id, category, n / sum(n) OVER (PARTITION BY user_id) s,
                              sum(n) OVER (PARTITION BY user_id) total FROM mix),
            overall AS (SELECT category, sum(n) / (SELECT sum(n) FROM mix) g FROM mix GROUP BY 1),
            per_user AS (SELECT o.category, u.user_id, coalesce(s.s, 0) s, o.g
                         FROM overall o CROSS JOIN (SELECT DISTINCT user_id FROM shares WHERE total >= 50) u
                         LEFT JOIN shares s ON s.user_id = u.user_id AND s.category = o.category)
            SELECT avg(tv) FROM (SELECT user_id, 0.5 * sum(abs(s - g)) tv FROM per_user GROUP BY 1)
            """,
        )

    real, null = spread(lines), spread(shuffled)
    assert real > 1.5 * null, (real, null)
