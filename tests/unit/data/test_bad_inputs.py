"""The bad-input corpus (tests/data/bad/): each file gets one clear answer and the documented exit
code from `reco data validate` (0 accepted, 1 rows rejected, 2 the file cannot be used), never a
traceback; `reco train` refuses every one of them before it logs a run, registers a version or
moves an alias."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.cli import main
from training.core.errors import RecoError

CORPUS = Path(__file__).resolve().parents[2] / "data" / "bad"

# file → (exit code of `reco data validate`, what its answer says)
CASES = {
    "binary.csv": (2, "cannot be read as CSV: it holds NUL bytes: a binary file"),
    "utf16.csv": (2, "it holds NUL bytes: a binary file, or text in UTF-16"),
    "wrong_extension.csv": (2, "it is a Parquet file; name it .parquet"),
    "empty.csv": (2, "the file is empty"),
    "header_only.csv": (2, "has no rows"),
    "empty.parquet": (2, "has no rows"),  # the same answer as a header-only CSV
    "empty_untyped.parquet": (2, "has no rows"),  # columns of type null, as an empty pandas frame writes
    "missing_column.csv": (2, "has no column 'user_id', 'item_id', 'timestamp'"),
    "wrong_types.parquet": (2, "Column 'user_id' has type bool, expected text or integer ids"),
    "one_customer.csv": (2, "is of one customer (C1)"),
    # Rows rejected come first (the contract's exit 1), even when the rest is one customer's.
    "bad_row_rest_one_customer.csv": (1, "row 2: missing user_id"),
    "huge_numbers.csv": (1, "quantity must be a whole number from 1 to 1,000,000 (got 3000000000)"),
    "inf.csv": (1, "price is not a finite number"),
    "dates_out_of_range.csv": (1, "timestamp 1900-01-01 00:00:00+00 is before 1970-01-01"),
    "out_of_range.parquet": (1, "timestamp 2031-01-01 00:00:00+00 is later than now plus a day"),
    "duplicated_lines.csv": (1, "row 2: the same line as row 1"),
    "wrong_types.csv": (1, "quantity 'two' is not a number"),
    "bom.csv": (0, "2 rows read, 2 accepted, 0 rejected"),
}


def run_reco(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """`reco ARGS` in this process, as the console entry point runs it: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["reco", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_file_of_the_corpus_has_an_expected_answer() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_validate_answers_each_bad_file_in_one_sentence_with_its_exit_code(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected_code, says = CASES[name]
    report = tmp_path / "report.json"
    code, out, err = run_reco(["data", "validate", str(CORPUS / name), "--report", str(report)], capsys, monkeypatch)
    assert code == expected_code, (out, err)
    assert says in out + err
    assert "Traceback" not in out + err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("reco: ") and lines[0].endswith("."), err
        assert all(c.isprintable() for c in lines[0])
    if code == 2 and "one customer" not in says:
        assert not report.exists()  # nothing half-done left behind
    else:
        (checked,) = json.loads(report.read_text())
        assert checked["rows_read"] == checked["rows_accepted"] + checked["rows_rejected"]
        assert (checked["rows_rejected"] > 0) == (code == 1)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("home")
    return home, f"sqlite:///{home / 'mlflow.db'}"


@pytest.mark.parametrize("name", sorted(n for n, (code, _) in CASES.items() if code != 0))
def test_train_refuses_each_bad_file_before_it_logs_anything(name: str, tracking: tuple[Path, str]) -> None:
    from training.pipeline.train import train
    from training.settings import load_settings

    home, uri = tracking
    settings = load_settings(home=str(home), mlflow_tracking_uri=uri)
    printed: list[str] = []
    with pytest.raises(RecoError) as refused:
        train(purchases_path=CORPUS / name, catalog_path=None, settings=settings, log=printed.append)
    sentence = str(refused.value)
    assert sentence.endswith(".") and "\n" not in sentence
    if CASES[name][0] == 1:  # rows rejected: the console shows how many and why before the refusal
        assert "rejected" in printed[0]
        assert "more than the 1.0% allowed" in sentence or "is of one customer" in sentence
    assert not (home / "mlartifacts").exists()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.search_registered_models() == []
    assert all(not client.search_runs([e.experiment_id]) for e in client.search_experiments())


def test_the_console_shows_one_sentence_and_no_traceback(tmp_path: Path) -> None:
    """The real command in its own process: what a user sees on a binary file."""
    reco = Path(sys.executable).with_name("reco")
    done = subprocess.run(
        [str(reco), "data", "validate", str(CORPUS / "binary.csv")],
        capture_output=True,
        text=True,
        env={**os.environ, "RECO_HOME": str(tmp_path)},
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"reco: The purchase file {CORPUS / 'binary.csv'} cannot be read as CSV: it holds NUL bytes: a binary "
        "file, or text in UTF-16."
    ]
