"""`reco data`: generate a synthetic store, check files against the data contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Purchase data: generate a synthetic store, validate a file.", no_args_is_help=True)

GENERATE_EXAMPLE = """
Example (a store to try every command on; `reco demo` makes one under .reco/demo/store):

  reco data generate --out shop --users 2000 --items 500 --years 2
  # shop/purchases.parquet, shop/catalog.parquet, shop/recipes.json
"""

VALIDATE_EXAMPLE = """
Example:

  reco data validate shop/purchases.parquet \\
      --catalog shop/catalog.parquet --report report.json

Exit code 1 when rows are rejected (each with its row number and reason), 2 when a file cannot be
used at all.
"""


@app.command("generate", epilog=GENERATE_EXAMPLE)
def data_generate(
    out: Annotated[Path, typer.Option(help="Directory to write purchases.parquet, catalog.parquet, recipes.json.")],
    users: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 10_000,
    items: Annotated[int, typer.Option(min=50, help="Number of catalog items.")] = 2_000,
    years: Annotated[int, typer.Option(min=1, max=20, help="Calendar years of history (ending 2025-12-31).")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives identical files.")] = 42,
) -> None:
    """Write a realistic synthetic store: tastes, staples on a rhythm, baskets, seasonality, churn."""
    from training.data.synthetic import generate_store

    summary = generate_store(out, users=users, items=items, years=years, seed=seed, progress=True)
    typer.echo(summary.format_text())


@app.command("validate", epilog=VALIDATE_EXAMPLE)
def data_validate(
    purchases: Annotated[Path, typer.Argument(help="Purchase file (CSV or Parquet) to check against the contract.")],
    catalog: Annotated[Path | None, typer.Option(help="Catalog file to check as well.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the full report (every rejected row) as JSON.")] = None,
    show: Annotated[int, typer.Option(min=0, help="Rejected rows to print per file.")] = 20,
) -> None:
    """Check files against the data contract; exit 1 when any row is rejected, 2 when a file cannot be
    used at all (unreadable, no rows, a required column missing, no row accepted, or, when no row was
    rejected, every line of one customer)."""
    from training.data.load import check_usable, load_catalog, load_purchases

    accepted, purchase_report = load_purchases(purchases)
    reports = [purchase_report]
    if catalog is not None:
        reports.append(load_catalog(catalog)[1])
    for r in reports:
        typer.echo(r.format_text(max_rows=show))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps([r.to_dict() for r in reports], indent=2) + "\n")
        typer.echo(f"full report: {report}")
    if purchase_report.rows_accepted and not all(r.ok for r in reports):
        raise typer.Exit(1)  # rows rejected: fix them first, whatever the rest would make of the file
    check_usable(accepted, purchase_report)  # no row accepted, one customer: exit 2 with one sentence
