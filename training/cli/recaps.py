"""`reco recaps`: every customer's yearly recap."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help='Yearly "Your year with us" recaps for every customer.', no_args_is_help=True)


@app.command("build")
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
    from training.recaps.job import RecapJob, manifest_path
    from training.recaps.rules import DEFAULT_SENSITIVE_CATEGORIES

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
