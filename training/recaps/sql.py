"""The recap's SQL: a few set-based DuckDB steps over the whole purchase table.

No Python loop per customer: per-customer totals, top lists, staple, discoveries, rhythm, cohort
comparisons and the persona come out of a few aggregate tables (`stage_aggregates`) and one final
query (`final_sql`) that returns a JSON document per customer. Python only loops per customer where
it must: asking the model for picks (`stage_picks`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import duckdb
import pyarrow as pa

from training.core import columns as col
from training.data.duck import sql_text
from training.recaps.rules import (
    CATEGORY_TOP_PERCENT_MAX,
    MONTHS,
    ORDERS_PERCENTILE_MIN,
    PERSONA_RULES,
    SCHEMA_VERSION,
    SHORT_PERSONA,
    WEEKDAYS,
    RecapOptions,
)

log = logging.getLogger(__name__)
Recommender = Callable[[list[str]], list[list[tuple[str, float]]]]


def register_inputs(
    con: duckdb.DuckDBPyConnection,
    *,
    purchases: pa.Table,
    catalog: pa.Table | None,
    opt_out: Iterable[str],
    options: RecapOptions,
) -> None:
    con.register("purchases_in", purchases.select(list(col.PURCHASE_COLUMNS)))
    con.register("opt_out_in", pa.table({col.USER_ID: pa.array(sorted(set(opt_out)), pa.string())}))
    sensitive = ", ".join(sql_text(c.strip().lower()) for c in options.sensitive_categories if c.strip()) or "NULL"
    if catalog is not None:
        con.register("catalog_in", catalog)
        names = set(catalog.column_names)
        pick = {n: (n if n in names else "NULL") for n in (col.NAME, col.CATEGORY, col.BRAND, col.IN_STOCK)}
        con.execute(
            f"""CREATE TEMP TABLE items AS
            SELECT item_id, CAST({pick[col.NAME]} AS VARCHAR) AS name,
                   CAST({pick[col.CATEGORY]} AS VARCHAR) AS category,
                   CAST({pick[col.BRAND]} AS VARCHAR) AS brand,
                   coalesce(lower(trim(CAST({pick[col.CATEGORY]} AS VARCHAR))) IN ({sensitive}), FALSE) AS sensitive,
                   coalesce(CAST({pick[col.IN_STOCK]} AS BOOLEAN), TRUE) AS in_stock
            FROM catalog_in"""
        )
    else:
        con.execute(
            "CREATE TEMP TABLE items "
            "(item_id VARCHAR, name VARCHAR, category VARCHAR, brand VARCHAR, sensitive BOOLEAN, in_stock BOOLEAN)"
        )


AGGREGATE_STEPS = 9  # the `run(...)` calls of stage_aggregates, for the progress bar


def stage_aggregates(
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


def stage_picks(
    con: duckdb.DuckDBPyConnection,
    *,
    recommend: Recommender | None,
    year: int,
    k: int,
    batch_size: int,
    progress: bool,
) -> None:
    """Ask the model for each customer's picks in batches (keeping at most `k` per customer, best
    first: `final_sql` keeps the first `options.picks_k` of them that are allowed); an empty table
    when there is no model."""
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


def final_sql(options: RecapOptions, model_version: str | None, *, part: int) -> str:
    """One query: per-customer pieces joined into the recap document, as JSON text, for the
    customers of one partition (`part`; the comparisons' cohort tables are global).

    Top-N lists use `arg_min(value, key, n)` (an aggregate: no window sort over every line) with
    keys that sort best-first: (-items, -spend, name). Rankings against all customers come from
    small histograms (customers per order count, per category and item count), not global sorts.
    """
    y, n, min_cohort = options.year, options.top_n, options.min_cohort
    persona_name = "CASE " + " ".join(f"WHEN {r.condition} THEN {sql_text(r.name)}" for r in PERSONA_RULES) + " END"
    persona_rule = "CASE " + " ".join(f"WHEN {r.condition} THEN {sql_text(r.rule)}" for r in PERSONA_RULES) + " END"
    persona_reason = "CASE " + " ".join(f"WHEN {r.condition} THEN {r.reason}" for r in PERSONA_RULES) + " END"
    short_rule = sql_text(SHORT_PERSONA.rule.format(min_orders=options.min_orders))
    version = "NULL" if model_version is None else sql_text(model_version)
    month_names = "[" + ", ".join(sql_text(m) for m in MONTHS) + "]"
    weekday_names = "[" + ", ".join(sql_text(d) for d in WEEKDAYS) + "]"
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
    SELECT p.user_id,
           list_slice(list({{'item_id': p.item_id, 'name': coalesce(i.name, p.item_id), 'category': i.category,
                             'score': round(p.score, 6)}} ORDER BY p.rank), 1, {options.picks_k}) AS picks
    FROM picks_in p SEMI JOIN cur ON p.user_id = cur.user_id
    -- never an item the customer bought this year (whatever the model saw), a sold-out or a
    -- sensitive one: the job asks the model without them, and this holds for any recommender
    ANTI JOIN user_item b ON b.part = {part} AND b.user_id = p.user_id AND b.item_id = p.item_id
    LEFT JOIN items i ON i.item_id = p.item_id
    WHERE NOT coalesce(i.sensitive, FALSE) AND coalesce(i.in_stock, TRUE)
    GROUP BY p.user_id),
features AS (
    SELECT cur.*, cur.units / cur.orders AS units_per_order, coalesce(tc.categories, 0) AS categories,
           coalesce(nc.n, 0) AS new_categories, coalesce(ti.top5_share, 0) AS top5_share
    FROM cur LEFT JOIN top_categories tc USING (user_id) LEFT JOIN new_categories nc USING (user_id)
    LEFT JOIN top_items ti USING (user_id)),
persona AS (
    SELECT user_id,
           CASE WHEN orders < {options.min_orders}
                THEN {{'name': {sql_text(SHORT_PERSONA.name)}, 'rule': {short_rule}, 'reason': {SHORT_PERSONA.reason}}}
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
