"""POST /v1/events on a live server, then `reco events export`: the accepted event is drained once
into Parquet with the purchase contract's columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.integration.service.support import World, live_server
from tests.unit.service.test_events import _event


def test_post_events_then_cli_export(tmp_path: Path, w: World) -> None:
    home = tmp_path / "home"
    env = w.env(RECO_HOME=str(home))
    env["MLFLOW_TRACKING_URI"] = w.tracking_uri  # reuse the world's registry, separate event log
    with live_server(env) as server, server.client() as c:
        r = c.post("/v1/events", json={"events": [_event(1), _event(2, price=-3), _event(3, timestamp="nope")]})
        assert r.status_code == 200
        body = r.json()
        assert (body["received"], body["accepted"], body["rejected"]) == (3, 1, 2)
        assert body["rejections"][0]["reason"].startswith("price")
        assert c.get("/health/ready").json()["events"]["pending"] == 1
        too_many = c.post("/v1/events", json={"events": [_event(n) for n in range(1001)]})
        assert too_many.status_code == 422
    out = tmp_path / "export"
    run = subprocess.run(
        [sys.executable, "-m", "training.cli", "events", "export", "--out", str(out)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "exported 1 events" in run.stdout
    files = list(out.glob("*.parquet"))
    assert len(files) == 1 and pq.read_table(files[0]).column("event_id").to_pylist() == ["e1"]
    assert json.loads(json.dumps(pq.read_table(files[0]).to_pylist()[0], default=str))["user_id"] == "C1"
