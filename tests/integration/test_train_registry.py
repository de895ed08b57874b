"""`reco train` / `recommend` / `promote` against a real SQLite MLflow store in tmp_path: the champion
gate both ways, rollback, the pyfunc round trip and the JSONL export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from training.cli import app

FAST = ["--param", "eval_users=400", "--param", "candidates=als,ease"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reco_home")


@pytest.fixture(autouse=True)
def _reco_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECO_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RECO_MODEL_URI", raising=False)


def _reco(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def _train(store: Path, *extra: str) -> dict[str, Any]:
    out = _reco(
        "train",
        "--purchases",
        str(store / "purchases.parquet"),
        "--catalog",
        str(store / "catalog.parquet"),
        *FAST,
        *extra,
    )
    return json.loads(out.strip().splitlines()[-1])


def _champion(home: Path) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return str(client.get_model_version_by_alias("reco", "champion").version)


def _alias(home: Path, alias: str) -> str:
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return str(client.get_model_version_by_alias("reco", alias).version)


@pytest.fixture(scope="module")
def trained(small_store: Path, home: Path) -> dict[str, dict[str, Any]]:
    """popularity (first: becomes champion), then the hybrid (better), then popularity again (worse)."""
    import os

    saved = os.environ.get("RECO_HOME")
    os.environ["RECO_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        first = _train(small_store, "--model", "popularity")
        champion_after_first = _champion(home)
        hybrid = _train(small_store)
        champion_after_hybrid = _champion(home)
        worse = _train(small_store, "--model", "popularity")
        champion_after_worse = _champion(home)
        challenger_after_worse = _alias(home, "challenger")
    finally:
        if saved is None:
            os.environ.pop("RECO_HOME", None)
        else:
            os.environ["RECO_HOME"] = saved
    return {
        "first": first,
        "hybrid": hybrid,
        "worse": worse,
        "aliases": {
            "after_first": champion_after_first,
            "after_hybrid": champion_after_hybrid,
            "after_worse": champion_after_worse,
            "challenger_after_worse": challenger_after_worse,
        },
    }


def test_train_prints_the_contract_json_last(trained: dict[str, dict[str, Any]]) -> None:
    summary = trained["hybrid"]
    assert set(summary) == {"run_id", "model_uri", "version", "metrics", "promoted"}
    assert summary["model_uri"] == f"models:/reco/{summary['version']}"
    assert 0 < summary["metrics"]["home/ndcg_at_10"] <= 1


def test_gate_promotes_a_better_model_and_keeps_a_worse_one_as_challenger(trained: dict[str, dict[str, Any]]) -> None:
    aliases = trained["aliases"]
    assert trained["first"]["promoted"] is True and aliases["after_first"] == trained["first"]["version"]
    # The hybrid wins against popularity refit on the same split (on the gate customers) → champion.
    assert trained["hybrid"]["metrics"]["home/ndcg_at_10"] > trained["hybrid"]["metrics"]["popularity/home/ndcg_at_10"]
    assert trained["hybrid"]["promoted"] is True and aliases["after_hybrid"] == trained["hybrid"]["version"]
    # Popularity again loses against the hybrid's configuration refit on the gate customers → challenger.
    assert trained["worse"]["promoted"] is False
    assert aliases["after_worse"] == trained["hybrid"]["version"]
    assert aliases["challenger_after_worse"] == trained["worse"]["version"]


def test_gate_decision_is_logged_with_both_scores(trained: dict[str, dict[str, Any]], home: Path) -> None:
    """Popularity again, on the data the hybrid champion was trained on: the served champion has seen
    every gate basket, so it is compared through its configuration refit, with intervals."""
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}").get_run(trained["worse"]["run_id"])
    assert run.data.tags["gate.decision"] == "challenger"
    assert run.data.tags["gate.reason"].startswith("worse than the champion refit on home beyond the tolerance")
    metrics = run.data.metrics
    assert metrics["gate/champion_refit/home/ndcg_at_10"] > metrics["gate/challenger/home/ndcg_at_10"]
    assert metrics["gate/vs_champion_refit/home/difference_high"] < 0
    for model in ("challenger", "champion_refit"):
        low, score, high = (metrics[f"gate/{model}/home/ndcg_at_10{s}"] for s in ("_low", "", "_high"))
        assert low < score < high


def test_promote_rolls_back_and_forward(trained: dict[str, dict[str, Any]], home: Path) -> None:
    from training.registry.loading import load_bundle

    first, hybrid = trained["first"]["version"], trained["hybrid"]["version"]
    out = json.loads(_reco("promote", "--version", first))
    assert out["version"] == first and _champion(home) == first
    assert load_bundle("models:/reco@champion").version == first
    _reco("promote", "--version", hybrid)
    assert _champion(home) == hybrid and load_bundle("models:/reco@champion").version == hybrid


def test_promote_unknown_version_is_one_sentence(trained: dict[str, dict[str, Any]]) -> None:
    result = CliRunner().invoke(app, ["promote", "--version", "999"])
    assert result.exit_code != 0 and "no version 999" in str(result.exception)


def test_recommend_exports_jsonl_with_fallback_for_unknown_users(
    trained: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    from training.registry.loading import load_bundle

    bundle = load_bundle(trained["hybrid"]["model_uri"])
    known = bundle.user_ids[:3].tolist()
    users = tmp_path / "users.txt"
    users.write_text("\n".join([*known, "never-seen"]) + "\n")
    out = tmp_path / "recs.jsonl"
    _reco(
        "recommend",
        "--model-uri",
        trained["hybrid"]["model_uri"],
        "--users",
        str(users),
        "--k",
        "5",
        "--context",
        "discover",
        "--out",
        str(out),
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["user_id"] for line in lines] == [*known, "never-seen"]
    assert all(len(line["items"]) == 5 for line in lines)
    assert lines[-1]["source"] == "popular" and lines[0]["source"] == "model"
    expected = bundle.recommend_batch(known, k=5, context="discover")
    assert [[i["item_id"] for i in line["items"]] for line in lines[:3]] == [[i for i, _ in r] for r in expected]


def test_the_console_command_ends_once_mlflow_has_read_the_model(
    trained: dict[str, dict[str, Any]], tmp_path: Path, home: Path
) -> None:
    """The entry point skips the interpreter's teardown after success (`_exit_without_teardown`): it
    still ends with MLflow's artifact thread pool left open, and its output is all there."""
    import os
    import subprocess
    import sys

    users = tmp_path / "users.txt"
    users.write_text("never-seen\n")
    out = tmp_path / "recs.jsonl"
    command = [sys.executable, "-m", "training.cli", "recommend", "--model-uri", trained["hybrid"]["model_uri"]]
    done = subprocess.run(
        [*command, "--users", str(users), "--k", "3", "--out", str(out)],
        env={**os.environ, "RECO_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,  # about 3 s; a thread left waiting would hold it forever
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(out.read_text())["items"]) == 3


def test_pyfunc_round_trip_matches_the_bundle(trained: dict[str, dict[str, Any]]) -> None:
    import mlflow
    import pandas as pd

    from training.registry.loading import load_bundle

    uri = trained["hybrid"]["model_uri"]
    bundle = load_bundle(uri)
    assert bundle.version == trained["hybrid"]["version"]
    model = mlflow.pyfunc.load_model(uri)
    users = [bundle.user_ids[0], "never-seen"]
    frame = model.predict(pd.DataFrame({"user_id": users, "k": [4, 4], "context": ["home", "home"]}))
    assert list(frame.columns) == ["user_id", "rank", "item_id", "score"]
    for user, expected in zip(users, bundle.recommend_batch(users, k=4), strict=True):
        got = frame[frame.user_id == user].sort_values("rank")
        assert got.item_id.tolist() == [i for i, _ in expected]
    # As `mlflow models serve` sends it: optional columns missing from some records (NaN / None).
    mixed = model.predict(
        pd.DataFrame([{"user_id": users[0], "context": "discover"}, {"user_id": users[1]}]), params={"k": 3}
    )
    discover = bundle.recommend_batch([users[0]], k=3, context="discover")[0]
    assert mixed[mixed.user_id == users[0]].item_id.tolist() == [i for i, _ in discover]
    assert len(mixed[mixed.user_id == users[1]]) == 3


def test_run_artifacts_stay_under_reco_home(trained: dict[str, dict[str, Any]], home: Path) -> None:
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}").get_run(trained["hybrid"]["run_id"])
    assert run.info.artifact_uri.startswith((home / "mlartifacts").as_uri())
    assert any((home / "mlartifacts").rglob("arrays.npz"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "deep-magic"], "Unknown model 'deep-magic'"),
        (["--param", "factors"], "is not KEY=VALUE"),
        (["--param", "colour=blue"], "Unknown --param 'colour'"),
        (["--promote", "sometimes"], "--promote must be one of"),
    ],
)
def test_train_rejects_bad_options_with_one_sentence(small_store: Path, args: list[str], message: str) -> None:
    from training.core.errors import RecoError

    result = CliRunner().invoke(app, ["train", "--purchases", str(small_store / "purchases.parquet"), *args])
    assert isinstance(result.exception, RecoError) and message in str(result.exception)


def test_registered_version_is_its_runs_model_with_the_test_metrics(
    trained: dict[str, dict[str, Any]], home: Path
) -> None:
    """The model is logged while the test runs and registered after the gate: the version comes from
    the run that holds the parameters, the test metrics and the decision, and that run is finished."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    summary = trained["hybrid"]
    version = client.get_model_version("reco", summary["version"])
    assert version.run_id == summary["run_id"]
    assert version.tags["reco.score"] == f"{summary['metrics']['home/ndcg_at_10']:.6f}"
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == "hybrid" and run.data.params["refit"] in ("full", "fold-in")
    assert run.data.metrics["home/ndcg_at_10"] == pytest.approx(summary["metrics"]["home/ndcg_at_10"])
    assert run.data.tags["gate.decision"] == "champion"


def test_the_model_carries_its_code_and_pinned_requirements(trained: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """What a clean environment needs is in the model: the package files loading imports (numpy and
    scipy only) and every requirement pinned. (`make test-slow` loads it in a fresh virtualenv.)"""
    import mlflow

    model_dir = Path(mlflow.artifacts.download_artifacts(trained["hybrid"]["model_uri"], dst_path=str(tmp_path)))
    code = model_dir / "code" / "training"
    assert (code / "registry" / "bundle_file.py").exists() and (code / "core" / "bundle.py").exists()
    assert not (code / "pipeline").exists() and not list(code.rglob("__pycache__"))
    imported = {
        line.split()[1].split(".")[0]
        for path in code.rglob("*.py")
        for line in path.read_text().splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imported <= {
        "__future__",
        "training",
        "numpy",
        "scipy",
        "abc",
        "collections",
        "dataclasses",
        "datetime",
        "io",
        "json",
        "math",
        "pathlib",
        "typing",
        "zipfile",
    }, imported
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} == {"mlflow", "numpy", "scipy", "pandas"}
    assert all("==" in r for r in requirements)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"user_id": "C1", "context": "sideways"}, "Unknown context 'sideways': use one of home, buy-again, discover."),
        ({"user_id": "C1", "k": 0}, "k must be a whole number from 1 to 1000, not 0."),
    ],
)
def test_predict_refuses_a_bad_request_with_one_sentence(
    trained: dict[str, dict[str, Any]], record: dict[str, Any], message: str
) -> None:
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(trained["hybrid"]["model_uri"])
    with pytest.raises(MlflowException) as refused:
        model.predict(pd.DataFrame([record]))
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE" and refused.value.message == message


def test_loads_racing_for_the_same_version_all_get_it(trained: dict[str, dict[str, Any]], home: Path) -> None:
    """The workers of one `reco serve` start together and download the same version into the one
    cache: each must end up with the model (one of two failed here before, and served no model)."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from training.registry.loading import load_bundle
    from training.settings import load_settings

    version = _champion(home)
    shutil.rmtree(home / "model-cache" / "reco" / version, ignore_errors=True)
    with ThreadPoolExecutor(3) as pool:
        bundles = list(pool.map(lambda _: load_bundle(f"models:/reco/{version}", settings=load_settings()), range(3)))
    assert all(b.n_items == bundles[0].n_items > 0 for b in bundles)
    assert sorted(p.name for p in (home / "model-cache" / "reco").iterdir() if p.name.startswith(version)) == [version]
