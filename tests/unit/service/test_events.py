"""The event log: every event validated on its own, accepted ones stored durably and drained exactly
once into Parquet with the purchase contract's columns."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from service.events.sqlite_store import SQLiteEventStore
from service.events.store import EventLogDown, validate_event
from tests.unit.service.shop import Shop
from training.data.load import load_purchases

NOW = datetime(2025, 12, 31, 12, tzinfo=UTC)


def _event(n: int, **changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": f"e{n}",
        "user_id": f"C{n % 3}",
        "item_id": f"P{n:03d}",
        "timestamp": "2025-12-30T10:00:00Z",
        "quantity": 2,
        "price": 1.5,
        "order_id": f"o{n}",
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"user_id": ""}, "missing user_id"),
        ({"item_id": None}, "missing item_id"),
        ({"event_id": None}, "missing event_id"),
        ({"timestamp": "yesterday"}, "unparseable"),
        ({"timestamp": "2030-01-01T00:00:00Z"}, "future"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"price": -1}, "price"),
        ({"user_id": "u" * 129}, "longer than 128"),
        ({"quantity": 1e300}, "from 1 to 1,000,000"),
        ({"quantity": 2**63}, "from 1 to 1,000,000"),
        ({"quantity": "2"}, "whole number"),
        ({"quantity": float("inf")}, "whole number"),
        ({"price": float("nan")}, "price"),
        ({"user_id": "C\ud800"}, "unpaired surrogate"),
        ({"event_id": "e\x001"}, "control character"),
        ({"order_id": "o\x00"}, "control character"),
        ({"timestamp": "1900-01-01T00:00:00Z"}, "before 1970"),
        ({"timestamp": -1}, "before 1970"),
        ({"timestamp": "99999-01-01"}, "unparseable"),
        ({"timestamp": 1e300}, "unparseable"),
    ],
)
def test_each_contract_rule_rejects_with_a_reason(changes: dict[str, object], reason: str) -> None:
    checked = validate_event(_event(1, **changes), now=NOW)
    assert isinstance(checked, str) and reason in checked


def test_epoch_seconds_and_defaults_are_accepted() -> None:
    checked = validate_event({"event_id": 7, "user_id": 1, "item_id": 2, "timestamp": 1735560000}, now=NOW)
    assert not isinstance(checked, str)
    assert (checked.user_id, checked.quantity, checked.price, checked.order_id) == ("1", 1, None, None)


def test_ingest_counts_everything_and_export_drains_once(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "events.db")
    batch = [_event(1), _event(2), _event(3, quantity=0), _event(1), "not an object"]
    result = store.ingest(batch, now=NOW)
    assert (result.received, result.accepted, result.duplicates, result.rejected) == (5, 2, 1, 2)
    assert [r.index for r in result.rejections] == [2, 4]
    again = store.ingest([_event(2), _event(4)], now=NOW)
    assert (again.accepted, again.duplicates) == (1, 1)
    assert store.pending() == 3

    out = tmp_path / "out"
    first = store.export(out)
    assert first.events == 3 and len(first.files) == 1 and store.pending() == 0
    assert store.export(out).files == []  # drained: nothing twice
    table = pq.read_table(first.files[0])
    assert table.column_names == ["user_id", "item_id", "timestamp", "quantity", "price", "order_id", "event_id"]
    assert sorted(table.column("event_id").to_pylist()) == ["e1", "e2", "e4"]
    # the export is a valid purchase file for the data contract
    _, report = load_purchases(first.files[0])
    assert report.ok and report.rows_accepted == 3


def test_bought_since_feeds_just_bought(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "events.db")
    store.ingest([_event(1, timestamp="2025-12-31T11:00:00Z"), _event(4, timestamp="2025-12-01T11:00:00Z")], now=NOW)
    assert asyncio.run(store.bought_since("C1", datetime(2025, 12, 31, tzinfo=UTC))) == {"P001"}


# --- through the route ------------------------------------------------------------------------------


def _events_counted(outcome: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("reco_events_total", {"outcome": outcome}) or 0.0


def test_the_route_reports_every_event_and_counts_them(make_shop: Callable[..., Shop]) -> None:
    shop = make_shop(None)
    before = {o: _events_counted(o) for o in ("accepted", "duplicate", "rejected")}
    now = shop.services.settings.clock()
    batch = [
        _event(1, timestamp=now.isoformat()),
        _event(1, timestamp=now.isoformat()),
        _event(2, quantity=0, timestamp=now.isoformat()),
    ]
    r = shop.post("/v1/events", key="key-events", json={"events": batch})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["received"], body["accepted"], body["duplicates"], body["rejected"]) == (3, 1, 1, 1)
    reason = "quantity must be a whole number from 1 to 1,000,000"
    assert body["rejections"] == [{"index": 2, "event_id": "e2", "reason": reason}]
    assert body["request_id"] == r.headers["x-request-id"]
    after = {o: _events_counted(o) for o in before}
    assert {o: after[o] - before[o] for o in before} == {"accepted": 1, "duplicate": 1, "rejected": 1}
    assert asyncio.run(shop.services.events.bought_since("C1", now - timedelta(hours=1))) == {"P001"}


def test_more_events_than_allowed_is_a_422_and_stores_nothing(make_shop: Callable[..., Shop]) -> None:
    shop = make_shop(None)  # RECO_MAX_EVENTS is 3 in these tests
    r = shop.post("/v1/events", key="key-events", json={"events": [_event(n) for n in range(4)]})
    assert r.status_code == 422 and "At most 3 events" in r.json()["detail"]
    assert shop.services.events.pending() == 0


def test_an_event_log_that_cannot_be_written_is_a_503(
    make_shop: Callable[..., Shop], monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = make_shop(None)

    def broken(*args: object, **kwargs: object) -> None:
        raise EventLogDown("OperationalError: disk I/O error")

    monkeypatch.setattr(shop.services.events, "ingest", broken)
    r = shop.post("/v1/events", key="key-events", json={"events": [_event(1)]})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert "nothing was stored" in r.json()["detail"]


@pytest.mark.parametrize(
    "bad",
    [{"quantity": 1e300}, {"quantity": 2**63}, {"user_id": "C\ud800"}, {"event_id": "e\ud800"}, {"item_id": "P\x00"}],
    ids=["quantity-1e300", "quantity-2^63", "surrogate-user", "surrogate-event-id", "nul-item"],
)
def test_one_bad_event_is_rejected_and_the_rest_of_its_batch_stored(
    make_shop: Callable[..., Shop], bad: dict[str, object]
) -> None:
    shop = make_shop(None)
    now = shop.services.settings.clock().isoformat()
    batch = [_event(10, timestamp=now), {**_event(11, timestamp=now), **bad}, _event(12, timestamp=now)]
    body = json.dumps({"events": batch})  # ASCII: a lone surrogate travels as its \\u escape
    r = shop.client.post(
        "/v1/events", content=body, headers={"X-API-Key": "key-events", "Content-Type": "application/json"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["rejections"][0]["index"] == 1 and body["rejections"][0]["reason"]
    with sqlite3.connect(shop.services.settings.events_db) as db:
        stored = {row[0] for row in db.execute("SELECT event_id FROM events")}
    assert stored == {"e10", "e12"}
