"""Feature store end to end: `reco features build` + materialize on SQLite and the real Redis;
values read back through the feature services equal an independent pandas computation; re-runs
write only what changed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import redis_url_or_skip
from tests.integration.features.conftest import (
    REDIS_DB,
    feast_hashes,
    flush,
    purchases_frame,
    read_service,
    redis_client,
    settings_for,
)
from training.features.build import build
from training.features.materialize import materialize
from training.features.store import open_store
from training.settings import Settings

CUSTOMER_FIELDS = (
    "orders",
    "items",
    "spend",
    "distinct_items",
    "first_purchase",
    "last_purchase",
    "avg_basket_items",
    "avg_basket_spend",
    "rebuy_interval_days",
    "top_categories",
    "recent_items",
    "recent_item_times",
    "buy_again_items",
    "buy_again_orders",
)


def expected_customer(df: pd.DataFrame, catalog: pd.DataFrame, user: str) -> dict[str, Any]:
    """What recommend_v1 must return for one customer, computed without DuckDB or Feast."""
    mine = df[df.user_id == user]
    orders = mine.basket.nunique()
    items = int(mine.quantity.sum())
    spend = float((mine.quantity * mine.price).sum())
    order_times = mine.groupby("basket").timestamp.min().sort_values()
    gaps = order_times.diff().dropna().dt.total_seconds() / 86400
    cats = mine.merge(catalog, on="item_id").groupby("category").quantity.sum().reset_index()
    cats = cats.sort_values(["quantity", "category"], ascending=[False, True])
    per_item = mine.groupby("item_id").agg(last=("timestamp", "max"), n=("basket", "nunique")).reset_index()
    recent = per_item.sort_values(["last", "item_id"], ascending=[False, True]).head(20)
    again = per_item[per_item.n >= 2].sort_values(["n", "item_id"], ascending=[False, True]).head(20)
    return {
        "orders": orders,
        "items": items,
        "spend": pytest.approx(spend, abs=1e-3),
        "distinct_items": mine.item_id.nunique(),
        "first_purchase": mine.timestamp.min().to_pydatetime().replace(microsecond=0),
        "last_purchase": mine.timestamp.max().to_pydatetime().replace(microsecond=0),
        "avg_basket_items": pytest.approx(items / orders, abs=1e-3),
        "avg_basket_spend": pytest.approx(spend / orders, abs=1e-3),
        "rebuy_interval_days": pytest.approx(gaps.median(), abs=1e-3) if len(gaps) else None,
        "top_categories": list(cats.category.head(3)),
        "recent_items": list(recent.item_id),
        "recent_item_times": [int(t.timestamp()) for t in recent["last"]],
        "buy_again_items": list(again.item_id),
        "buy_again_orders": [int(n) for n in again.n],
    }


def expected_item(df: pd.DataFrame, catalog: pd.DataFrame, item: str) -> dict[str, Any]:
    """What items_v1 must return for one item."""
    as_of = df.timestamp.max()
    sold = df[df.item_id == item]
    row = catalog.set_index("item_id").loc[item]

    def units(days: int) -> int:
        return int(sold[sold.timestamp > as_of - pd.Timedelta(days=days)].quantity.sum())

    return {
        "category": row.category,
        "price": pytest.approx(row.price),
        "in_stock": bool(row.in_stock),
        "popularity_7d": units(7),
        "popularity_30d": units(30),
        "popularity_365d": units(365),
        "buyers_365d": sold[sold.timestamp > as_of - pd.Timedelta(days=365)].user_id.nunique(),
        "last_sold": sold.timestamp.max().to_pydatetime().replace(microsecond=0) if len(sold) else None,
    }


def _assert_values_match_independent_computation(settings: Settings, frames, sample) -> None:
    df, catalog = frames
    users, items = sample
    got = read_service(settings, "recommend_v1", [{"user_id": u} for u in users])
    for i, user in enumerate(users):
        assert {f: got[f][i] for f in CUSTOMER_FIELDS} == expected_customer(df, catalog, user), user
    got_items = read_service(settings, "items_v1", [{"item_id": i} for i in items])
    for i, item in enumerate(items):
        want = expected_item(df, catalog, item)
        assert {f: got_items[f][i] for f in want} == want, item


def test_sqlite_values_match_independent_computation(sqlite_home: Settings, frames, sample) -> None:
    _assert_values_match_independent_computation(sqlite_home, frames, sample)


@pytest.mark.redis
def test_redis_values_match_independent_computation(redis_home: Settings, frames, sample) -> None:
    _assert_values_match_independent_computation(redis_home, frames, sample)


@pytest.mark.redis
def test_sqlite_and_redis_give_identical_values(sqlite_home: Settings, redis_home: Settings, sample) -> None:
    users, items = sample
    rows = [{"user_id": u} for u in [*users, "no-such-customer"]]
    assert read_service(sqlite_home, "recommend_v1", rows) == read_service(redis_home, "recommend_v1", rows)
    item_rows = [{"item_id": i} for i in [*items, "no-such-item"]]
    assert read_service(sqlite_home, "items_v1", item_rows) == read_service(redis_home, "items_v1", item_rows)


@pytest.mark.redis
def test_unknown_entities_read_as_none(redis_home: Settings) -> None:
    got = read_service(redis_home, "recommend_v1", [{"user_id": "no-such-customer"}])
    assert got["orders"] == [None] and got["recent_items"] == [None]


def items_all(settings: Settings) -> list[str]:
    return pq.read_table(settings.feature_data_dir / "item_stats.parquet", columns=["item_id"]).column(0).to_pylist()


@pytest.mark.redis
def test_build_and_materialize_twice_is_idempotent(redis_home: Settings, messy_store: Path, sample) -> None:
    users, items = sample
    rows = [{"user_id": u} for u in users]
    before = read_service(redis_home, "recommend_v1", rows)
    items_before = read_service(redis_home, "items_v1", [{"item_id": i} for i in items])
    files = {p.name: p.read_bytes() for p in redis_home.feature_data_dir.glob("*.parquet")}
    build(settings=redis_home, purchases=messy_store / "purchases.parquet", catalog=messy_store / "catalog.parquet")

    def unstamped(table: pa.Table, name: str) -> pa.Table:  # item_stats is re-confirmed by every build
        return table.drop_columns(["event_timestamp"]) if name.startswith("item_stats") else table

    assert {p.name: unstamped(pq.read_table(p), p.name) for p in redis_home.feature_data_dir.glob("*.parquet")} == {
        name: unstamped(pq.read_table(pa.BufferReader(data)), name) for name, data in files.items()
    }
    again = materialize(settings=redis_home)
    # Nothing changed, nothing sent, but the re-confirmed item_stats rows.
    assert {v.view: v.rows_written for v in again.views if v.rows_written} == {"item_stats": len(items_all(redis_home))}
    full = materialize(settings=redis_home, full=True)
    assert full.rows_written > 0
    assert read_service(redis_home, "recommend_v1", rows) == before
    assert read_service(redis_home, "items_v1", [{"item_id": i} for i in items]) == items_before


@pytest.mark.redis
def test_parallel_writers_give_the_same_online_values(redis_home: Settings, sample) -> None:
    """Big Redis loads are split over forked writer processes: same keys, same values."""

    from training.features.materialize import write_view

    client = redis_client(redis_home)
    snapshot = feast_hashes(client)
    client.flushdb()
    store = open_store(redis_home, skip_dedup=True)
    for name in ("customer_profile", "customer_recent_items", "item_stats"):
        path = redis_home.feature_data_dir / f"{name}.parquet"
        result = write_view(store, store.get_feature_view(name), path, workers=2, batch_rows=50)
        assert result.rows_written == pq.read_metadata(path).num_rows
    assert feast_hashes(client) == snapshot


@pytest.mark.redis
def test_feature_view_ttls_and_redis_key_ttl(redis_home: Settings, sample) -> None:
    """View TTLs are as declared; Feast does not enforce them on online reads (feast#6821), so
    rows older than their TTL still come back with their event timestamp (the caller checks);
    the Redis key TTL, when configured, expires the whole key."""

    store = open_store(redis_home)
    ttls = {v.name: v.ttl for v in store.list_feature_views()}
    assert ttls == {
        "customer_profile": timedelta(0),
        "customer_recent_items": timedelta(days=365),
        "item_stats": timedelta(days=30),
        "customer_year_recap": timedelta(0),
        "customer_candidates": timedelta(0),  # replaced by each build; the service checks its model_version
    }
    _, items = sample
    from training.features.materialize import iter_rows

    # An item row written 60 days ago, past item_stats' 30-day TTL.
    source = pq.read_table(redis_home.feature_data_dir / "item_stats.parquet")
    old = source.filter(pc.equal(source.column("item_id"), items[0]))
    old = old.set_column(
        old.schema.get_field_index("event_timestamp"),
        "event_timestamp",
        pa.array([datetime.now(UTC) - timedelta(days=60)], pa.timestamp("us", tz="UTC")),
    )
    rewrite = open_store(redis_home, skip_dedup=True)
    for rows in iter_rows(old, rewrite.get_feature_view("item_stats")):
        rewrite._get_provider().online_write_batch(rewrite.config, rewrite.get_feature_view("item_stats"), rows, None)
    got = store.get_online_features(
        features=store.get_feature_service("items_v1"), entity_rows=[{"item_id": items[0]}]
    ).to_dict(include_event_timestamps=True)
    age = datetime.now(UTC) - datetime.fromtimestamp(got["popularity_30d__ts"][0], UTC)  # epoch seconds
    assert age > timedelta(days=30), "the row is past its TTL"
    assert got["popularity_30d"][0] is not None, "Feast started enforcing TTL online: revisit the serving checks"

    client = redis_client(redis_home)
    key = next(iter(feast_hashes(client)))
    assert client.ttl(key) == -1, "no key TTL unless configured"
    from training.features.materialize import write_view

    with_ttl = open_store(redis_home, key_ttl_seconds=3600, skip_dedup=True)
    write_view(with_ttl, with_ttl.get_feature_view("item_stats"), redis_home.feature_data_dir / "item_stats.parquet")
    ttl_keys = [k for k in client.scan_iter(count=1000) if client.ttl(k) > 0]
    assert ttl_keys and all(0 < client.ttl(k) <= 3600 for k in ttl_keys)
    assert len(ttl_keys) == pq.read_metadata(redis_home.feature_data_dir / "item_stats.parquet").num_rows

    # The key TTL really evicts: an item rewritten with a 1-second TTL is read back as missing.
    source = pq.read_table(redis_home.feature_data_dir / "item_stats.parquet")
    one_item = source.filter(pc.equal(source.column("item_id"), items[0]))
    short = open_store(redis_home, key_ttl_seconds=1, skip_dedup=True)
    fv = short.get_feature_view("item_stats")
    for rows in iter_rows(one_item, fv):
        short._get_provider().online_write_batch(short.config, fv, rows, None)
    assert read_service(redis_home, "items_v1", [{"item_id": items[0]}])["popularity_30d"] != [None]
    deadline = time.monotonic() + 5
    while read_service(redis_home, "items_v1", [{"item_id": items[0]}])["popularity_30d"] != [None]:
        assert time.monotonic() < deadline, "a key written with a 1 s TTL is still there after 5 s"
        time.sleep(0.2)
    assert read_service(redis_home, "items_v1", [{"item_id": items[1]}])["popularity_30d"] != [None]
    write_view(with_ttl, with_ttl.get_feature_view("item_stats"), redis_home.feature_data_dir / "item_stats.parquet")


def test_rebuild_keeps_timestamps_of_unchanged_rows(messy_store: Path, tmp_path: Path) -> None:
    """Rows are stamped with the build's time (not the data's: Feast's incremental runs load what was
    stamped since their last run); unchanged rows keep it, but item_stats, re-confirmed by every build;
    a file from an older schema counts as all changed."""
    settings = settings_for(tmp_path, None)
    args = {"purchases": messy_store / "purchases.parquet", "catalog": messy_store / "catalog.parquet"}
    started = datetime.now(UTC)
    first = build(settings=settings, **args)
    assert first.stamped_at >= started > first.as_of  # the synthetic data ends in 2025

    def stamps(view: str) -> list[datetime]:
        return pc.unique(
            pq.read_table(settings.feature_data_dir / f"{view}.parquet").column("event_timestamp")
        ).to_pylist()

    assert stamps("item_stats") == stamps("customer_profile") == [first.stamped_at]
    path = settings.feature_data_dir / "customer_profile.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["spend"]), path)  # as if `spend` were new
    second = build(settings=settings, **args)
    assert stamps("customer_profile") == [second.stamped_at] and second.stamped_at > first.stamped_at
    assert stamps("customer_recent_items") == [first.stamped_at]  # unchanged
    third = build(settings=settings, **args)
    assert stamps("customer_profile") == [second.stamped_at]  # the same file: nothing changed
    assert stamps("item_stats") == [third.stamped_at]  # re-confirmed


@pytest.mark.redis
def test_recaps_are_published_through_recap_v1(redis_home: Settings) -> None:
    """The recap job writes customer_year_recap.parquet and calls materialize(views=[...])."""
    path = redis_home.feature_data_dir / "customer_year_recap.parquet"
    stamp = datetime(2026, 1, 2, tzinfo=UTC)
    table = pa.table(
        {
            "user_id": ["C0001", "C0001", "C0002"],
            "year": pa.array([2025, 2025, 2025], pa.int64()),
            "recap_json": ['{"old": true}', '{"orders": 3}', '{"orders": 9}'],
            "schema_version": pa.array([1, 1, 1], pa.int64()),
            "model_version": ["2", "3", "3"],
            "event_timestamp": pa.array([stamp - timedelta(days=1), stamp, stamp], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, path)
    try:
        result = materialize(settings=redis_home, views=["customer_year_recap"])
        assert [v.rows_written for v in result.views] == [2]  # the newest row per (customer, year)
        got = read_service(
            redis_home, "recap_v1", [{"user_id": "C0001", "year": 2025}, {"user_id": "C0002", "year": 2024}]
        )
        assert got["recap_json"] == ['{"orders": 3}', None]
        assert got["model_version"] == ["3", None] and got["schema_version"] == [1, None]
    finally:
        path.unlink()


@pytest.mark.redis
def test_new_purchases_update_only_what_changed(messy_store: Path, tmp_path: Path, frames) -> None:
    """Runs last: it reuses DB 14 for its own home (flushes it first)."""
    url = redis_url_or_skip(REDIS_DB)
    flush(url)
    settings = settings_for(tmp_path / "home", url)
    purchases = pq.read_table(messy_store / "purchases.parquet")
    build(settings=settings, purchases=messy_store / "purchases.parquet", catalog=messy_store / "catalog.parquet")
    first = materialize(settings=settings)
    assert first.rows_written > 0

    df, catalog = frames
    user = sorted(df.user_id.unique())[3]
    when = df.timestamp.max().to_pydatetime() + timedelta(hours=2)
    extra = pa.table(
        {
            "user_id": [user],
            "item_id": [catalog.item_id.iloc[0]],
            "timestamp": [when],
            "quantity": [2],
            "price": [3.5],
            "order_id": ["new-order-1"],
        },
        schema=purchases.schema,
    )
    more = tmp_path / "more.parquet"
    pq.write_table(pa.concat_tables([purchases, extra]), more)
    rebuilt = build(settings=settings, purchases=more, catalog=messy_store / "catalog.parquet")
    second = materialize(settings=settings)
    per_view = {v.view: v.rows_written for v in second.views}
    assert per_view["customer_profile"] == 1 and per_view["customer_recent_items"] == 1, second.format_text()
    # item_stats is re-confirmed by every build (its ttl measures the build's age): every row moves up.
    assert per_view["item_stats"] == len(catalog), second.format_text()
    stamps = pq.read_table(settings.feature_data_dir / "item_stats.parquet").column("event_timestamp")
    assert pc.unique(stamps).to_pylist() == [rebuilt.stamped_at]
    got = read_service(settings, "recommend_v1", [{"user_id": user}])
    new_df = purchases_frame(messy_store)
    new_df = pd.concat([new_df, extra.to_pandas().assign(basket="new-order-1")], ignore_index=True)
    want = expected_customer(new_df, catalog, user)
    assert {f: got[f][0] for f in CUSTOMER_FIELDS} == want
    assert got["recent_items"][0][0] == catalog.item_id.iloc[0]
    flush(url)


@pytest.mark.redis
def test_an_emptied_online_store_is_rewritten_not_skipped(redis_home: Settings, sample) -> None:
    """After FLUSHDB (or a restart without persistence, or a run cut short) the incremental run finds
    no marker of a complete load and rewrites every row, instead of "nothing newer than last run"."""
    from training.features.names import PROJECT
    from training.features.online_state import MATERIALIZED

    users, _ = sample
    rows = [{"user_id": u} for u in users]
    materialize(settings=redis_home)
    before = read_service(redis_home, "recommend_v1", rows)
    assert materialize(settings=redis_home).rows_written == 0  # complete and nothing new: nothing sent
    client = redis_client(redis_home)
    client.flushdb()
    assert read_service(redis_home, "recommend_v1", rows) != before  # the rows are gone
    again = materialize(settings=redis_home)
    assert again.why_full and again.rows_written > 0, again.format_text()
    assert read_service(redis_home, "recommend_v1", rows) == before
    assert client.hget(f"reco:{PROJECT}:state", MATERIALIZED) is not None
