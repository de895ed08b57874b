"""`reco serve` and `reco events export`: the commands that run the service and drain its events.

The only module of the offline side that imports the service (import rules in pyproject.toml).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

events_app = typer.Typer(help="Purchase events posted to the service: export them.", no_args_is_help=True)

SERVE_EXAMPLE = """
Example (keys and their scopes in RECO_API_KEYS; docs/api.md):

  export RECO_API_KEYS='{"shop-key": ["recommend"], "ops-key": ["admin"]}'
  reco serve --port 8000        # then, from another shell:
  curl -H 'X-API-Key: shop-key' \\
      'http://127.0.0.1:8000/v1/users/C0001/recommendations?k=5'
"""

EXPORT_EXAMPLE = """
Example (from any host that reaches the event log; each event is exported once):

  reco events export --out events/
"""


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind.")] = 8000,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: one per core, at most 8).")
    ] = None,
    limit_concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Requests in flight per worker before answering 503 (default RECO_MAX_REQUESTS_IN_FLIGHT, 512); "
            "idle and half-sent connections do not count.",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Run the HTTP API (uvicorn) with settings for this machine: one BLAS thread per worker."""
    from service.config import load_service_settings

    if limit_concurrency is not None:  # the workers read it from the environment, as every setting
        os.environ["RECO_MAX_REQUESTS_IN_FLIGHT"] = str(limit_concurrency)
    settings = load_service_settings()  # bad settings stop here, with one sentence
    _ = settings.recap_brand  # and so does a bad brand file (RECO_BRAND)
    # Set before any worker imports numpy: one BLAS thread each (more threads fight over the cores).
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    n_workers = workers or max(1, min(os.cpu_count() or 1, 8))
    if n_workers > 1:
        import shutil

        from service.runtime import optimize_workers

        optimize_workers()  # workers start with -O: seconds less of Feast's import (service.runtime)

        metrics_dir = settings.home / "prometheus" / str(os.getpid())
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    import uvicorn

    from service.edge import uvicorn_options

    typer.echo(
        f"reco: serving on http://{host}:{port} with {n_workers} worker(s), model {settings.model_uri}", err=True
    )
    uvicorn.run(
        "service.app:app",
        host=host,
        port=port,
        workers=n_workers,
        backlog=2048,
        **uvicorn_options(),
        timeout_graceful_shutdown=20,
        access_log=False,
        log_level=log_level,
        proxy_headers=False,
    )


@events_app.command("export", epilog=EXPORT_EXAMPLE)
def events_export(
    out: Annotated[Path, typer.Option(help="Directory for the Parquet files (purchase contract columns + event_id).")],
    batch: Annotated[int, typer.Option(min=1, help="Events per file at most.")] = 100_000,
) -> None:
    """Write the accepted events not exported yet into OUT/events-<first>-<last>.parquet files; each
    event is exported once, also when a previous run was killed midway (run one export at a time)."""
    from service.config import load_service_settings
    from service.events.store import EventLogDown, open_event_store
    from training.core.errors import RecoError

    settings = load_service_settings()
    store = open_event_store(settings)
    try:
        result = store.export(out, batch=batch)
    except EventLogDown as exc:
        raise RecoError(
            f"The event log ({store.kind}) cannot be read, nothing was exported: {str(exc)[:200]}"
        ) from None
    finally:
        store.close()
    if not result.files:
        typer.echo("no new events to export")
    else:
        typer.echo(f"exported {result.events:,} events to {len(result.files)} file(s) in {out}")
        for path in result.files:
            typer.echo(f"  {path.name}")
