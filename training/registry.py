"""MLflow: one run per training, the registered model, the champion alias and loading bundles.

Stable API (the service and the recap job code against it):

    load_bundle(model_uri, *, settings=None) -> ModelBundle
        bundle.version, bundle.recommend_batch(user_ids, *, k, context="home", exclude_items=()),
        bundle.similar_items(item_id, *, k), bundle.knows_user(user_id)

Importing this module is cheap: MLflow is imported inside the functions that need it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.errors import RecoError

if TYPE_CHECKING:
    from training.ranking import ModelBundle
    from training.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
BUNDLE_ARTIFACT = "bundle"  # the bundle directory's name inside the logged pyfunc model


class ModelNotFound(RecoError):
    """The model URI does not resolve to a model (no such name, version, alias or path)."""


def _quiet_mlflow_env() -> None:
    """Fail fast against an unreachable tracking server (MLflow's defaults retry for minutes)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def client(*, settings: Settings) -> Any:
    """An MlflowClient on the settings' tracking URI (also the registry URI)."""
    _quiet_mlflow_env()
    import mlflow
    from mlflow import MlflowClient

    settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def resolve_version(model_uri: str, *, settings: Settings) -> tuple[str, str | None, str]:
    """models:/name@alias, models:/name/version or runs:/id/path → (name, version or None, artifact URI)."""
    if model_uri.startswith("models:/"):
        ref = model_uri[len("models:/") :].strip("/")
        mlflow_client = client(settings=settings)
        try:
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = mlflow_client.get_model_version_by_alias(name, alias)
            else:
                name, version = ref.rsplit("/", 1)
                mv = mlflow_client.get_model_version(name, version)
        except Exception as exc:  # MLflow raises MlflowException / RestException variants
            raise ModelNotFound(f"No model at {model_uri} in {settings.tracking_uri} ({_first_line(exc)}).") from None
        return mv.name, str(mv.version), f"models:/{mv.name}/{mv.version}"
    return "", None, model_uri


def load_bundle(model_uri: str, *, settings: Settings | None = None) -> ModelBundle:
    """Resolve a model URI (models:/name@alias, models:/name/N, runs:/…, or a local bundle/model dir),
    download it once into the cache under RECO_HOME and load its bundle."""
    from training.bundle import load_bundle_dir
    from training.settings import load_settings

    settings = settings or load_settings()
    local = Path(model_uri)
    if "://" not in model_uri and local.exists():
        return load_bundle_dir(_bundle_dir(local), version=local.name)
    name, version, artifact_uri = resolve_version(model_uri, settings=settings)
    if version is not None:
        cache = settings.home / "model-cache" / name / version
        label = version
    else:
        cache = settings.home / "model-cache" / "runs" / artifact_uri.replace(":/", "").replace("/", "_")
        label = artifact_uri.split("/")[1] if artifact_uri.startswith("runs:/") else artifact_uri
    if not (cache / "READY").exists():
        _download(artifact_uri=artifact_uri, into=cache, settings=settings)
    return load_bundle_dir(_bundle_dir(cache / "model"), version=label)


def _download(*, artifact_uri: str, into: Path, settings: Settings) -> None:
    """Download a model's artifacts atomically (a half-finished download is never used)."""
    import mlflow

    client(settings=settings)
    tmp = into.with_name(into.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(tmp / "model"))
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelNotFound(f"Could not download {artifact_uri} ({_first_line(exc)}).") from None
    (tmp / "READY").write_text("ok\n")
    shutil.rmtree(into, ignore_errors=True)
    tmp.rename(into)


def _bundle_dir(path: Path) -> Path:
    """The bundle directory inside a pyfunc model directory (or the path itself when it is one)."""
    if (path / "config.json").exists():
        return path
    for candidate in (path / "artifacts" / BUNDLE_ARTIFACT, path / BUNDLE_ARTIFACT):
        if (candidate / "config.json").exists():
            return candidate
    raise ModelNotFound(f"{path} holds no model bundle (config.json + arrays.npz).")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def champion(*, settings: Settings, name: str) -> dict[str, Any] | None:
    """The current champion: {"version", "run_id", "model", "params", "tags"}, or None when there is none."""
    import json

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
    import time

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
