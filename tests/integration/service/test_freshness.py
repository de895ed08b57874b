"""Online features on the service clock: Feast does not enforce a view's ttl on online reads, so the
service does (stale customer rows are missing, stale item rows have unknown availability); and the
first reads after start-up fit in the feature timeout."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.service.support import DATA_END, World, live_server

pytestmark = pytest.mark.slow

NOW = datetime.fromisoformat(DATA_END)
REPO = Path(__file__).resolve().parents[3]


def _stale_count(view: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("reco_stale_features_total", {"view": view}) or 0.0


def _write_recent_items(store: Any, user_id: str, item_id: str, *, written: datetime) -> None:
    import pandas as pd

    bought = int((NOW - timedelta(days=2)).timestamp())
    store.write_to_online_store(
        "customer_recent_items",
        pd.DataFrame(
            {
                "user_id": [user_id],
                "recent_items": [[item_id]],
                "recent_item_times": [[bought]],
                "buy_again_items": [[]],
                "buy_again_orders": [[]],
                "event_timestamp": [written],
            }
        ),
    )


def test_stale_customer_rows_count_as_missing(w: World) -> None:
    with live_server(w.env()) as server, server.client() as c:
        features = server.app.state.services.features
        # Two customers the model does not know, with the same recent purchase in the online store:
        # one written a day ago, one 400 days ago (the view's ttl is 365 days).
        _write_recent_items(features.store, "fresh-newcomer", w.items[0], written=NOW - timedelta(days=1))
        _write_recent_items(features.store, "stale-newcomer", w.items[0], written=NOW - timedelta(days=400))
        before = _stale_count("customer_recent_items")
        fresh = asyncio.run(features.customer("fresh-newcomer")).features
        stale = asyncio.run(features.customer("stale-newcomer")).features
        assert fresh is not None and fresh.recent_items == (w.items[0],)
        assert stale is not None and not stale.known and stale.recent_items == ()
        assert _stale_count("customer_recent_items") == before + 1
        fresh_answer = c.get("/v1/users/fresh-newcomer/recommendations", params={"k": 5}).json()
        stale_answer = c.get("/v1/users/stale-newcomer/recommendations", params={"k": 5}).json()
    assert fresh_answer["source"] == "item-to-item"  # seeded by the recent purchase
    assert stale_answer["source"] == "popular"  # the year-old row is ignored


def test_stale_item_stats_mean_unknown_availability(w: World) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    # item_stats' ttl is 30 days from the build that wrote the rows (they carry the build's time).
    built = pc.max(pq.read_table(w.home / "features" / "item_stats.parquet").column("event_timestamp")).as_py()
    later = (built + timedelta(days=40)).isoformat()
    before = _stale_count("item_stats")
    with live_server(w.env(RECO_NOW=later)) as server, server.client() as c:
        catalog = server.app.state.services.features.catalog
        ready = c.get("/health/ready").json()
        answer = c.get(f"/v1/users/{w.users[0]}/recommendations", params={"k": 10})
    assert catalog.items and all(info.in_stock is None for info in catalog.items.values())
    assert all(info.name for info in catalog.items.values())  # attributes are kept, only availability is unknown
    assert ready["features"]["items_stale"] == ready["features"]["items_cached"] > 0
    assert _stale_count("item_stats") >= before + len(catalog.items)
    # unknown availability leaves the model's own catalog flags in force
    assert answer.status_code == 200 and not {i["item_id"] for i in answer.json()["items"]} & w.out_of_stock


def test_current_item_stats_are_not_stale(w: World) -> None:
    with live_server(w.env()) as server:
        catalog = server.app.state.services.features.catalog
    assert catalog.stale == 0 and {i for i, info in catalog.items.items() if info.in_stock is False} == w.out_of_stock


def test_first_recap_read_after_start_up_fits_the_feature_timeout(w: World) -> None:
    # A fresh interpreter: Feast's lazy set-up on a first read is paid once per process.
    script = (
        "import json, sys\n"
        "from tests.integration.service.support import live_server\n"
        "env, user = json.loads(sys.argv[1]), sys.argv[2]\n"
        "with live_server(env) as server, server.client() as c:\n"
        "    r = c.get(f'/v1/users/{user}/recaps/2025')\n"
        "    print(json.dumps({'status': r.status_code, 'body': r.text[:200]}))\n"
    )
    env = w.env(RECO_FEATURE_TIMEOUT_MS="20")
    run = subprocess.run(
        [sys.executable, "-c", script, json.dumps(env), w.recap_users[0]],
        cwd=REPO,
        env={
            **{k: v for k, v in os.environ.items() if not k.upper().startswith("PROMETHEUS_MULTIPROC")},
            "PYTHONPATH": str(REPO),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200, answer
