"""The champion gate end to end, `reco train` against a SQLite MLflow store in tmp_path, in the order an
ML engineer meets it: a champion trained on data to two months before the end; the nightly retrain
with the same configuration on all the data (promoted); a challenger within noise on the older data
(not promoted); a worse model on the newer data (not promoted). Each decision is read back from the
run, the registry's versions, descriptions, aliases and the promotion history."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from training.cli import app

FAST = ["--param", "eval_users=400", "--param", "candidates=als,ease"]


@pytest.fixture(scope="module")
def stores(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small store's purchases, and the same less its last 61 days (the older data)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = tmp_path_factory.mktemp("older")
    table = pq.read_table(small_store / "purchases.parquet")
    cut = pc.max(table.column("timestamp")).as_py() - timedelta(days=61)
    pq.write_table(table.filter(pc.less(table.column("timestamp"), cut)), out / "purchases.parquet")
    return {"newer": small_store / "purchases.parquet", "older": out / "purchases.parquet"}


@pytest.fixture(scope="module")
def runs(stores: dict[str, Path], small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The four trainings in order, in a home of their own; each: its JSON summary, run, decision."""
    from mlflow import MlflowClient

    home = tmp_path_factory.mktemp("gate_home")
    catalog = str(small_store / "catalog.parquet")
    env = {"RECO_HOME": str(home), "MLFLOW_TRACKING_URI": "", "RECO_MODEL_URI": "", "RECO_EXPERIMENT": "gate-test"}
    uri = f"sqlite:///{home / 'mlflow.db'}"
    # The registry URI too: MlflowClient falls back to the process's global one, which other tests move.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    out: dict[str, Any] = {"home": home, "client": client}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value) if value else patch.delenv(key, raising=False)
        for name, data, extra in (
            ("champion", "older", []),
            ("nightly", "newer", []),
            ("noise", "older", ["--param", "seed=7"]),
            ("worse", "newer", ["--model", "popularity"]),
        ):
            result = CliRunner().invoke(
                app,
                ["train", "--purchases", str(stores[data]), "--catalog", catalog, *FAST, *extra],
                catch_exceptions=False,
            )
            assert result.exit_code == 0, result.output
            summary = json.loads(result.stdout.strip().splitlines()[-1])
            decision = json.loads(Path(client.download_artifacts(summary["run_id"], "gate/decision.json")).read_text())
            out[name] = {"summary": summary, "run": client.get_run(summary["run_id"]), "decision": decision}
        out["history"] = CliRunner().invoke(app, ["promote", "--history"], catch_exceptions=False).stdout
    return out


def test_the_nightly_retrain_on_newer_data_with_the_same_configuration_is_promoted(runs: dict[str, Any]) -> None:
    nightly = runs["nightly"]
    assert (
        runs["champion"]["summary"]["promoted"] is True and runs["champion"]["decision"]["reason"] == "no champion yet"
    )
    assert nightly["summary"]["promoted"] is True
    decision = nightly["decision"]
    assert decision["rule"] == "newer data within tolerance" and decision["newer_data"] is True
    assert decision["reason"].startswith("newer data than the champion's (to ")
    # Measured against the champion as served (not its own score): the same configuration is not refit.
    assert set(decision["comparisons"]) == {"champion"}
    home = decision["comparisons"]["champion"]["home"]
    assert home["customers"] >= 30 and home["reference_low"] < home["reference"] < home["reference_high"]
    assert home["challenger"] != home["reference"]
    run = nightly["run"]
    assert run.data.tags["gate.decision"] == "champion" and run.data.tags["gate.reason"] == decision["reason"]
    # The run's page opens with the outcome, the tables and the figures.
    description = run.data.tags["mlflow.note.content"]
    assert description.startswith(f"**Gate: promoted to @champion.** {decision['reason']}.")
    assert "| champion | home | " in description and "| hybrid(als) | model | " in description
    assert f"get-artifact?path=gate%2Fscores.png&run_uuid={run.info.run_id}" in description
    assert run.info.run_name.startswith("hybrid(als) · data ") and run.info.run_name.endswith(" · to 2025-12-31")
    assert run.data.tags["reco.version"] == "0.1.0" and len(run.data.tags["reco.git_commit"]) == 40
    assert run.data.metrics["gate/champion/home/ndcg_at_10"] == pytest.approx(home["reference"], abs=1e-6)
    assert run.data.metrics["gate/vs_champion/home/difference_low"] == pytest.approx(home["difference_low"], abs=1e-6)


def test_a_challenger_within_noise_on_older_data_is_not_promoted(runs: dict[str, Any]) -> None:
    noise = runs["noise"]
    assert noise["summary"]["promoted"] is False
    decision = noise["decision"]
    assert decision["newer_data"] is False and decision["rule"] is None
    assert decision["reason"].startswith("data not newer than the champion's")
    assert "no win beyond the interval on home against the champion refit" in decision["reason"]
    # The champion (trained on the newer data) has seen every gate basket: it is compared through its refit.
    assert set(decision["contexts"]) == {"champion refit"} and decision["contexts"]["champion refit"]
    assert "(the champion as served has seen every gate basket: its data ends " in decision["reason"]
    refit = decision["comparisons"]["champion refit"]["home"]
    assert refit["difference_low"] <= 0 <= refit["difference_high"] + 0.01
    assert noise["run"].data.tags["gate.reason"] == decision["reason"]


def test_a_worse_model_is_not_promoted(runs: dict[str, Any]) -> None:
    worse = runs["worse"]
    assert worse["summary"]["promoted"] is False
    decision = worse["decision"]
    assert decision["reason"].startswith("worse than the champion")
    assert " on home beyond the tolerance" in decision["reason"]
    assert decision["comparisons"]["champion refit"]["home"]["difference_high"] < -decision["tolerance"]


def test_challengers_keep_their_versions_and_the_alias_names_the_latest(runs: dict[str, Any]) -> None:
    client = runs["client"]
    versions = {name: runs[name]["summary"]["version"] for name in ("champion", "nightly", "noise", "worse")}
    assert str(client.get_model_version_by_alias("reco", "champion").version) == versions["nightly"]
    assert str(client.get_model_version_by_alias("reco", "challenger").version) == versions["worse"]
    noise = client.get_model_version("reco", versions["noise"])
    assert noise.tags["gate.decision"] == "challenger" and "gate: data not newer" in noise.description
    nightly = client.get_model_version("reco", versions["nightly"])
    assert f"became @champion (replacing version {versions['champion']}) by reco train" in nightly.description
    first = client.get_model_version("reco", versions["champion"])
    assert f"replaced as @champion by version {versions['nightly']}" in first.description


def test_the_promotion_history_lists_every_move_of_the_champion(runs: dict[str, Any]) -> None:
    lines = runs["history"].strip().splitlines()
    assert len(lines) == 2
    assert f"version {runs['champion']['summary']['version']}  by reco train: no champion yet" in lines[0]
    assert f"version {runs['nightly']['summary']['version']} (was 1)  by reco train: newer data" in lines[1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECO_HOME", str(runs["home"]))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        rollback = CliRunner().invoke(app, ["promote", "--version", "1", "--reason", "rollback test"])
        assert rollback.exit_code == 0, rollback.output
        history = CliRunner().invoke(app, ["promote", "--history"]).stdout.strip().splitlines()
    assert len(history) == 3 and history[-1].endswith("by reco promote: rollback test")
    assert history[:2] == lines
