"""Sweep over models and hyperparameters: nested MLflow runs, selection on validation, a comparison table.

    .venv/bin/python experiments/sweep.py --purchases DIR/purchases.parquet [--catalog DIR/catalog.parquet]
        [--metric home/ndcg_at_10] [--quick]

One parent run (experiment `reco-sweep`) with a child run per configuration. Every configuration is
fitted on the training split (the hybrid also tunes its blend there, on validation customers),
scored on the validation baskets (used for selection) and on the test baskets (reported only,
never used to choose). The parent run gets `comparison.md` / `comparison.json` and the winner's
parameters; train the winner for real with `reco train --model M --param K=V ...`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRID: dict[str, dict[str, list[Any]]] = {
    "popularity": {},
    "frequency": {},
    "hybrid": {},
    "als": {"factors": [32, 64, 128], "regularization": [0.01, 0.1, 30.0]},
    "bpr": {"factors": [64], "learning_rate": [0.01, 0.05]},
    "knn-cosine": {"neighbours": [50, 200]},
    "knn-bm25": {"neighbours": [50, 200]},
    "ease": {"ease_lambda": [100.0, 500.0]},
}
QUICK: dict[str, dict[str, list[Any]]] = {
    "popularity": {},
    "frequency": {},
    "hybrid": {},
    "als": {"factors": [32, 64]},
    "knn-bm25": {"neighbours": [100]},
    "ease": {"ease_lambda": [250.0]},
}


def configurations(grid: dict[str, dict[str, list[Any]]]) -> list[tuple[str, dict[str, str]]]:
    """(model, params) for every point of the grid."""
    out = []
    for model, axes in grid.items():
        keys = list(axes)
        for values in itertools.product(*(axes[k] for k in keys)) if keys else [()]:
            out.append((model, {k: str(v) for k, v in zip(keys, values, strict=True)}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--purchases", type=Path, required=True)
    parser.add_argument("--catalog", type=Path)
    parser.add_argument("--metric", default="home/ndcg_at_10", help="Validation metric that selects the winner.")
    parser.add_argument("--quick", action="store_true", help="A smaller grid.")
    parser.add_argument("--eval-users", type=int, default=5000)
    args = parser.parse_args()

    import mlflow

    from training.algorithms import MODELS
    from training.evaluate import Candidate, evaluate
    from training.metrics import KS, TABLE_METRICS, comparison_table
    from training.pipeline.fit import evaluate_on_test, fit_configuration
    from training.pipeline.prepare import load_prepared
    from training.registry.loading import client
    from training.registry.publishing import use_experiment
    from training.settings import load_settings

    settings = load_settings()
    client(settings=settings)
    use_experiment(settings=settings, name="reco-sweep")
    # Every row the checks accept is swept over, however many they reject (their reports are printed).
    prepared, _, _ = load_prepared(
        purchases=args.purchases, catalog=args.catalog, eval_users=args.eval_users, max_rejected=1.0, log=print
    )
    rows: dict[str, dict[str, float]] = {}
    params_of: dict[str, tuple[str, dict[str, str]]] = {}
    with mlflow.start_run(run_name="sweep") as parent:
        for model, params in configurations(QUICK if args.quick else GRID):
            name = model + ("" if not params else "(" + ",".join(f"{k}={v}" for k, v in params.items()) + ")")
            start = time.perf_counter()
            fitted = fit_configuration(model=model, params=params, prepared=prepared, log=lambda _: None)
            validation_bundle = prepared.train.bundle(
                half_life=fitted.half_life,
                popularity_half_life=fitted.popularity_half_life,
                blend=fitted.blend,
                collaborative=None if fitted.collaborative is None else fitted.collaborative.scorer,
                catalog=prepared.catalog,
                timeline=True,
            )
            contexts = ("home", "discover") if model != "frequency" else ("home", "buy-again")
            val = evaluate(
                candidates=[Candidate("v", validation_bundle, fitted.blend, contexts)],
                holdout=prepared.validation,
                ks=KS,
                detail=False,
            )["v"]
            test = evaluate_on_test(fitted=fitted, prepared=prepared)[fitted.label]
            seconds = time.perf_counter() - start
            with mlflow.start_run(run_name=name, nested=True):
                mlflow.log_params({"model": model, "label": fitted.label, **params})
                mlflow.log_metrics({f"validation/{k}": v for k, v in val.items() if math.isfinite(v)})
                mlflow.log_metrics({f"test/{k}": v for k, v in test.items() if math.isfinite(v)})
                mlflow.log_metric("seconds", seconds)
            rows[name] = {
                f"validation/{args.metric}": val.get(args.metric, float("nan")),
                **{f"test/{k}": test.get(k, float("nan")) for k in TABLE_METRICS},
                "seconds": seconds,
            }
            params_of[name] = (model, params)
            print(f"{name}: validation {args.metric} {rows[name][f'validation/{args.metric}']:.4f} ({seconds:.1f} s)")
        key = f"validation/{args.metric}"
        winner = max((n for n in rows if math.isfinite(rows[n][key])), key=lambda n: rows[n][key])
        ordered = dict(sorted(rows.items(), key=lambda kv: -kv[1][key] if math.isfinite(kv[1][key]) else math.inf))
        columns = [key, "test/home/ndcg_at_10", "test/discover/ndcg_at_10", "test/home/recall_at_10", "seconds"]
        table = comparison_table(ordered, metrics=columns)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "comparison.md").write_text(
                f"# Sweep (selected on {key}; test columns are reported, never used to select)\n\n{table}\n\n"
                f"Winner: {winner}\n"
            )
            (Path(tmp) / "comparison.json").write_text(json.dumps(ordered, indent=2) + "\n")
            mlflow.log_artifacts(tmp, artifact_path="sweep")
        model, params = params_of[winner]
        mlflow.log_params({"winner": winner, "winner_model": model, **{f"winner_{k}": v for k, v in params.items()}})
        mlflow.log_metric(f"winner/{key}", rows[winner][key])
        print(table)
        flags = " ".join(f"--param {k}={v}" for k, v in params.items())
        print(f"winner: {winner}; train it with: reco train --purchases {args.purchases} --model {model} {flags}")
        print(json.dumps({"run_id": parent.info.run_id, "winner": winner, "models": MODELS}))


if __name__ == "__main__":
    main()
