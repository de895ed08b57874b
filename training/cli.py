"""`reco`: the one command (DESIGN.md, "CLI"). Each sub-command imports what it needs when it
runs, so `reco --help` stays instant (importing Feast or MLflow costs seconds)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from training.errors import RecoError

app = typer.Typer(
    name="reco",
    help="Personalized recommendations and yearly recaps for online retailers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Purchase data: generate a synthetic store, validate a file.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one sentence to stderr and exit: the CLI never answers with a traceback."""
    typer.echo(f"reco: {message}", err=True)
    raise typer.Exit(code)


def main() -> None:
    """Console entry point: known errors become one sentence and exit code 2."""
    try:
        app()
    except RecoError as exc:
        typer.echo(f"reco: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("reco: interrupted", err=True)
        sys.exit(130)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    _exit_without_teardown()


def _exit_without_teardown() -> None:
    """After success: threads joined, output flushed and exit handlers run (logging, MLflow), as at a
    normal exit; then the process ends without the interpreter freeing every object one by one,
    which after `reco train` at 10 M lines took 0.8 s of its 28 (the kernel frees the memory at once
    either way)."""
    import atexit
    import contextlib
    import threading

    # What a normal exit does first: idle pool workers woken (concurrent.futures' exit hook; MLflow
    # leaves an artifact pool open) and every non-daemon thread joined; then the exit handlers.
    threading._shutdown()  # type: ignore[attr-defined]
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a closed pipe (`reco recommend | head`): nothing more to say
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(0)


# --- reco data ---------------------------------------------------------------------------------


@data_app.command("generate")
def data_generate(
    out: Annotated[Path, typer.Option(help="Directory to write purchases.parquet, catalog.parquet, recipes.json.")],
    users: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 10_000,
    items: Annotated[int, typer.Option(min=50, help="Number of catalog items.")] = 2_000,
    years: Annotated[int, typer.Option(min=1, max=20, help="Calendar years of history (ending 2025-12-31).")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives identical files.")] = 42,
) -> None:
    """Write a realistic synthetic store: tastes, staples on a rhythm, baskets, seasonality, churn."""
    from training.synthetic import generate_store

    summary = generate_store(out, users=users, items=items, years=years, seed=seed, progress=True)
    typer.echo(summary.format_text())


@data_app.command("validate")
def data_validate(
    purchases: Annotated[Path, typer.Argument(help="Purchase file (CSV or Parquet) to check against the contract.")],
    catalog: Annotated[Path | None, typer.Option(help="Catalog file to check as well.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the full report (every rejected row) as JSON.")] = None,
    show: Annotated[int, typer.Option(min=0, help="Rejected rows to print per file.")] = 20,
) -> None:
    """Check files against the data contract; exit 1 when any row is rejected."""
    from training.data import load_catalog, load_purchases

    _, purchase_report = load_purchases(purchases)
    reports = [purchase_report]
    if catalog is not None:
        reports.append(load_catalog(catalog)[1])
    for r in reports:
        typer.echo(r.format_text(max_rows=show))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps([r.to_dict() for r in reports], indent=2) + "\n")
        typer.echo(f"full report: {report}")
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


# --- reco demo ---------------------------------------------------------------------------------


@app.command("demo")
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
    from training.demo import run_demo

    run_demo(users=users, items=items, seed=seed, host=host, port=port, serve=serve_after, echo=typer.echo)


# --- reco features -----------------------------------------------------------------------------

features_app = typer.Typer(
    help="Feature store: build offline sources, push them to the online store.", no_args_is_help=True
)
app.add_typer(features_app, name="features")


@features_app.command("build")
def features_build(
    purchases: Annotated[Path, typer.Option(help="Purchase file (CSV or Parquet).")],
    catalog: Annotated[Path | None, typer.Option(help="Catalog file (category, price, in_stock).")] = None,
) -> None:
    """Compute the offline Parquet sources of feature_repo/ under RECO_HOME/features."""
    from training.features import build
    from training.settings import load_settings

    settings = load_settings()
    result = build(settings=settings, purchases=purchases, catalog=catalog)
    typer.echo(result.format_text())
    typer.echo(f"wrote {settings.feature_data_dir}")


@features_app.command("materialize")
def features_materialize(
    full: Annotated[
        bool, typer.Option("--full", help="Rewrite every row, not only rows changed since last run.")
    ] = False,
    view: Annotated[list[str] | None, typer.Option(help="Only this feature view (repeatable).")] = None,
) -> None:
    """Push the offline sources to the online store (Redis when REDIS_URL is set, else SQLite)."""
    from training.features import materialize
    from training.settings import load_settings

    result = materialize(settings=load_settings(), views=view or None, full=full, progress=True)
    typer.echo(result.format_text())


# --- reco train / evaluate / recommend / promote (issue 3) -------------------------------------

ModelOption = Annotated[
    str, typer.Option("--model", help="hybrid (default), popularity, frequency, als, bpr, knn-cosine, knn-bm25, ease.")
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        help="KEY=VALUE, repeatable: factors, regularization, iterations, alpha, neighbours, ease_lambda, seed, "
        "candidates (e.g. als,ease), refit (auto|full|fold-in|none), eval_users, half_life, popularity_half_life.",
    ),
]


def _stderr(message: str) -> None:
    typer.echo(message, err=True)


def _keep_freed_memory() -> None:
    """Batch commands only (not the server): freed memory stays in the process for the next array.

    By default glibc returns every array above 32 MB to the kernel when it is freed, and gives each
    thread an arena that shrinks the same way, so the next array faults its pages in again. In a
    10 M-line `reco train` that was 17–21 s of system time, a quarter of the run; with one arena
    and allocations kept up to 1 GB each (2 GB free at most), 13 s, and the run 10–21% faster
    (runs one after the other). The C library's settings are skipped where it is not glibc.

    Arrow allocates from the C library too (its default is mimalloc, a second heap that numpy never reuses):
    loading and preparing 10 M lines took 4.3-4.4 s instead of 5.1-5.8 s (three alternating runs)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is not None:
        # Before numpy is imported: glibc fixes its arena limit when a second thread (OpenBLAS's, at
        # numpy's import) first allocates. Set later, every pool thread kept its own arena, where an
        # array above 64 MB is always mapped afresh: 19 arrays of 10 M lines were, in one run.
        m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
        mallopt(m_arena_max, 1)
        mallopt(m_mmap_threshold, 1 << 30)
        mallopt(m_trim_threshold, 2**31 - 1)  # mallopt takes a C int

    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


@app.command("train")
def train_command(
    purchases: Annotated[Path, typer.Option(help="Purchase file (CSV or Parquet).")],
    catalog: Annotated[Path | None, typer.Option(help="Catalog file: in-stock flags and categories.")] = None,
    model: ModelOption = "hybrid",
    param: ParamOption = None,
    registered_name: Annotated[
        str | None, typer.Option(help="Registered model name (default: RECO_REGISTERED_NAME or reco).")
    ] = None,
    promote: Annotated[
        str, typer.Option(help="auto: @champion only if it beats the champion; always; never.")
    ] = "auto",
) -> None:
    """Split by time, fit, tune on validation, evaluate on each customer's last basket beside the baselines,
    log to MLflow, register, and move @champion only when the new model wins. Last line: JSON summary."""
    _keep_freed_memory()
    from training.train import parse_params, train

    result = train(
        purchases_path=purchases,
        catalog_path=catalog,
        model=model,
        params=parse_params(param or []),
        registered_name=registered_name,
        promote=promote,
        log=_stderr,
    )
    typer.echo(result.table)
    typer.echo(json.dumps(result.summary()))


@app.command("evaluate")
def evaluate_command(
    purchases: Annotated[Path, typer.Option(help="Purchase file (CSV or Parquet).")],
    catalog: Annotated[Path | None, typer.Option(help="Catalog file.")] = None,
    model: ModelOption = "hybrid",
    param: ParamOption = None,
    out: Annotated[Path | None, typer.Option(help="Write every metric of every model as JSON.")] = None,
) -> None:
    """Evaluate one configuration on the time split beside the baselines; nothing is logged or registered."""
    _keep_freed_memory()
    from training.data import load_training_inputs
    from training.evaluation import TABLE_METRICS, comparison_table
    from training.models import check_model
    from training.train import DEFAULT_EVAL_USERS, evaluate_on_test, fit_configuration, parse_params, prepare

    check_model(model)
    params = parse_params(param or [])
    table, _, cat, _ = load_training_inputs(purchases, catalog)
    prepared = prepare(purchases=table, catalog=cat, eval_users=int(params.get("eval_users", DEFAULT_EVAL_USERS)))
    fitted = fit_configuration(model=model, params=params, prepared=prepared, log=_stderr)
    results = evaluate_on_test(fitted=fitted, prepared=prepared)
    typer.echo(comparison_table(results, metrics=TABLE_METRICS))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        typer.echo(f"all metrics: {out}")


@app.command("recommend")
def recommend_command(
    out: Annotated[Path, typer.Option(help="JSONL output: one line per customer.")],
    model_uri: Annotated[
        str | None, typer.Option(help="models:/reco@champion (default: RECO_MODEL_URI), models:/reco/3, runs:/…")
    ] = None,
    users: Annotated[
        Path | None, typer.Option(help="One user_id per line (default: every customer the model knows).")
    ] = None,
    k: Annotated[int, typer.Option(min=1, max=1000, help="Items per customer.")] = 10,
    context: Annotated[str, typer.Option(help="home, buy-again or discover.")] = "home",
    batch_size: Annotated[int, typer.Option(min=1, help="Customers scored per batch.")] = 1024,
) -> None:
    """Batch recommendations as JSONL; customers unknown to the model get the fallback list, never an error."""
    _keep_freed_memory()
    from tqdm import tqdm

    from training.ranking import check_context
    from training.registry import load_bundle
    from training.settings import load_settings

    check_context(context)
    settings = load_settings()
    bundle = load_bundle(model_uri or settings.model_uri, settings=settings)
    if users is None:
        user_ids = bundle.user_ids.tolist()
    else:
        try:
            user_ids = [line.strip() for line in users.read_text().splitlines() if line.strip()]
        except OSError as exc:
            fail(f"Cannot read {users} ({exc.strerror}).")
    out.parent.mkdir(parents=True, exist_ok=True)
    fallback = 0
    with out.open("w") as fh, tqdm(total=len(user_ids), unit="customer", disable=None, file=sys.stderr) as bar:
        for start in range(0, len(user_ids), batch_size):
            chunk = user_ids[start : start + batch_size]
            for user_id, ranked in zip(chunk, bundle.recommend_batch(chunk, k=k, context=context), strict=True):
                known = bundle.knows_user(user_id)
                fallback += not known
                items = [{"item_id": i, "score": round(s, 6)} for i, s in ranked]
                line = {"user_id": user_id, "items": items, "source": "model" if known else "popular"}
                fh.write(json.dumps(line) + "\n")
            bar.update(len(chunk))
    typer.echo(
        f"wrote {out} ({len(user_ids):,} customers, {fallback:,} unknown → popular fallback, "
        f"model version {bundle.version})"
    )


@app.command("promote")
def promote_command(
    version: Annotated[
        str, typer.Option(help="Registered model version to make @champion (rollback or roll forward).")
    ],
    registered_name: Annotated[str | None, typer.Option(help="Registered model name (default: reco).")] = None,
) -> None:
    """Move @champion to a version; the previous champion becomes @challenger."""
    from training.registry import promote
    from training.settings import load_settings

    settings = load_settings()
    name = registered_name or settings.registered_name
    result = promote(settings=settings, name=name, version=version, reason="reco promote")
    typer.echo(json.dumps(result))


# --- reco serve / reco events (issue 5, service) -------------------------------------------------

events_app = typer.Typer(help="Purchase events posted to the service: export them.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind.")] = 8000,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: one per core).")] = None,
    limit_concurrency: Annotated[
        int | None, typer.Option(min=1, help="Requests in flight per worker before answering 503 (default 512).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Run the HTTP API (uvicorn) with settings for this machine: one BLAS thread per worker."""
    import os

    from service.config import load_service_settings

    settings = load_service_settings()  # bad settings stop here, with one sentence
    # Set before any worker imports numpy: one BLAS thread each (more threads fight over the cores).
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    n_workers = workers or max(1, min(os.cpu_count() or 1, 8))
    if n_workers > 1:
        import shutil

        metrics_dir = settings.home / "prometheus" / str(os.getpid())
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    import uvicorn

    typer.echo(
        f"reco: serving on http://{host}:{port} with {n_workers} worker(s), model {settings.model_uri}", err=True
    )
    uvicorn.run(
        "service.app:app",
        host=host,
        port=port,
        workers=n_workers,
        limit_concurrency=limit_concurrency or 512,
        backlog=2048,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=20,
        access_log=False,
        log_level=log_level,
        proxy_headers=False,
    )


@events_app.command("export")
def events_export(
    out: Annotated[Path, typer.Option(help="Directory for the Parquet file (purchase contract columns + event_id).")],
) -> None:
    """Drain the accepted events into OUT/events-<first>-<last>.parquet (each event is exported once)."""
    from service.config import load_service_settings
    from service.events import EventStore

    settings = load_service_settings()
    result = EventStore(settings.events_db).export(out)
    if result.path is None:
        typer.echo("no new events to export")
    else:
        typer.echo(f"exported {result.events:,} events to {result.path}")


# --- reco recaps (issue 6) ---------------------------------------------------------------------

recaps_app = typer.Typer(help='Yearly "Your year with us" recaps for every customer.', no_args_is_help=True)
app.add_typer(recaps_app, name="recaps")


@recaps_app.command("build")
def recaps_build(
    year: Annotated[int, typer.Option(help="Calendar year (UTC) to recap.")],
    purchases: Annotated[Path, typer.Option(help="Purchase file (CSV or Parquet).")],
    out: Annotated[Path, typer.Option(help="JSONL file, one recap per customer; a .manifest.json goes next to it.")],
    catalog: Annotated[Path | None, typer.Option(help="Catalog file: names, categories, brands.")] = None,
    html_dir: Annotated[Path | None, typer.Option(help="Write <customer>.html and <customer>.txt emails here.")] = None,
    opt_out: Annotated[Path | None, typer.Option(help="Customers who opted out: one user_id per line.")] = None,
    sensitive_category: Annotated[
        list[str] | None,
        typer.Option(help="Category never highlighted (repeatable; default: Pharmacy). Pass '' for none."),
    ] = None,
    min_cohort: Annotated[int, typer.Option(min=1, help="Smallest cohort a comparison with others may use.")] = 100,
    min_orders: Annotated[int, typer.Option(min=1, help="Fewer orders than this in the year: the short recap.")] = 3,
    model_uri: Annotated[
        str | None, typer.Option(help="Model for picks (default RECO_MODEL_URI, the champion; skipped if none).")
    ] = None,
    picks: Annotated[bool, typer.Option("--picks/--no-picks", help="Ask the model for next year's picks.")] = True,
    picks_k: Annotated[int, typer.Option(min=0, max=20, help="Picks per customer.")] = 5,
    publish: Annotated[
        bool, typer.Option("--publish/--no-publish", help="Write the feature view's Parquet and materialize it.")
    ] = False,
    store_name: Annotated[str, typer.Option(help="Shop name shown in the emails.")] = "us",
    currency: Annotated[str, typer.Option(help="Currency symbol shown in the emails.")] = "£",
    email_workers: Annotated[int, typer.Option(min=1, help="Processes rendering emails.")] = 2,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Build every customer's recap of a year: JSONL + manifest, optional emails and publishing."""
    from training.recaps import DEFAULT_SENSITIVE_CATEGORIES, RecapJob, manifest_path

    categories = (
        DEFAULT_SENSITIVE_CATEGORIES if sensitive_category is None else tuple(c for c in sensitive_category if c)
    )
    job = RecapJob(
        year=year,
        purchases=purchases,
        out=out,
        catalog=catalog,
        html_dir=html_dir,
        opt_out=opt_out,
        sensitive_categories=categories,
        min_cohort=min_cohort,
        min_orders=min_orders,
        model_uri=model_uri,
        picks=picks,
        picks_k=picks_k,
        publish=publish,
        store_name=store_name,
        currency=currency,
        email_workers=email_workers,
        progress=progress,
        log=lambda message: typer.echo(f"reco: {message}", err=True),
    )
    manifest = job.run()
    counts = manifest["counts"]
    typer.echo(
        f"{counts['recaps']:,} recaps ({counts['short_recaps']:,} short) for {year} → {out}; "
        f"{counts['opted_out_in_year']:,} opted out; manifest {manifest_path(out)}"
    )


if __name__ == "__main__":
    main()
