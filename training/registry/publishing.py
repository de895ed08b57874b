"""Publishing to the MLflow registry: log a run's model, register versions, move the aliases.

`@champion` is what the service serves; `@challenger` the newest version that did not win (every
version stays registered). Every move of @champion is kept in the registered model's promotion
history and written into the descriptions of the versions involved. MLflow is imported inside the
functions.
"""

from __future__ import annotations

import json
import shutil
import tempfile
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


def tag_version(*, settings: Settings, name: str, version: str, key: str, value: str) -> None:
    """Set a tag on a registered version (e.g. reco.candidates when its candidates are published)."""
    client(settings=settings).set_model_version_tag(name, str(version), key, value)


HISTORY_TAG = "reco.promotion."  # + a six-digit sequence number: one registered-model tag per move of @champion


def promote(
    *, settings: Settings, name: str, version: str, reason: str = "manual", by: str = "reco promote"
) -> dict[str, Any]:
    """Move @champion to `version` (rollback or roll forward) and record it: a new entry of the
    registered model's promotion history (`promotion_history`), and a line in the description of the
    version promoted and of the one it replaces. @challenger keeps naming the latest version that was
    not promoted (it is removed when that version is the one promoted).

    Returns the history entry: {"at", "version", "previous", "reason", "by"}."""
    mlflow_client = client(settings=settings)
    try:
        mlflow_client.get_model_version(name, str(version))
    except Exception:
        raise ModelNotFound(f"Registered model {name!r} has no version {version}.") from None
    previous = champion(settings=settings, name=name)
    previous_version = previous["version"] if previous else None
    mlflow_client.set_registered_model_alias(name, CHAMPION, str(version))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entry = {"at": stamp, "version": str(version), "previous": previous_version, "reason": reason, "by": by}
    history = promotion_history(settings=settings, name=name)
    sequence = 1 + max((int(e["sequence"]) for e in history), default=0)
    mlflow_client.set_registered_model_tag(name, f"{HISTORY_TAG}{sequence:06d}", json.dumps(entry))
    mlflow_client.set_model_version_tag(name, str(version), "reco.promoted", f"{stamp} {reason}")
    after = f" (replacing version {previous_version})" if previous_version and previous_version != str(version) else ""
    line = f"{stamp}: became @champion{after} by {by}: {reason}"
    describe(settings=settings, name=name, version=str(version), line=line)
    if previous_version and previous_version != str(version):
        mlflow_client.set_model_version_tag(name, previous_version, "reco.demoted", f"{stamp} {reason}")
        line = f"{stamp}: replaced as @champion by version {version}"
        describe(settings=settings, name=name, version=previous_version, line=line)
    try:
        if str(mlflow_client.get_model_version_by_alias(name, CHALLENGER).version) == str(version):
            mlflow_client.delete_registered_model_alias(name, CHALLENGER)
    except Exception:  # no challenger alias
        pass
    return {"name": name, **entry}


def promotion_history(*, settings: Settings, name: str) -> list[dict[str, Any]]:
    """Every move of @champion recorded by `promote`, oldest first: {"sequence", "at", "version",
    "previous", "reason", "by"}. An unknown registered model has none."""
    mlflow_client = client(settings=settings)
    try:
        tags = dict(mlflow_client.get_registered_model(name).tags or {})
    except Exception:
        return []
    entries = []
    for key, value in sorted(tags.items()):
        if key.startswith(HISTORY_TAG):
            entries.append({"sequence": int(key.removeprefix(HISTORY_TAG)), **json.loads(value)})
    return entries


def describe(*, settings: Settings, name: str, version: str, line: str) -> None:
    """Append a line to a model version's description (what the registry's page shows first)."""
    mlflow_client = client(settings=settings)
    current = mlflow_client.get_model_version(name, version).description or ""
    text = f"{current.rstrip()}\n\n{line}" if current.strip() else line
    mlflow_client.update_model_version(name, version, description=text)


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


# What loading and predicting with the pyfunc imports of this package (pyfunc_model.py's imports and
# theirs), copied beside the model as its `code_paths`: numpy and scipy only, so the pinned
# requirements below are all a clean environment needs.
MODEL_CODE = ("__init__.py", "core", "registry/__init__.py", "registry/bundle_file.py")


def model_requirements() -> list[str]:
    """The pyfunc's pip requirements, pinned to the versions the model was trained and checked with."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("mlflow", "numpy", "scipy", "pandas")]


def _model_code(into: Path) -> Path:
    """A copy of the package files in MODEL_CODE under `into`/training (the code_paths entry)."""
    source = Path(__file__).resolve().parents[1]
    package = into / "training"
    for relative in MODEL_CODE:
        target = package / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if (source / relative).is_dir():
            shutil.copytree(source / relative, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source / relative, target)
    return package


def log_pyfunc(*, bundle_dir: Path, example_users: list[str]) -> Any:
    """Log the bundle as a models-from-code pyfunc in the active run (`register` makes it a version),
    with the code it imports (`code_paths`) and pinned requirements: it loads in an environment built
    from its own requirements.txt, without this repository."""
    import mlflow
    import pandas as pd

    code = Path(__file__).with_name("pyfunc_model.py")
    example = pd.DataFrame({"user_id": example_users[:2] or ["unknown"], "k": [5] * len(example_users[:2] or [1])})
    with tempfile.TemporaryDirectory() as tmp:
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
            code_paths=[str(_model_code(Path(tmp)))],
            signature=model_signature(),
            input_example=example,
            pip_requirements=model_requirements(),
        )


def register(*, settings: Settings, name: str, model_uri: str, tags: dict[str, str] | None = None) -> str:
    """A new version of the registered model `name` from a logged model, created with its `tags`
    (one call: a kill never leaves a version without them); returns the version."""
    import mlflow

    client(settings=settings)
    return str(mlflow.register_model(model_uri, name, await_registration_for=0, tags=tags).version)


def use_experiment(*, settings: Settings, name: str) -> str:
    """Make `name` the active experiment. Created with a database tracking store (sqlite, postgresql,
    mysql), its artifacts go to RECO_ARTIFACT_ROOT (default RECO_HOME/mlartifacts), never to MLflow's
    default ./mlruns of the working directory; a tracking server decides its own location."""
    import mlflow

    mlflow_client = client(settings=settings)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        scheme = settings.tracking_uri.partition("://")[0].partition("+")[0]
        server = scheme in ("http", "https") or scheme.startswith("databricks")
        location = None if server else settings.artifact_location
        experiment_id = mlflow_client.create_experiment(name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)
