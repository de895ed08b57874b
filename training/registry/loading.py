"""Resolve a model URI and load its bundle: what the service, `reco recommend` and the recap job call.

    load_bundle(model_uri, *, settings=None) -> ModelBundle
    resolve_version(model_uri, *, settings) -> (name, version or None, artifact URI)
    version_tags(*, settings, name, version) -> {tag: value}

A registered version is downloaded once into RECO_HOME/model-cache/<name>/<version> (atomically: a
half-finished download is never used) and memory-mapped from there. The service records which
version each model URI served (`remember_served`), so a start-up without the registry (MLflow
missing, corrupt or hung) can serve that version from the cache (`cached_bundle`). Importing this
module is cheap: MLflow is imported inside the functions that talk to the registry.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.core.errors import RecoError
from training.registry import BUNDLE_ARTIFACT
from training.registry.bundle_file import load_bundle_dir

if TYPE_CHECKING:
    from training.core.bundle import ModelBundle
    from training.settings import Settings


class ModelNotFound(RecoError):
    """The model URI does not resolve to a model (no such name, version, alias or path)."""


def _quiet_mlflow_env() -> None:
    """Fail fast against an unreachable tracking server (MLflow's defaults retry for minutes)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def import_mlflow() -> None:
    """Import MLflow (seconds on a busy machine) with the fail-fast client settings, nothing else."""
    _quiet_mlflow_env()
    import mlflow  # noqa: F401


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
        _require_sqlite_store(settings.tracking_uri)
        mlflow_client = client(settings=settings)
        try:
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = mlflow_client.get_model_version_by_alias(name, alias)
            else:
                name, version = ref.rsplit("/", 1)
                mv = mlflow_client.get_model_version(name, version)
        except Exception as exc:  # MLflow raises MlflowException / RestException variants
            raise ModelNotFound(f"No model at {model_uri} in {settings.tracking_uri} ({first_line(exc)}).") from None
        return mv.name, str(mv.version), f"models:/{mv.name}/{mv.version}"
    return "", None, model_uri


def version_tags(*, settings: Settings, name: str, version: str) -> dict[str, str]:
    """The tags of a registered version (e.g. reco.candidates, set once its candidates are published)."""
    try:
        mv = client(settings=settings).get_model_version(name, str(version))
    except Exception as exc:
        raise ModelNotFound(f"No version {version} of {name} in {settings.tracking_uri} ({first_line(exc)}).") from None
    return dict(mv.tags or {})


def load_bundle(model_uri: str, *, settings: Settings | None = None) -> ModelBundle:
    """Resolve a model URI (models:/name@alias, models:/name/N, runs:/…, or a local bundle/model dir),
    download it once into the cache under RECO_HOME and load its bundle (settings: the environment's
    when not given)."""
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


def _require_sqlite_store(uri: str) -> None:
    """A SQLite tracking store that does not exist is an error for a reader: MLflow would create it
    empty and answer "no such model" (a wrong RECO_HOME or a deleted file looks like no model)."""
    scheme, sep, rest = uri.partition("://")
    if sep and scheme.split("+")[0] == "sqlite":
        path = Path(rest[1:]) if rest.startswith("/") else Path(rest)
        if not path.expanduser().exists():
            raise ModelNotFound(f"The MLflow tracking store {path} does not exist (MLFLOW_TRACKING_URI, RECO_HOME).")


def _served_file(settings: Settings) -> Path:
    return settings.home / "model-cache" / "served.json"


def remember_served(*, settings: Settings, model_uri: str, name: str, version: str) -> None:
    """Record that `model_uri` (e.g. models:/reco@champion) resolved to `name` `version`, whose
    artifacts are in the cache: what `cached_bundle` serves when the registry cannot answer."""
    path = _served_file(settings)
    served = json.loads(path.read_text()) if path.exists() else {}
    served[model_uri] = {"name": name, "version": version}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(served, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def served_version(*, settings: Settings, model_uri: str) -> tuple[str, str] | None:
    """(name, version) `model_uri` last served from this RECO_HOME, when that version is in the local
    cache; None otherwise. Asks nothing of the registry."""
    path = _served_file(settings)
    try:
        entry = json.loads(path.read_text())[model_uri]
        name, version = str(entry["name"]), str(entry["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (name, version) if (settings.home / "model-cache" / name / version / "READY").exists() else None


def cached_bundle(*, settings: Settings, name: str, version: str) -> ModelBundle:
    """The bundle of a version in the local cache (see `served_version`), without the registry."""
    return load_bundle_dir(_bundle_dir(settings.home / "model-cache" / name / version / "model"), version=version)


def _download(*, artifact_uri: str, into: Path, settings: Settings) -> None:
    """Download a model's artifacts atomically (a half-finished download is never used). Each process
    (and thread) downloads beside the others (the workers of one `reco serve` start together); the
    first to finish puts its copy in place, the others drop theirs."""
    import mlflow

    client(settings=settings)
    tmp = into.with_name(f"{into.name}.partial-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(tmp / "model"))
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelNotFound(f"Could not download {artifact_uri} ({first_line(exc)}).") from None
    (tmp / "READY").write_text("ok\n")
    try:
        tmp.rename(into)
        return
    except OSError:  # another process put its copy in place first: never remove one that may be in use
        if not (into / "READY").exists():
            raise
    shutil.rmtree(tmp, ignore_errors=True)


def _bundle_dir(path: Path) -> Path:
    """The bundle directory inside a pyfunc model directory (or the path itself when it is one)."""
    if (path / "config.json").exists():
        return path
    for candidate in (path / "artifacts" / BUNDLE_ARTIFACT, path / BUNDLE_ARTIFACT):
        if (candidate / "config.json").exists():
            return candidate
    raise ModelNotFound(f"{path} holds no model bundle (config.json + arrays.npz).")


def first_line(exc: BaseException) -> str:
    """An exception's first line, at most 200 characters (MLflow's messages run to pages)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
