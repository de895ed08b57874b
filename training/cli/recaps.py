"""`reco recaps`: every customer's yearly recap."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

Format = Literal["jsonl", "eml", "csv"]

app = typer.Typer(help='Yearly "Your year with us" recaps for every customer.', no_args_is_help=True)


BUILD_EXAMPLE = """
Example (shop settings in brand.toml, docs/recaps.md):

  export RECO_RECAP_SIGNING_KEY=...  # a secret; give reco serve the same
  reco recaps build --year 2025 --brand brand.toml \\
      --purchases purchases.parquet --catalog catalog.parquet \\
      --opt-out optouts.txt --out recaps/2025.jsonl --format csv

Exit code 2 with one sentence: the year has no purchases; no champion
model (unless --no-picks); no shop name (unless --preview).
"""


@app.command("build", epilog=BUILD_EXAMPLE)
def recaps_build(
    year: Annotated[int, typer.Option(help="Calendar year (UTC) to recap.")],
    purchases: Annotated[Path, typer.Option(help="Purchase file (CSV or Parquet).")],
    out: Annotated[Path, typer.Option(help="JSONL file, one recap per customer; a .manifest.json goes next to it.")],
    catalog: Annotated[Path | None, typer.Option(help="Catalog file: names, categories, brands, stock.")] = None,
    brand: Annotated[
        Path | None,
        typer.Option(help="The shop's settings (TOML or JSON, docs/recaps.md); default RECO_BRAND."),
    ] = None,
    format: Annotated[
        Format,
        typer.Option(
            "--format",
            help="jsonl: the records (+ .html/.txt per customer with --html-dir); eml: one .eml per customer in "
            "--email-dir; csv: a merge file for an email platform beside --out (<out>.csv).",
        ),
    ] = "jsonl",
    html_dir: Annotated[
        Path | None,
        typer.Option("--html-dir", "--email-dir", help="Write each customer's email here (.html + .txt, or .eml)."),
    ] = None,
    opt_out: Annotated[Path | None, typer.Option(help="Customers who opted out: one user_id per line.")] = None,
    preview: Annotated[
        bool,
        typer.Option(
            "--preview", help="A trial build: the placeholder shop name and unsigned links allowed, never published."
        ),
    ] = False,
    sensitive_category: Annotated[
        list[str] | None,
        typer.Option(help="Category never highlighted (repeatable; default: Pharmacy). Pass '' for none."),
    ] = None,
    min_cohort: Annotated[int, typer.Option(min=1, help="Smallest cohort a comparison with others may use.")] = 100,
    min_orders: Annotated[int, typer.Option(min=1, help="Fewer orders than this in the year: the short recap.")] = 3,
    model_uri: Annotated[
        str | None, typer.Option(help="Model for picks (default RECO_MODEL_URI, the champion; it must exist).")
    ] = None,
    picks: Annotated[
        bool, typer.Option("--picks/--no-picks", help="Ask the model for next year's picks (--no-picks: none).")
    ] = True,
    picks_k: Annotated[int, typer.Option(min=0, max=20, help="Picks per customer.")] = 5,
    publish: Annotated[
        bool, typer.Option("--publish/--no-publish", help="Write the feature view's Parquet and materialize it.")
    ] = False,
    email_workers: Annotated[int, typer.Option(min=1, help="Processes rendering emails.")] = 2,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Build every customer's recap of a year: JSONL + manifest, emails (HTML + text, .eml or a merge
    CSV) and publishing for the API."""
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
        brand_file=brand,
        format=format,
        preview=preview,
        email_workers=email_workers,
        progress=progress,
        log=lambda message: typer.echo(f"reco: {message}", err=True),
    )
    manifest = job.run()
    counts = manifest["counts"]
    emails = manifest["emails"]["path"]
    typer.echo(
        f"{counts['recaps']:,} recaps ({counts['short_recaps']:,} short) for {year} → {out}; "
        f"{counts['opted_out_in_year']:,} opted out; "
        + (f"emails ({ {'jsonl': 'html + text'}.get(format, format) }) → {emails}; " if emails else "")
        + f"manifest {manifest_path(out)}"
        + ("; PREVIEW: not for sending" if preview else "")
    )


PREVIEW_EXAMPLE = """
Example (after `reco recaps build ... --out recaps/2025.jsonl`):

  reco recaps preview --year 2025 --recaps recaps/2025.jsonl --sample 24
  # then open recaps/2025-preview/contact-sheet.html in a browser

The emails are rendered with the brand of the build (its manifest), or
--brand FILE to try another.
"""


@app.command("preview", epilog=PREVIEW_EXAMPLE)
def recaps_preview(
    year: Annotated[int, typer.Option(help="The year of the recaps (checked against the file).")],
    recaps: Annotated[Path, typer.Option(help="The JSONL of `reco recaps build`.")],
    sample: Annotated[int, typer.Option(min=1, max=200, help="Recaps on the contact sheet.")] = 24,
    out: Annotated[
        Path | None, typer.Option(help="Directory of the contact sheet (default: <recaps>-preview/ beside the file).")
    ] = None,
    brand: Annotated[
        Path | None,
        typer.Option(help="Render with this brand file instead of the build's (its manifest), else RECO_BRAND."),
    ] = None,
) -> None:
    """Review a build before sending: a contact sheet of sample recaps (every persona, small to big,
    the longest and the shortest) and a summary of the run (personas, picks, comparisons)."""
    from training.recaps.brand import load_brand
    from training.recaps.preview import brand_of_build, preview_recaps, summary_text
    from training.settings import load_settings

    chosen = (None if brand else brand_of_build(recaps)) or load_brand(load_settings(), brand)
    stem = recaps.name[: -len(".jsonl")] if recaps.name.endswith(".jsonl") else recaps.name
    summary = preview_recaps(
        recaps=recaps, year=year, out=out or recaps.with_name(f"{stem}-preview"), brand=chosen, sample=sample
    )
    typer.echo(summary_text(summary))
