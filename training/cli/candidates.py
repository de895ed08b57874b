"""`reco candidates build`: each customer's top candidates for the served model version, offline."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Per-customer candidates of a model version, for the online store.", no_args_is_help=True)

BUILD_EXAMPLE = """
Example (after `reco features materialize`; again after each new model version):

  reco candidates build                      # the champion's
  reco candidates build --model-uri models:/reco/3 --size 100
"""


@app.command("build", epilog=BUILD_EXAMPLE)
def candidates_build(
    model_uri: Annotated[
        str | None, typer.Option(help="Model to rank with (default: RECO_MODEL_URI, models:/reco@champion).")
    ] = None,
    size: Annotated[int, typer.Option(min=1, max=1000, help="Home candidates per customer (discover: half).")] = 50,
) -> None:
    """Rank every known customer with the model, write the customer_candidates view and materialize it;
    the service answers `home` from these lists once they carry the version it serves."""
    from training.features.candidates import build_candidates
    from training.settings import load_settings

    result = build_candidates(settings=load_settings(), model_uri=model_uri, size=size)
    typer.echo(result.format_text())
