"""The service against the real Redis online store (127.0.0.1:6379, DB 12, flushed afterwards),
and against a Redis that is down or hung: answers stay 200, marked degraded, and fast."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from service.online.features import CUSTOMER_FIELDS
from tests.conftest import redis_url_or_skip
from tests.integration.service.support import World, free_port, live_server

pytestmark = [pytest.mark.slow]

REDIS_DB = 12


@pytest.fixture(scope="module")
def redis_url(w: World) -> Iterator[str]:
    url = redis_url_or_skip(REDIS_DB)
    import redis

    from training.features.materialize import materialize
    from training.settings import load_settings

    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        materialize(
            settings=load_settings(home=str(w.home), mlflow_tracking_uri=w.tracking_uri, redis_url=url), full=True
        )
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.mark.redis
def test_features_come_from_redis(w: World, redis_url: str) -> None:
    with live_server(w.env(REDIS_URL=redis_url)) as server, server.client() as c:
        ready = c.get("/health/ready").json()
        assert ready["features"]["online_store"] == "redis" and ready["features"]["items_cached"] > 0
        body = c.get(f"/v1/users/{w.users[0]}/recommendations", params={"k": 5}).json()
        assert body["source"] == "model" and body["degraded"] is False
        recap = c.get(f"/v1/users/{w.recap_users[0]}/recaps/2025")
        assert recap.status_code == 200 and recap.json()["user_id"] == w.recap_users[0]
        for user in w.users[:20]:
            answer = c.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()
            assert answer["degraded"] is False and answer["source"] == "model"
    from prometheus_client import REGISTRY

    ok = REGISTRY.get_sample_value("reco_feature_read_seconds_count", {"group": "customer", "outcome": "ok"})
    assert ok is not None and ok >= 21


@pytest.mark.redis
def test_redis_down_degrades_without_errors(w: World, redis_url: str) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    with live_server(w.env(REDIS_URL=closed)) as server, server.client() as c:
        started = time.perf_counter()
        answers = [c.get(f"/v1/users/{u}/recommendations", params={"k": 5}) for u in w.users[:20]]
        elapsed = time.perf_counter() - started
        for r in answers:
            assert r.status_code == 200 and r.json()["degraded"] is True and r.json()["source"] == "model"
            assert set(r.json()["degraded_reasons"]) & {"online-store-error", "online-store-backoff"}
        assert elapsed < 2.0
        unknown = c.get("/v1/users/nobody-at-all/recommendations", params={"k": 5}).json()
        assert unknown["degraded"] is True and unknown["source"] == "popular"
        recap = c.get(f"/v1/users/{w.recap_users[0]}/recaps/2025")
        assert recap.status_code == 503 and recap.json()["detail"] and recap.headers["retry-after"]
        # the event log is that Redis too: nothing is claimed, the storefront is told to retry
        event = {
            "event_id": "e-down",
            "user_id": w.users[0],
            "item_id": w.items[0],
            "timestamp": "2025-12-31T10:00:00Z",
        }
        started = time.perf_counter()
        posted = c.post("/v1/events", json={"events": [event]})
        assert (
            posted.status_code == 503
            and posted.headers["retry-after"]
            and "nothing was stored" in posted.json()["detail"]
        )
        assert time.perf_counter() - started < 2.0
        assert c.get("/health/ready").json()["events"]["store"] == "redis"
        assert c.get("/health/live").status_code == 200


@pytest.mark.redis
def test_hung_redis_costs_one_timeout_not_a_hang(w: World, redis_url: str) -> None:
    # A socket that accepts connections (kernel backlog) but never answers: reads must time out.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        url = f"redis://127.0.0.1:{hung.getsockname()[1]}/0"
        env = w.env(REDIS_URL=url, RECO_FEATURE_TIMEOUT_MS="50", RECO_FEATURE_BACKOFF_SECONDS="5")
        with live_server(env) as server, server.client() as c:
            started = time.perf_counter()
            first = c.get(f"/v1/users/{w.users[0]}/recommendations", params={"k": 5})
            first_seconds = time.perf_counter() - started
            started = time.perf_counter()
            rest = [c.get(f"/v1/users/{u}/recommendations", params={"k": 5}) for u in w.users[1:11]]
            rest_seconds = time.perf_counter() - started
    assert first.status_code == 200 and first.json()["degraded"] is True
    assert set(first.json()["degraded_reasons"]) & {"online-store-timeout", "online-store-error"}
    assert first_seconds < 1.0
    # a few more timeouts (BREAKER_MIN_TIMEOUTS, all of the reads) open the breaker; then the store is
    # skipped without waiting
    reasons = [r.json()["degraded_reasons"] for r in rest]
    assert all(set(x) <= {"online-store-timeout", "online-store-error", "online-store-backoff"} for x in reasons)
    assert sum(x == ["online-store-backoff"] for x in reasons) >= 6
    assert rest_seconds < 1.0


@pytest.mark.redis
def test_repeated_reads_do_not_grow_the_requested_features(w: World, redis_url: str) -> None:
    """Feast's Redis store appends "_ts:<view>" to the feature list it is given: a list shared across
    requests grew by one entry per read, until reads timed out and the service answered degraded."""
    with live_server(w.env(REDIS_URL=redis_url)) as server, server.client() as c:
        answers = [
            c.get(f"/v1/users/{w.users[n % len(w.users)]}/recommendations", params={"k": 5}).json() for n in range(300)
        ]
        features = server.app.state.services.features
        requested = {view.name: list(names) for view, names in features._customer_views}
    assert not [a for a in answers if a["degraded"]]
    assert requested == {
        view.name: [f.name for f in view.features if f.name in CUSTOMER_FIELDS] for view, _ in features._customer_views
    }
    assert sorted(n for names in requested.values() for n in names) == sorted(CUSTOMER_FIELDS)


@pytest.mark.redis
def test_background_item_refresh_takes_items_out_of_stock(w: World, redis_url: str) -> None:
    """The background refresh re-reads item_stats only after a write (the writer's counter) and
    then sees a sold-out item: it leaves the answers; untouched items keep their catalog entries."""
    import pandas as pd
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from training.features.store import open_store
    from training.settings import load_settings

    with live_server(w.env(REDIS_URL=redis_url, RECO_ITEM_REFRESH_SECONDS="0.2")) as server, server.client() as c:
        user = w.users[0]
        top = c.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()["items"][0]["item_id"]
        features = server.app.state.services.features
        started, deadline = features.catalog.refreshed_at, time.monotonic() + 5
        while features.catalog.refreshed_at == started:  # one background refresh after start-up's full read
            assert time.monotonic() < deadline, "no background refresh ran"
            time.sleep(0.05)
        before, read_at = dict(features.catalog.items), features.catalog.refreshed_at
        time.sleep(0.7)
        assert features.catalog.refreshed_at == read_at, "item_stats was not written: no re-read"
        settings = load_settings(home=str(w.home), mlflow_tracking_uri=w.tracking_uri, redis_url=redis_url)
        rows = pq.read_table(settings.feature_data_dir / "item_stats.parquet")
        row = rows.filter(pc.equal(rows.column("item_id"), top)).to_pandas()
        row["in_stock"] = False
        row["event_timestamp"] = row["event_timestamp"] + pd.Timedelta(seconds=1)
        open_store(settings).write_to_online_store("item_stats", row)
        deadline = time.monotonic() + 5
        while features.catalog.items[top].in_stock is not False:
            assert time.monotonic() < deadline, "the refresh did not see the change"
            time.sleep(0.05)
        answer = c.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()
        assert top not in [i["item_id"] for i in answer["items"]] and answer["degraded"] is False
        after = features.catalog.items
        untouched = [i for i in before if i != top]
        assert all(after[i] is before[i] for i in untouched)  # unchanged rows are not decoded again
