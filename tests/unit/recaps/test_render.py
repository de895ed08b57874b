"""The recap as an email: safe HTML (inline CSS, tables, no scripts, escaped), its text version, file
names that cannot escape their directory, and the page as headless Chromium draws it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image as image

from tests.unit.recaps.conftest import CATALOG, YEAR, purchases_table
from training.recaps.build import build_recap
from training.recaps.emails import email_file_stem
from training.recaps.render import render_recap_html, render_recap_text

ARTIFACTS = Path(os.environ.get("RECO_TEST_ARTIFACTS", Path(__file__).resolve().parents[3] / "test-artifacts"))


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but no chromium on PATH (apt-get install -y chromium)")
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium) to render the email")
    return found


def _browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={profile}",
    ]  # fmt: skip
    return subprocess.run([chromium, *flags, *args], capture_output=True, text=True, timeout=90, check=False)


def test_email_file_names_cannot_escape_the_directory() -> None:
    assert email_file_stem("C0001") == "C0001"
    for bad in ("../etc/passwd", "..", "a/b", "x" * 300, "é"):
        stem = email_file_stem(bad)
        assert "/" not in stem and not stem.startswith(".") and len(stem) < 130
    assert email_file_stem("a/b") != email_file_stem("a%2Fb")


def test_html_email_is_email_safe(built: dict[str, dict]) -> None:
    """What email clients keep: tables for layout, inline styles only, nothing fetched or run."""
    from html.parser import HTMLParser

    class Audit(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: Counter[str] = Counter()
            self.problems: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags[tag] += 1
            if tag in {"script", "style", "link", "img", "iframe", "object", "embed", "form", "svg", "video", "base"}:
                self.problems.append(f"<{tag}>")
            for name, value in attrs:
                if name in {"src", "srcset", "background"} or name.startswith("on"):
                    self.problems.append(f"{tag}[{name}]")
                if name == "style" and value and ("url(" in value or "position:" in value or "display:flex" in value):
                    self.problems.append(f"{tag} style {value!r}")
                if name == "href" and value and not value.startswith("https://shop.example/"):
                    self.problems.append(f"{tag} href {value!r}")

    recap = max(built.values(), key=lambda r: (len(r["comparisons"]), r["user_id"]))
    recap = {**recap, "picks": [{"item_id": "x", "name": "Tea", "category": "Tea", "score": 0.5}]}
    for record in (recap, next(r for r in built.values() if r["kind"] == "short")):
        audit = Audit()
        audit.feed(render_recap_html(record, unsubscribe_url="https://shop.example/unsubscribe?u=1"))
        assert audit.problems == [], audit.problems
        assert audit.tags["table"] >= 3 and audit.tags["td"] >= 24  # layout and the 12-month chart are tables


def test_html_is_escaped() -> None:
    catalog = CATALOG.set_column(1, "name", pa.array(["<script>alert(1)</script>", "b", "c", "d", "e"]))
    rows = [("x", "milk", f"2025-0{m}-01T10:00:00+00:00", 1, 1.0, f"o{m}") for m in range(1, 5)]
    recap = build_recap(purchases=purchases_table(rows), user_id="x", year=YEAR, catalog=catalog)
    assert recap is not None
    html = render_recap_html(recap)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<script>alert(1)</script>" in render_recap_text(recap)


def test_email_in_headless_chromium_shows_totals_and_chart(built: dict[str, dict], tmp_path: Path) -> None:
    chromium = _chromium()
    recap = max(
        (r for r in built.values() if r["kind"] == "full"),
        key=lambda r: (sum(x > 0 for x in r["spend_by_month"]), r["user_id"]),
    )
    page = tmp_path / "recap.html"
    page.write_text(render_recap_html(recap))

    dom = _browser(chromium, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-500:]
    assert (
        f'id="total-orders" style="font-size:28px;font-weight:bold;color:#1b3a2f;">{recap["orders"]:,}<' in dom.stdout
    )
    assert f"£{recap['spend']:,.2f}" in dom.stdout

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "recap_email.png"
    run = _browser(chromium, tmp_path / "profile-shot", "--window-size=700,1800", f"--screenshot={shot}", page.as_uri())
    assert run.returncode == 0 and shot.exists(), run.stderr[-500:]
    pixels = np.asarray(image.open(shot).convert("RGB")).astype(int)
    bar = np.zeros(pixels.shape[:2], bool)
    for colour in ((0x3A, 0xA7, 0x6D), (0xF2, 0x9E, 0x4C)):  # CHART_COLOUR, CHART_PEAK_COLOUR
        bar |= np.abs(pixels - np.array(colour)).sum(axis=2) < 12
    rows = np.flatnonzero(bar.any(axis=1))
    assert rows.size, "no chart bars in the screenshot"
    baseline = bar[rows.max()]
    edges = np.flatnonzero(np.diff(np.concatenate([[0], baseline.astype(int), [0]])))
    runs = list(zip(edges[::2], edges[1::2], strict=True))  # [start, end) columns of each bar
    nonzero = [m for m, x in enumerate(recap["spend_by_month"]) if x > 0]
    assert len(runs) == len(nonzero), "one bar per month with spend"
    heights = [int(bar[:, (a + b) // 2].sum()) for a, b in runs]
    peak = recap["spend_by_month"].index(max(recap["spend_by_month"]))
    assert nonzero[heights.index(max(heights))] == peak, "the tallest bar is the month with the most spend"
