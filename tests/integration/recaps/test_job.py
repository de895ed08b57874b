"""The recap job end to end: JSONL, manifest and emails written reproducibly, refunds counted, each
customer's signed links in the record, the hand-off to an email platform (.eml, merge CSV), the guards
that stop a build that could not be sent, picks from a real champion that never repeat a purchase of
the year or offer a sold-out item, and the feature view published and served from the online store."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.unit.recaps.conftest import EXAMPLE_BRAND, YEAR
from training.recaps.brand import Brand, recap_token, token_matches
from training.recaps.build import build_recaps
from training.recaps.emails import MERGE_COLUMNS, email_file_stem, merge_row
from training.recaps.job import (
    NoPicksModel,
    NoPurchasesInYear,
    NotReadyToSend,
    RecapJob,
    manifest_path,
    publish_recaps,
    with_links,
)
from training.recaps.render import render_recap_html, render_recap_text
from training.recaps.rules import RecapOptions
from training.settings import Settings, load_settings

KEY = "integration-signing-key-0123"
REPO = Path(__file__).resolve().parents[3]


def settings_for(home: Path, **more: Any) -> Settings:
    return load_settings(home=home, recap_signing_key=KEY, **more)


def job(store: dict[str, Any], tmp_path: Path, **fields: Any) -> RecapJob:
    """A recap job over the messy store for the example shop, quiet, without picks unless asked."""
    defaults: dict[str, Any] = {
        "year": YEAR,
        "purchases": store["dir"] / "purchases.parquet",
        "catalog": store["dir"] / "catalog.parquet",
        "out": tmp_path / "recaps.jsonl",
        "brand_file": EXAMPLE_BRAND,
        "picks": False,
        "progress": False,
        "settings": settings_for(tmp_path / "home"),
        "log": lambda _: None,
    }
    return RecapJob(**(defaults | fields))


def test_negative_quantity_refund_is_rejected_and_counted(tmp_path: Path) -> None:
    purchases = tmp_path / "purchases.csv"
    purchases.write_text(
        "user_id,item_id,timestamp,quantity,price,order_id\n"
        "u1,milk,2025-03-01T10:00:00Z,2,1.5,o1\n"
        "u1,milk,2025-03-05T10:00:00Z,-2,1.5,refund1\n"
        "u1,bread,2025-04-01T10:00:00Z,1,2.0,o2\n"
    )
    out = tmp_path / "recaps.jsonl"
    manifest = job({"dir": tmp_path}, tmp_path, purchases=purchases, catalog=None, out=out).run()
    assert manifest["inputs"]["purchases"]["rows_rejected"] == 1
    assert manifest["inputs"]["purchases"]["rows_read"] == 3
    (recap,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (recap["orders"], recap["items"], recap["spend"]) == (2, 3, 5.0)


def test_job_writes_jsonl_manifest_and_emails_reproducibly(store: dict[str, Any], brand: Brand, tmp_path: Path) -> None:
    opt_out = tmp_path / "opt-out.txt"
    first_customer = sorted(store["purchases"].column("user_id").unique().to_pylist())[0]
    opt_out.write_text(first_customer + "\n")
    runs = []
    for run in ("a", "b"):
        out = tmp_path / run / "recaps.jsonl"
        html_dir = tmp_path / run / "html"
        runs.append((out, job(store, tmp_path, out=out, opt_out=opt_out, html_dir=html_dir, email_workers=2).run()))
    (out, manifest), (_, again) = runs
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert manifest_path(out) == out.with_name("recaps.manifest.json") and manifest_path(out).exists()
    assert manifest["output"]["lines"] == len(lines) == manifest["counts"]["recaps"]
    assert manifest["output"]["digest"] == again["output"]["digest"], "same inputs, same recaps"
    assert manifest["inputs"]["purchases"]["digest"].startswith("sha256:")
    assert manifest["inputs"]["purchases"]["years"] == [2024, 2025]
    assert manifest["inputs"]["opt_out"]["customers"] == 1
    assert manifest["code"]["templates"].startswith("sha256:") and manifest["options"]["year"] == YEAR
    assert manifest["code"]["babel"] and manifest["preview"] is False
    written = json.loads(manifest_path(out).read_text())
    assert written["rendering"]["brand"] == brand.public() and written["rendering"]["brand_digest"] == brand.digest()
    assert (
        written["rendering"]["signed_with"] == "RECO_RECAP_SIGNING_KEY"
        and len(written["rendering"]["signing_key_id"]) == 8
    )
    assert KEY not in manifest_path(out).read_text() and KEY not in out.read_text()
    assert written["options"]["sensitive_categories"] == ["Pharmacy"] and written["model"]["picks"] == "disabled"
    assert all(x["user_id"] != first_customer for x in lines)
    assert [x["user_id"] for x in lines] == sorted(x["user_id"] for x in lines)
    assert manifest["counts"]["emails"] == len(lines)
    for x in lines[:50]:  # the emails are the records rendered for the brand, byte for byte, every run
        stem = email_file_stem(x["user_id"])
        for part, render in (("html", render_recap_html), ("txt", render_recap_text)):
            first = (tmp_path / "a" / "html" / f"{stem}.{part}").read_text()
            assert first == render(x, brand=brand) == (tmp_path / "b" / "html" / f"{stem}.{part}").read_text()
    page = (tmp_path / "a" / "html" / f"{email_file_stem(lines[0]['user_id'])}.html").read_text()
    assert "<script" not in page and 'id="spend-chart"' in page


def test_every_record_carries_its_signed_links(store: dict[str, Any], brand: Brand, tmp_path: Path) -> None:
    out = tmp_path / "recaps.jsonl"
    job(store, tmp_path, out=out).run()
    records = [json.loads(x) for x in out.read_text().splitlines()]
    for record in records:
        links, user = record["links"], record["user_id"]
        assert token_matches(KEY.encode(), links["token"], user, YEAR)
        assert links == brand.customer_links(user, YEAR, recap_token(KEY.encode(), user, YEAR))
        assert links["list_unsubscribe"] == f"<{links['unsubscribe']}>"
        assert links["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    # The links are appended to the JSON text by Arrow: the same as adding them to each record.
    plain = build_recaps(
        purchases=store["purchases"], catalog=store["catalog"], options=RecapOptions(year=YEAR, min_cohort=100)
    )
    linked = with_links(plain.recaps, brand=brand, key=KEY.encode(), year=YEAR, batch=97)  # several pieces
    for before, after in zip(
        plain.records(), (json.loads(t) for t in linked.column("recap_json").to_pylist()), strict=True
    ):
        assert after == before | {"links": brand.customer_links(before["user_id"], YEAR, after["links"]["token"])}
    no_templates = with_links(plain.recaps, brand=Brand(name="Plain Shop"), key=None, year=YEAR)
    assert json.loads(no_templates.column("recap_json")[0].as_py())["links"] == dict.fromkeys(
        ("view_in_browser", "unsubscribe", "list_unsubscribe", "list_unsubscribe_post", "token")
    )


def test_eml_files_are_multipart_messages_a_mail_client_opens(
    store: dict[str, Any], brand: Brand, tmp_path: Path
) -> None:
    digests = []
    for run in ("a", "b"):
        manifest = job(
            store,
            tmp_path,
            out=tmp_path / run / "r.jsonl",
            html_dir=tmp_path / run / "eml",
            format="eml",
            email_workers=2,
        ).run()
        digests.append(manifest["output"]["digest"])
    records = [json.loads(x) for x in (tmp_path / "a" / "r.jsonl").read_text().splitlines()]
    files = sorted((tmp_path / "a" / "eml").glob("*.eml"))
    assert len(files) == len(records) == manifest["counts"]["emails"]
    for record in records[:40]:
        raw = (tmp_path / "a" / "eml" / f"{email_file_stem(record['user_id'])}.eml").read_bytes()
        assert raw == (tmp_path / "b" / "eml" / f"{email_file_stem(record['user_id'])}.eml").read_bytes()
        message = message_from_bytes(raw, policy=policy.default)
        assert message.get_content_type() == "multipart/alternative" and not message.defects
        assert message["Subject"] == "Your 2025 with Greenleaf Grocers"
        assert message["From"] == "Greenleaf Grocers <hello@greenleaf.example>"
        assert message["X-Reco-Customer"] == record["user_id"] and message["X-Reco-Preheader"]
        assert message["List-Unsubscribe"] == record["links"]["list_unsubscribe"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text, html = (part.get_content().replace("\r\n", "\n") for part in message.iter_parts())  # CRLF on the wire
        assert text == render_recap_text(record, brand=brand) and html == render_recap_html(record, brand=brand)
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert digests[0] == digests[1]


def test_merge_csv_has_a_row_per_customer_with_the_templates_fields(
    store: dict[str, Any], brand: Brand, tmp_path: Path
) -> None:
    out = tmp_path / "recaps" / "2025.jsonl"
    manifest = job(store, tmp_path, out=out, format="csv", email_workers=2).run()
    merge = tmp_path / "recaps" / "2025.csv"
    job(store, tmp_path, out=tmp_path / "again" / "2025.jsonl", format="csv").run()  # one process this time
    assert merge.read_bytes() == (tmp_path / "again" / "2025.csv").read_bytes(), "same inputs, same merge file"
    assert manifest["emails"] == {"format": "csv", "path": str(merge)}
    with merge.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["user_id"] for r in rows] == [r["user_id"] for r in records] and len(rows) == manifest["counts"]["emails"]
    assert list(rows[0]) == list(MERGE_COLUMNS)
    for row, record in list(zip(rows, records, strict=True))[:100]:
        assert row == merge_row(record, brand=brand)
    full = next(row for row, r in zip(rows, records, strict=True) if r["kind"] == "full" and r["top_items"])
    assert full["subject"] == "Your 2025 with Greenleaf Grocers" and full["spend"].startswith("£")
    assert "utm_campaign=recap-2025" in full["top_item_1_url"] and full["unsubscribe_url"].startswith("https://")
    assert full["persona_title"].split(" ", 1)[0] in ("a", "an")


def test_a_build_that_could_not_be_sent_stops_with_one_sentence(store: dict[str, Any], tmp_path: Path) -> None:
    placeholder = {"brand_file": None}
    with pytest.raises(NotReadyToSend, match=r"No shop name .* --brand FILE .* RECO_STORE_NAME; --preview"):
        job(store, tmp_path, **placeholder).run()
    preview = job(store, tmp_path, **placeholder, preview=True, html_dir=tmp_path / "preview").run()
    assert preview["preview"] is True and preview["rendering"]["brand"]["name"] == "Your Shop Name"
    assert "Your year with Your Shop Name" in next((tmp_path / "preview").glob("*.html")).read_text()
    with pytest.raises(NotReadyToSend, match="never published"):
        job(store, tmp_path, preview=True, publish=True).run()
    with pytest.raises(NotReadyToSend, match="RECO_RECAP_SIGNING_KEY is not set"):
        job(store, tmp_path, settings=load_settings(home=tmp_path / "home")).run()
    named_only = load_settings(home=tmp_path / "home", recap_store_name="Smoke Grocers")
    assert job(store, tmp_path, brand_file=None, settings=named_only).run()["counts"]["recaps"] > 0
    for form, missing in (("csv", "unsubscribe_url, address"), ("eml", "unsubscribe_url, address, sender")):
        with pytest.raises(NotReadyToSend, match=f"--format {form} .* lacks {missing}"):
            job(store, tmp_path, brand_file=None, settings=named_only, format=form, html_dir=tmp_path / "e").run()
    with pytest.raises(NotReadyToSend, match="--email-dir"):
        job(store, tmp_path, format="eml").run()


def test_no_champion_stops_unless_no_picks(store: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(NoPicksModel, match=r"reco train.*--no-picks"):
        job(store, tmp_path, picks=True).run()
    assert job(store, tmp_path, picks=False).run()["model"]["picks"] == "disabled"


def test_a_year_without_purchases_names_the_years_covered(store: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(NoPurchasesInYear, match=r"^No purchases in 2019: the purchases cover 2024 to 2025\.$"):
        job(store, tmp_path, year=2019).run()
    # From the command line: exit code 2 and that one sentence, no traceback.
    env = {**os.environ, "PYTHONPATH": str(REPO), "RECO_HOME": str(tmp_path / "home"), "RECO_STORE_NAME": "Shop"}
    run = subprocess.run(
        [sys.executable, "-m", "training.cli", "recaps", "build", "--year", "2031", "--no-picks", "--no-progress",
         "--purchases", str(store["dir"] / "purchases.parquet"), "--out", str(tmp_path / "x.jsonl")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1] == "reco: No purchases in 2031: the purchases cover 2024 to 2025."
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_picks_from_a_real_champion_skip_this_years_purchases_and_sold_out_items(
    store: dict[str, Any], tmp_path: Path
) -> None:
    """A champion trained on purchases up to June 2025 has not seen the customers' later purchases,
    and the recap's catalog has sold out more items since: the picks must still avoid both."""
    from training.pipeline.train import train

    home = tmp_path / "home"
    settings = settings_for(home)
    purchases = pq.read_table(store["dir"] / "purchases.parquet")
    cutoff = pa.scalar(datetime(2025, 7, 1, tzinfo=UTC), purchases.schema.field("timestamp").type)
    early = purchases.filter(pc.less(purchases.column("timestamp"), cutoff))
    pq.write_table(early, tmp_path / "early.parquet")
    train(
        purchases_path=tmp_path / "early.parquet",
        catalog_path=store["dir"] / "catalog.parquet",
        params={"eval_users": "300", "candidates": "als"},
        promote="always",
        settings=settings,
        log=lambda _: None,
    )
    catalog = pq.read_table(store["dir"] / "catalog.parquet")
    popular = pc.value_counts(purchases.column("item_id"))
    top = [v["values"] for v in sorted(popular.to_pylist(), key=lambda v: -v["counts"])[:40]]
    sold_out = set(top[::2])  # half of the best sellers went out of stock since the model was trained
    stock = pc.and_(
        catalog.column("in_stock"), pc.invert(pc.is_in(catalog.column("item_id"), pa.array(sorted(sold_out))))
    )
    catalog = catalog.set_column(catalog.schema.get_field_index("in_stock"), "in_stock", stock)
    pq.write_table(catalog, tmp_path / "catalog.parquet")

    out = tmp_path / "recaps.jsonl"
    manifest = job(store, tmp_path, out=out, catalog=tmp_path / "catalog.parquet", picks=True, settings=settings).run()
    assert manifest["model"]["picks"] == "ok" and manifest["model"]["version"] == "1"
    this_year = purchases.filter(pc.equal(pc.year(purchases.column("timestamp")), YEAR))
    bought = set(zip(this_year.column("user_id").to_pylist(), this_year.column("item_id").to_pylist(), strict=True))
    unavailable = sold_out | {r["item_id"] for r in catalog.to_pylist() if not r["in_stock"]}
    records = [json.loads(x) for x in out.read_text().splitlines()]
    picks = [(r["user_id"], p["item_id"]) for r in records for p in r["picks"]]
    assert picks and not [p for p in picks if p in bought], "a pick the customer bought this year"
    assert not [p for p in picks if p[1] in unavailable], "a sold-out pick"
    full = sum(len(r["picks"]) == 5 for r in records)
    assert full / len(records) > 0.95, f"only {full} of {len(records)} recaps have 5 picks"


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
