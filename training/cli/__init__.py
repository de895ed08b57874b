"""`reco`: the one command (README.md; every command's --help ends with an example). Each sub-command
imports what it needs when it runs, so `reco --help` stays instant (importing Feast or MLflow costs
seconds).

    data       generate a synthetic store, validate files          (training/cli/data.py)
    train, evaluate, recommend, promote                            (training/cli/train.py)
    features   build offline sources, materialize                  (training/cli/features.py)
    candidates each customer's top candidates of a model version   (training/cli/candidates.py)
    recaps     yearly recaps                                       (training/cli/recaps.py)
    serve, events export                                           (training/cli/serve.py)
    demo       the whole loop                                      (training/cli/demo.py)
"""

from __future__ import annotations

import sys

import typer

from training.cli import candidates, data, demo, features, recaps, serve, train
from training.core.errors import RecoError

app = typer.Typer(
    name="reco",
    help="Personalized recommendations and yearly recaps for online retailers.",
    epilog="Start with `reco demo`. With your own files: reco data validate, reco train, reco features build "
    "and materialize, reco candidates build, reco serve (README.md). Every command's --help ends with an example.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.command("train", epilog=train.TRAIN_EXAMPLE)(train.train_command)
app.command("evaluate", epilog=train.EVALUATE_EXAMPLE)(train.evaluate_command)
app.command("recommend", epilog=train.RECOMMEND_EXAMPLE)(train.recommend_command)
app.command("promote", epilog=train.PROMOTE_EXAMPLE)(train.promote_command)
app.add_typer(features.app, name="features")
app.add_typer(candidates.app, name="candidates")
app.add_typer(recaps.app, name="recaps")
app.command("serve", epilog=serve.SERVE_EXAMPLE)(serve.serve)
app.add_typer(serve.events_app, name="events")
app.command("demo", epilog=demo.EXAMPLE)(demo.demo)


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
