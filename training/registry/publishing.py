"""Publishing to the MLflow registry: log a run's model, register versions, move the aliases.

`@champion` is what the service serves; `@challenger` the newest version that did not win. Every
move is recorded as tags on the versions involved. MLflow is imported inside the functions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.registry import BUNDLE_ARTIFACT, CHALLENGER, CHAMPION
from training.registry.loading import ModelNotFound, client

if TYPE_CHECKING:
    from training.settings import Settings


def champion(*, settings: Settings, name: str) -> dict[str, Any] | None:
    """The current champion: {"version", "run_id", "model", "params", "tags"}, or None when there is none."""
    mlflow_client = client(settings=settings)
    try:
        mv = mlflow_client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # no registered model, or no alias yet
        return None
    tags = dict(mv.tags or {})
    if "reco.model" not in tags and mv.run_id:
        tags.update(mlflow_client.get_run(mv.run_id).data.tags)
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "model": tags.get("reco.model", ""),
        "params": json.loads(tags.get("reco.params", "{}")),
        "tags": tags,
    }


def set_alias(*, settings: Settings, name: str, alias: str, version: str) -> None:
    """Point `alias` at `version` of the registered model."""
    client(settings=settings).set_registered_model_alias(name, alias, str(version))


def promote(*, settings: Settings, name: str, version: str, reason: str = "manual") -> dict[str, Any]:
    """Move @champion to `version` (rollback or roll forward); the previous champion becomes the challenger.

    Returns {"name", "version", "previous"}; the decision is recorded as tags on both versions."""
    mlflow_client = client(settings=settings)
    try:
        mlflow_client.get_model_version(name, str(version))
    except Exception:
        raise ModelNotFound(f"Registered model {name!r} has no version {version}.") from None
    previous = champion(settings=settings, name=name)
    mlflow_client.set_registered_model_alias(name, CHAMPION, str(version))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    mlflow_client.set_model_version_tag(name, str(version), "reco.promoted", f"{stamp} {reason}")
    if previous and previous["version"] != str(version):
        mlflow_client.set_registered_model_alias(name, CHALLENGER, previous["version"])
        mlflow_client.set_model_version_tag(name, previous["version"], "reco.demoted", f"{stamp} {reason}")
    return {"name": name, "version": str(version), "previous": previous["version"] if previous else None}


def model_signature() -> Any:
    """Pyfunc signature: user_id (+ optional k, context) in; user_id, rank, item_id, score out.

    Defaults for k and context can also come as params (`{"params": {"k": 20}}`); a per-record `k`
    must then be given on every record (pandas turns a partly missing integer column into floats,
    which MLflow's schema check refuses)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("long", "k", required=False),
            ColSpec("string", "context", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("long", "rank"),
            ColSpec("string", "item_id"),
            ColSpec("double", "score"),
        ]
    )
    params = ParamSchema([ParamSpec("k", "long", 10), ParamSpec("context", "string", "home")])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def log_pyfunc(*, bundle_dir: Path, example_users: list[str]) -> Any:
    """Log the bundle as a models-from-code pyfunc in the active run (`register` makes it a version)."""
    import mlflow
    import pandas as pd

    code = Path(__file__).with_name("pyfunc_model.py")
    example = pd.DataFrame({"user_id": example_users[:2] or ["unknown"], "k": [5] * len(example_users[:2] or [1])})
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(code),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        signature=model_signature(),
        input_example=example,
        pip_requirements=["mlflow==3.17.2", "numpy", "scipy", "pandas"],
    )


def register(*, settings: Settings, name: str, model_uri: str) -> str:
    """A new version of the registered model `name` from a logged model; returns the version."""
    import mlflow

    client(settings=settings)
    return str(mlflow.register_model(model_uri, name, await_registration_for=0).version)


def use_experiment(*, settings: Settings, name: str) -> str:
    """Make `name` the active experiment; with a local (SQLite/file) tracking store its artifacts live
    under RECO_HOME/mlartifacts, not in MLflow's default ./mlruns of the working directory."""
    import mlflow

    mlflow_client = client(settings=settings)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        location = None
        if settings.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in settings.tracking_uri:
            location = (settings.home / "mlartifacts").as_uri()
        experiment_id = mlflow_client.create_experiment(name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)
