"""Shared world of the service's integration tests: ONE small trained model + features per test
run, and a live uvicorn server on loopback per configuration.

The world is built once per process (module-level cache) so every test module here (and a test's
subprocess, which imports this module) reuses it: a synthetic store, `training.pipeline.train.train` into a
real MLflow registry (SQLite in a temp dir), a second registered version of the same artifacts (for
reload tests), `features build` + `materialize` into the SQLite online store, and the 2025 recaps
made by the real recap job.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

KEY_ALL = "test-all"
KEYS = {
    KEY_ALL: ["recommend", "recaps", "events", "admin"],
    "test-recommend": ["recommend"],
    "test-recaps": ["recaps"],
    "test-events": ["events"],
    "test-admin": ["admin"],
}
DATA_END = "2025-12-31T12:00:00+00:00"  # RECO_NOW: the synthetic store ends on 2025-12-31


@dataclass(frozen=True)
class World:
    home: Path
    store: Path
    tracking_uri: str
    users: list[str]
    items: list[str]
    out_of_stock: set[str]
    recap_users: list[str]

    def env(self, **extra: str) -> dict[str, str]:
        """The service environment for this world (extra entries override)."""
        env = {
            "RECO_HOME": str(self.home),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "RECO_API_KEYS": json.dumps(KEYS),
            "RECO_AUTH": "enabled",
            "RECO_RECIPES": str(self.store / "recipes.json"),
            "RECO_NOW": DATA_END,
            "RECO_RELOAD_POLL_SECONDS": "0",
            "RECO_ITEM_REFRESH_SECONDS": "0",
        }
        env.update(extra)
        return env


@cache
def world() -> World:
    """Build the world once per process (about 30 s on 2 cores)."""
    from training.data.synthetic import generate_store
    from training.features.build import build
    from training.features.candidates import build_candidates
    from training.features.materialize import materialize
    from training.pipeline.train import train
    from training.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="reco-service-tests-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    store = home / "store"
    generate_store(store, users=800, items=200, years=2, seed=11)
    tracking_uri = f"sqlite:///{home}/mlflow.db"
    settings = load_settings(home=str(home), mlflow_tracking_uri=tracking_uri)
    with _env(RECO_HOME=str(home), MLFLOW_TRACKING_URI=tracking_uri):
        train(
            purchases_path=store / "purchases.parquet",
            catalog_path=store / "catalog.parquet",
            model="als",
            registered_name="reco",
            promote="always",
            settings=settings,
            log=lambda _: None,
        )
        build(settings=settings, purchases=store / "purchases.parquet", catalog=store / "catalog.parquet")
        purchases = pq.read_table(store / "purchases.parquet", columns=["user_id"])
        users = sorted(set(purchases.column("user_id").to_pylist()))
        recap_users = _publish_recaps(store, settings)
        materialize(settings=settings, full=True)
        build_candidates(settings=settings)  # each customer's candidates of the champion, materialized
    catalog = pq.read_table(store / "catalog.parquet").to_pylist()
    return World(
        home=home,
        store=store,
        tracking_uri=tracking_uri,
        users=users,
        items=[r["item_id"] for r in catalog],
        out_of_stock={r["item_id"] for r in catalog if not r["in_stock"]},
        recap_users=recap_users,
    )


HOSTILE_PERSONA = "Weekend <b>Planner</b>"


def _publish_recaps(store: Path, settings: Any) -> list[str]:
    """The 2025 recaps by the real recap job, published to the customer_year_recap source (the
    online store gets them with the world's materialize); returns two customers with a full recap.
    The first one's persona name carries markup, to check the email page escapes it."""
    from training.data.load import load_catalog, load_purchases
    from training.recaps.brand import Brand
    from training.recaps.build import RecapResult, build_recaps
    from training.recaps.job import publish_recaps, with_links
    from training.recaps.rules import RecapOptions

    purchases, _ = load_purchases(store / "purchases.parquet")
    catalog, _ = load_catalog(store / "catalog.parquet")
    result = build_recaps(purchases=purchases, catalog=catalog, options=RecapOptions(year=2025))
    # The customer's links, as the job adds them for a shop with unsubscribe and view-in-browser pages.
    brand = Brand(
        name="Test Shop",
        unsubscribe_url="https://shop.example/unsubscribe?u={user_id}&t={token}",
        view_url="https://shop.example/v1/users/{user_id}/recaps/{year}?format=html&t={token}",
    )
    records = list(with_links(result.recaps, brand=brand, key=b"test-signing-key", year=2025).column("recap_json"))
    records = [json.loads(r.as_py()) for r in records]
    chosen = [r["user_id"] for r in records if r["kind"] == "full"][:2]
    for record in records:
        if record["user_id"] == chosen[0]:
            record["persona"]["name"] = HOSTILE_PERSONA
    table = result.recaps.set_column(
        result.recaps.column_names.index("recap_json"), "recap_json", pa.array([json.dumps(r) for r in records])
    )
    publish_recaps(
        RecapResult(recaps=table, options=result.options, model_version=None), settings=settings, materialize=False
    )
    return chosen


def register_second_version(w: World) -> str:
    """Register the champion's artifacts again as a new version and move @champion to it."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=w.tracking_uri, registry_uri=w.tracking_uri)
    champion = client.get_model_version_by_alias("reco", "champion")
    new = client.create_model_version("reco", source=champion.source, run_id=champion.run_id)
    for _ in range(50):
        if client.get_model_version("reco", new.version).status == "READY":
            break
        time.sleep(0.1)
    client.set_registered_model_alias("reco", "champion", new.version)
    return str(new.version)


def set_champion(w: World, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=w.tracking_uri, registry_uri=w.tracking_uri).set_registered_model_alias(
        "reco", "champion", version
    )


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    """A running server: its base URL, the app (to inspect state) and a client factory."""

    url: str
    app: Any

    def client(self, key: str | None = KEY_ALL) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key} if key else {}, timeout=10)


@contextlib.contextmanager
def live_server(env: dict[str, str]) -> Iterator[Live]:
    """A real uvicorn server on loopback running `create_app()` with this environment."""
    import uvicorn

    from service.app import create_app
    from service.config import load_service_settings

    with _env(**env):
        app = create_app(load_service_settings())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    with _env(**env):
        thread.start()
        deadline = time.monotonic() + 120
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
    try:
        yield Live(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
