"""The MLflow side of `reco train`: the current champion, the run (a name that says what was trained,
tags for the source, parameters, datasets, the refit bundle as a pyfunc model, metrics, tables,
figures, reports, the evaluation and the gate) and the registered version, its description and its
alias, through training.registry.publishing. MLflow is imported inside the functions.

Metric names: the model's own at the top level (`home/ndcg_at_10`), the baselines under
`baseline/<name>/`, the other fitted candidates under `candidate/<name>/`, the gate under `gate/`,
tuning under `validation/`, step durations under `timing/`.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.core.bundle import ModelBundle
from training.metrics import PRIMARY_METRIC
from training.pipeline.fit import Fitted, Log, refit_all
from training.pipeline.gating import Champion, Gated, day_text
from training.pipeline.prepare import Prepared
from training.pipeline.report import (
    comparison_frame,
    gate_figure,
    gate_frame,
    metrics_figure,
    roles_of,
    run_description,
)
from training.registry import CHALLENGER
from training.registry.cleanup import process_tags


def current_champion(*, settings: Any, name: str) -> Champion | None:
    """The champion (see registry.champion) with its bundle loaded (an error kept, not raised), with
    what logging the run imports loaded too, and MLflow's map of installed packages built (it checks
    the model's requirements against it when the model is logged: 0.2-0.6 s of the publishing thread
    otherwise)."""
    import mlflow.pyfunc  # noqa: F401
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    from training.registry import publishing as registry
    from training.registry.loading import first_line, load_bundle

    warn_dependency_requirement_mismatches(["numpy"])
    record = registry.champion(settings=settings, name=name)
    if record is None:
        return None
    champion = Champion(version=record["version"], model=record["model"], params=record["params"])
    try:
        champion.bundle = load_bundle(f"models:/{name}/{record['version']}", settings=settings)
    except Exception as exc:  # a champion this trainer cannot read is reported by the gate, not fatal
        champion.error = first_line(exc)
    return champion


@dataclass(frozen=True)
class Published:
    """What `publish` leaves for `log_run`: the refit bundle, logged as its run's model, not registered yet."""

    bundle: ModelBundle
    refit: str  # the refit mode used
    run_id: str
    run_name: str
    model_uri: str
    refit_seconds: float
    log_seconds: float


def run_name(*, label: str, digest: str, data_end: str | None) -> str:
    """What a run trained, at a glance: the model, the purchase file's digest, its last day."""
    return f"{label} · data {digest[:8] or 'unknown'} · to {data_end or 'unknown'}"


def source_tags() -> dict[str, str]:
    """The code a run was trained with: the package version and, from a source checkout, its git commit."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        tags = {"reco.version": version("reco")}
    except PackageNotFoundError:
        tags = {"reco.version": "unknown"}
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {**tags, "reco.git_commit": "unknown"}
    return {
        **tags,
        "reco.git_commit": commit,
        "reco.git_dirty": "true" if dirty else "false",
        "mlflow.source.git.commit": commit,  # what MLflow's UI shows as the run's source version
    }


def publish(
    *,
    settings: Any,
    name: str,
    fitted: Fitted,
    prepared: Prepared,
    refit: str,
    promote: str,
    inputs: Future[list[tuple[Any, str]]],
    log: Log,
) -> Published:
    """Refit on all lines, then open the MLflow run and log what the test does not decide: name, tags,
    parameters, datasets and the pyfunc model (signature and input example; checked by MLflow)."""
    import mlflow

    from training.registry import publishing as registry
    from training.registry.bundle_file import save_bundle

    start = time.perf_counter()
    final, refit_used = refit_all(fitted=fitted, prepared=prepared, refit=refit, log=log)
    refit_seconds = time.perf_counter() - start
    registry.client(settings=settings)
    registry.use_experiment(settings=settings, name=settings.experiment)
    datasets = inputs.result()
    digest = next((d.digest for d, context in datasets if context == "training"), "")
    data_end = day_text(prepared.lines.reference_day)
    name_of_run = run_name(label=fitted.label, digest=digest, data_end=data_end)
    with mlflow.start_run(run_name=name_of_run) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(
            {
                "reco.model": fitted.model,
                "reco.label": fitted.label,
                "reco.params": json.dumps(fitted.params, sort_keys=True),
                "reco.data_digest": digest,
                "reco.data_end": data_end or "",
                **source_tags(),
                **process_tags(),
            }
        )
        mlflow.log_params(
            {
                "model": fitted.model,
                "chosen_collaborative": fitted.collaborative_name or "",
                **{f"chosen_{k}": v for k, v in fitted.collaborative_params.items()},
                "half_life_days": fitted.half_life,
                "popularity_half_life_days": fitted.popularity_half_life,
                "refit": refit_used,
                "promote": promote,
                "data_end": data_end,
                **{f"blend_{k}": v for k, v in fitted.blend.to_dict().items()},
                **{f"param_{k}": v for k, v in fitted.params.items()},
                **prepared.summary(),
                "eval_customers": len(prepared.test.users),
            }
        )
        for dataset, context in datasets:
            mlflow.log_input(dataset, context=context)
        final.config.update(
            model=fitted.model,
            label=fitted.label,
            params=fitted.params,
            collaborative_params=fitted.collaborative_params,
            popularity_half_life=fitted.popularity_half_life,
            data_end_day=prepared.lines.reference_day,
            data_digest=digest,
            run_id=run.info.run_id,
            registered_name=name,
        )
        bundle_dir = save_bundle(final, path=Path(tmp) / "bundle")
        info = registry.log_pyfunc(bundle_dir=bundle_dir, example_users=final.user_ids[:2].tolist())
    return Published(
        final,
        refit_used,
        run.info.run_id,
        name_of_run,
        info.model_uri,
        refit_seconds,
        time.perf_counter() - start - refit_seconds,
    )


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)}


def log_run(
    *,
    settings: Any,
    name: str,
    fitted: Fitted,
    published: Published,
    results: dict[str, dict[str, float]],
    gated: Gated,
    table: str,
    reports: list[Any],
    prepared: Prepared,
    timings: dict[str, float],
    total_start: float,
) -> str:
    """The rest of the run `publish` opened: metrics, tables, figures, reports, the evaluation and the
    gate, then the registered version, its description and its alias. Returns the version."""
    import mlflow

    from training.registry import publishing as registry

    decision, promoted = gated.decision, gated.promoted
    run_id = published.run_id
    roles = roles_of(results, model=fitted.label)
    with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as tmp:
        mlflow.log_metrics(_finite(results[fitted.label]))
        for other, values in results.items():
            if other != fitted.label:
                prefix = "baseline" if roles[other] == "baseline" else "candidate"
                mlflow.log_metrics({f"{prefix}/{other}/{k}": v for k, v in _finite(values).items()})
        for key, value in fitted.choice.items():
            if key == "candidates":
                mlflow.log_metrics(
                    {f"validation/hybrid_{c}/{PRIMARY_METRIC}": v["validation_score"] for c, v in value.items()}
                )
            elif key.endswith("_discover_scores"):  # the model search: e.g. ALS by regularization_30.0
                model_name = key.removesuffix("_discover_scores")
                mlflow.log_metrics(
                    {
                        f"validation/{model_name}_{tried}/discover/ndcg_at_10": v
                        for tried, v in value.items()
                        if math.isfinite(v) and tried != "budget_reached"
                    }
                )
            elif key.startswith("hybrid_") and "_vs_" in key:  # a candidate against the one kept before it
                mlflow.log_metrics(
                    {
                        f"validation/{key}/home_plus_discover/ndcg_at_10_{part}": value[part]
                        for part in ("difference", "difference_low", "difference_high")
                        if math.isfinite(value[part])
                    }
                )
        mlflow.log_metrics({f"timing/{k}": v for k, v in timings.items()})
        gate_rows = gate_frame(gated)
        mlflow.log_metrics(_gate_metrics(gated, gate_rows))
        mlflow.log_table(comparison_frame(results, roles=roles), artifact_file="evaluation/comparison.json")
        mlflow.log_table(gate_rows, artifact_file="gate/comparison.json")
        figures = ["evaluation/metrics_by_context_and_segment.png"]
        mlflow.log_figure(metrics_figure(results, roles=roles), figures[0])
        if len(gate_rows):
            figures.append("gate/scores.png")
            mlflow.log_figure(gate_figure(gate_rows, decision=decision), figures[1])
        mlflow.set_tags(
            {
                "gate.decision": "champion" if promoted else "challenger",
                "gate.reason": decision["reason"][:5000],
                "gate.rule": decision.get("rule") or "",
                # The run's description: what its page in MLflow's UI shows first.
                "mlflow.note.content": run_description(
                    results=results,
                    roles=roles,
                    gate_rows=gate_rows,
                    decision=decision,
                    figures=figures,
                    run_id=run_id,
                ),
            }
        )
        mlflow.log_dict(decision, "gate/decision.json")
        out = Path(tmp)
        for report in reports:
            report.write_json(out / f"validation_{report.kind}.json")
            mlflow.log_artifact(str(out / f"validation_{report.kind}.json"), artifact_path="data_validation")
        choice = {k: v for k, v in fitted.choice.items() if k != "all_fits"}
        evaluation = {"primary_metric": PRIMARY_METRIC, "results": results, "choice": choice, "decision": decision}
        (out / "evaluation.json").write_text(json.dumps(evaluation, indent=2, default=str) + "\n")
        (out / "evaluation.md").write_text(
            f"# Evaluation on each customer's last basket ({len(prepared.test.users):,} customers)\n\n{table}\n\n"
            f"Chosen: {fitted.label}, blend {fitted.blend.to_dict()}\n\n"
            f"Gate ({len(prepared.gate.users):,} other customers' last baskets): {decision['reason']}\n"
        )
        mlflow.log_artifact(str(out / "evaluation.json"), artifact_path="evaluation")
        mlflow.log_artifact(str(out / "evaluation.md"), artifact_path="evaluation")
        # Tags with the version (one call), the alias after, the run's end last: a kill in between
        # leaves a version of an unfinished run without alias, which the next run deletes
        # (training.registry.cleanup).
        version = registry.register(
            settings=settings,
            name=name,
            model_uri=published.model_uri,
            tags={
                "reco.model": fitted.model,
                "reco.params": json.dumps(fitted.params, sort_keys=True),
                "reco.score": f"{results[fitted.label][PRIMARY_METRIC]:.6f}",
                "reco.data_end": day_text(prepared.lines.reference_day) or "",
                "gate.decision": "champion" if promoted else "challenger",
            },
        )
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        registry.describe(
            settings=settings,
            name=name,
            version=version,
            line=f"{published.run_name}: test {PRIMARY_METRIC} {results[fitted.label][PRIMARY_METRIC]:.4f} "
            f"({len(prepared.test.users):,} customers).\n\n{stamp}: gate: {decision['reason']}.",
        )
        if promoted:
            registry.promote(settings=settings, name=name, version=version, reason=decision["reason"], by="reco train")
        else:
            registry.set_alias(settings=settings, name=name, alias=CHALLENGER, version=version)
        mlflow.log_metric("timing/total_seconds", time.perf_counter() - total_start)
    return version


def _gate_metrics(gated: Gated, rows: Any) -> dict[str, float]:
    """gate/<model>/<context>/ndcg_at_10 (+ _low, _high), gate/vs_<reference>/<context>/difference
    (+ _low, _high), gate/customers, gate/promoted."""
    metrics: dict[str, float] = {
        "gate/customers": float(gated.decision.get("gate_customers", 0)),
        "gate/promoted": float(gated.promoted),
    }
    metric = gated.decision["metric"]
    for row in rows.to_dict("records"):
        key = row["model"].replace(" ", "_")
        for suffix, column in (("", "score"), ("_low", "low"), ("_high", "high")):
            metrics[f"gate/{key}/{row['context']}/{metric}{suffix}"] = row[column]
        if row["model"] != "challenger":
            for suffix, column in (("", "difference"), ("_low", "difference_low"), ("_high", "difference_high")):
                metrics[f"gate/vs_{key}/{row['context']}/difference{suffix}"] = row[column]
    return _finite(metrics)


def input_dataset(path: Path) -> Any:
    """An MLflow dataset record for a file: its source and a content digest (streamed, not loaded)."""
    import hashlib

    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    source = LocalArtifactDatasetSource(str(path.resolve()))
    return MetaDataset(source=source, name=path.name, digest=digest.hexdigest()[:16])  # type: ignore[abstract]
