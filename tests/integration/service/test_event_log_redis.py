"""The Redis event log on a real Redis and on a local 3-master Redis Cluster: an event_id is stored
once whichever replica posts it, every replica reads the customer's purchases, and the export
writes each event exactly once, also after a run that died between writing a file and
acknowledging it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import redis

import service.events.redis_store as redis_store
from service.events.redis_store import RedisEventStore
from service.events.store import EventLogDown
from tests.conftest import RedisCluster, redis_url_or_skip
from tests.integration.service.support import free_port

pytestmark = [pytest.mark.redis]

REDIS_DB = 12
NOW = datetime(2025, 12, 31, 12, tzinfo=UTC)


def _event(n: int, **changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": f"e{n}",
        "user_id": f"C{n % 5}",
        "item_id": f"P{n:03d}",
        "timestamp": "2025-12-31T10:00:00Z",
        "quantity": 1 + n % 3,
        "price": 1.25 if n % 4 else None,
        "order_id": f"o{n // 3}",
    }
    event.update(changes)
    return event


@pytest.fixture(params=["redis", "cluster"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    """(REDIS_URL, cluster?) of an emptied Redis: DB 12 of the Redis on 127.0.0.1:6379, or the
    test run's local Redis Cluster."""
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        yield cluster.url, True
        cluster.flush()
        return
    url = redis_url_or_skip(REDIS_DB)
    with redis.Redis.from_url(url) as client:
        client.flushdb()
        yield url, False
        client.flushdb()


def _exported(out: Path) -> list[str]:
    return [e for path in sorted(out.glob("*.parquet")) for e in pq.read_table(path).column("event_id").to_pylist()]


def test_two_replicas_store_an_event_once_and_both_see_the_purchase(backend: tuple[str, bool], tmp_path: Path) -> None:
    url, cluster = backend
    a, b = RedisEventStore(url, cluster=cluster), RedisEventStore(url, cluster=cluster)
    first = a.ingest([_event(1), _event(2), _event(3, quantity=0), _event(1)], now=NOW)
    assert (first.received, first.accepted, first.duplicates, first.rejected) == (4, 2, 1, 1)
    again = b.ingest([_event(2), _event(6)], now=NOW)  # e2 through the other replica: a duplicate
    assert (again.accepted, again.duplicates) == (1, 1)
    assert a.pending() == b.pending() == 3
    since = datetime(2025, 12, 31, tzinfo=UTC)
    assert asyncio.run(b.bought_since("C1", since)) == {"P001", "P006"}
    assert asyncio.run(a.bought_since("C1", datetime(2025, 12, 31, 11, tzinfo=UTC))) == set()  # bought at 10:00

    result = a.export(tmp_path / "out", batch=2)
    assert result.events == 3 and len(result.files) == 2 and a.pending() == 0
    assert b.export(tmp_path / "out").files == []  # nothing twice, from any host
    assert sorted(_exported(tmp_path / "out")) == ["e1", "e2", "e6"]
    rows = {r["event_id"]: r for f in result.files for r in pq.read_table(f).to_pylist()}
    assert (rows["e1"]["quantity"], rows["e1"]["price"], rows["e1"]["order_id"]) == (2, 1.25, "o0")
    assert rows["e2"]["user_id"] == "C2" and rows["e2"]["timestamp"] == datetime(2025, 12, 31, 10, tzinfo=UTC)
    assert rows["e6"]["price"] == 1.25 and rows["e6"]["order_id"] == "o2"
    a.close()
    b.close()


def test_an_export_killed_after_its_rename_writes_the_same_file_again(
    backend: tuple[str, bool], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cluster = backend
    store = RedisEventStore(url, cluster=cluster)
    assert store.ingest([_event(n) for n in range(25)], now=NOW).accepted == 25
    written: list[str] = []
    real_write = redis_store.write_export_file

    def write_then_die_on_the_second(events: list, path: Path) -> None:
        real_write(events, path)
        written.append(path.name)
        if len(written) == 2:
            raise KeyboardInterrupt("killed between the rename and the acknowledgement")

    monkeypatch.setattr(redis_store, "write_export_file", write_then_die_on_the_second)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        store.export(out, batch=10)
    assert store.pending() == 15  # the first file's 10 were acknowledged, the second file's were not
    monkeypatch.setattr(redis_store, "write_export_file", real_write)

    rerun = RedisEventStore(url, cluster=cluster).export(out, batch=7)
    assert rerun.files[0].name == written[1]  # the unacknowledged entries again, under the same name
    assert rerun.events == 15 and store.pending() == 0
    exported = _exported(out)
    assert len(exported) == len(set(exported)) == 25


def test_a_redis_that_is_down_claims_nothing_and_says_so_fast() -> None:
    store = RedisEventStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    started = time.perf_counter()
    with pytest.raises(EventLogDown):
        store.ingest([_event(1)], now=NOW)
    with pytest.raises(EventLogDown):
        asyncio.run(store.bought_since("C1", NOW))
    assert time.perf_counter() - started < 2.0


def test_export_from_a_redis_that_is_down_is_one_sentence(tmp_path: Path) -> None:
    env = {**os.environ, "RECO_HOME": str(tmp_path), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    run = subprocess.run(
        [sys.executable, "-m", "training.cli", "events", "export", "--out", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "The event log (redis) cannot be read, nothing was exported" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
