"""The stock `feast` CLI on this repo, as a user runs it: `eval "$(reco features env)"`, then `feast
apply`, `feast materialize-incremental`, `feast materialize`, `feast ui` from feature_repo/, against
the registry and the online store reco and the service use, on SQLite and on a Redis of its own."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.integration.features.conftest import read_service, settings_for
from training.features.build import build
from training.features.store import FEATURE_REPO
from training.settings import Settings

FEAST = Path(sys.executable).parent / "feast"
RECO = Path(sys.executable).parent / "reco"


def feast_env(settings: Settings) -> dict[str, str]:
    """The environment after `eval "$(reco features env)"` in a shell with these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECO_", "REDIS_URL"))}
    env["RECO_HOME"] = str(settings.home)
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    if settings.redis_cluster:
        env["RECO_REDIS_CLUSTER"] = "true"
    out = subprocess.run([str(RECO), "features", "env"], env=env, capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():  # export NAME='value'
        name, value = line.removeprefix("export ").split("=", 1)
        env[name] = subprocess.run(["bash", "-c", f"printf %s {value}"], capture_output=True, text=True).stdout
    return env


def feast(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(FEAST), *args], cwd=FEATURE_REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def now_text() -> str:
    """Now, rounded up to the second (the CLI takes whole seconds: a row stamped within the current
    second would wait for the next run)."""
    time.sleep(1 - datetime.now(UTC).microsecond / 1e6)
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def online_counts(settings: Settings, users: list[str], items: list[str]) -> tuple[int, int]:
    """Customers with a profile and items with stats that the online store answers."""
    customers = read_service(settings, "recommend_v1", [{"user_id": u} for u in users])["orders"]
    stats = read_service(settings, "items_v1", [{"item_id": i} for i in items])["popularity_30d"]
    return sum(v is not None for v in customers), sum(v is not None for v in stats)


def test_the_stock_cli_loads_our_sources_on_sqlite_and_redis(messy_store: Path, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", None)
    purchases = messy_store / "purchases.parquet"
    build(settings=settings, purchases=purchases, catalog=messy_store / "catalog.parquet")
    users = sorted(set(pq.read_table(purchases, columns=["user_id"]).column(0).to_pylist()))
    items = pq.read_table(messy_store / "catalog.parquet", columns=["item_id"]).column(0).to_pylist()
    env = feast_env(settings)
    feast(env, "apply")
    # The data end in 2025: rows are stamped with the build's time, so the first incremental run,
    # whose window starts at "now minus the view's ttl", loads every row (item_stats too), and the
    # views no job wrote yet (recaps, candidates) are empty sources, not missing files.
    feast(env, "materialize-incremental", now_text())
    assert online_counts(settings, users, items) == (len(users), len(items))
    assert not (settings.home / "feast" / "materialized.json").exists()  # one watermark: Feast's

    # New purchases: a rebuild stamps the changed rows after the last run, the next run loads them.
    user = users[3]
    before = read_service(settings, "recommend_v1", [{"user_id": user}])["orders"][0]
    table = pq.read_table(purchases)
    extra = pa.table(
        {
            "user_id": [user],
            "item_id": [items[0]],
            "timestamp": [table.column("timestamp").to_pylist()[-1] + timedelta(hours=1)],
            "quantity": [1],
            "price": [2.0],
            "order_id": ["cli-order-1"],
        },
        schema=table.schema,
    )
    more = tmp_path / "more.parquet"
    pq.write_table(pa.concat_tables([table, extra]), more)
    build(settings=settings, purchases=more, catalog=messy_store / "catalog.parquet")
    feast(env, "materialize-incremental", now_text())
    assert read_service(settings, "recommend_v1", [{"user_id": user}])["orders"][0] == before + 1

    # The same home on Redis (REDIS_URL set): a full run over any range of build times fills it, and
    # reco's own store, the one the service reads, answers what the stock CLI wrote.
    with own_redis() as url:
        on_redis = settings_for(settings.home, url)
        env = feast_env(on_redis)
        assert '"type": "redis"' in env["RECO_FEAST_ONLINE_STORE"]
        feast(env, "materialize", "2000-01-01T00:00:00", now_text())
        assert online_counts(on_redis, users, items) == (len(users), len(items))


@contextlib.contextmanager
def own_redis() -> Iterator[str]:
    """A redis-server of this test on a free port (no persistence), stopped by its PID."""
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.venv  # starts a server: `make test-slow`
def test_feast_ui_serves_the_registry(messy_store: Path, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", None)
    build(settings=settings, purchases=messy_store / "purchases.parquet", catalog=messy_store / "catalog.parquet")
    env = feast_env(settings)
    feast(env, "apply")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = subprocess.Popen(
        [str(FEAST), "ui", "--host", "127.0.0.1", "--port", str(port)],
        cwd=FEATURE_REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert ui.poll() is None, ui.stderr.read()[-2000:] if ui.stderr else "feast ui exited"
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                assert r.status == 200
                break
            assert time.monotonic() < deadline, "feast ui did not answer"
            time.sleep(0.5)
    finally:
        ui.terminate()
        ui.wait(timeout=30)


@pytest.mark.heavy  # a Redis Cluster: `make test-slow`
def test_the_stock_cli_and_reco_share_a_redis_cluster(messy_store: Path, tmp_path: Path, redis_cluster) -> None:  # type: ignore[no-untyped-def]
    from training.features.store import apply_definitions, open_store
    from training.settings import load_settings

    redis_cluster.flush()
    settings = load_settings(home=tmp_path / "home", redis_url=redis_cluster.url, redis_cluster=True)
    build(settings=settings, purchases=messy_store / "purchases.parquet", catalog=messy_store / "catalog.parquet")
    apply_definitions(open_store(settings), settings)
    users = sorted(set(pq.read_table(messy_store / "purchases.parquet", columns=["user_id"]).column(0).to_pylist()))
    items = pq.read_table(messy_store / "catalog.parquet", columns=["item_id"]).column(0).to_pylist()
    env = feast_env(settings)
    assert '"redis_type": "redis_cluster"' in env["RECO_FEAST_ONLINE_STORE"]
    feast(env, "materialize", "2000-01-01T00:00:00", now_text())
    assert online_counts(settings, users, items) == (len(users), len(items))
    redis_cluster.flush()
