"""Benchmark of `reco recaps build`: a store of 1M customers → JSONL, against one DuckDB
GROUP BY that computes just the per-customer totals over the same file; HTML emails/s apart.

    .venv/bin/python experiments/bench_recaps.py --store /tmp/store1m
    # the store: .venv/bin/reco data generate --out /tmp/store1m --users 1000000 --items 50000 --years 2
    .venv/bin/python experiments/bench_recaps.py --customers 20000   # generates a store of that size first

Prints one JSON summary (also written to OUT/bench.json). Goal: JSONL in ≤ 3 minutes on 2 cores.
The load (reading + validating the purchase file with `training.data.load_purchases`) is part of
the job and reported apart. Picks are off by default (they need a model trained on this store).
After the timings, every customer's orders, items and spend in the JSONL are checked against the
GROUP BY's (outside the timed part).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from itertools import islice
from pathlib import Path

from training.data.duck import connect
from training.recaps.brand import Brand, load_brand
from training.recaps.job import RecapJob
from training.recaps.render import render_recap
from training.settings import load_settings

# The shop of the benchmark: every link and picture of a real send (tokens signed with a fixed key).
BRAND_FILE = Path(__file__).resolve().parents[1] / "docs" / "brand.example.toml"
BENCH_KEY = "benchmark-signing-key-not-secret"


def totals_sql(purchases: Path, year: int) -> str:
    """The recap totals (docs/recaps.md) of every customer of the year, straight from the file, in one GROUP BY."""
    return f"""
        SELECT user_id, count(DISTINCT order_id) + count(*) FILTER (WHERE order_id IS NULL) AS orders,
               sum(coalesce(quantity, 1)) AS items, coalesce(sum(coalesce(quantity, 1) * price), 0) AS spend
        FROM read_parquet('{purchases}')
        WHERE timestamp >= TIMESTAMPTZ '{year}-01-01 00:00:00+00'
          AND timestamp < TIMESTAMPTZ '{year + 1}-01-01 00:00:00+00'
        GROUP BY user_id"""


def baseline_seconds(purchases: Path, year: int) -> tuple[float, int]:
    """One GROUP BY: orders, items and spend per customer of the year, straight from the file."""
    started = time.perf_counter()
    con = connect()
    try:
        rows = con.execute(f"SELECT count(*) FROM ({totals_sql(purchases, year)})").fetchall()[0][0]
    finally:
        con.close()
    return time.perf_counter() - started, int(rows)


def check_totals(purchases: Path, jsonl: Path, year: int) -> dict[str, int]:
    """Customers whose JSONL orders/items/spend differ from the GROUP BY's (spend is rounded to cents)."""
    con = connect()
    try:
        checked, wrong = con.execute(
            f"""WITH truth AS ({totals_sql(purchases, year)}),
                job AS (SELECT * FROM read_json('{jsonl}', format = 'newline_delimited',
                        columns = {{user_id: 'VARCHAR', orders: 'BIGINT', items: 'BIGINT', spend: 'DOUBLE'}}))
            SELECT count(*), count(*) FILTER (WHERE t.user_id IS NULL OR j.user_id IS NULL OR t.orders <> j.orders
                                                OR t.items <> j.items OR abs(t.spend - j.spend) > 0.0051)
            FROM truth t FULL JOIN job j USING (user_id)"""
        ).fetchall()[0]
    finally:
        con.close()
    return {"customers_checked": int(checked), "customers_wrong": int(wrong)}


def email_rate(jsonl: Path, sample: int, brand: Brand) -> dict[str, float]:
    """HTML + text emails rendered per second (one process), over the first `sample` recaps."""
    with jsonl.open() as handle:
        records = [json.loads(line) for line in islice(handle, sample)]
    started = time.perf_counter()
    size = 0
    for record in records:
        email = render_recap(record, brand=brand)
        size += len(email.html) + len(email.text)
    seconds = time.perf_counter() - started
    return {"emails": len(records), "seconds": round(seconds, 2), "emails_per_s": round(len(records) / seconds, 1),
            "mean_bytes": round(size / max(1, len(records)))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="A store from `reco data generate`.")
    parser.add_argument(
        "--customers",
        type=int,
        default=None,
        help="Generate a store of this many customers (2 years) into --store when it has none yet.",
    )
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-recaps"))
    parser.add_argument("--emails", type=int, default=5000, help="Recaps to render for the emails/s figure.")
    parser.add_argument("--picks", action="store_true", help="Ask the champion model for picks (RECO_HOME's).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # the job's stage timings
    store = args.store or Path(f"/tmp/reco-bench-recaps-store-{args.customers}" if args.customers else "/tmp/store1m")
    purchases, catalog = store / "purchases.parquet", store / "catalog.parquet"
    if not purchases.exists():
        if args.customers is None:
            parser.error(f"{purchases} does not exist: generate a store or pass --customers N")
        from training.data.synthetic import generate_store

        items = min(50_000, max(1_000, args.customers // 20))
        made = generate_store(store, users=args.customers, items=items, years=2, seed=42, progress=True)
        print(made.format_text(), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()

    base_s, customers = baseline_seconds(purchases, args.year)
    print(f"baseline GROUP BY: {customers:,} customers in {base_s:.1f} s", flush=True)

    settings = load_settings(recap_signing_key=BENCH_KEY)
    started = time.perf_counter()
    manifest = RecapJob(
        year=args.year,
        purchases=purchases,
        catalog=catalog if catalog.exists() else None,
        out=args.out / "recaps.jsonl",
        picks=args.picks,
        brand_file=BRAND_FILE,
        settings=settings,
        progress=False,
    ).run()
    job_s = time.perf_counter() - started
    timings = manifest["timings_s"]
    print(f"recaps: {manifest['counts']['recaps']:,} in {job_s:.1f} s {timings}", flush=True)

    emails = email_rate(args.out / "recaps.jsonl", args.emails, load_brand(settings, BRAND_FILE))
    totals = check_totals(purchases, args.out / "recaps.jsonl", args.year)
    print(f"totals vs GROUP BY: {totals}", flush=True)
    summary = {
        "store": str(store),
        "purchase_rows": manifest["inputs"]["purchases"]["rows_read"],
        "customers": customers,
        "recaps": manifest["counts"]["recaps"],
        "baseline_group_by_s": round(base_s, 1),
        "job_to_jsonl_s": round(job_s, 1),
        "job_without_load_s": round(job_s - timings["load_s"], 1),
        "ratio_job_to_group_by": round(job_s / base_s, 1),
        "ratio_without_load_to_group_by": round((job_s - timings["load_s"]) / base_s, 1),
        "job_timings_s": timings,
        "goal_met_3_min": job_s <= 180,
        "totals_vs_group_by": totals,
        "emails": emails,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "load_average_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "cpus": os.cpu_count(),
    }
    (args.out / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
