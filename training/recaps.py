"""Yearly "Your year with us" recaps (DESIGN.md, "Recap record"; issue 6).

Every aggregate is computed by DuckDB in a few set-based SQL steps over the whole purchase table
(no Python loop per customer): per-customer totals, top lists, staple, discoveries, rhythm,
cohort comparisons and the persona come out of a few aggregate tables and one final query that
returns a JSON document per customer.
Python only loops per customer where it must: asking the model for picks, and rendering emails.

Rules that decide what a customer sees:

- Opted-out customers are removed before anything is computed, so they have no recap and do
  not count in anyone's comparisons.
- Sensitive categories (default: Pharmacy) are never highlighted: they are left out of top
  categories, items and brands, the staple, discoveries, comparisons, the persona's evidence and
  the picks. Totals (orders, items, spend, days, spend by month) still include them.
- Comparisons with other customers are aggregates only ("you shopped more than 80% of
  customers", "top 3% of Coffee buyers") and appear only when the cohort behind the number has
  at least `min_cohort` customers. No other customer's data is ever in a recap.
- A customer with fewer than `min_orders` orders in the year gets a short recap (`kind` =
  "short"): the same fields, no comparisons, persona "Occasional Shopper".

Definitions: `orders` counts distinct order ids (a line without one is an order of its own);
an order's time is its first line's time, and it counts in the month, weekday, week and day of
that time (`days_shopped` = distinct UTC dates with an order). `items` sums quantity, `spend`
sums quantity × price (lines without a price add nothing), as an exact decimal sum so that the same
input always gives byte-identical recaps (a float sum depends on DuckDB's thread order). The
calendar year is in UTC.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from training import columns as col
from training.duck import connect
from training.errors import RecoError

if TYPE_CHECKING:
    import duckdb
    import jinja2

    from training.settings import Settings


SCHEMA_VERSION = 1
DEFAULT_SENSITIVE_CATEGORIES = ("Pharmacy",)
DEFAULT_MIN_COHORT = 100
DEFAULT_MIN_ORDERS = 3
TOP_N = 5
PICKS_K = 5
PICKS_CONTEXT = "discover"
FEATURE_VIEW = "customer_year_recap"
MAX_SPILL = "20GiB"  # DuckDB's disk spill: fail clearly rather than fill the disk
MONTHS = tuple(calendar.month_name[m] for m in range(1, 13))
WEEKDAYS = tuple(calendar.day_name[d] for d in range(7))  # ISO weekday 1 = Monday

# Comparisons are shown only when they flatter and the cohort is big enough.
ORDERS_PERCENTILE_MIN = 50  # "you shopped more than X% of customers" when X >= this
CATEGORY_TOP_PERCENT_MAX = 10  # "top X% of <category> buyers" when X <= this

log = logging.getLogger(__name__)
Recommender = Callable[[list[str]], list[list[tuple[str, float]]]]


class InvalidOptOut(RecoError):
    """The opt-out file cannot be read."""


@dataclass(frozen=True)
class PersonaRule:
    """One documented persona rule: the first rule whose SQL condition holds names the persona."""

    name: str
    rule: str  # shown to the customer and to marketing, with the numbers of the condition
    condition: str  # SQL over the per-customer features (the `features` step of `_final_sql`)
    reason: str  # SQL producing the customer's own evidence as text


# In order: the first matching rule wins. Features: orders, weekend_share (orders on Saturday or
# Sunday), units_per_order, categories (distinct non-sensitive categories bought), new_categories
# (categories bought for the first time, returning customers only), top5_share (share of
# non-sensitive units that were the customer's top 5 items).
PERSONA_RULES: tuple[PersonaRule, ...] = (
    PersonaRule(
        "Weekend Planner",
        "at least 4 orders, and at least 60% of them on a Saturday or Sunday",
        "orders >= 4 AND weekend_share >= 0.6",
        "format('{}% of your orders were on a weekend', round(100 * weekend_share)::INTEGER)",
    ),
    PersonaRule(
        "Loyalist",
        "at least 6 orders, and at least half of your items were your 5 favourites",
        "orders >= 6 AND top5_share >= 0.5",
        "format('{}% of your items were your 5 favourites', round(100 * top5_share)::INTEGER)",
    ),
    PersonaRule(
        "Explorer",
        "items from at least 18 different categories, or at least 5 categories new to you this year",
        "categories >= 18 OR new_categories >= 5",
        "format('{} categories, {} of them new to you', categories, new_categories)",
    ),
    PersonaRule(
        "Stock-Up Shopper",
        "10 or more items per order on average",
        "units_per_order >= 10",
        "format('{} items per order on average', round(units_per_order, 1))",
    ),
    PersonaRule(
        "Steady Regular",
        "none of the other rules matched: a bit of everything, regularly",
        "TRUE",
        "format('{} orders this year', orders)",
    ),
)
SHORT_PERSONA = PersonaRule(
    "Occasional Shopper",
    "fewer than {min_orders} orders in the year",
    "TRUE",
    "format('{} order(s) this year', orders)",
)


@dataclass(frozen=True)
class RecapOptions:
    """What a recap run computes: the year and the guardrails."""

    year: int
    sensitive_categories: tuple[str, ...] = DEFAULT_SENSITIVE_CATEGORIES
    min_cohort: int = DEFAULT_MIN_COHORT
    min_orders: int = DEFAULT_MIN_ORDERS
    top_n: int = TOP_N
    picks_k: int = PICKS_K

    def __post_init__(self) -> None:
        if not 1970 <= self.year <= 9998:
            raise RecoError(f"The recap year {self.year} is out of range (1970..9998).")
        if self.min_cohort < 1 or self.min_orders < 1 or self.top_n < 1 or self.picks_k < 0:
            raise RecoError("min_cohort, min_orders and top_n must be at least 1, picks_k at least 0.")


@dataclass
class RecapResult:
    """The recaps of one run (`recaps`: user_id, recap_json, kind; sorted by user_id) and its counts."""

    recaps: pa.Table
    options: RecapOptions
    model_version: str | None
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def records(self) -> Iterable[dict[str, Any]]:
        """The recaps as dicts, one at a time."""
        for batch in self.recaps.select(["recap_json"]).to_batches(max_chunksize=10_000):
            for text in batch.column(0).to_pylist():
                yield json.loads(text)


# --- the pure API -----------------------------------------------------------------------------


def build_recaps(
    *,
    purchases: pa.Table,
    options: RecapOptions,
    catalog: pa.Table | None = None,
    opt_out: Iterable[str] = (),
    recommend: Recommender | None = None,
    model_version: str | None = None,
    recommend_batch_size: int = 10_000,
    progress: bool = False,
    memory_fraction: float = 0.4,
    partition_rows: int = 10_000_000,
) -> RecapResult:
    """Recaps of every customer with a purchase in `options.year` (minus the opted-out ones).

    `purchases` is in the contract's schema (as `training.data.load_purchases` returns it);
    `catalog` adds names, categories and brands; `recommend(user_ids)` returns each customer's
    picks as (item_id, score) lists (see `model_recommender`).
    """
    from tqdm import tqdm

    started = time.perf_counter()
    timings: dict[str, float] = {}
    parts = max(1, -(-purchases.num_rows // partition_rows))
    # One bar over the whole job: each aggregate table, the picks, each partition of documents.
    bar = tqdm(total=AGGREGATE_STEPS + 1 + parts, desc="recaps", unit="step", disable=not progress)
    con = connect(memory_fraction=memory_fraction)
    spill = tempfile.TemporaryDirectory(prefix="reco-recaps-")
    try:
        # Big stores: let DuckDB spill to disk instead of growing, and drop order guarantees it
        # does not need (the output is sorted explicitly).
        con.execute(f"SET temp_directory = {_sql_text(spill.name)}")
        con.execute(f"SET max_temp_directory_size = '{MAX_SPILL}'")
        con.execute("SET preserve_insertion_order = false")
        _register_inputs(con, purchases=purchases, catalog=catalog, opt_out=opt_out, options=options)
        counts = _stage_aggregates(con, options, timings, parts=parts, advance=bar.update)
        timings["aggregate_s"] = time.perf_counter() - started
        _stage_picks(
            con,
            recommend=recommend,
            year=options.year,
            k=options.picks_k,
            batch_size=recommend_batch_size,
            progress=progress,
        )
        bar.update()
        timings["picks_s"] = time.perf_counter() - started - timings["aggregate_s"]
        mark = time.perf_counter()
        # Customers in partitions: each query's hash tables hold a slice, so big stores fit in memory.
        pieces = []
        for p in range(parts):
            bar.set_postfix_str(f"documents {p + 1}/{parts}")
            pieces.append(con.sql(_final_sql(options, model_version, part=p)).to_arrow_table())
            bar.update()
        recaps = pa.concat_tables(pieces).sort_by(col.USER_ID)
        timings["assemble_s"] = time.perf_counter() - mark
        log.info("recaps: %d documents in %d partition(s) in %.1f s", recaps.num_rows, parts, timings["assemble_s"])
    finally:
        bar.close()
        con.close()
        spill.cleanup()
    counts["recaps"] = recaps.num_rows
    counts["short_recaps"] = int(pc.sum(pc.equal(recaps.column("kind"), "short")).as_py() or 0)
    return RecapResult(recaps=recaps, options=options, model_version=model_version, counts=counts, timings=timings)


def build_recap(
    *,
    purchases: pa.Table,
    user_id: str,
    year: int,
    catalog: pa.Table | None = None,
    options: RecapOptions | None = None,
) -> dict[str, Any] | None:
    """One customer's recap for one year (None when they bought nothing that year).

    Comparisons need every customer of the year, so this computes the year's recaps over the
    given purchases and returns one: meant for tests and small stores; the API serves recaps
    published by the batch job.
    """
    options = options or RecapOptions(year=year)
    if options.year != year:
        raise RecoError(f"options.year {options.year} differs from year {year}.")
    result = build_recaps(purchases=purchases, options=options, catalog=catalog)
    found = result.recaps.filter(pc.equal(result.recaps.column(col.USER_ID), user_id))
    return json.loads(found.column("recap_json")[0].as_py()) if found.num_rows else None


# --- SQL stages -------------------------------------------------------------------------------


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _register_inputs(
    con: duckdb.DuckDBPyConnection,
    *,
    purchases: pa.Table,
    catalog: pa.Table | None,
    opt_out: Iterable[str],
    options: RecapOptions,
) -> None:
    con.register("purchases_in", purchases.select(list(col.PURCHASE_COLUMNS)))
    con.register("opt_out_in", pa.table({col.USER_ID: pa.array(sorted(set(opt_out)), pa.string())}))
    sensitive = ", ".join(_sql_text(c.strip().lower()) for c in options.sensitive_categories if c.strip()) or "NULL"
    if catalog is not None:
        con.register("catalog_in", catalog)
        names = set(catalog.column_names)
        pick = {n: (n if n in names else "NULL") for n in (col.NAME, col.CATEGORY, col.BRAND)}
        con.execute(
            f"""CREATE TEMP TABLE items AS
            SELECT item_id, CAST({pick[col.NAME]} AS VARCHAR) AS name,
                   CAST({pick[col.CATEGORY]} AS VARCHAR) AS category,
                   CAST({pick[col.BRAND]} AS VARCHAR) AS brand,
                   coalesce(lower(trim(CAST({pick[col.CATEGORY]} AS VARCHAR))) IN ({sensitive}), FALSE) AS sensitive
            FROM catalog_in"""
        )
    else:
        con.execute(
            "CREATE TEMP TABLE items "
            "(item_id VARCHAR, name VARCHAR, category VARCHAR, brand VARCHAR, sensitive BOOLEAN)"
        )


AGGREGATE_STEPS = 9  # the `run(...)` calls of _stage_aggregates, for the progress bar


def _stage_aggregates(
    con: duckdb.DuckDBPyConnection,
    options: RecapOptions,
    timings: dict[str, float],
    *,
    parts: int,
    advance: Callable[[], object] = lambda: None,
) -> dict[str, int]:
    """Aggregate tables, each from one scan of the purchases (or of a smaller table)."""

    def run(name: str, sql: str) -> None:
        mark = time.perf_counter()
        con.execute(sql)
        timings[f"{name}_s"] = round(time.perf_counter() - mark, 3)
        log.info("recaps: %s in %.1f s", name, timings[f"{name}_s"])
        advance()

    y = options.year
    part = f"(hash(user_id) % {parts})::INTEGER"
    start, end, prev_start = (
        f"TIMESTAMPTZ '{y:04d}-01-01 00:00:00+00'",
        f"TIMESTAMPTZ '{y + 1:04d}-01-01 00:00:00+00'",
        f"TIMESTAMPTZ '{y - 1:04d}-01-01 00:00:00+00'",
    )
    run(
        "src",
        f"""CREATE TEMP VIEW src AS
        SELECT p.user_id, p.item_id, p.timestamp AS ts, p.quantity AS q,
               -- exact decimal sums: a float sum depends on the order DuckDB's threads add in, and the
               -- same input must give the same recaps (the manifest's output digest)
               CAST(p.quantity * p.price AS DECIMAL(38, 6)) AS amount, p.order_id
        FROM purchases_in p ANTI JOIN opt_out_in o ON p.user_id = o.user_id
        WHERE p.timestamp < {end}""",
    )
    # Orders of this year and the previous one; a line without an order id is an order of its own.
    run(
        "orders",
        f"""CREATE TEMP TABLE orders AS
        SELECT user_id, year(ts) AS y, min(ts) AS ts, sum(q) AS units, sum(amount) AS spend
        FROM src WHERE ts >= {prev_start} AND order_id IS NOT NULL GROUP BY user_id, year(ts), order_id
        UNION ALL
        SELECT user_id, year(ts) AS y, ts, q AS units, amount AS spend
        FROM src WHERE ts >= {prev_start} AND order_id IS NULL""",
    )
    run(
        "orders_year",
        f"""CREATE TEMP TABLE orders_year AS
        SELECT *, {part} AS part FROM orders WHERE y = {y}""",
    )
    run(
        "totals",
        f"""CREATE TEMP TABLE totals AS
        SELECT user_id, y, {part} AS part, sum(n) AS orders, sum(units)::BIGINT AS units,
               coalesce(sum(spend), 0) AS spend, count(*) AS days,
               sum(n) FILTER (WHERE isodow(d) >= 6) / sum(n) AS weekend_share
        FROM (SELECT user_id, y, CAST(ts AS DATE) AS d, count(*) AS n, sum(units) AS units, sum(spend) AS spend
              FROM orders GROUP BY user_id, y, CAST(ts AS DATE))
        GROUP BY user_id, y""",
    )
    # What each customer bought this year, per item (with catalog attributes); sensitive items left out.
    run(
        "user_item",
        f"""CREATE TEMP TABLE user_item AS
        SELECT u.*, {part} AS part, i.category, i.brand
        FROM (SELECT user_id, item_id, sum(units)::BIGINT AS units, sum(spend) AS spend,
                     count(*) FILTER (WHERE order_id IS NOT NULL)
                         + coalesce(sum(lines) FILTER (WHERE order_id IS NULL), 0) AS orders
              FROM (SELECT user_id, item_id, order_id, sum(q) AS units, sum(amount) AS spend, count(*) AS lines
                    FROM src WHERE ts >= {start} GROUP BY user_id, item_id, order_id)
              GROUP BY user_id, item_id) u
        LEFT JOIN items i USING (item_id)
        WHERE NOT coalesce(i.sensitive, FALSE)""",
    )
    # Categories and brands each customer bought before this year (for discoveries).
    run(
        "history",
        f"""CREATE TEMP TABLE history AS
        SELECT DISTINCT h.user_id, {part} AS part, i.category, i.brand
        FROM (SELECT DISTINCT user_id, item_id FROM src WHERE ts < {start}) h LEFT JOIN items i USING (item_id)""",
    )
    con.execute("DROP TABLE orders")  # both years' orders: only needed for the totals
    # Cohorts for comparisons, over every customer (the recap documents are built per partition).
    run(
        "user_category_all",
        """CREATE TEMP TABLE user_category_all AS
        SELECT user_id, any_value(part) AS part, category, sum(units) AS units, sum(spend) AS spend
        FROM user_item WHERE category IS NOT NULL GROUP BY user_id, category""",
    )
    run(
        "category_comparison",
        f"""CREATE TEMP TABLE category_comparison AS
        WITH category_places AS (
            SELECT category, units, place, buyers
            FROM (SELECT category, units,
                         sum(customers) OVER (PARTITION BY category ORDER BY units DESC) - customers + 1 AS place,
                         sum(customers) OVER (PARTITION BY category) AS buyers
                  FROM (SELECT category, units, count(*) AS customers FROM user_category_all GROUP BY category, units))
            WHERE buyers >= {options.min_cohort}
              AND ceil(100.0 * place / buyers) <= {CATEGORY_TOP_PERCENT_MAX})
        SELECT user_id,
               arg_min({{'category': c.category, 'top_percent': ceil(100.0 * p.place / p.buyers)::INTEGER,
                        'buyers': p.buyers}}, {{'share': p.place / p.buyers, 'u': -c.units, 'c': c.category}}) AS best
        FROM user_category_all c JOIN category_places p ON c.category = p.category AND c.units = p.units
        GROUP BY user_id""",
    )
    run(
        "orders_places",
        f"""CREATE TEMP TABLE orders_places AS
        SELECT orders, (100 * fewer // cohort)::INTEGER AS beaten, cohort
        FROM (SELECT orders, sum(customers) OVER (ORDER BY orders) - customers AS fewer,
                     sum(customers) OVER () AS cohort
              FROM (SELECT orders, count(*) AS customers FROM totals WHERE y = {y} GROUP BY orders))""",
    )
    # Opted-out customers who bought this year: a probe of the (small) opt-out list.
    with_recap, opted_out = con.execute(
        f"""SELECT (SELECT count(*) FROM totals WHERE y = {y}),
                   (SELECT count(DISTINCT p.user_id) FROM purchases_in p SEMI JOIN opt_out_in o ON p.user_id = o.user_id
                    WHERE p.timestamp >= {start} AND p.timestamp < {end})"""
    ).fetchall()[0]
    return {
        "customers_in_year": with_recap + opted_out,
        "opted_out_in_year": opted_out,
        "customers_with_recap": with_recap,
    }


def _stage_picks(
    con: duckdb.DuckDBPyConnection,
    *,
    recommend: Recommender | None,
    year: int,
    k: int,
    batch_size: int,
    progress: bool,
) -> None:
    """Ask the model for each customer's picks in batches; an empty table when there is no model."""
    schema = pa.schema(
        [(col.USER_ID, pa.string()), ("item_id", pa.string()), ("score", pa.float64()), ("rank", pa.int32())]
    )
    if recommend is None or k == 0:
        con.register("picks_in", schema.empty_table())
        return
    from tqdm import tqdm

    users = con.sql(f"SELECT user_id FROM totals WHERE y = {year} ORDER BY user_id")
    user_ids = users.to_arrow_table().column(0).to_pylist()
    parts: list[pa.Table] = []
    bar = tqdm(total=len(user_ids), desc="picks", unit="customer", leave=False, disable=not progress)
    for offset in range(0, len(user_ids), batch_size):
        batch = user_ids[offset : offset + batch_size]
        lists = recommend(batch)
        bar.update(len(batch))
        rows_user, rows_item, rows_score, rows_rank = [], [], [], []
        for user, picks in zip(batch, lists, strict=True):
            for rank, (item, score) in enumerate(picks[:k], start=1):
                rows_user.append(user)
                rows_item.append(str(item))
                rows_score.append(float(score))
                rows_rank.append(rank)
        parts.append(pa.table([rows_user, rows_item, rows_score, rows_rank], schema=schema))
    bar.close()
    con.register("picks_in", pa.concat_tables(parts) if parts else schema.empty_table())


def _bucket_list(aggregate: str, bucket: str, buckets: range) -> str:
    """SQL list of one aggregate per bucket, e.g. spend per month: [sum(x) FILTER (month = 1), ...]."""
    return "[" + ", ".join(f"coalesce({aggregate} FILTER (WHERE {bucket} = {b}), 0)" for b in buckets) + "]"


def _final_sql(options: RecapOptions, model_version: str | None, *, part: int) -> str:
    """One query: per-customer pieces joined into the recap document, as JSON text, for the
    customers of one partition (`part`; the comparisons' cohort tables are global).

    Top-N lists use `arg_min(value, key, n)` (an aggregate: no window sort over every line) with
    keys that sort best-first: (-items, -spend, name). Rankings against all customers come from
    small histograms (customers per order count, per category and item count), not global sorts.
    """
    y, n, min_cohort = options.year, options.top_n, options.min_cohort
    persona_name = "CASE " + " ".join(f"WHEN {r.condition} THEN {_sql_text(r.name)}" for r in PERSONA_RULES) + " END"
    persona_rule = "CASE " + " ".join(f"WHEN {r.condition} THEN {_sql_text(r.rule)}" for r in PERSONA_RULES) + " END"
    persona_reason = "CASE " + " ".join(f"WHEN {r.condition} THEN {r.reason}" for r in PERSONA_RULES) + " END"
    short_rule = _sql_text(SHORT_PERSONA.rule.format(min_orders=options.min_orders))
    version = "NULL" if model_version is None else _sql_text(model_version)
    month_names = "[" + ", ".join(_sql_text(m) for m in MONTHS) + "]"
    weekday_names = "[" + ", ".join(_sql_text(d) for d in WEEKDAYS) + "]"
    short = f"cur.orders < {options.min_orders}"
    return f"""
WITH
cur AS (SELECT * FROM totals WHERE y = {y} AND part = {part}),
prev AS (SELECT * FROM totals WHERE y = {y - 1} AND part = {part}),
item_lists AS (
    SELECT user_id, sum(units) AS units,
           arg_min({{'item_id': item_id, 'items': units, 'spend': round(coalesce(spend, 0), 2)::DOUBLE}},
                   {{'u': -units, 's': -round(coalesce(spend, 0), 2), 'i': item_id}}, {n}) AS top,
           arg_min({{'item_id': item_id, 'orders': orders, 'items': units}},
                   {{'o': -orders, 'u': -units, 'i': item_id}}) FILTER (WHERE orders >= 2) AS staple
    FROM user_item WHERE part = {part} GROUP BY user_id),
top_items AS (
    -- names and categories joined to the few listed items only, not to every item bought
    SELECT l.user_id, any_value(l.units) AS units, any_value(l.staple) AS staple,
           list({{'item_id': l.t.item_id, 'name': coalesce(i.name, l.t.item_id), 'category': i.category,
                 'items': l.t.items, 'spend': l.t.spend}} ORDER BY l.pos) AS top_items,
           sum(l.t.items) FILTER (WHERE l.pos <= 5) / any_value(l.units) AS top5_share
    FROM (SELECT user_id, units, staple, unnest(top) AS t, generate_subscripts(top, 1) AS pos FROM item_lists) l
    LEFT JOIN items i ON i.item_id = l.t.item_id
    GROUP BY l.user_id),
staple AS (
    SELECT t.user_id, {{'item_id': t.staple.item_id, 'name': coalesce(i.name, t.staple.item_id),
                        'orders': t.staple.orders, 'items': t.staple.items}} AS staple
    FROM item_lists t LEFT JOIN items i ON i.item_id = t.staple.item_id WHERE t.staple IS NOT NULL),
user_category AS (SELECT * FROM user_category_all WHERE part = {part}),
top_categories AS (
    SELECT user_id, count(*) AS categories,
           arg_min({{'category': category, 'items': units, 'spend': round(coalesce(spend, 0), 2)::DOUBLE}},
                   {{'u': -units, 's': -round(coalesce(spend, 0), 2), 'c': category}}, {n}) AS top_categories
    FROM user_category GROUP BY user_id),
user_brand AS (
    SELECT user_id, brand, sum(units) AS units, sum(spend) AS spend
    FROM user_item WHERE brand IS NOT NULL AND part = {part} GROUP BY user_id, brand),
top_brands AS (
    SELECT user_id,
           arg_min({{'brand': brand, 'items': units, 'spend': round(coalesce(spend, 0), 2)::DOUBLE}},
                   {{'u': -units, 's': -round(coalesce(spend, 0), 2), 'b': brand}}, {n}) AS top_brands
    FROM user_brand GROUP BY user_id),
history_part AS (SELECT * FROM history WHERE part = {part}),
returning_customers AS (SELECT DISTINCT user_id FROM history_part),
new_categories AS (
    SELECT c.user_id, count(*) AS n,
           arg_min(c.category, {{'u': -c.units, 's': -round(coalesce(c.spend, 0), 2), 'c': c.category}}, {n}) AS names
    FROM user_category c SEMI JOIN returning_customers r ON c.user_id = r.user_id
    ANTI JOIN history_part h ON c.user_id = h.user_id AND c.category = h.category
    GROUP BY c.user_id),
new_brands AS (
    SELECT b.user_id, count(*) AS n,
           arg_min(b.brand, {{'u': -b.units, 's': -round(coalesce(b.spend, 0), 2), 'b': b.brand}}, {n}) AS names
    FROM user_brand b SEMI JOIN returning_customers r ON b.user_id = r.user_id
    ANTI JOIN history_part h ON b.user_id = h.user_id AND b.brand = h.brand
    GROUP BY b.user_id),
rhythm_lists AS (
    SELECT user_id,
           {_bucket_list("sum(spend)", "month(ts)", range(1, 13))} AS spend_m,
           {_bucket_list("count(*)", "month(ts)", range(1, 13))} AS orders_m,
           {_bucket_list("count(*)", "isodow(ts)", range(1, 8))} AS orders_wd,
           list_sort(list_distinct(list((epoch(date_trunc('week', ts)) // 604800)::BIGINT))) AS weeks
    FROM orders_year WHERE part = {part} GROUP BY user_id),
rhythm AS (
    SELECT user_id, list_transform(spend_m, lambda s: round(s, 2)::DOUBLE) AS spend_by_month,
           orders_m AS orders_by_month,
           list_position(month_keys, list_max(month_keys)) AS busiest,
           list_position(orders_wd, list_max(orders_wd)) AS weekday, orders_wd,
           list_max(map_values(list_aggregate(islands, 'histogram'))) AS longest_weekly_streak
    FROM (SELECT *,
                 -- busiest month: most orders, then most spend (cents), then the earliest month
                 list_transform(orders_m, lambda o, i: o::BIGINT * 100000000000
                                + least(round(spend_m[i] * 100), 99999999999)::BIGINT) AS month_keys,
                 -- consecutive weeks share (week - position): the longest streak is the commonest value
                 list_transform(weeks, lambda w, i: w - i) AS islands
          FROM rhythm_lists)),
picks AS (
    SELECT p.user_id, list({{'item_id': p.item_id, 'name': coalesce(i.name, p.item_id), 'category': i.category,
                            'score': round(p.score, 6)}} ORDER BY p.rank) AS picks
    FROM picks_in p SEMI JOIN cur ON p.user_id = cur.user_id LEFT JOIN items i USING (item_id)
    -- the job already asks the model without them; this holds for any recommender passed in
    WHERE NOT coalesce(i.sensitive, FALSE)
    GROUP BY p.user_id),
features AS (
    SELECT cur.*, cur.units / cur.orders AS units_per_order, coalesce(tc.categories, 0) AS categories,
           coalesce(nc.n, 0) AS new_categories, coalesce(ti.top5_share, 0) AS top5_share
    FROM cur LEFT JOIN top_categories tc USING (user_id) LEFT JOIN new_categories nc USING (user_id)
    LEFT JOIN top_items ti USING (user_id)),
persona AS (
    SELECT user_id,
           CASE WHEN orders < {options.min_orders}
                THEN {{'name': {_sql_text(SHORT_PERSONA.name)}, 'rule': {short_rule}, 'reason': {SHORT_PERSONA.reason}}}
                ELSE {{'name': {persona_name}, 'rule': {persona_rule}, 'reason': {persona_reason}}} END AS persona
    FROM features),
doc AS (
    SELECT cur.user_id,
           CASE WHEN {short} THEN 'short' ELSE 'full' END AS kind,
           {{
             'schema_version': {SCHEMA_VERSION},
             'user_id': cur.user_id,
             'year': {y},
             'kind': CASE WHEN {short} THEN 'short' ELSE 'full' END,
             'new_customer': r.user_id IS NULL,
             'orders': cur.orders,
             'items': cur.units,
             'spend': round(cur.spend, 2)::DOUBLE,
             'days_shopped': cur.days,
             'previous_year': CASE WHEN prev.user_id IS NOT NULL THEN
                 {{'year': {y - 1}, 'orders': prev.orders, 'items': prev.units, 'spend': round(prev.spend, 2)::DOUBLE,
                   'days_shopped': prev.days}} END,
             'change_vs_previous_year': CASE WHEN prev.user_id IS NOT NULL THEN
                 {{'orders_pct': round(100.0 * (cur.orders - prev.orders) / prev.orders, 1),
                   'items_pct': round(100.0 * (cur.units - prev.units) / prev.units, 1),
                   'spend_pct': CASE WHEN prev.spend > 0 THEN round(100.0 * (cur.spend - prev.spend) / prev.spend, 1)
                                END}} END,
             'top_categories': coalesce(tc.top_categories, []),
             'top_items': coalesce(ti.top_items, []),
             'top_brands': coalesce(tb.top_brands, []),
             'staple': st.staple,
             'discoveries': {{'categories': coalesce(nc.names, []), 'categories_count': coalesce(nc.n, 0),
                              'brands': coalesce(nb.names, []), 'brands_count': coalesce(nb.n, 0)}},
             'busiest_month': {{'month': rh.busiest, 'name': {month_names}[rh.busiest],
                                'orders': rh.orders_by_month[rh.busiest], 'spend': rh.spend_by_month[rh.busiest]}},
             'favourite_weekday': {{'weekday': rh.weekday, 'name': {weekday_names}[rh.weekday],
                                    'orders': rh.orders_wd[rh.weekday]}},
             'longest_weekly_streak': rh.longest_weekly_streak,
             'spend_by_month': rh.spend_by_month,
             'orders_by_month': rh.orders_by_month,
             'comparisons': CASE WHEN {short} THEN [] ELSE list_concat(
                 CASE WHEN op.cohort >= {min_cohort} AND op.beaten >= {ORDERS_PERCENTILE_MIN} THEN
                     [{{'kind': 'orders', 'category': NULL::VARCHAR, 'percent': op.beaten, 'cohort_size': op.cohort,
                       'text': format('You shopped more often than {{}}% of our customers', op.beaten)}}]
                     ELSE [] END,
                 CASE WHEN cc.user_id IS NOT NULL THEN
                     [{{'kind': 'category_top', 'category': cc.best.category, 'percent': cc.best.top_percent,
                       'cohort_size': cc.best.buyers,
                       'text': format('You are in the top {{}}% of {{}} buyers', cc.best.top_percent,
                                      cc.best.category)}}]
                     ELSE [] END) END,
             'persona': pe.persona,
             'picks': coalesce(pk.picks, []),
             'model_version': {version}
           }} AS recap
    FROM cur
    LEFT JOIN prev USING (user_id)
    LEFT JOIN returning_customers r USING (user_id)
    LEFT JOIN top_categories tc USING (user_id)
    LEFT JOIN top_items ti USING (user_id)
    LEFT JOIN staple st USING (user_id)
    LEFT JOIN top_brands tb USING (user_id)
    LEFT JOIN new_categories nc USING (user_id)
    LEFT JOIN new_brands nb USING (user_id)
    LEFT JOIN rhythm rh USING (user_id)
    LEFT JOIN orders_places op ON op.orders = cur.orders
    LEFT JOIN category_comparison cc USING (user_id)
    LEFT JOIN persona pe USING (user_id)
    LEFT JOIN picks pk USING (user_id))
SELECT user_id, kind, to_json(recap) AS recap_json FROM doc
"""


# --- emails -----------------------------------------------------------------------------------

CHART_HEIGHT = 120  # pixels of the tallest bar
CHART_COLOUR, CHART_PEAK_COLOUR = "#3aa76d", "#f29e4c"
TEXT_CHART_WIDTH = 30  # characters of the longest bar in the text email


@cache
def _environment() -> jinja2.Environment:
    """The template environment, built on first use (importing this module reads no files)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = lambda value: f"{int(value or 0):,}"
    env.filters["count"] = lambda value, noun: f"{int(value or 0):,} {noun}{'' if value == 1 else 's'}"
    env.filters["pct"] = lambda value: "±0%" if not value else f"{value:+.0f}%"
    env.filters["money"] = jinja2.pass_context(lambda ctx, value: f"{ctx['currency']}{float(value or 0):,.2f}")
    return env


def _chart(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Bars of spend by month: pixel height for HTML, characters for text; the peak stands out."""
    spend = [float(x or 0) for x in record.get("spend_by_month") or [0.0] * 12]
    top = max(spend) or 1.0
    return [
        {
            "month": MONTHS[m],
            "spend": value,
            "height": max(2, round(CHART_HEIGHT * value / top)) if value > 0 else 0,
            "chars": max(1, round(TEXT_CHART_WIDTH * value / top)) if value > 0 else 0,
            "colour": CHART_PEAK_COLOUR if value == top and value > 0 else CHART_COLOUR,
        }
        for m, value in enumerate(spend)
    ]


def _render(template: str, record: dict[str, Any], *, store: str, currency: str, unsubscribe_url: str | None) -> str:
    return (
        _environment()
        .get_template(template)
        .render(
            r=record,
            chart=_chart(record),
            chart_height=CHART_HEIGHT,
            store=store,
            currency=currency,
            unsubscribe_url=unsubscribe_url,
        )
    )


def render_recap_html(
    record: dict[str, Any], *, store: str = "us", currency: str = "£", unsubscribe_url: str | None = None
) -> str:
    """The recap as an email-safe HTML page (inline CSS, table layout, no scripts or images)."""
    return _render("recap_email.html", record, store=store, currency=currency, unsubscribe_url=unsubscribe_url)


def render_recap_text(
    record: dict[str, Any], *, store: str = "us", currency: str = "£", unsubscribe_url: str | None = None
) -> str:
    """The plain-text alternative of `render_recap_html`."""
    return _render("recap_email.txt", record, store=store, currency=currency, unsubscribe_url=unsubscribe_url)


_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


def email_file_stem(user_id: str) -> str:
    """A file name for a customer's email that cannot escape the directory: the id itself when
    it is plain, else the id percent-encoded plus a short hash (so distinct ids never collide)."""
    if _SAFE_NAME.fullmatch(user_id):
        return user_id
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:12]
    return f"{quote(user_id, safe='')[:100].replace('.', '%2E')}~{digest}"


def write_emails(
    records: Iterable[dict[str, Any]],
    out_dir: Path,
    *,
    store: str = "us",
    currency: str = "£",
    workers: int = 1,
    progress: bool = False,
    total: int | None = None,
) -> int:
    """Write `<customer>.html` and `<customer>.txt` per recap; returns how many customers.
    With `workers` > 1, batches of customers are rendered in that many processes."""
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    batches = _batched(records, EMAIL_BATCH)
    bar = tqdm(desc="emails", unit="customer", total=total, disable=not progress)
    written = 0
    try:
        if workers <= 1:
            for batch in batches:
                written += _write_email_batch(batch, out_dir, store, currency)
                bar.update(len(batch))
            return written
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = set()
            for batch in batches:
                pending.add(pool.submit(_write_email_batch, batch, out_dir, store, currency))
                if len(pending) >= 2 * workers:  # bounded: never hold every recap in flight
                    written += _drain(pending, bar, wait_all=False)
            written += _drain(pending, bar, wait_all=True)
        return written
    finally:
        bar.close()


EMAIL_BATCH = 1000


def _batched(records: Iterable[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _drain(pending: set[Any], bar: Any, *, wait_all: bool) -> int:
    from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, wait

    done, _ = wait(pending, return_when=ALL_COMPLETED if wait_all else FIRST_COMPLETED)
    count = 0
    for future in done:
        pending.discard(future)
        n = future.result()
        bar.update(n)
        count += n
    return count


def _write_email_batch(batch: list[dict[str, Any]], out_dir: Path, store: str, currency: str) -> int:
    for record in batch:
        stem = email_file_stem(record["user_id"])
        (out_dir / f"{stem}.html").write_text(render_recap_html(record, store=store, currency=currency))
        (out_dir / f"{stem}.txt").write_text(render_recap_text(record, store=store, currency=currency))
    return len(batch)


# --- the batch job (`reco recaps build`) ------------------------------------------------------


def read_opt_out(path: Path) -> set[str]:
    """Customer ids from an opt-out file: one per line; blank lines, `#` comments and a
    `user_id` header are ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidOptOut(f"The opt-out file {path} cannot be read ({exc.__class__.__name__}: {exc}).") from None
    ids = {line.split("#", 1)[0].strip() for line in lines}
    return {i for i in ids if i and i != col.USER_ID}


def file_digest(path: Path) -> str:
    """sha256 of a file (or of a directory's files in name order), as `sha256:<hex>`."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def model_recommender(
    model_uri: str, *, settings: Settings | None, k: int, exclude_items: Sequence[str] = ()
) -> tuple[Recommender, str]:
    """(recommend(user_ids) in the discover context, model version) from the registry's bundle."""
    from training.registry import load_bundle  # the trainer's module; imported only when picks are wanted

    bundle = load_bundle(model_uri, settings=settings)
    excluded = tuple(exclude_items)

    def recommend(user_ids: list[str]) -> list[list[tuple[str, float]]]:
        return bundle.recommend_batch(user_ids, k=k, context=PICKS_CONTEXT, exclude_items=excluded)

    return recommend, str(bundle.version)


def sensitive_item_ids(catalog: pa.Table | None, categories: Sequence[str]) -> list[str]:
    """Items of the sensitive categories: never offered as picks."""
    if catalog is None or col.CATEGORY not in catalog.column_names or not categories:
        return []

    wanted = pa.array(sorted({c.strip().lower() for c in categories}), pa.string())
    mask = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(catalog.column(col.CATEGORY))), value_set=wanted)
    return catalog.filter(pc.fill_null(mask, False)).column(col.ITEM_ID).to_pylist()


def write_jsonl(recaps: pa.Table, path: Path) -> str:
    """Write one recap per line (atomically: a temporary file renamed); returns its digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    digest = hashlib.sha256()
    with partial.open("w", encoding="utf-8") as handle:
        for chunk in recaps.column("recap_json").chunks:
            if len(chunk):
                text = "\n".join(chunk.to_pylist()) + "\n"
                handle.write(text)
                digest.update(text.encode())
    partial.replace(path)
    return f"sha256:{digest.hexdigest()}"


def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reco")
    except PackageNotFoundError:
        return None


def manifest_path(out: Path) -> Path:
    """`recaps.jsonl` → `recaps.manifest.json`, next to it."""
    return out.with_name((out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name) + ".manifest.json")


def publish_recaps(result: RecapResult, *, settings: Settings, materialize: bool = True) -> dict[str, Any]:
    """Write the recaps to the offline source of feature view `customer_year_recap` (other years'
    rows are kept) and materialize them to the online store; returns where and how many."""
    import pyarrow.parquet as pq

    year = result.options.year
    path = settings.feature_data_dir / f"{FEATURE_VIEW}.parquet"
    n = result.recaps.num_rows
    schema = pa.schema(
        [
            (col.USER_ID, pa.string()),
            ("year", pa.int64()),
            ("recap_json", pa.string()),
            ("schema_version", pa.int64()),
            ("model_version", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ]
    )
    # Event time = build time: online stores keep the newest row, so a rebuild replaces old values.
    now = datetime.now(UTC)
    fresh = pa.table(
        [
            result.recaps.column(col.USER_ID),
            pa.array([year] * n, pa.int64()),
            result.recaps.column("recap_json"),
            pa.array([SCHEMA_VERSION] * n, pa.int64()),
            pa.array([result.model_version] * n, pa.string()),
            pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        ],
        schema=schema,
    )
    if path.exists():
        kept = pq.read_table(path).cast(schema)
        fresh = pa.concat_tables([kept.filter(pc.not_equal(kept.column("year"), year)), fresh])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    pq.write_table(fresh, partial)
    partial.replace(path)
    published: dict[str, Any] = {"path": str(path), "rows": fresh.num_rows, "online_store": None, "online_rows": 0}
    if materialize:
        from training.features import materialize as materialize_views  # the feature-repo teammate's module

        outcome = materialize_views(settings=settings, views=[FEATURE_VIEW])
        published.update(online_store=outcome.online_store, online_rows=outcome.rows_written)
    return published


@dataclass
class RecapJob:
    """Everything `reco recaps build` needs; `run()` does it and returns the manifest."""

    year: int
    purchases: Path
    out: Path
    catalog: Path | None = None
    html_dir: Path | None = None
    opt_out: Path | None = None
    sensitive_categories: tuple[str, ...] = DEFAULT_SENSITIVE_CATEGORIES
    min_cohort: int = DEFAULT_MIN_COHORT
    min_orders: int = DEFAULT_MIN_ORDERS
    model_uri: str | None = None  # None: the settings' model (the champion) if one is registered
    picks: bool = True
    picks_k: int = PICKS_K
    publish: bool = False
    store_name: str = "us"
    currency: str = "£"
    email_workers: int = 1
    progress: bool = True
    settings: Settings | None = None
    log: Callable[[str], None] = print

    def run(self) -> dict[str, Any]:
        from training.data import load_catalog, load_purchases
        from training.settings import load_settings

        started = time.perf_counter()
        settings = self.settings or load_settings()
        options = RecapOptions(
            year=self.year,
            sensitive_categories=tuple(self.sensitive_categories),
            min_cohort=self.min_cohort,
            min_orders=self.min_orders,
            picks_k=self.picks_k,
        )
        timings: dict[str, float] = {}
        mark = time.perf_counter()
        purchases, purchase_report = load_purchases(self.purchases)
        if purchase_report.rows_rejected:
            self.log(f"purchases: {purchase_report.rows_rejected:,} rows rejected (counted in the manifest)")
        catalog, catalog_report = load_catalog(self.catalog) if self.catalog else (None, None)
        opted_out = read_opt_out(self.opt_out) if self.opt_out else set()
        timings["load_s"] = time.perf_counter() - mark

        recommend, model_version, model_uri, picks_note = self._recommender(settings, catalog, options)
        result = build_recaps(
            purchases=purchases,
            catalog=catalog,
            options=options,
            opt_out=opted_out,
            recommend=recommend,
            model_version=model_version,
            progress=self.progress,
        )
        del purchases
        timings.update({k: v for k, v in result.timings.items() if k in ("aggregate_s", "picks_s", "assemble_s")})

        mark = time.perf_counter()
        output_digest = write_jsonl(result.recaps, self.out)
        timings["write_jsonl_s"] = time.perf_counter() - mark
        emails = 0
        if self.html_dir is not None:
            mark = time.perf_counter()
            emails = write_emails(
                result.records(),
                self.html_dir,
                store=self.store_name,
                currency=self.currency,
                workers=self.email_workers,
                progress=self.progress,
                total=result.recaps.num_rows,
            )
            timings["emails_s"] = time.perf_counter() - mark
        published = None
        if self.publish:
            mark = time.perf_counter()
            published = publish_recaps(result, settings=settings)
            timings["publish_s"] = time.perf_counter() - mark
        timings["total_s"] = time.perf_counter() - started

        manifest = {
            "schema_version": SCHEMA_VERSION,
            "year": self.year,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "inputs": {
                "purchases": {
                    "path": str(self.purchases),
                    "digest": file_digest(self.purchases),
                    **{k: v for k, v in purchase_report.to_dict(max_rows=0).items() if k not in ("rejected", "source")},
                },
                "catalog": None
                if catalog_report is None or self.catalog is None
                else {
                    "path": str(self.catalog),
                    "digest": file_digest(self.catalog),
                    **{k: v for k, v in catalog_report.to_dict(max_rows=0).items() if k not in ("rejected", "source")},
                },
                "opt_out": None
                if self.opt_out is None
                else {"path": str(self.opt_out), "digest": file_digest(self.opt_out), "customers": len(opted_out)},
            },
            "options": asdict(options),
            "code": {"reco": _package_version(), "templates": file_digest(Path(__file__).with_name("templates"))},
            "model": {"uri": model_uri, "version": model_version, "picks": picks_note},
            "counts": {**result.counts, "emails": emails},
            "output": {"path": str(self.out), "digest": output_digest, "lines": result.recaps.num_rows},
            "emails_dir": None if self.html_dir is None else str(self.html_dir),
            # With the recap line and the templates (digest above), all an email's rendering depends on.
            "rendering": {"store": self.store_name, "currency": self.currency, "unsubscribe_url": None},
            "published": published,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }
        manifest_path(self.out).write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    def _recommender(
        self, settings: Settings, catalog: pa.Table | None, options: RecapOptions
    ) -> tuple[Recommender | None, str | None, str | None, str]:
        """The picks model. An explicit --model-uri must load; the default (the champion) may be
        missing, in which case recaps carry no picks and model_version null."""
        if not self.picks or options.picks_k == 0:
            return None, None, None, "disabled"
        uri = self.model_uri or settings.model_uri
        excluded = sensitive_item_ids(catalog, options.sensitive_categories)
        from training.registry import ModelNotFound

        try:
            recommend, version = model_recommender(uri, settings=settings, k=options.picks_k, exclude_items=excluded)
        except ModelNotFound as exc:
            if self.model_uri is not None:
                raise
            # No model registered yet (e.g. a new shop): recaps go out without picks, and say so.
            self.log(f"no picks: {exc}")
            return None, None, uri, f"skipped: {exc}"
        return recommend, version, uri, "ok"
