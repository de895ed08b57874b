"""The recap as an email: safe HTML (inline CSS, tables, no scripts, escaped), links with the
campaign's parameters, the copy (articles, shopper words, discoveries apart, no empty months), money
and numbers in the shop's locale, and the page as headless Chromium draws it: every persona at 375
and 600 px with nothing sticking out, readable in the browser's forced dark mode too."""

from __future__ import annotations

import copy
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image as image

from tests.unit.recaps import chromium
from tests.unit.recaps.conftest import CATALOG, SIGNING_KEY, YEAR, purchases_table
from training.recaps.brand import Brand, recap_token
from training.recaps.build import build_recap
from training.recaps.emails import email_file_stem
from training.recaps.render import render_recap, render_recap_html, render_recap_text
from training.recaps.rules import PERSONA_RULES, SHORT_PERSONA

FORBIDDEN_TAGS = {
    "script",
    "style",
    "link",
    "iframe",
    "object",
    "embed",
    "form",
    "svg",
    "video",
    "base",
    "meta-refresh",
}


def with_links(record: dict[str, Any], brand: Brand) -> dict[str, Any]:
    """The record as the job writes it: with the customer's signed links."""
    token = recap_token(SIGNING_KEY, record["user_id"], record["year"])
    return {**record, "links": brand.customer_links(record["user_id"], record["year"], token)}


def with_picks(record: dict[str, Any], n: int = 5) -> dict[str, Any]:
    picks = [
        {"item_id": f"P{i}", "name": f"Pick number {i}", "category": "Bakery", "score": 1 - i / 10} for i in range(n)
    ]
    return {**record, "picks": picks}


def persona_samples(built: dict[str, dict], brand: Brand) -> dict[str, dict[str, Any]]:
    """One recap per persona (from the store where it occurs, else a full recap renamed), plus the
    biggest one made worse: long unbreakable names, huge figures, every list full."""
    full = sorted((r for r in built.values() if r["kind"] == "full"), key=lambda r: r["user_id"])
    samples = {}
    for rule in (*PERSONA_RULES, SHORT_PERSONA):
        found = next(
            (r for r in sorted(built.values(), key=lambda r: r["user_id"]) if r["persona"]["name"] == rule.name), None
        )
        record = found or copy.deepcopy(full[0]) | {"persona": {"name": rule.name, "rule": rule.rule, "reason": "x"}}
        samples[rule.name] = with_links(with_picks(record, 3) if record["kind"] == "full" else record, brand)
    worst = copy.deepcopy(max(full, key=lambda r: len(str(r))))
    long = "ExtraordinarilyLongUnbreakableProductNameWithoutAnySpacesOrHyphens1234567890"
    worst.update(orders=123_456, items=9_876_543, spend=9_876_543.21, days_shopped=365)
    for row in worst["top_items"]:
        row["name"] = long
    worst["staple"] = {"item_id": "S1", "name": long, "orders": 99_999, "items": 123_456}
    worst["discoveries"] = {"categories": [long] * 5, "categories_count": 40, "brands": [long] * 5, "brands_count": 31}
    worst["comparisons"] = worst["comparisons"] or [
        {
            "kind": "orders",
            "category": None,
            "percent": 99,
            "cohort_size": 5000,
            "text": "You shopped more often than 99% of our customers",
        }
    ]
    worst = with_picks(worst)
    for pick in worst["picks"]:
        pick["name"] = long
    samples["worst case"] = with_links(worst, brand)
    return samples


def test_email_file_names_cannot_escape_the_directory() -> None:
    assert email_file_stem("C0001") == "C0001"
    for bad in ("../etc/passwd", "..", "a/b", "x" * 300, "é"):
        stem = email_file_stem(bad)
        assert "/" not in stem and not stem.startswith(".") and len(stem) < 130
    assert email_file_stem("a/b") != email_file_stem("a%2Fb")


class Audit(HTMLParser):
    """What email clients keep: tables for layout, inline styles only, nothing run, images with alt
    text and a fixed width, links only to the shop, nothing wider than 600 px."""

    def __init__(self, domains: tuple[str, ...]) -> None:
        super().__init__()
        self.domains = domains
        self.tags: Counter[str] = Counter()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        values = dict(attrs)
        if tag in FORBIDDEN_TAGS:
            self.problems.append(f"<{tag}>")
        src = str(values.get("src"))
        if tag == "img" and not (values.get("alt") and values.get("width") and src.startswith(self.domains)):
            self.problems.append(f"img {values}")
        for name, value in attrs:
            if name in {"srcset", "background"} or name.startswith("on") or (name == "src" and tag != "img"):
                self.problems.append(f"{tag}[{name}]")
            if name == "style" and value and re.search(r"url\(|position:|display:flex|display:grid|@media", value):
                self.problems.append(f"{tag} style {value!r}")
            if name == "href" and value and not value.startswith(self.domains):
                self.problems.append(f"{tag} href {value!r}")
            if name == "width" and value and value != "100%" and int(value) > 600:
                self.problems.append(f"{tag} width={value}")
            if name == "style" and value:
                for px in re.findall(r"(?<![-\w])(?:max-)?width:(\d+)px", value):
                    if int(px) > 600:
                        self.problems.append(f"{tag} style width {px}px")


def test_html_email_is_email_safe(built: dict[str, dict], brand: Brand) -> None:
    domains = ("https://greenleaf.example/", "https://cdn.greenleaf.example/", "https://reco.greenleaf.example/")
    for name, record in persona_samples(built, brand).items():
        audit = Audit(domains)
        audit.feed(render_recap_html(record, brand=brand))
        assert audit.problems == [], (name, audit.problems)
        assert audit.tags["table"] >= 3 and audit.tags["td"] >= 24, name  # layout and the 12-month chart are tables
        assert audit.tags["img"] == 1 + len(record["picks"]), name  # the logo and each pick's picture


def test_html_is_escaped() -> None:
    catalog = CATALOG.set_column(1, "name", pa.array(["<script>alert(1)</script>", "b", "c", "d", "e"]))
    rows = [("x", "milk", f"2025-0{m}-01T10:00:00+00:00", 1, 1.0, f"o{m}") for m in range(1, 5)]
    recap = build_recap(purchases=purchases_table(rows), user_id="x", year=YEAR, catalog=catalog)
    assert recap is not None
    html = render_recap_html(recap, brand=Brand(name="Tom & <Jerry>"))
    assert "<script>" not in html and "&lt;script&gt;" in html and "Tom &amp; &lt;Jerry&gt;" in html
    assert "<script>alert(1)</script>" in render_recap_text(recap)


def test_products_link_to_the_shop_with_the_campaign(built: dict[str, dict], brand: Brand) -> None:
    record = persona_samples(built, brand)["worst case"]
    html = render_recap_html(record, brand=brand)
    campaign = "utm_source=recap&amp;utm_medium=email&amp;utm_campaign=recap-2025"
    for item, content in [
        (record["top_items"][0], "favourites"),
        (record["staple"], "staple"),
        (record["picks"][0], "picks"),
    ]:
        assert f'href="https://greenleaf.example/p/{item["item_id"]}?{campaign}&amp;utm_content={content}"' in html
    pick = record["picks"][0]
    assert f'src="https://cdn.greenleaf.example/items/{pick["item_id"]}/240.jpg" alt="{pick["name"]}"' in html
    assert f'id="cta" href="https://greenleaf.example/?{campaign}&amp;utm_content=cta"' in html
    assert f'id="unsubscribe" href="{record["links"]["unsubscribe"].replace("&", "&amp;")}"' in html
    assert f'id="view-in-browser" href="{record["links"]["view_in_browser"].replace("&", "&amp;")}"' in html
    assert "Greenleaf Grocers Ltd, 12 Market Street" in html
    text = render_recap_text(record, brand=brand)
    assert f"Unsubscribe: {record['links']['unsubscribe']}" in text and "utm_content=picks" in text
    # Without the shop's templates there is nothing to link to, and no link is made up.
    bare = render_recap_html({**record, "links": None}, brand=Brand(name="Bare"))
    assert "href=" not in bare and "<img" not in bare


def test_persona_in_shopper_words_with_the_right_article(built: dict[str, dict], brand: Brand) -> None:
    samples = persona_samples(built, brand)
    for rule in PERSONA_RULES:
        assert rule.article == ("an" if rule.name[0] in "AEIOU" else "a"), rule.name
        record = samples[rule.name]
        html, text = render_recap_html(record, brand=brand), render_recap_text(record, brand=brand)
        assert f'You are <b id="persona">{rule.article} {rule.name}</b>. {rule.description.rstrip(".")}' in html
        assert f"You are {rule.article} {rule.name}. {rule.description.rstrip('.')}: " in text
        assert rule.rule not in html and rule.rule not in text and "Persona rule" not in html + text
    explorers = [r for r in built.values() if r["persona"]["name"] == "Explorer"]
    assert explorers and all("You are an Explorer" in render_recap_text(r) for r in explorers[:20])
    assert SHORT_PERSONA.title == "an Occasional Shopper"


def test_new_categories_and_brands_shown_apart_with_how_many_more(built: dict[str, dict], brand: Brand) -> None:
    record = copy.deepcopy(next(r for r in built.values() if r["kind"] == "full"))
    record["discoveries"] = {
        "categories": ["Tea", "Coffee", "Rice", "Fish", "Jam"], "categories_count": 7,
        "brands": ["Leafco"], "brands_count": 1,
    }  # fmt: skip
    html, text = render_recap_html(record, brand=brand), render_recap_text(record, brand=brand)
    assert re.search(r'<div id="new-categories" [^>]*>Categories: Tea, Coffee, Rice, Fish, Jam and 2 more.</div>', html)
    assert (
        "Brands: Leafco." in html and "Categories: Tea, Coffee, Rice, Fish, Jam and 2 more.\nBrands: Leafco.\n" in text
    )
    record["discoveries"] = {"categories": [], "categories_count": 0, "brands": ["A", "B"], "brands_count": 2}
    assert "Brands: A and B." in render_recap_text(record) and "Categories:" not in render_recap_text(record)


def test_text_version_skips_empty_months(built: dict[str, dict]) -> None:
    for record in list(built.values())[:200]:
        text = render_recap_text(record)
        chart = text.split("SPEND BY MONTH\n", 1)[1].split("Busiest month", 1)[0].strip().splitlines()
        months = [
            m
            for m, (orders, spend) in enumerate(zip(record["orders_by_month"], record["spend_by_month"], strict=True))
            if orders or spend
        ]
        assert [line[:3] for line in chart] == [
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][m] for m in months
        ]
    short = next(r for r in built.values() if r["kind"] == "short" and sum(x > 0 for x in r["orders_by_month"]) == 1)
    assert render_recap_text(short).count("£") == 3  # spent, the one month, the busiest month: no £0.00 rows


def test_money_and_numbers_in_the_shops_locale(built: dict[str, dict]) -> None:
    record = copy.deepcopy(next(r for r in built.values() if r["kind"] == "full"))
    record.update(orders=1204, spend=2315.4)
    cases = [
        ("en_GB", "GBP", "£2,315.40", "1,204"),
        ("en_US", "USD", "$2,315.40", "1,204"),
        ("de_DE", "EUR", "2.315,40\xa0€", "1.204"),
        ("fr_FR", "EUR", "2\u202f315,40\xa0€", "1\u202f204"),
    ]
    for locale, currency, money, count in cases:
        shop = Brand(name="Shop", locale=locale, currency=currency)
        html, text = render_recap_html(record, brand=shop), render_recap_text(record, brand=shop)
        assert f">{money}<" in html and f"Spent:        {money}" in text, locale
        assert f">{count}<" in html and f"Orders:       {count}" in text, locale
    assert "1 order," in render_recap_text({**record, "busiest_month": {**record["busiest_month"], "orders": 1}})


def test_subject_and_preheader(built: dict[str, dict], brand: Brand) -> None:
    full = next(r for r in built.values() if r["kind"] == "full" and r["persona"]["name"] == "Explorer")
    email = render_recap(full, brand=brand)
    assert email.subject == "Your 2025 with Greenleaf Grocers"
    assert email.preheader.startswith(f"{full['orders']} orders, ") and "you are an Explorer" in email.preheader
    assert f">{email.preheader}&#8199;" in email.html and f"<title>{email.subject}</title>" in email.html
    short = next(r for r in built.values() if r["kind"] == "short" and r["orders"] == 1)
    assert render_recap(short, brand=brand).preheader.startswith("1 order and £")


def test_every_persona_fits_phones_and_desktops_in_chromium(
    built: dict[str, dict], brand: Brand, tmp_path: Path
) -> None:
    """Each persona and the worst case at 375 and 600 px: nothing wider than the screen, every
    image with alt text, every text at WCAG AA contrast (4.5:1) on its background."""
    pages = {name: render_recap_html(r, brand=brand) for name, r in persona_samples(built, brand).items()}
    # The audit must see a page that overflows: the old fixed 600 px layout at 375 px.
    pages["control: fixed 600 px"] = '<table width="600" style="width:600px"><tr><td>wide</td></tr></table>'
    measured = chromium.layout(pages, (375, 600), tmp_path)
    assert len(measured) == 2 * len(pages)
    for page in measured:
        where = f"{page['name']} at {page['width']} px"
        if page["name"].startswith("control"):
            assert page["width"] == 600 or (page["overflow"] and page["scrollWidth"] > 375), where
            continue
        assert page["scrollWidth"] <= page["width"], (where, page["scrollWidth"])
        assert page["overflow"] == [] and page["clipped"] == [], (where, page["overflow"][:3], page["clipped"][:3])
        assert page["images"] and all(i["alt"] for i in page["images"]), where
        low = [(t["text"], round(chromium.contrast(t["colour"], t["background"]), 2)) for t in page["texts"]
               if chromium.contrast(t["colour"], t["background"]) < 4.5]  # fmt: skip
        assert low == [], (where, low[:5])
        assert max(i["width"] for i in page["images"]) <= page["width"], where


def _measured_contrast(pixels: np.ndarray, box: list[float]) -> float | None:
    """Contrast of a text's box as drawn: its commonest colour (the background) against the colour
    farthest from it in luminance (the text's strokes)."""
    x0, y0, x1, y1 = (round(v) for v in box)
    region = pixels[max(0, y0) : y1, max(0, x0) : x1].reshape(-1, 3)
    if not len(region):
        return None
    colours, counts = np.unique(region // 4 * 4, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    lum = np.array([chromium.luminance(c) for c in colours])
    text = colours[np.abs(lum - chromium.luminance(background)).argmax()]
    return chromium.contrast(text, background)


def test_dark_mode_keeps_every_text_readable(built: dict[str, dict], brand: Brand, tmp_path: Path) -> None:
    """Mail apps that darken emails (Chromium's forced dark mode, as Android's WebView-based clients
    do): the page turns dark and every text still stands out from what is behind it."""
    samples = persona_samples(built, brand)
    pages = {
        name: render_recap_html(samples[name], brand=brand) for name in ("Explorer", "Occasional Shopper", "worst case")
    }
    pages["control: grey on grey"] = '<body style="background:#888888"><p style="color:#7a7a7a">faint text</p></body>'
    light = chromium.layout(pages, (600,), tmp_path)
    heights = {p["name"]: p["height"] for p in light}
    shot = chromium.ARTIFACTS / "recap_dark_mode.png"
    dark = chromium.layout(pages, (600,), tmp_path, heights=heights, shot=shot, dark=True)
    pixels = np.asarray(image.open(shot).convert("RGB")).astype(int)
    assert pixels.mean() < 100, "forced dark mode did not darken the emails"
    for page in dark:
        drawn = [(t["text"], _measured_contrast(pixels, t["box"])) for t in page["texts"]]
        faint = [(text, round(c, 2)) for text, c in drawn if c is not None and c < 4.5]
        if page["name"].startswith("control"):
            assert faint, "the pixel measure must catch faint text"
        else:
            assert faint == [], (page["name"], faint[:5])


def test_email_in_headless_chromium_shows_totals_and_chart(
    built: dict[str, dict], brand: Brand, tmp_path: Path
) -> None:
    # A full year whose busiest month (most orders) is not the month with the most spend.
    recap = max(
        (r for r in built.values() if r["kind"] == "full"),
        key=lambda r: (
            r["busiest_month"]["month"] - 1 != r["spend_by_month"].index(max(r["spend_by_month"])),
            sum(x > 0 for x in r["spend_by_month"]),
            r["user_id"],
        ),
    )
    page = tmp_path / "recap.html"
    page.write_text(render_recap_html(with_links(with_picks(recap, 3), brand), brand=brand))

    dom = chromium.run("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-500:]
    assert re.search(rf'id="total-orders" style="[^"]*">{recap["orders"]:,}<', dom.stdout)
    assert f"£{recap['spend']:,.2f}" in dom.stdout

    # The screenshots a reviewer looks at: one recap on a phone and on a desktop.
    chromium.screenshot(page, chromium.ARTIFACTS / "recap_mobile_375.png", width=375, height=2600)
    shot = chromium.screenshot(page, chromium.ARTIFACTS / "recap_desktop_600.png", width=600, height=2000)
    pixels = np.asarray(image.open(shot).convert("RGB")).astype(int)
    bar = np.zeros(pixels.shape[:2], bool)
    for colour in (brand.colours.accent, brand.colours.highlight):
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        bar |= np.abs(pixels - rgb).sum(axis=2) < 12
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
    highlight = np.array([int(brand.colours.highlight[i : i + 2], 16) for i in (1, 3, 5)])
    marked = [
        m
        for m, (a, b) in zip(nonzero, runs, strict=True)
        if (np.abs(pixels[rows.max(), (a + b) // 2] - highlight).sum() < 12)
    ]
    assert marked == [recap["busiest_month"]["month"] - 1], "the busiest month, named under the chart, stands out"
