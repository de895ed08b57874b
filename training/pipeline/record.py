"""The MLflow side of `reco train`: the current champion, the run (parameters, datasets, the refit
bundle as a pyfunc model, metrics, reports, the evaluation) and the registered version and alias,
through training.registry.publishing. MLflow is imported inside the functions.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.core.bundle import ModelBundle
from training.metrics import PRIMARY_METRIC
from training.pipeline.fit import Fitted, Log, refit_all
from training.pipeline.prepare import Prepared
from training.registry import CHALLENGER


def current_champion(*, settings: Any, name: str) -> dict[str, Any] | None:
    """The champion (see registry.champion), with what logging the run imports loaded too, and MLflow's
    map of installed packages built (it checks the model's requirements against it when the model is
    logged: 0.2-0.6 s of the publishing thread otherwise)."""
    import mlflow.pyfunc  # noqa: F401
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    from training.registry import publishing as registry

    warn_dependency_requirement_mismatches(["numpy"])

    return registry.champion(settings=settings, name=name)


@dataclass(frozen=True)
class Published:
    """What `publish` leaves for `log_run`: the refit bundle, logged as its run's model, not registered yet."""

    bundle: ModelBundle
    refit: str  # the refit mode used
    run_id: str
    model_uri: str
    refit_seconds: float
    log_seconds: float


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
    """Refit on all lines, then open the MLflow run and log what the test does not decide: tags,
    parameters, datasets and the pyfunc model (signature and input example; checked by MLflow)."""
    import mlflow

    from training.registry import publishing as registry
    from training.registry.bundle_file import save_bundle

    start = time.perf_counter()
    final, refit_used = refit_all(fitted=fitted, prepared=prepared, refit=refit, log=log)
    refit_seconds = time.perf_counter() - start
    registry.client(settings=settings)
    registry.use_experiment(settings=settings, name="reco")
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags({"reco.model": fitted.model, "reco.params": json.dumps(fitted.params, sort_keys=True)})
        mlflow.log_params(
            {
                "model": fitted.model,
                "chosen_collaborative": fitted.collaborative_name or "",
                **{f"chosen_{k}": v for k, v in fitted.collaborative_params.items()},
                "half_life_days": fitted.half_life,
                "popularity_half_life_days": fitted.popularity_half_life,
                "refit": refit_used,
                "promote": promote,
                **{f"blend_{k}": v for k, v in fitted.blend.to_dict().items()},
                **{f"param_{k}": v for k, v in fitted.params.items()},
                **prepared.summary(),
                "eval_customers": len(prepared.test.users),
            }
        )
        for dataset, context in inputs.result():
            mlflow.log_input(dataset, context=context)
        final.config.update(
            model=fitted.model,
            label=fitted.label,
            params=fitted.params,
            run_id=run.info.run_id,
            registered_name=name,
        )
        bundle_dir = save_bundle(final, path=Path(tmp) / "bundle")
        info = registry.log_pyfunc(bundle_dir=bundle_dir, example_users=final.user_ids[:2].tolist())
    return Published(
        final, refit_used, run.info.run_id, info.model_uri, refit_seconds, time.perf_counter() - start - refit_seconds
    )


def log_run(
    *,
    settings: Any,
    name: str,
    fitted: Fitted,
    published: Published,
    results: dict[str, dict[str, float]],
    decision: dict[str, Any],
    promoted: bool,
    table: str,
    reports: list[Any],
    prepared: Prepared,
    timings: dict[str, float],
    total_start: float,
) -> str:
    """The rest of the run `publish` opened: metrics, reports, the evaluation, the registered version and
    its alias. Returns the version."""
    import mlflow

    from training.registry import publishing as registry

    run_id = published.run_id
    with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as tmp:
        metrics = {k: v for k, v in results[fitted.label].items() if math.isfinite(v)}
        mlflow.log_metrics(metrics)
        for other, values in results.items():
            if other != fitted.label:
                mlflow.log_metrics({f"baseline/{other}/{k}": v for k, v in values.items() if math.isfinite(v)})
        for key, value in fitted.choice.items():
            if key == "candidates":
                mlflow.log_metrics(
                    {f"validation/hybrid_{c}/{PRIMARY_METRIC}": v["validation_score"] for c, v in value.items()}
                )
            elif key.endswith("_discover_scores"):  # e.g. ALS by regularization
                model_name = key.removesuffix("_discover_scores")
                mlflow.log_metrics(
                    {
                        f"validation/{model_name}_regularization_{r}/discover/ndcg_at_10": v
                        for r, v in value.items()
                        if math.isfinite(v)
                    }
                )
        mlflow.log_metrics({f"timing/{k}": v for k, v in timings.items()})
        out = Path(tmp)
        for report in reports:
            report.write_json(out / f"validation_{report.kind}.json")
            mlflow.log_artifact(str(out / f"validation_{report.kind}.json"), artifact_path="data_validation")
        choice = {k: v for k, v in fitted.choice.items() if k != "all_fits"}
        evaluation = {"primary_metric": PRIMARY_METRIC, "results": results, "choice": choice, "decision": decision}
        (out / "evaluation.json").write_text(json.dumps(evaluation, indent=2, default=str) + "\n")
        (out / "evaluation.md").write_text(
            f"# Evaluation on each customer's last basket ({len(prepared.test.users):,} customers)\n\n{table}\n\n"
            f"Chosen: {fitted.label}, blend {fitted.blend.to_dict()}\n\nGate: {json.dumps(decision, default=str)}\n"
        )
        mlflow.log_artifact(str(out / "evaluation.json"), artifact_path="evaluation")
        mlflow.log_artifact(str(out / "evaluation.md"), artifact_path="evaluation")
        version = registry.register(settings=settings, name=name, model_uri=published.model_uri)
        client = registry.client(settings=settings)
        client.set_model_version_tag(name, version, "reco.model", fitted.model)
        client.set_model_version_tag(name, version, "reco.params", json.dumps(fitted.params, sort_keys=True))
        client.set_model_version_tag(name, version, "reco.score", f"{decision['new_score']:.6f}")
        if promoted:
            registry.promote(settings=settings, name=name, version=version, reason=decision["reason"])
        else:
            registry.set_alias(settings=settings, name=name, alias=CHALLENGER, version=version)
        mlflow.set_tags({"gate.decision": "champion" if promoted else "challenger", "gate.reason": decision["reason"]})
        mlflow.log_metrics(
            {
                "gate/new_score": float(decision["new_score"]),
                **(
                    {"gate/champion_score": float(decision["champion_score"])}
                    if decision.get("champion_score") is not None and math.isfinite(decision["champion_score"])
                    else {}
                ),
            }
        )
        mlflow.log_metric("timing/total_seconds", time.perf_counter() - total_start)
    return version


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
