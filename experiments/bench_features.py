"""Materialization throughput (Feast online store vs raw redis-py) and online read latency.

    REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python experiments/bench_features.py --customers 1000000

Makes a `customer_profile` source with N customers (same schema `reco features build` writes,
values drawn at random) in a temporary RECO_HOME, then in one process:
  1. writes it to Redis through Feast's online store interface (`training.features_online.write_view`,
     i.e. `online_write_batch` of the configured RedisOnlineStore), full and incremental-style;
  2. writes the same rows with a raw redis-py pipeline (one HSET per customer, 10k per pipeline);
  3. reads customers back through `get_online_features(features=recommend_v1)` and checks values;
  4. measures one-customer read latency through the feature service (p50/p99).
The Redis DB is flushed before and after: give it a dedicated one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import redis

CATEGORIES = [f"cat{i:02d}" for i in range(40)]


def make_profiles(n: int, seed: int = 1) -> pa.Table:
    """N customer_profile rows with realistic shapes (ids C0000001.., counts, spend, timestamps)."""
    rng = np.random.default_rng(seed)
    orders = rng.integers(1, 200, n)
    items = orders * rng.integers(1, 12, n)
    spend = np.round(items * rng.uniform(0.5, 9.0, n), 4)
    first = rng.integers(1_640_995_200, 1_735_000_000, n)
    last = first + rng.integers(0, 30_000_000, n)
    cats = [list(rng.choice(CATEGORIES, size=3, replace=False)) for _ in range(n)]
    rebuy = np.round(rng.uniform(1, 60, n), 4)
    event = np.full(n, np.datetime64("2025-12-31T21:40:55", "us"))
    return pa.table(
        {
            "user_id": pa.array([f"C{i:07d}" for i in range(n)]),
            "orders": pa.array(orders, pa.int64()),
            "items": pa.array(items, pa.int64()),
            "spend": pa.array(spend),
            "distinct_items": pa.array(np.minimum(items, rng.integers(1, 300, n)), pa.int64()),
            "first_purchase": pa.array(first * 1_000_000, pa.timestamp("us", tz="UTC")),
            "last_purchase": pa.array(last * 1_000_000, pa.timestamp("us", tz="UTC")),
            "avg_basket_items": pa.array(np.round(items / orders, 4)),
            "avg_basket_spend": pa.array(np.round(spend / orders, 4)),
            "rebuy_interval_days": pa.array(np.where(orders > 1, rebuy, np.nan), from_pandas=True),
            "top_categories": pa.array(cats, pa.list_(pa.string())),
            "event_timestamp": pa.array(event, pa.timestamp("us", tz="UTC")),
        }
    )


def make_recent(user_ids: list[str], seed: int = 2) -> pa.Table:
    """customer_recent_items rows: 20 recent items with times, 10 buy-again items with counts."""
    rng = np.random.default_rng(seed)
    n = len(user_ids)
    items = [[f"P{j:05d}" for j in rng.integers(0, 20_000, 20)] for _ in range(n)]
    times = [sorted(rng.integers(1_700_000_000, 1_767_000_000, 20).tolist(), reverse=True) for _ in range(n)]
    return pa.table(
        {
            "user_id": pa.array(user_ids),
            "recent_items": pa.array(items, pa.list_(pa.string())),
            "recent_item_times": pa.array(times, pa.list_(pa.int64())),
            "buy_again_items": pa.array([r[:10] for r in items], pa.list_(pa.string())),
            "buy_again_orders": pa.array(
                [sorted(rng.integers(2, 40, 10).tolist(), reverse=True) for _ in range(n)], pa.list_(pa.int64())
            ),
            "event_timestamp": pa.array([datetime(2025, 12, 31, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def raw_pipeline_write(client: redis.Redis, table: pa.Table, batch_rows: int = 10_000) -> float:
    """The same rows as plain hashes: HSET raw:<user_id> field value..., pipelined. Returns seconds."""
    started = time.perf_counter()
    names = [n for n in table.column_names if n != "user_id"]
    for batch in table.to_batches(max_chunksize=batch_rows):
        cols = {n: batch.column(n) for n in names}
        values = []
        for n in names:
            c = cols[n]
            if pa.types.is_timestamp(c.type):
                c = c.cast(pa.timestamp("s", tz="UTC")).cast(pa.int64())
            py = c.to_pylist()
            if pa.types.is_list(c.type):
                py = [None if v is None else ",".join(v) for v in py]
            values.append(py)
        with client.pipeline(transaction=False) as pipe:
            for user, *row in zip(batch.column("user_id").to_pylist(), *values, strict=True):
                pipe.hset(f"raw:{user}", mapping={n: v for n, v in zip(names, row, strict=True) if v is not None})
            pipe.execute()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=2_000, help="single-customer reads for the latency figure")
    parser.add_argument(
        "--feast-default-rows", type=int, default=50_000, help="rows for Feast's own materialize (0: skip)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
    home = Path(tempfile.mkdtemp(prefix="bench_features_"))
    os.environ["RECO_HOME"] = str(home)
    os.environ["REDIS_URL"] = redis_url

    from training.features.materialize import write_view
    from training.features.store import BULK_TIMEOUT_S, apply_definitions, open_store, source_path
    from training.settings import load_settings

    settings = load_settings()
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    t = time.perf_counter()
    table = make_profiles(args.customers)
    settings.feature_data_dir.mkdir(parents=True)
    path = Path(source_path("customer_profile", settings))
    pq.write_table(table, path)
    print(f"{args.customers:,} customer_profile rows made in {time.perf_counter() - t:.1f} s")
    figures: dict[str, object] = {"customers": args.customers, "machine": f"{platform.node()} {os.cpu_count()} cpu"}
    try:
        full_store = open_store(settings, socket_timeout=BULK_TIMEOUT_S, skip_dedup=True)
        apply_definitions(full_store, settings)
        fv = full_store.get_feature_view("customer_profile")

        # The machine is shared: the raw write runs before and after the Feast writes, ratios use the mean.
        raw_before = table.num_rows / raw_pipeline_write(client, table)
        print(f"raw redis-py pipeline HSET (1 process), before: {raw_before:,.0f} rows/s")

        rates = {}
        for workers in (1, 2):
            full = write_view(full_store, fv, path, full=True, workers=workers)
            rates[workers] = full.rows_per_second
            figures[f"feast_full_{workers}proc_rows_per_s"] = round(full.rows_per_second)
            print(
                f"feast online_write_batch (full, {workers} process): {full.rows_written:,} rows in"
                f" {full.seconds:.1f} s = {full.rows_per_second:,.0f} rows/s"
            )
        raw_after = table.num_rows / raw_pipeline_write(client, table)
        raw_rate = (raw_before + raw_after) / 2
        print(f"raw redis-py pipeline HSET (1 process), after: {raw_after:,.0f} rows/s; mean {raw_rate:,.0f} rows/s")
        figures["raw_pipeline_rows_per_s"] = {
            "before": round(raw_before),
            "after": round(raw_after),
            "mean": round(raw_rate),
        }
        for workers, rate in rates.items():
            figures[f"raw_over_feast_full_{workers}proc"] = round(raw_rate / rate, 2)
            print(f"ratio raw / feast full ({workers} process): {raw_rate / rate:.2f}x")

        # Feast's stock RedisOnlineStore.online_write_batch on the same input, for reference.
        from feast.infra.online_stores.redis import RedisOnlineStore

        from training.features.materialize import iter_rows

        stock = RedisOnlineStore()
        stock_rows = min(table.num_rows, 100_000)
        t = time.perf_counter()
        for rows in iter_rows(table.slice(0, stock_rows), fv):
            stock.online_write_batch(full_store.config, fv, rows, None)
        stock_rate = stock_rows / (time.perf_counter() - t)
        figures["feast_stock_store_rows_per_s"] = round(stock_rate)
        print(
            f"stock RedisOnlineStore.online_write_batch (1 process, first {stock_rows:,} rows):"
            f" {stock_rate:,.0f} rows/s, raw/stock = {raw_rate / stock_rate:.2f}x"
        )

        # Feast's own default path (`FeatureStore.materialize`: file offline store + stock Redis store).
        if args.feast_default_rows:
            from feast import FeatureStore, RepoConfig

            from training.features.store import FEATURE_REPO, feast_dir, redis_connection_string

            stock_config = RepoConfig(
                project="reco",
                provider="local",
                registry={"registry_type": "file", "path": str(feast_dir(settings) / "registry.db")},
                online_store={
                    "type": "redis",
                    "connection_string": redis_connection_string(redis_url, socket_timeout=BULK_TIMEOUT_S),
                },
                offline_store={"type": "file"},
                entity_key_serialization_version=3,
                repo_path=FEATURE_REPO,
            )
            stock_store = FeatureStore(config=stock_config, repo_path=str(FEATURE_REPO))
            default_rows = min(args.feast_default_rows, table.num_rows)
            pq.write_table(table.slice(0, default_rows), path)
            t = time.perf_counter()
            stock_store.materialize(
                start_date=datetime(2025, 12, 1, tzinfo=UTC),
                end_date=datetime(2026, 1, 1, tzinfo=UTC),
                feature_views=["customer_profile"],
            )
            default_rate = default_rows / (time.perf_counter() - t)
            figures["feast_default_materialize_rows_per_s"] = round(default_rate)
            print(f"Feast's default FeatureStore.materialize (first {default_rows:,} rows): {default_rate:,.0f} rows/s")
            pq.write_table(table, path)

        # Incremental path: Feast's default dedup (reads stored timestamps first), all rows newer.
        bumped = table.set_column(
            table.schema.get_field_index("event_timestamp"),
            "event_timestamp",
            pa.array(np.full(table.num_rows, np.datetime64("2026-01-07T00:00:00", "us")), pa.timestamp("us", tz="UTC")),
        )
        pq.write_table(bumped, path)
        dedup_store = open_store(settings, socket_timeout=BULK_TIMEOUT_S)
        incr = write_view(dedup_store, fv, path, full=True)  # full= only means "no watermark" here
        figures["feast_dedup_rows_per_s"] = round(incr.rows_per_second)
        figures["raw_over_feast_dedup"] = round(raw_rate / incr.rows_per_second, 2)
        print(
            f"feast online_write_batch (timestamp dedup, default workers): {incr.rows_written:,} rows in"
            f" {incr.seconds:.1f} s"
            f" = {incr.rows_per_second:,.0f} rows/s (ratio {raw_rate / incr.rows_per_second:.2f}x)"
        )

        serving = open_store(settings)  # serving timeouts (0.1 s), no retries
        service = serving.get_feature_service("recommend_v1")
        rng = np.random.default_rng(7)
        sample = rng.choice(table.num_rows, size=min(200, table.num_rows), replace=False)
        expected = table.take(pa.array(sample)).to_pylist()
        got = serving.get_online_features(
            features=service, entity_rows=[{"user_id": r["user_id"]} for r in expected]
        ).to_dict()
        mismatches = sum(
            got["orders"][i] != r["orders"]
            or got["spend"][i] != r["spend"]
            or got["top_categories"][i] != r["top_categories"]
            for i, r in enumerate(expected)
        )
        figures["readback_sampled"] = len(expected)
        figures["readback_mismatches"] = mismatches
        print(f"read back {len(expected)} sampled customers through recommend_v1: {mismatches} mismatches")

        # recommend_v1 also reads customer_recent_items: give the customers we read realistic lists.
        ids = rng.choice(table.num_rows, size=args.reads)
        recent_path = Path(source_path("customer_recent_items", settings))
        pq.write_table(make_recent([f"C{i:07d}" for i in sorted(set(ids.tolist()))]), recent_path)
        write_view(full_store, full_store.get_feature_view("customer_recent_items"), recent_path, full=True)
        latencies = []
        for _ in range(50):  # warm-up
            serving.get_online_features(features=service, entity_rows=[{"user_id": "C0000000"}]).to_dict()
        for i in ids:
            t = time.perf_counter()
            serving.get_online_features(features=service, entity_rows=[{"user_id": f"C{i:07d}"}]).to_dict()
            latencies.append((time.perf_counter() - t) * 1000)
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        figures["read_p50_ms"], figures["read_p99_ms"] = round(p50, 2), round(p99, 2)
        print(
            f"get_online_features(recommend_v1: profile + recent items), one customer:"
            f" p50 {p50:.2f} ms, p99 {p99:.2f} ms ({args.reads} reads)"
        )
    finally:
        client.flushdb()
        shutil.rmtree(home, ignore_errors=True)  # the temporary RECO_HOME (1M rows: ~100 MB)
    figures["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps(figures))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
