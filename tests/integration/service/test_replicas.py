"""Two `reco serve` processes, each with its own RECO_HOME, sharing one Redis (and then a local
3-master Redis Cluster): what one replica accepts, the other serves from its next read; thousands of
events posted concurrently through both are exported exactly once, also when the exporter is
killed midway and run again."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import redis

from service.events.redis_store import RedisEventStore
from tests.conftest import RedisCluster, redis_url_or_skip
from tests.integration.service.support import DATA_END, KEY_ALL, World, free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

REDIS_DB = 12
REPO = Path(__file__).resolve().parents[3]


@dataclass
class Replicas:
    """Two running `reco serve` processes on one online store."""

    a: httpx.Client
    b: httpx.Client
    env: dict[str, str]  # the environment of a process on this store (REDIS_URL, RECO_REDIS_CLUSTER)

    def event_store(self) -> RedisEventStore:
        return RedisEventStore(self.env["REDIS_URL"], cluster=self.env.get("RECO_REDIS_CLUSTER") == "true")


@contextlib.contextmanager
def serve(env: dict[str, str], home: Path) -> Iterator[httpx.Client]:
    """`reco serve` (one worker) in a subprocess with its own RECO_HOME holding a copy of the Feast
    registry (what a second host has); a client once /health/ready says ready; stopped by PID."""
    port = free_port()
    log = home / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "training.cli", "serve", "--port", str(port), "--workers", "1"],
            env={**os.environ, **env, "RECO_HOME": str(home)},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY_ALL}, timeout=30)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"reco serve exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"reco serve not ready: {log.read_text()[-2000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/health/ready").json().get("ready"):
                    break
            time.sleep(0.2)
        yield client
    finally:
        client.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def replicas(w: World, tmp: Path, store_env: dict[str, str]) -> Iterator[Replicas]:
    """The world's features materialized into this online store, then two replicas on it."""
    from training.features.materialize import materialize
    from training.settings import load_settings

    settings = load_settings(
        home=str(w.home),
        mlflow_tracking_uri=w.tracking_uri,
        redis_url=store_env["REDIS_URL"],
        redis_cluster=store_env.get("RECO_REDIS_CLUSTER") == "true",
    )
    materialize(settings=settings, full=True)
    # A generous read budget: two servers and the test share 2 cores, and a timed-out read would
    # answer degraded, not wrong.
    env = w.env(**store_env, RECO_FEATURE_TIMEOUT_MS="2000")
    homes = [tmp / "a", tmp / "b"]
    for home in homes:
        shutil.copytree(w.home / "feast", home / "feast")
    with serve(env, homes[0]) as a, serve(env, homes[1]) as b:
        yield Replicas(a, b, env)


@pytest.fixture(scope="module")
def on_redis(w: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    url = redis_url_or_skip(REDIS_DB)
    with redis.Redis.from_url(url) as client:
        client.flushdb()
        try:
            with replicas(w, tmp_path_factory.mktemp("replicas"), {"REDIS_URL": url}) as pair:
                yield pair
        finally:
            client.flushdb()


@pytest.fixture(scope="module")
def on_cluster(w: World, redis_cluster: RedisCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    redis_cluster.flush()
    try:
        store_env = {"REDIS_URL": redis_cluster.url, "RECO_REDIS_CLUSTER": "true"}
        with replicas(w, tmp_path_factory.mktemp("replicas-cluster"), store_env) as pair:
            yield pair
    finally:
        redis_cluster.flush()


def _event(event_id: str, user_id: str, item_id: str) -> dict[str, object]:
    return {"event_id": event_id, "user_id": user_id, "item_id": item_id, "timestamp": DATA_END, "price": 2.5}


def _items(client: httpx.Client, user_id: str, **params: object) -> tuple[list[str], dict]:
    r = client.get(f"/v1/users/{user_id}/recommendations", params={"k": 10, **params})
    assert r.status_code == 200, r.text
    return [i["item_id"] for i in r.json()["items"]], r.json()


def check_replicas_share_events(pair: Replicas, w: World, tag: str) -> None:
    """A purchase posted to A leaves B's discover list at once; a new customer's first order posted
    to A gets personal recommendations from B."""
    customer = w.users[3]
    discover, answer = _items(pair.b, customer, context="discover")
    assert answer["source"] == "model" and not answer["degraded"] and discover
    bought = discover[0]
    posted = pair.a.post("/v1/events", json={"events": [_event(f"{tag}-1", customer, bought)]})
    assert posted.status_code == 200 and posted.json()["accepted"] == 1
    started = time.monotonic()
    while bought in _items(pair.b, customer, context="discover")[0]:
        assert time.monotonic() - started < 1.0, "B still offers what the customer just bought through A"
        time.sleep(0.05)

    newcomer = f"new-{tag}"
    before = _items(pair.b, newcomer)[1]
    assert before["source"] == "popular"
    posted = pair.a.post("/v1/events", json={"events": [_event(f"{tag}-2", newcomer, bought)]})
    assert posted.status_code == 200 and posted.json()["accepted"] == 1
    items, after = _items(pair.b, newcomer)
    assert after["source"] == "item-to-item" and not after["degraded"]
    assert items and bought not in items and items != [i["item_id"] for i in before["items"]]


def test_two_replicas_on_one_redis_share_events(on_redis: Replicas, w: World) -> None:
    check_replicas_share_events(on_redis, w, "redis")


@pytest.mark.heavy
def test_two_replicas_on_a_redis_cluster_share_events(on_cluster: Replicas, w: World) -> None:
    check_replicas_share_events(on_cluster, w, "cluster")


# --- 10,000 events, 8 clients, 10% duplicates, an exporter killed midway ----------------------------

EVENTS, CLIENTS, BATCH = 10_000, 8, 50


def check_concurrent_events_exported_once(pair: Replicas, w: World, out: Path) -> None:
    store = pair.event_store()
    store.export(out.parent / "earlier")  # other tests' events out of the way
    distinct = EVENTS * 9 // 10
    numbers = [*range(distinct), *random.Random(7).sample(range(distinct), EVENTS - distinct)]  # 10% repeats
    random.Random(8).shuffle(numbers)
    batches = [numbers[at : at + BATCH] for at in range(0, EVENTS, BATCH)]

    def post(n: int) -> tuple[int, int]:
        replica = pair.a if n % 2 else pair.b  # the clients alternate between the replicas
        events = [_event(f"ev-{e}", w.users[e % len(w.users)], w.items[e % len(w.items)]) for e in batches[n]]
        r = replica.post("/v1/events", json={"events": events})
        assert r.status_code == 200, r.text
        return r.json()["accepted"], r.json()["duplicates"]

    with ThreadPoolExecutor(CLIENTS) as clients:
        counts = list(clients.map(post, range(len(batches))))
    assert (sum(a for a, _ in counts), sum(d for _, d in counts)) == (distinct, EVENTS - distinct)
    assert store.pending() == distinct

    export = [sys.executable, "-m", "training.cli", "events", "export", "--out", str(out), "--batch", "100"]
    env = {**os.environ, **pair.env}
    killed = subprocess.Popen(export, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list(out.glob("*.parquet"))) < 3:  # killed after a few files, anywhere in the next one
        assert killed.poll() is None and time.monotonic() < deadline, "the exporter ended before it was killed"
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = store.pending()
    assert 0 < left < distinct, "the exporter was not stopped midway"
    run = subprocess.run(export, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert store.pending() == 0

    exported = [e for f in out.glob("*.parquet") for e in pq.read_table(f).column("event_id").to_pylist()]
    assert len(exported) == len(set(exported)) == distinct
    assert set(exported) == {f"ev-{n}" for n in range(distinct)}
    store.close()


@pytest.mark.heavy
def test_concurrent_events_on_one_redis_are_exported_once(on_redis: Replicas, w: World, tmp_path: Path) -> None:
    check_concurrent_events_exported_once(on_redis, w, tmp_path / "out")


@pytest.mark.heavy
def test_concurrent_events_on_a_redis_cluster_are_exported_once(on_cluster: Replicas, w: World, tmp_path: Path) -> None:
    check_concurrent_events_exported_once(on_cluster, w, tmp_path / "out")
