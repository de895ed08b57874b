"""The recap job end to end: JSONL, manifest and emails written reproducibly, refunds counted, the
feature view published and served from the online store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.unit.recaps.conftest import YEAR
from training.recaps.build import build_recaps
from training.recaps.emails import email_file_stem
from training.recaps.job import RecapJob, manifest_path, publish_recaps
from training.recaps.rules import RecapOptions
from training.settings import load_settings


def test_negative_quantity_refund_is_rejected_and_counted(tmp_path: Path) -> None:
    purchases = tmp_path / "purchases.csv"
    purchases.write_text(
        "user_id,item_id,timestamp,quantity,price,order_id\n"
        "u1,milk,2025-03-01T10:00:00Z,2,1.5,o1\n"
        "u1,milk,2025-03-05T10:00:00Z,-2,1.5,refund1\n"
        "u1,bread,2025-04-01T10:00:00Z,1,2.0,o2\n"
    )
    out = tmp_path / "recaps.jsonl"
    manifest = RecapJob(year=YEAR, purchases=purchases, out=out, picks=False, progress=False, log=lambda _: None).run()
    assert manifest["inputs"]["purchases"]["rows_rejected"] == 1
    assert manifest["inputs"]["purchases"]["rows_read"] == 3
    (recap,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (recap["orders"], recap["items"], recap["spend"]) == (2, 3, 5.0)


def test_job_writes_jsonl_manifest_and_emails_reproducibly(store: dict[str, Any], tmp_path: Path) -> None:
    opt_out = tmp_path / "opt-out.txt"
    first_customer = sorted(store["purchases"].column("user_id").unique().to_pylist())[0]
    opt_out.write_text(first_customer + "\n")
    runs = []
    for run in ("a", "b"):
        out = tmp_path / run / "recaps.jsonl"
        job = RecapJob(
            year=YEAR,
            purchases=store["dir"] / "purchases.parquet",
            catalog=store["dir"] / "catalog.parquet",
            out=out,
            opt_out=opt_out,
            html_dir=tmp_path / run / "html" if run == "a" else None,
            email_workers=2,
            picks=False,
            progress=False,
            settings=load_settings(home=tmp_path / "home"),
            log=lambda _: None,
        )
        runs.append((out, job.run()))
    (out, manifest), (_, again) = runs
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert manifest_path(out) == out.with_name("recaps.manifest.json") and manifest_path(out).exists()
    assert manifest["output"]["lines"] == len(lines) == manifest["counts"]["recaps"]
    assert manifest["output"]["digest"] == again["output"]["digest"], "same inputs, same recaps"
    assert manifest["inputs"]["purchases"]["digest"].startswith("sha256:")
    assert manifest["inputs"]["opt_out"]["customers"] == 1
    assert manifest["code"]["templates"].startswith("sha256:") and manifest["options"]["year"] == YEAR
    written = json.loads(manifest_path(out).read_text())
    assert written["rendering"] == {"store": "us", "currency": "£", "unsubscribe_url": None}
    assert written["options"]["sensitive_categories"] == ["Pharmacy"] and written["model"]["picks"] == "disabled"
    assert all(x["user_id"] != first_customer for x in lines)
    assert [x["user_id"] for x in lines] == sorted(x["user_id"] for x in lines)
    assert manifest["counts"]["emails"] == len(lines)
    html = (tmp_path / "a" / "html" / f"{email_file_stem(lines[0]['user_id'])}.html").read_text()
    assert "<script" not in html and "<img" not in html and 'id="spend-chart"' in html


def test_publish_writes_the_feature_view_source_and_keeps_other_years(store: dict[str, Any], tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    for year in (2024, 2025):
        result = build_recaps(purchases=store["purchases"], catalog=store["catalog"], options=RecapOptions(year=year))
        published = publish_recaps(result, settings=settings, materialize=False)
    table = pq.read_table(published["path"])
    assert published["rows"] == table.num_rows
    assert table.column_names == ["user_id", "year", "recap_json", "schema_version", "model_version", "event_timestamp"]
    assert set(table.column("year").to_pylist()) == {2024, 2025}
    assert str(table.schema.field("event_timestamp").type) == "timestamp[us, tz=UTC]"
    row = table.slice(table.num_rows - 1, 1).to_pylist()[0]
    assert json.loads(row["recap_json"])["user_id"] == row["user_id"]


def test_published_recap_is_served_from_the_online_store(store: dict[str, Any], tmp_path: Path) -> None:
    """The job's publish step through the real Feast SQLite online store: what the API will read."""
    pytest.importorskip("feast")
    from training.features.store import open_store

    settings = load_settings(home=tmp_path / "home")
    result = build_recaps(purchases=store["purchases"], catalog=store["catalog"], options=RecapOptions(year=YEAR))
    published = publish_recaps(result, settings=settings)
    assert published["online_rows"] == result.recaps.num_rows
    user = result.recaps.column("user_id")[0].as_py()
    online = (
        open_store(settings)
        .get_online_features(
            features=["customer_year_recap:recap_json", "customer_year_recap:schema_version"],
            entity_rows=[{"user_id": user, "year": YEAR}, {"user_id": user, "year": YEAR - 5}],
        )
        .to_dict()
    )
    assert json.loads(online["recap_json"][0]) == json.loads(result.recaps.column("recap_json")[0].as_py())
    assert online["schema_version"][0] == 1 and online["recap_json"][1] is None
