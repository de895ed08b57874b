"""`reco features`: build the offline sources, push them to the online store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Feature store: build offline sources, push them to the online store.", no_args_is_help=True)

BUILD_EXAMPLE = """
Example (then `reco features materialize`):

  reco features build --purchases shop/purchases.parquet \\
      --catalog shop/catalog.parquet
"""

MATERIALIZE_EXAMPLE = """
Example (SQLite under RECO_HOME by default; REDIS_URL=redis://host:6379/0 for Redis):

  reco features materialize       # the rows new since the last run
  reco features materialize --full --view item_stats
"""

ENV_EXAMPLE = """
Example (the stock Feast CLI on the same repo and stores):

  eval "$(reco features env)"
  cd feature_repo && feast feature-views list
"""


@app.command("build", epilog=BUILD_EXAMPLE)
def features_build(
    purchases: Annotated[Path, typer.Option(help="Purchase file (CSV or Parquet).")],
    catalog: Annotated[Path | None, typer.Option(help="Catalog file (category, price, in_stock).")] = None,
) -> None:
    """Compute the offline Parquet sources of feature_repo/ under RECO_HOME/features."""
    from training.features.build import build
    from training.settings import load_settings

    settings = load_settings()
    result = build(settings=settings, purchases=purchases, catalog=catalog)
    typer.echo(result.format_text())
    typer.echo(f"wrote {settings.feature_data_dir}")


@app.command("materialize", epilog=MATERIALIZE_EXAMPLE)
def features_materialize(
    full: Annotated[
        bool, typer.Option("--full", help="Rewrite every row, not only rows changed since last run.")
    ] = False,
    view: Annotated[list[str] | None, typer.Option(help="Only this feature view (repeatable).")] = None,
) -> None:
    """Push the offline sources to the online store (Redis when REDIS_URL is set, else SQLite)."""
    from training.features.materialize import materialize
    from training.settings import load_settings

    result = materialize(settings=load_settings(), views=view or None, full=full, progress=True)
    typer.echo(result.format_text())


@app.command("env", epilog=ENV_EXAMPLE)
def features_env() -> None:
    """Print the shell exports feature_repo/feature_store.yaml reads, so the stock `feast` CLI uses this
    home's registry and online store: eval "$(reco features env)"; cd feature_repo; feast ..."""
    import shlex

    from training.features.store import cli_environment
    from training.settings import load_settings

    for name, value in cli_environment(load_settings()).items():
        typer.echo(f"export {name}={shlex.quote(value)}")
