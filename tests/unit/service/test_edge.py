"""The limits in front of the routes (service/edge.py), in-process: the key before the body, the body
size limit, the in-flight limit. tests/integration/service/test_edge.py checks the protocol's
deadlines on a real `reco serve`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from service.edge import RequestsInFlight
from service.model import LoadedModel
from tests.unit.service.shop import Shop

BODY_ROUTES = [("/v1/events", "events"), ("/v1/baskets/complete", "recommend"), ("/admin/reload", "admin")]


def _call(app: Any, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, int]:
    """Run one request through the ASGI app by hand: (status, headers, how often it read the body)."""
    reads = 0
    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    return answer["status"], answer["headers"], reads


@pytest.mark.parametrize(("path", "scope"), BODY_ROUTES)
def test_a_request_without_the_right_key_is_refused_before_its_body_is_read(
    make_shop: Callable[..., Shop], model: LoadedModel, path: str, scope: str
) -> None:
    shop = make_shop(model)
    wrong_scope = "key-recaps"
    body = b'{"not json' * 1000
    for headers, status in (({}, 401), ({"X-API-Key": "nope"}, 401), ({"X-API-Key": wrong_scope}, 403)):
        sent = {**headers, "Content-Type": "application/json", "Content-Length": str(len(body))}
        got, answer_headers, reads = _call(shop.app, "POST", path, sent, body)
        assert (got, reads) == (status, 0), headers
        assert answer_headers["connection"] == "close"  # the rest of the body is not read either
    if path != "/admin/reload":  # a route with a body: with the right key it is read, then found malformed
        headers = {"X-API-Key": f"key-{scope}", "Content-Type": "application/json"}
        got, _, reads = _call(shop.app, "POST", path, headers, body)
        assert reads >= 1 and got == 422


def test_a_malformed_body_gets_401_without_a_key_and_422_with_one(
    make_shop: Callable[..., Shop], model: LoadedModel
) -> None:
    shop = make_shop(model)
    headers = {"Content-Type": "application/json"}
    assert shop.client.post("/v1/events", content=b"{oops", headers=headers).status_code == 401
    r = shop.client.post("/v1/events", content=b"{oops", headers={**headers, "X-API-Key": "key-events"})
    assert r.status_code == 422 and r.json()["request_id"]


def test_a_body_over_the_limit_is_refused_with_413(
    make_shop: Callable[..., Shop], model: LoadedModel, settings: Any
) -> None:
    shop = make_shop(model)
    limit = settings.max_body_bytes
    headers = {"Content-Type": "application/json", "X-API-Key": "key-events"}
    big = b'{"events": [' + b" " * limit + b"]}"
    r = shop.client.post("/v1/events", content=big, headers=headers)
    assert r.status_code == 413 and r.json()["request_id"]
    # Without a Content-Length (chunked): refused as the running count passes the limit.
    chunks = iter([b'{"events": [', *([b" " * 65_536] * (limit // 65_536 + 1)), b"]}"])
    r = shop.client.post("/v1/events", content=chunks, headers=headers)
    assert r.status_code == 413
    # Under the limit the same route answers as usual.
    ok = shop.post("/v1/events", key="key-events", json={"events": [{"event_id": "e", "user_id": "u"}]})
    assert ok.status_code == 200


def test_requests_beyond_the_in_flight_limit_answer_503_at_once() -> None:
    release = asyncio.Event()
    entered = 0

    async def slow_app(scope: dict, receive: Any, send: Any) -> None:
        nonlocal entered
        entered += 1
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limited = RequestsInFlight(slow_app, limit=2)

    async def one(path: str) -> int:
        statuses: list[int] = []

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        await limited({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send)
        return statuses[0]

    async def scenario() -> list[int]:
        first = [asyncio.create_task(one("/v1/items/I0/similar")) for _ in range(2)]
        while entered < 2:
            await asyncio.sleep(0)
        refused = await one("/v1/items/I0/similar")  # answers while the two are still in flight
        health = asyncio.create_task(one("/health/ready"))  # never refused
        await asyncio.sleep(0)
        release.set()
        return [refused, *(await asyncio.gather(*first, health))]

    refused, *served = asyncio.run(scenario())
    assert refused == 503 and served == [200, 200, 200]
    assert limited.current == 0  # every request left the count
