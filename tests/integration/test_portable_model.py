"""The registered model outside this repository: a fresh virtualenv built from nothing but the model's
own requirements.txt loads it and predicts what the bundle predicts here, and `mlflow models serve`
answers from any directory (a bad context: a 400 with one sentence).

Slow (a virtualenv from the package index, a model server): marked `venv`, left out of `make test`
and run by `make test-slow`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from training.cli import app

pytestmark = pytest.mark.venv

PREDICT = """
import json, sys
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException

model = mlflow.pyfunc.load_model(sys.argv[1])
import training
users = json.loads(sys.argv[2])
frame = model.predict(pd.DataFrame({"user_id": users, "k": [5] * len(users), "context": ["home"] * len(users)}))
try:
    model.predict(pd.DataFrame({"user_id": users[:1], "context": ["sideways"]}))
    refused = None
except MlflowException as exc:
    refused = [exc.error_code, exc.message]
print(json.dumps({
    "training": training.__file__,
    "items": {u: frame[frame.user_id == u].sort_values("rank").item_id.tolist() for u in users},
    "refused": refused,
}))
"""


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would find this repository's code."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "RECO_HOME")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def registered(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A hybrid (ALS) registered as @champion in a home of its own, and its bundle's answers."""
    from training.registry.loading import load_bundle
    from training.settings import load_settings

    home = tmp_path_factory.mktemp("portable_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECO_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = CliRunner().invoke(
            app,
            ["train", "--purchases", str(small_store / "purchases.parquet"), "--param", "candidates=als"],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        bundle = load_bundle(summary["model_uri"], settings=load_settings())
    users = [*bundle.user_ids[:3].tolist(), "never-seen"]
    expected = {u: [i for i, _ in r] for u, r in zip(users, bundle.recommend_batch(users, k=5), strict=True)}
    return {"home": home, "summary": summary, "users": users, "expected": expected}


def test_a_clean_virtualenv_from_the_logged_requirements_loads_and_predicts(
    registered: dict[str, Any], tmp_path: Path
) -> None:
    import mlflow

    tracking = f"sqlite:///{registered['home'] / 'mlflow.db'}"
    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=registered["summary"]["model_uri"], dst_path=str(tmp_path), tracking_uri=tracking
        )
    )
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert all("==" in r for r in requirements), requirements
    venv = tmp_path / "venv"
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "-r", "requirements.txt"],
        cwd=model_dir,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=1_500,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", PREDICT, str(model_dir), json.dumps(registered["users"])],
        cwd=workdir,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["training"].startswith(str(model_dir / "code")), answer["training"]  # the model's own code
    assert answer["items"] == registered["expected"]
    assert answer["refused"] == [
        "INVALID_PARAMETER_VALUE",
        "Unknown context 'sideways': use one of home, buy-again, discover.",
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_mlflow_models_serve_answers_from_any_directory(registered: dict[str, Any], tmp_path: Path) -> None:
    """`mlflow models serve -m models:/reco@champion --env-manager local` with the project's venv active
    (its bin first on PATH), started in an unrelated directory without PYTHONPATH."""
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = _clean_env(
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        MLFLOW_TRACKING_URI=f"sqlite:///{registered['home'] / 'mlflow.db'}",
    )
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [
            *(os.path.join(bin_dir, "mlflow"), "models", "serve"),
            *("-m", "models:/reco@champion", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "mlflow models serve did not start in 120 s"
                time.sleep(0.5)
        user = registered["users"][0]
        status, body = _post(f"{url}/invocations", {"dataframe_records": [{"user_id": user, "k": 5}]})
        assert status == 200, body
        assert [row["item_id"] for row in body["predictions"]] == registered["expected"][user]
        status, body = _post(
            f"{url}/invocations", {"dataframe_records": [{"user_id": user, "k": 5, "context": "sideways"}]}
        )
        # MLflow's scoring server puts the request before the model's one sentence.
        assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
        assert body["message"].endswith("Error: Unknown context 'sideways': use one of home, buy-again, discover.")
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()
