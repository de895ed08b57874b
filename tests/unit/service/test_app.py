"""The app as a process: what importing it loads, unexpected errors as JSON, metrics beside Feast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]


def test_an_unexpected_error_is_json_and_its_message_stays_out_of_the_logs(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from starlette.testclient import TestClient

    from service.app import create_app
    from service.config import load_service_settings

    app = create_app(load_service_settings(home=str(tmp_path), auth="disabled"))

    customer = "-".join(("private", "customer", "42"))  # not in the source lines a traceback shows

    async def boom() -> None:
        raise KeyError(customer)

    app.add_api_route("/boom", boom)
    logger = logging.getLogger("reco")
    logger.propagate = True
    try:
        with caplog.at_level(logging.INFO):
            # raise_server_exceptions: an exception that got past the service would fail here
            r = TestClient(app, raise_server_exceptions=True).get("/boom", headers={"X-Request-ID": "req-1"})
    finally:
        logger.propagate = False
    assert r.status_code == 500 and r.json()["detail"] and r.json()["request_id"] == "req-1"
    assert "KeyError" in caplog.text and "/boom" in caplog.text
    assert "private-customer-42" not in caplog.text


def test_metrics_survive_feast_setting_the_multiprocess_variable() -> None:
    # The order of `reco serve` with one worker: the service's metrics first, then Feast (lifespan).
    script = (
        "import service.observability as o\n"
        "import feast, os\n"
        "assert os.environ.get('PROMETHEUS_MULTIPROC_DIR')  # set by feast.metrics\n"
        "o.ANSWER_SOURCE.labels(endpoint='probe', source='model').inc()\n"
        "print('endpoint=\"probe\"' in o.metrics_body()[0].decode())\n"
    )
    repo = REPO
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PROMETHEUS_MULTIPROC")}
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=repo,
        env={**env, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "True"


# Importing the service must not load the trainer or the batch side's libraries (docs/architecture.md: the
# service imports the ranking core, the registry's loading side, the features' names and encodings
# and the recap renderer). Feast and MLflow are loaded by the lifespan, never at import.
FORBIDDEN_PACKAGES = ("duckdb", "pyarrow", "implicit", "lightgbm", "feast", "mlflow")
ALLOWED_TRAINING = ("training.core", "training.registry", "training.features", "training.recaps", "training.settings")


def test_importing_the_service_loads_no_trainer_and_no_batch_library() -> None:
    script = "import json, sys\nimport service.app\nprint(json.dumps(sorted(sys.modules)))\n"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PROMETHEUS_MULTIPROC")}
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = set(json.loads(run.stdout.strip().splitlines()[-1]))
    assert {"service.app", "service.recommendations.routes", "training.core.bundle"} <= loaded
    libraries = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN_PACKAGES)
    assert not libraries, f"importing service.app loaded {libraries[:10]}"
    training = sorted(
        m
        for m in loaded
        if m.startswith("training.") and not any(m == p or m.startswith(p + ".") for p in ALLOWED_TRAINING)
    )
    # training.data, training.pipeline, training.cli, training.train, training.models, training.evaluation...
    assert not training, f"importing service.app loaded trainer modules {training}"
