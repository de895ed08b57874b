"""`reco recaps preview`: the summary of a run counts what the records say, the sample covers every
persona and the extremes, and the contact sheet shows the sampled recaps in headless Chromium."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as image
from typer.testing import CliRunner

from tests.unit.recaps import chromium
from tests.unit.recaps.conftest import EXAMPLE_BRAND, YEAR
from training.cli import app
from training.recaps.brand import Brand
from training.recaps.job import RecapJob
from training.recaps.preview import DEFAULT_SAMPLE, InvalidRecaps, preview_recaps
from training.settings import load_settings


@pytest.fixture(scope="module")
def built_run(store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build of the messy store for the example shop, with picks for every third customer (as a
    model that knows only some customers would give)."""
    tmp = tmp_path_factory.mktemp("preview")
    out = tmp / "recaps-2025.jsonl"
    RecapJob(
        year=YEAR,
        purchases=store["dir"] / "purchases.parquet",
        catalog=store["dir"] / "catalog.parquet",
        out=out,
        brand_file=EXAMPLE_BRAND,
        picks=False,
        progress=False,
        settings=load_settings(home=tmp / "home", recap_signing_key="preview-test-key-0123"),
        log=lambda _: None,
    ).run()
    lines = out.read_text().splitlines()
    records = [json.loads(x) for x in lines]
    for i, record in enumerate(records):
        if i % 3 == 0:
            record["picks"] = [{"item_id": "P1", "name": "Sourdough Loaf", "category": "Bakery", "score": 0.5}]
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    return out


def test_preview_summarizes_the_run_and_samples_every_persona_and_size(built_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["recaps", "preview", "--year", str(YEAR), "--recaps", str(built_run), "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    lines = built_run.read_text().splitlines()
    records = [json.loads(x) for x in lines]
    personas = Counter(r["persona"]["name"] for r in records)
    assert summary["recaps"] == len(records) and summary["short"] == sum(r["kind"] == "short" for r in records)
    assert {p: v["customers"] for p, v in summary["personas"].items()} == dict(personas)
    assert summary["share_with_picks"] == round(sum(bool(r["picks"]) for r in records) / len(records), 4)
    assert summary["share_with_comparisons"] == round(sum(bool(r["comparisons"]) for r in records) / len(records), 4)
    assert 0 < summary["share_with_picks"] < 1 and 0 < summary["share_with_comparisons"] < 1
    assert summary["share_with_unsubscribe_link"] == 1.0 and summary["brand"]["missing_for_sending"] == []
    sizes = {r["user_id"]: len(line) for r, line in zip(records, lines, strict=True)}
    longest = max(sizes, key=lambda u: (sizes[u], u))
    shortest = min(sizes, key=lambda u: (sizes[u], u))
    assert summary["longest"]["user_id"] == longest and summary["shortest"]["user_id"] == shortest
    assert summary["longest"]["record_chars"] == sizes[longest] and summary["longest"]["text_lines"] > 0

    sample = summary["sample"]
    assert len(sample) == len(set(sample)) == DEFAULT_SAMPLE and sample[:2] == [longest, shortest]
    by_user = {r["user_id"]: r for r in records}
    assert {by_user[u]["persona"]["name"] for u in sample} == set(personas), "every persona on the sheet"
    biggest = personas.most_common(1)[0][0]
    theirs = sorted(sizes[u] for u in sizes if by_user[u]["persona"]["name"] == biggest)
    shown = [sizes[u] for u in sample[2:] if by_user[u]["persona"]["name"] == biggest]
    median = theirs[len(theirs) // 2]
    assert min(shown) < median < max(shown), "small and big recaps of the commonest persona"
    sheet = (tmp_path / "p" / "contact-sheet.html").read_text()
    assert "Recaps 2025 for Greenleaf Grocers" in sheet, "rendered with the brand of the build (its manifest)"
    assert "personas: " in result.output and f"contact sheet: {tmp_path / 'p' / 'contact-sheet.html'}" in result.output
    # The same run gives the same sheet.
    again = CliRunner().invoke(
        app, ["recaps", "preview", "--year", str(YEAR), "--recaps", str(built_run), "--out", str(tmp_path / "q")]
    )
    assert again.exit_code == 0
    assert (tmp_path / "p" / "contact-sheet.html").read_text() == (tmp_path / "q" / "contact-sheet.html").read_text()


def test_the_contact_sheet_in_headless_chromium(built_run: Path, tmp_path: Path) -> None:
    summary = preview_recaps(
        recaps=built_run, year=YEAR, out=tmp_path / "p", brand=Brand.model_validate({"name": "Greenleaf Grocers"})
    )
    sheet = tmp_path / "p" / "contact-sheet.html"
    html = sheet.read_text()
    assert "Recaps 2025 for Greenleaf Grocers" in html
    assert "Not ready to send: the brand lacks unsubscribe_url, address" in html  # this brand has neither

    dom = chromium.run("--dump-dom", sheet.as_uri())
    assert dom.returncode == 0, dom.stderr[-500:]
    cards = re.findall(r'<div class="card" data-user="([^"]+)">', dom.stdout)
    assert cards == summary["sample"] and len(cards) == DEFAULT_SAMPLE
    assert all((tmp_path / "p" / "emails" / f"{u}.html").exists() for u in cards)
    (measured,) = chromium.layout({"sheet": html}, (1320,), tmp_path)
    assert measured["scrollWidth"] <= 1320 and measured["overflow"] == []
    assert measured["clipped"] == [], "a recap wider than its card"
    shot = chromium.screenshot(sheet, chromium.ARTIFACTS / "recap_contact_sheet.png", width=1320, height=3200)
    pixels = np.asarray(image.open(shot).convert("L")).astype(int)
    white = (pixels > 250).mean(axis=0)  # columns of white card paper, between grey gutters
    assert pixels.std() > 20 and (white > 0.2).sum() > 4 * 250, "four columns of cards drawn"


def test_preview_refuses_another_year_or_a_file_that_is_not_recaps(built_run: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidRecaps, match=f"holds recaps of {YEAR}, not 2024"):
        preview_recaps(recaps=built_run, year=2024, out=tmp_path, brand=Brand())
    other = tmp_path / "notes.jsonl"
    other.write_text("hello\n")
    with pytest.raises(InvalidRecaps, match="line 1 is not a recap"):
        preview_recaps(recaps=other, year=YEAR, out=tmp_path, brand=Brand())
    with pytest.raises(InvalidRecaps, match="cannot be read"):
        preview_recaps(recaps=tmp_path / "missing.jsonl", year=YEAR, out=tmp_path, brand=Brand())
