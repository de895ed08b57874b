"""`reco train`, `evaluate`, `recommend`, `promote`: the ML engineer's commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from training.core.errors import RecoError

TRAIN_EXAMPLE = """
Example (the files of `reco data generate --out shop`):

  reco train --purchases shop/purchases.parquet \\
      --catalog shop/catalog.parquet
  reco train --purchases shop/purchases.parquet \\
      --param candidates=als --param factors=128

The last line is a JSON summary; `reco promote --history` lists every move of @champion.
"""

EVALUATE_EXAMPLE = """
Example (one configuration against the baselines; nothing is registered):

  reco evaluate --purchases shop/purchases.parquet \\
      --model ease --param ease_lambda=500 --out ease.json
"""

RECOMMEND_EXAMPLE = """
Example (one customer id per line; unknown customers get the fallback list):

  reco recommend --users customers.txt --k 10 --out recs.jsonl
"""

PROMOTE_EXAMPLE = """
Example:

  reco promote --history
  reco promote --version 3 --reason 'roll back: 4 misranks new items'
"""

ModelOption = Annotated[
    str, typer.Option("--model", help="hybrid (default), popularity, frequency, als, bpr, knn-cosine, knn-bm25, ease.")
]
MaxRejectedOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Refuse the purchases when more than this share of their rows is rejected (the report is printed).",
    ),
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
    max_rejected: MaxRejectedOption = 0.01,
) -> None:
    """Split by time, fit, tune on validation, evaluate on each customer's last basket beside the baselines,
    log to MLflow, register, and move @champion only when the new model wins. Last line: JSON summary."""
    from training.pipeline.fit import parse_params
    from training.pipeline.train import train

    result = train(
        purchases_path=purchases,
        catalog_path=catalog,
        model=model,
        params=parse_params(param or []),
        registered_name=registered_name,
        promote=promote,
        log=_stderr,
        max_rejected=max_rejected,
    )
    typer.echo(result.table)
    typer.echo(json.dumps(result.summary()))


def evaluate_command(
    purchases: Annotated[Path, typer.Option(help="Purchase file (CSV or Parquet).")],
    catalog: Annotated[Path | None, typer.Option(help="Catalog file.")] = None,
    model: ModelOption = "hybrid",
    param: ParamOption = None,
    out: Annotated[Path | None, typer.Option(help="Write every metric of every model as JSON.")] = None,
    max_rejected: MaxRejectedOption = 0.01,
) -> None:
    """Evaluate one configuration on the time split beside the baselines; nothing is logged or registered."""
    from training.algorithms import check_model
    from training.metrics import TABLE_METRICS, comparison_table
    from training.pipeline.fit import DEFAULT_EVAL_USERS, evaluate_on_test, fit_configuration, parse_params
    from training.pipeline.prepare import load_prepared

    check_model(model)
    params = parse_params(param or [])
    eval_users = int(params.get("eval_users", DEFAULT_EVAL_USERS))
    prepared, _, _ = load_prepared(
        purchases=purchases, catalog=catalog, eval_users=eval_users, max_rejected=max_rejected, log=_stderr
    )
    fitted = fit_configuration(model=model, params=params, prepared=prepared, log=_stderr)
    results = evaluate_on_test(fitted=fitted, prepared=prepared)
    typer.echo(comparison_table(results, metrics=TABLE_METRICS))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        typer.echo(f"all metrics: {out}")


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
    from tqdm import tqdm

    from training.core.blend import check_context
    from training.registry.loading import load_bundle
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
            raise RecoError(f"Cannot read {users} ({exc.strerror}).") from None
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


def promote_command(
    version: Annotated[
        str | None, typer.Option(help="Registered model version to make @champion (rollback or roll forward).")
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="Print every move of @champion, oldest first, and change nothing.")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why, for the promotion history and the version's description.")] = "",
    registered_name: Annotated[str | None, typer.Option(help="Registered model name (default: reco).")] = None,
) -> None:
    """Move @champion to a version, recorded in the promotion history and the versions' descriptions;
    or, with --history, print that history."""
    from training.registry.publishing import promote, promotion_history
    from training.registry.tracking import check_tracking_uri
    from training.settings import load_settings

    settings = load_settings()
    check_tracking_uri(settings.tracking_uri)
    name = registered_name or settings.registered_name
    if history:
        entries = promotion_history(settings=settings, name=name)
        if not entries:
            typer.echo(f"{name}: no promotion recorded yet")
        for entry in entries:
            previous = f" (was {entry['previous']})" if entry.get("previous") else ""
            typer.echo(f"{entry['at']}  version {entry['version']}{previous}  by {entry['by']}: {entry['reason']}")
        return
    if version is None:
        raise RecoError("Give --version V to promote, or --history to list the promotions.")
    result = promote(settings=settings, name=name, version=version, reason=reason or "manual", by="reco promote")
    typer.echo(json.dumps(result))
