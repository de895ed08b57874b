"""`reco demo`: the whole loop on embedded defaults, everything under RECO_HOME.

Like `reco serve`, it starts the service (in a subprocess) and so may import its settings.

generate a store → validate → train + register (@champion) → features build + materialize
(SQLite online store unless REDIS_URL is set) → candidates build (each customer's top candidates
of the champion, materialized) → last full year's recaps for a made-up shop (its
brand file and signing key kept under RECO_HOME/demo), published → `reco serve` with a demo API key,
checked with the three requests it prints as curl lines and the recap page of a view-in-browser link.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

from service.config import SCOPES, load_service_settings
from training.core import columns as col
from training.core.errors import RecoError
from training.settings import Settings, load_settings

if TYPE_CHECKING:
    import pyarrow as pa

Echo = Callable[[str], None]
READY_TIMEOUT_S = 180.0

EXAMPLE = """
Example:

  reco demo            # the whole loop, then the API on :8000 (Ctrl-C stops)
  reco demo --users 20000 --items 3000 --no-serve
"""


def demo(
    users: Annotated[int, typer.Option(min=100, help="Customers in the demo store.")] = 5_000,
    items: Annotated[int, typer.Option(min=50, help="Items in the demo catalog.")] = 1_000,
    seed: Annotated[int, typer.Option(help="Seed of the demo store.")] = 42,
    host: Annotated[str, typer.Option(help="Interface the demo service binds.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the demo service.")] = 8000,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="End with the service running (Ctrl-C stops it).")
    ] = True,
) -> None:
    """The whole loop on embedded defaults (SQLite online store, local MLflow, all under RECO_HOME):
    generate a store, validate it, train and register a model, build and materialize features,
    build last year's recaps, then serve the API and print curl lines that work."""
    run_demo(users=users, items=items, seed=seed, host=host, port=port, serve=serve_after, echo=typer.echo)


def run_demo(*, users: int, items: int, seed: int, host: str, port: int, serve: bool, echo: Echo) -> None:
    """Run every stage on a synthetic store; with `serve`, block with the service running until Ctrl-C."""
    from training.data.load import load_catalog, load_purchases
    from training.data.synthetic import generate_store
    from training.features.build import build as build_features
    from training.features.candidates import build_candidates
    from training.features.materialize import materialize
    from training.pipeline.train import train
    from training.recaps.job import RecapJob

    settings = load_settings()
    if serve:
        _check_port_free(host, port)
    # The demo shop signs its recap links with a key of its own unless one is set (kept with the demo).
    if settings.recap_signing_key is None:
        settings = load_settings(recap_signing_key=_demo_secret(settings, "recap_signing_key"))
    store = settings.home / "demo" / "store"
    purchases_path, catalog_path = store / "purchases.parquet", store / "catalog.parquet"
    echo(f"[demo] RECO_HOME={settings.home}")

    echo(f"[demo 1/6] a synthetic store: {users:,} customers, {items:,} items, 2 years → {store}")
    echo(generate_store(store, users=users, items=items, years=2, seed=seed, progress=True).format_text())

    echo("[demo 2/6] the files against the data contract")
    purchases, purchase_report = load_purchases(purchases_path)
    echo(purchase_report.format_text())
    echo(load_catalog(catalog_path)[1].format_text())

    echo(f"[demo 3/6] reco train: time split, tuning, test beside the baselines, MLflow {settings.tracking_uri}")
    result = train(
        purchases_path=purchases_path, catalog_path=catalog_path, settings=settings, log=lambda m: echo(f"  {m}")
    )
    echo(result.table)
    echo(json.dumps(result.summary()))

    echo(
        "[demo 4/6] reco features build + materialize, reco candidates build (online store: "
        + ("Redis" if settings.redis_url else "SQLite")
        + ")"
    )
    echo(build_features(settings=settings, purchases=purchases_path, catalog=catalog_path).format_text())
    echo(materialize(settings=settings, full=True, progress=True).format_text())
    echo(build_candidates(settings=settings).format_text())

    import pyarrow.compute as pc

    last = pc.max(purchases.column(col.TIMESTAMP)).as_py()
    year = last.year if (last + timedelta(days=1)).year > last.year else last.year - 1
    recaps_out = settings.home / "demo" / "recaps" / f"recaps-{year}.jsonl"
    brand = _demo_brand(settings, host=host, port=port)
    echo(f"[demo 5/6] reco recaps build --year {year} --brand {brand}: JSONL, emails and the online store")
    manifest = RecapJob(
        year=year,
        purchases=purchases_path,
        catalog=catalog_path,
        out=recaps_out,
        html_dir=recaps_out.parent / "emails",
        brand_file=brand,
        publish=True,
        settings=settings,
        log=lambda m: echo(f"  {m}"),
    ).run()
    counts = manifest["counts"]
    echo(f"  {counts['recaps']:,} recaps ({counts['short_recaps']:,} short) → {recaps_out}, emails next to it")
    echo(f"  review them: reco recaps preview --year {year} --recaps {recaps_out}")

    if not serve:
        echo("[demo] done (--no-serve); `reco serve` starts the API")
        return
    user = _demo_customer(recaps_out)
    _serve(
        settings=settings,
        host=host,
        port=port,
        user=user,
        item=_most_bought_item(purchases),
        year=year,
        now=last,
        recaps=recaps_out,
        echo=echo,
    )


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            raise RecoError(f"Port {port} on {host} is taken: stop what runs there or pass --port.") from None


def _demo_customer(recaps: Path) -> str:
    """A customer with a full recap (so every curl line shows something)."""
    with recaps.open() as fh:
        for line in fh:
            record = json.loads(line)
            if record.get("kind") == "full":
                return str(record["user_id"])
    raise RecoError(f"No full recap in {recaps}: the demo store is too small.")


def _most_bought_item(purchases: pa.Table) -> str:
    import pyarrow.compute as pc

    counts = pc.value_counts(purchases.column(col.ITEM_ID))
    top = pc.index(counts.field("counts"), pc.max(counts.field("counts"))).as_py()
    return str(counts[top]["values"])


def _demo_key(settings: Settings) -> str:
    """The demo's API key, kept under RECO_HOME so the printed curl lines keep working across runs."""
    return _demo_secret(settings, "api_key", prefix="demo-")


def _demo_secret(settings: Settings, name: str, *, prefix: str = "") -> str:
    """A secret of the demo (its API key, its recap signing key), made once and kept under RECO_HOME."""
    path = settings.home / "demo" / name
    if path.exists():
        return path.read_text().strip()
    key = prefix + secrets.token_urlsafe(18)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def _demo_brand(settings: Settings, *, host: str, port: int) -> Path:
    """The demo shop's brand file (docs/recaps.md): a made-up grocer whose view-in-browser link opens
    the recap page of the demo service."""
    path = settings.home / "demo" / "brand.json"
    shop = "https://greenleaf.example"
    brand = {
        "name": "Greenleaf Grocers",
        "currency": "GBP",
        "locale": "en_GB",
        "sender": "Greenleaf Grocers <hello@greenleaf.example>",
        "address": "Greenleaf Grocers Ltd, 12 Market Street, Bristol BS1 4DJ, United Kingdom",
        "shop_url": f"{shop}/",
        "product_url": f"{shop}/p/{{item_id}}",
        "unsubscribe_url": f"{shop}/email/unsubscribe?u={{user_id}}&y={{year}}&t={{token}}",
        "view_url": f"http://{host}:{port}/v1/users/{{user_id}}/recaps/{{year}}?format=html&t={{token}}",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(brand, indent=2) + "\n")
    return path


def _view_in_browser(recaps: Path, user: str) -> str | None:
    """The customer's view-in-browser link, from their recap record."""
    with recaps.open() as fh:
        for line in fh:
            record = json.loads(line)
            if record.get("user_id") == user:
                return (record.get("links") or {}).get("view_in_browser")
    return None


def _serve(
    *, settings: Settings, host: str, port: int, user: str, item: str, year: int, now, recaps: Path, echo: Echo
) -> None:
    """Start `reco serve` with the demo key, check the printed requests answer 200, wait for Ctrl-C."""
    key = _demo_key(settings)
    keys = {**{k: sorted(v) for k, v in load_service_settings().api_keys.items()}, key: list(SCOPES)}
    # The store's history ends at `now`: the service's clock starts there, so "just bought" means something.
    env = dict(os.environ, RECO_API_KEYS=json.dumps(keys), RECO_NOW=(now + timedelta(hours=1)).isoformat())
    # The recap page behind the emails' view-in-browser links: the demo shop, and the key that signed them.
    env.update(RECO_BRAND=str(_demo_brand(settings, host=host, port=port)))
    if settings.recap_signing_key is not None:
        env["RECO_RECAP_SIGNING_KEY"] = settings.recap_signing_key.get_secret_value()
    env.setdefault("RECO_RECIPES", str(settings.home / "demo" / "store" / "recipes.json"))
    base = f"http://{host}:{port}"
    echo(f"[demo 6/6] reco serve on {base} (auth on; demo key in {settings.home / 'demo' / 'api_key'})")
    server = subprocess.Popen(
        [sys.executable, "-m", "training.cli", "serve", "--host", host, "--port", str(port)],
        env=env,
        start_new_session=True,
    )
    signal.signal(signal.SIGTERM, _interrupt)  # a killed demo stops its service too
    try:
        _wait_ready(base, server)
        paths = [
            f"/v1/users/{quote(user)}/recommendations?k=5&explain=true",
            f"/v1/items/{quote(item)}/similar?k=5",
            f"/v1/users/{quote(user)}/recaps/{year}",
        ]
        echo("\nThe service is up. Try (OpenAPI docs at " + f"{base}/docs):")
        for path in paths:
            status = _status(base + path, key)
            mark = "" if status == 200 else f"   # answered {status}"
            echo(f"  curl -s -H 'X-API-Key: {key}' '{base}{path}'{mark}")
        page = _view_in_browser(recaps, user)
        if page:
            status = _status(page, None)
            mark = "" if status == 200 else f"   # answered {status}"
            echo(f"\nThe recap email of {user} in a browser (its view-in-browser link, no key needed):\n  {page}{mark}")
        echo("\nCtrl-C stops the service.")
        server.wait()
    except KeyboardInterrupt:
        echo("\n[demo] stopping the service")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=30)
    if server.returncode not in (0, -signal.SIGTERM, None):
        raise RecoError(f"The service exited with code {server.returncode}.")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RecoError(f"The service stopped during start-up (exit code {server.returncode}).")
        if _status(f"{base}/health/ready", None) == 200:
            return
        time.sleep(0.5)
    raise RecoError(f"The service was not ready within {READY_TIMEOUT_S:.0f} s ({base}/health/ready).")


def _status(url: str, key: str | None) -> int:
    request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0
