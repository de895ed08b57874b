"""The fault suite: real redis-server and `reco serve` processes of its own, broken one dependency at a
time while a storefront stream of buy-again requests runs (tests/faults/probes.py). Each asserts what
a storefront and an operator rely on: no 5xx, every answer while a dependency is missing or empty
flagged `degraded` with a reason, whole answers again within 2 s of its return, nothing acknowledged
and then lost, nothing doubled, a registry without debris.

`make test-faults` runs it (about five minutes on 2 cores); `make test` leaves it out (marker `faults`).
Needs redis-server on the PATH: with CI=true a missing one fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import probes
from tests.faults.harness import REPO, RedisServer, Server, Shop, make_shop

pytestmark = pytest.mark.faults

RECOVERY_SECONDS = 2.0


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but redis-server is not installed (the fault suite starts its own)")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shop(redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Shop:
    return make_shop(str(REPO / ".venv" / "bin" / "reco"), tmp_path_factory.mktemp("shop"), redis.url)


@pytest.fixture(scope="module")
def server(shop: Shop) -> Iterator[Server]:
    server = Server(shop, workers=2, RECO_RELOAD_POLL_SECONDS="0")  # reloads only through /admin/reload
    server.wait_live()
    yield server
    server.stop()


def _assert_answered_through(outcome: probes.Outcome) -> None:
    assert outcome.requests > 20, outcome
    assert outcome.errors_5xx == 0, outcome
    assert outcome.answers_while_out and outcome.flagged_while_out == outcome.answers_while_out, outcome
    assert outcome.recovery_seconds is not None and outcome.recovery_seconds <= RECOVERY_SECONDS, outcome
    assert outcome.just_bought == 0, outcome  # never offered what was bought in the last 24 h


def test_redis_killed_then_restarted_with_data(server: Server, shop: Shop, redis: RedisServer) -> None:
    _assert_answered_through(probes.redis_killed_then_back_with_data(server, shop, redis))


def test_redis_paused(server: Server, shop: Shop, redis: RedisServer) -> None:
    _assert_answered_through(probes.redis_paused(server, shop, redis))


@pytest.mark.parametrize("how", ["flush", "restart"])
def test_redis_emptied_is_degraded_until_materialized(server: Server, shop: Shop, redis: RedisServer, how: str) -> None:
    outcome = probes.redis_emptied(server, shop, redis, how=how)
    _assert_answered_through(outcome)
    ready = server.get("/health/ready")[1]
    assert ready["features"]["materialized"] is True and ready["features"]["available"] is True


def test_empty_store_shows_in_readiness_and_recaps(server: Server, shop: Shop, redis: RedisServer) -> None:
    redis.cli("FLUSHDB")
    user = sorted(shop.recent)[0]

    def empty_everywhere() -> bool:  # several answers in a row: every worker has seen it
        for _ in range(6):
            features = server.get("/health/ready")[1]["features"]
            status, body = server.get(f"/v1/users/{user}/recaps/{shop.now.year}")
            if not (
                features["materialized"] is False
                and features["available"] is False
                and "materializ" in features["error"]
                and status == 503
                and "online-store-empty" in body["detail"]
            ):
                return False
        return True

    try:
        assert _eventually(empty_everywhere)
    finally:
        assert shop.materialize().returncode == 0


def test_reload_reaches_every_worker(server: Server, shop: Shop) -> None:
    outcome = probes.reload_reaches_every_worker(server, shop)
    assert outcome.errors_5xx == 0, outcome
    assert outcome.recovery_seconds is not None and outcome.recovery_seconds <= 5.0, outcome


def test_materialize_killed_then_rerun_restores_every_key(shop: Shop, redis: RedisServer) -> None:
    outcome = probes.materialize_killed(shop, redis)
    assert outcome.errors_5xx == 0 and outcome.lost == 0, outcome


@pytest.mark.parametrize("fault", ["missing", "hung"])
def test_start_without_mlflow_serves_the_cached_model(shop: Shop, tmp_path: Path, fault: str) -> None:
    start = probes.mlflow_missing_at_start if fault == "missing" else probes.mlflow_hung_at_start
    outcome = start(shop, tmp_path)
    assert outcome.errors_5xx == 0, outcome
    assert "/health/ready 200" in outcome.notes and "from local-cache" in outcome.notes, outcome
    assert "'model'" in outcome.notes, outcome  # answers from the model, not popular items


def test_killed_trainings_leave_no_debris(shop: Shop) -> None:
    outcome = probes.train_killed(shop)
    assert outcome.errors_5xx == 0, outcome
    registry = json.loads(outcome.notes)
    assert registry["running"] == 0 and registry["untagged"] == 0 and registry["debris"] == 0, registry
    assert registry["killed_or_failed"] >= 2, registry  # the SIGTERMed run, the one killed after registering


def test_server_killed_while_events_are_posted(shop: Shop) -> None:
    outcome = probes.server_killed_while_events_posted(shop)
    assert outcome.errors_5xx == 0 and outcome.lost == 0 and outcome.doubled == 0, outcome


def _eventually(check: object, timeout: float = 5.0) -> bool:
    from tests.faults.harness import wait_until

    return wait_until(check, timeout=timeout, every=0.1)
