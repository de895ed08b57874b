"""MLflow on the machine's PostgreSQL with artifacts where RECO_ARTIFACT_ROOT says, and tracking URIs
that cannot work stopped before any work with one sentence (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training.cli import app
from training.registry.tracking import TrackingUnavailable


@pytest.mark.postgres
def test_train_and_promote_on_postgresql_with_artifacts_in_the_stated_root(
    postgres_uri: str, small_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from training.registry.loading import load_bundle

    artifacts, work = tmp_path / "artifacts", tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # MLflow's default artifact root would be ./mlruns here
    monkeypatch.setenv("RECO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_uri)
    monkeypatch.setenv("RECO_ARTIFACT_ROOT", str(artifacts))
    result = CliRunner().invoke(
        app,
        ["train", "--purchases", str(small_store / "purchases.parquet"), "--model", "popularity"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["promoted"] is True
    client = MlflowClient(tracking_uri=postgres_uri, registry_uri=postgres_uri)
    run = client.get_run(summary["run_id"])
    assert run.info.artifact_uri.startswith(artifacts.as_uri())
    assert list(artifacts.rglob("arrays.npz")) and not (work / "mlruns").exists()
    assert str(client.get_model_version_by_alias("reco", "champion").version) == summary["version"]
    assert load_bundle("models:/reco@champion").version == summary["version"]
    history = CliRunner().invoke(app, ["promote", "--history"], catch_exceptions=False).stdout
    assert f"version {summary['version']}  by reco train: no champion yet" in history


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("postgresql://postgres@127.0.0.1:5432/mlflow", "names no database driver, which SQLAlchemy 2 needs"),
        ("postgres://postgres@127.0.0.1:5432/mlflow", "names no database driver"),
        ("postgresql+nosuchdriver://postgres@127.0.0.1:5432/mlflow", "needs the nosuchdriver driver"),
        ("postgresql+psycopg://postgres:secret@127.0.0.1:1/mlflow", "Cannot use the tracking database"),
        ("http://127.0.0.1:1", "does not answer"),
        ("./mlruns", "is a file store, which MLflow 3.17 refuses"),
        ("ftp://example/mlflow", "has an unknown scheme 'ftp'"),
    ],
)
def test_a_tracking_uri_that_cannot_work_stops_train_before_any_work(
    uri: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECO_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.monotonic()
    # A purchase file that does not exist: the tracking URI is checked before it is even opened.
    result = CliRunner().invoke(app, ["train", "--purchases", str(tmp_path / "missing.parquet")])
    assert isinstance(result.exception, TrackingUnavailable), result.output
    assert message in str(result.exception) and "secret" not in str(result.exception)
    assert len(str(result.exception).splitlines()) == 1
    assert time.monotonic() - start < 10


def test_the_command_exits_2_with_the_sentence(tmp_path: Path) -> None:
    env = {**os.environ, "RECO_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "postgresql://postgres@127.0.0.1/x"}
    done = subprocess.run(
        [sys.executable, "-m", "training.cli", "train", "--purchases", str(tmp_path / "missing.parquet")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("reco: MLFLOW_TRACKING_URI 'postgresql://postgres@127.0.0.1/x' names no")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
