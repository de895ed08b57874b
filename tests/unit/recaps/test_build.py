"""Building recaps: every figure equals an independent computation over the lines, the documented
persona rules hold, opt-outs, sensitive categories and minimum cohorts are honoured."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.unit.recaps.conftest import CATALOG, SENSITIVE, YEAR, purchases_table
from training.recaps.build import build_recap, build_recaps
from training.recaps.job import InvalidOptOut, read_opt_out, sensitive_item_ids
from training.recaps.render import render_recap_html, render_recap_text
from training.recaps.rules import PERSONA_RULES, SHORT_PERSONA, RecapOptions

CONTRACT_FIELDS = {
    "schema_version", "user_id", "year", "orders", "items", "spend", "top_categories", "top_items", "top_brands",
    "staple", "discoveries", "busiest_month", "persona", "picks", "model_version",
}  # fmt: skip


def _orders_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Orders (first line's time, spend) of some lines; a line without an order id is an order."""
    orders: dict[Any, dict[str, Any]] = {}
    for i, r in enumerate(rows):
        key = r["order_id"] if r["order_id"] is not None else ("line", i)
        o = orders.setdefault(key, {"ts": r["timestamp"], "spend": 0.0})
        o["ts"] = min(o["ts"], r["timestamp"])
        o["spend"] += r["quantity"] * r["price"] if r["price"] is not None else 0.0
    return list(orders.values())


def _ranked(groups: dict[str, dict[str, float]], limit: int = 5) -> list[str]:
    return sorted(groups, key=lambda g: (-groups[g]["units"], -round(groups[g]["spend"], 2), g))[:limit]


def expected_recap(rows: list[dict[str, Any]], items: dict[str, dict[str, Any]], year: int) -> dict[str, Any]:
    """What one customer's recap must say, from their own rows only."""
    this = [r for r in rows if r["timestamp"].year == year]
    before = [r for r in rows if r["timestamp"].year < year]
    orders = _orders_of(this)
    visible = [r for r in this if items.get(r["item_id"], {}).get("category") not in SENSITIVE]

    def grouped(key: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = defaultdict(lambda: {"units": 0, "spend": 0.0})
        for r in visible:
            name = r["item_id"] if key == "item_id" else items.get(r["item_id"], {}).get(key)
            if name is not None:
                out[name]["units"] += r["quantity"]
                out[name]["spend"] += r["quantity"] * (r["price"] or 0.0)
        return out

    per_item, per_category, per_brand = grouped("item_id"), grouped("category"), grouped("brand")
    item_orders: Counter[str] = Counter()
    seen: set[tuple[str, Any]] = set()
    for i, r in enumerate(this):
        if items.get(r["item_id"], {}).get("category") not in SENSITIVE:
            key = (r["item_id"], r["order_id"] if r["order_id"] is not None else ("line", i))
            if key not in seen:
                seen.add(key)
                item_orders[r["item_id"]] += 1
    staple_candidates = [i for i in item_orders if item_orders[i] >= 2]
    staple = min(staple_candidates, key=lambda i: (-item_orders[i], -per_item[i]["units"], i), default=None)

    months: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
    weekdays: Counter[int] = Counter()
    weeks = set()
    for o in orders:
        months[o["ts"].month][0] += 1
        months[o["ts"].month][1] += o["spend"]
        weekdays[o["ts"].isoweekday()] += 1
        day = o["ts"].date()
        weeks.add(day - timedelta(days=day.weekday()))
    busiest = min(months, key=lambda m: (-months[m][0], -round(months[m][1], 2), m))
    streak = best = 0
    previous: date | None = None
    for week in sorted(weeks):
        streak = streak + 1 if previous is not None and week - previous == timedelta(days=7) else 1
        best, previous = max(best, streak), week

    before_categories = {items.get(r["item_id"], {}).get("category") for r in before}
    before_brands = {items.get(r["item_id"], {}).get("brand") for r in before}
    new_categories = [c for c in _ranked(per_category, 1000) if before and c not in before_categories]
    new_brands = [b for b in _ranked(per_brand, 1000) if before and b not in before_brands]
    return {
        "orders": len(orders),
        "items": sum(r["quantity"] for r in this),
        "spend": sum(r["quantity"] * r["price"] for r in this if r["price"] is not None),
        "days_shopped": len({o["ts"].date() for o in orders}),
        "top_items": _ranked(per_item),
        "top_categories": _ranked(per_category),
        "top_brands": _ranked(per_brand),
        "staple": None if staple is None else (staple, item_orders[staple]),
        "busiest_month": busiest,
        "favourite_weekday": min(weekdays, key=lambda d: (-weekdays[d], d)),
        "longest_weekly_streak": best,
        "spend_by_month": [months[m][1] if m in months else 0.0 for m in range(1, 13)],
        "new_categories": new_categories,
        "new_brands": new_brands,
        "new_customer": not before,
        "previous_orders": len(_orders_of([r for r in before if r["timestamp"].year == year - 1])) or None,
    }


def _rows_by_customer(purchases: pa.Table) -> dict[str, list[dict[str, Any]]]:
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in purchases.to_pylist():
        by_customer[row["user_id"]].append(row)
    return by_customer


def test_sampled_recaps_equal_an_independent_computation(store: dict[str, Any], built: dict[str, dict]) -> None:
    rows = _rows_by_customer(store["purchases"])
    items = {r["item_id"]: r for r in store["catalog"].to_pylist()}
    in_year = sorted(u for u, rs in rows.items() if any(r["timestamp"].year == YEAR for r in rs))
    assert set(built) == set(in_year), "exactly the customers who bought in the year have a recap"
    sample = in_year[:: max(1, len(in_year) // 40)]
    lines = [r for user in sample for r in rows[user] if r["timestamp"].year == YEAR]
    assert any(r["order_id"] is None for r in lines), "the sample must include lines without an order id"
    assert any(r["price"] is None for r in lines), "the sample must include lines without a price"
    for user in sample:
        want, got = expected_recap(rows[user], items, YEAR), built[user]
        assert set(got) >= CONTRACT_FIELDS
        assert (got["orders"], got["items"], got["days_shopped"]) == (
            want["orders"],
            want["items"],
            want["days_shopped"],
        )
        assert got["spend"] == pytest.approx(want["spend"], abs=0.006)
        assert [i["item_id"] for i in got["top_items"]] == want["top_items"], user
        assert [c["category"] for c in got["top_categories"]] == want["top_categories"], user
        assert [b["brand"] for b in got["top_brands"]] == want["top_brands"], user
        assert (None if got["staple"] is None else (got["staple"]["item_id"], got["staple"]["orders"])) == want[
            "staple"
        ]
        assert got["busiest_month"]["month"] == want["busiest_month"]
        assert got["favourite_weekday"]["weekday"] == want["favourite_weekday"]
        assert got["longest_weekly_streak"] == want["longest_weekly_streak"]
        assert got["spend_by_month"] == pytest.approx(want["spend_by_month"], abs=0.006)
        assert got["discoveries"]["categories"] == want["new_categories"][:5]
        assert got["discoveries"]["categories_count"] == len(want["new_categories"])
        assert got["discoveries"]["brands"] == want["new_brands"][:5]
        assert got["new_customer"] == want["new_customer"]
        assert (got["previous_year"] or {}).get("orders") == want["previous_orders"]


def test_persona_follows_the_documented_rules(built: dict[str, dict]) -> None:
    names = Counter(r["persona"]["name"] for r in built.values())
    assert set(names) <= {r.name for r in PERSONA_RULES} | {SHORT_PERSONA.name}
    assert len(names) >= 4, f"personas should vary on a realistic store: {names}"
    for r in built.values():
        assert r["persona"]["rule"] and r["persona"]["reason"]
        if r["kind"] == "short":
            assert r["persona"]["name"] == SHORT_PERSONA.name and r["orders"] < 3 and r["comparisons"] == []
        else:
            assert r["orders"] >= 3


def test_weekend_planner_known_answer() -> None:
    saturdays = ["2025-03-01", "2025-03-08", "2025-03-15", "2025-03-22", "2025-03-29"]
    rows = [("w", "milk", f"{d}T10:00:00+00:00", 1, 1.0, f"o{d}") for d in saturdays]
    rows += [("w", "bread", "2025-03-04T10:00:00+00:00", 1, 2.0, "tuesday")]
    recap = build_recap(purchases=purchases_table(rows), user_id="w", year=YEAR, catalog=CATALOG)
    assert recap is not None
    assert recap["persona"]["name"] == "Weekend Planner"
    assert recap["persona"]["reason"] == "83% of your orders were on a weekend"
    assert recap["favourite_weekday"]["name"] == "Saturday"
    assert recap["longest_weekly_streak"] == 5  # Saturday 1st .. 29th, plus the Tuesday in week 2


def test_one_purchase_gets_a_short_friendly_recap() -> None:
    recap = build_recap(
        purchases=purchases_table([("solo", "milk", "2025-06-01T09:00:00+00:00", 2, 1.25, None)]),
        user_id="solo",
        year=YEAR,
        catalog=CATALOG,
    )
    assert recap is not None and set(recap) >= CONTRACT_FIELDS
    assert (recap["kind"], recap["orders"], recap["items"], recap["spend"]) == ("short", 1, 2, 2.5)
    assert recap["staple"] is None and recap["comparisons"] == [] and recap["picks"] == []
    assert recap["persona"]["name"] == SHORT_PERSONA.name
    assert recap["busiest_month"]["name"] == "June"
    html, text = render_recap_html(recap), render_recap_text(recap)
    assert "Thanks for shopping with us" in html and "£2.50" in html and "£2.50" in text


def test_lines_without_order_id_count_one_order_each_and_year_is_utc() -> None:
    rows = [
        ("u", "milk", "2025-02-01T10:00:00+00:00", 1, 1.0, None),
        ("u", "milk", "2025-02-01T10:00:00+00:00", 1, 1.0, None),
        ("u", "bread", "2025-02-02T10:00:00+00:00", 3, 2.0, "b1"),
        ("u", "tea", "2025-02-02T10:05:00+00:00", 1, None, "b1"),  # no price: adds items, not spend
        ("u", "coffee", "2025-12-31T22:30:00-05:00", 1, 9.0, "next-year"),  # 2026-01-01 03:30 UTC
        ("u", "coffee", "2026-01-01T00:30:00+02:00", 1, 4.0, "this-year"),  # 2025-12-31 22:30 UTC
    ]
    recap = build_recap(purchases=purchases_table(rows), user_id="u", year=YEAR, catalog=CATALOG)
    assert recap is not None
    assert (recap["orders"], recap["items"], recap["spend"]) == (4, 7, 12.0)
    assert recap["days_shopped"] == 3
    assert recap["spend_by_month"][1] == 8.0 and recap["spend_by_month"][11] == 4.0


def test_customer_who_only_bought_in_another_year_has_no_recap() -> None:
    rows = [
        ("old", "milk", "2024-05-01T10:00:00+00:00", 1, 1.0, "o1"),
        ("now", "milk", "2025-05-01T10:00:00+00:00", 1, 1.0, "o2"),
    ]
    result = build_recaps(purchases=purchases_table(rows), options=RecapOptions(year=YEAR), catalog=CATALOG)
    assert [r["user_id"] for r in result.records()] == ["now"]
    assert build_recap(purchases=purchases_table(rows), user_id="old", year=YEAR) is None


def test_without_catalog_recaps_still_have_every_field() -> None:
    rows = [("u", "milk", f"2025-0{m}-01T10:00:00+00:00", 1, 1.0, f"o{m}") for m in range(1, 5)]
    recap = build_recap(purchases=purchases_table(rows), user_id="u", year=YEAR)
    assert recap is not None and set(recap) >= CONTRACT_FIELDS
    assert recap["top_items"][0]["name"] == "milk" and recap["top_categories"] == [] and recap["top_brands"] == []
    assert recap["staple"]["orders"] == 4


def test_opt_out_customers_are_absent_counted_and_not_in_cohorts(store: dict[str, Any], built: dict) -> None:
    opted = sorted(built)[:25]
    options = RecapOptions(year=YEAR, sensitive_categories=SENSITIVE, min_cohort=50)
    result = build_recaps(purchases=store["purchases"], catalog=store["catalog"], options=options, opt_out=opted)
    records = {r["user_id"]: r for r in result.records()}
    assert not set(opted) & set(records)
    assert result.counts["opted_out_in_year"] == 25
    assert result.counts["customers_in_year"] == len(built) == len(records) + 25
    sizes = {c["cohort_size"] for r in records.values() for c in r["comparisons"] if c["kind"] == "orders"}
    assert sizes == {len(records)}


def test_read_opt_out_ignores_comments_blanks_and_header(tmp_path: Path) -> None:
    path = tmp_path / "opt-out.txt"
    path.write_text("user_id\nC1\n\n  C2  # asked by email\n# C3\n")
    assert read_opt_out(path) == {"C1", "C2"}
    with pytest.raises(InvalidOptOut, match="cannot be read"):
        read_opt_out(tmp_path / "missing.txt")


def test_sensitive_categories_are_never_highlighted() -> None:
    rows = []
    for week in range(10):  # a pharmacy-heavy customer, returning from 2024
        day = (datetime(2025, 1, 6, 10, tzinfo=UTC) + timedelta(weeks=week)).isoformat()
        rows += [("p", "pills", day, 5, 3.0, f"o{week}"), ("p", "milk", day, 1, 1.0, f"o{week}")]
    rows.append(("p", "bread", "2024-06-01T10:00:00+00:00", 1, 2.0, "old"))
    recap = build_recap(purchases=purchases_table(rows), user_id="p", year=YEAR, catalog=CATALOG)
    assert recap is not None
    assert recap["spend"] == 160.0 and recap["items"] == 60  # totals still include everything
    dumped = json.dumps({k: v for k, v in recap.items() if k not in ("spend_by_month",)})
    for word in ("pills", "Pharmacy", "Pain Relief", "Medco"):
        assert word not in dumped
    assert recap["staple"]["item_id"] == "milk"
    assert recap["discoveries"]["categories"] == ["Milk"]
    assert "Pain Relief" not in render_recap_html(recap) and "Pharmacy" not in render_recap_text(recap)


def test_sensitive_items_are_excluded_from_picks() -> None:
    assert sensitive_item_ids(CATALOG, ["pharmacy"]) == ["pills"]
    assert sensitive_item_ids(None, ["Pharmacy"]) == []
    # Even from a recommender that does not know about them (the job also asks the model without them).
    rows = [("u", "milk", f"2025-0{m}-01T10:00:00+00:00", 1, 1.0, f"o{m}") for m in range(1, 5)]
    result = build_recaps(
        purchases=purchases_table(rows),
        catalog=CATALOG,
        options=RecapOptions(year=YEAR, picks_k=3),
        recommend=lambda users: [[("pills", 0.9), ("coffee", 0.8), ("tea", 0.7)] for _ in users],
    )
    (recap,) = result.records()
    assert [p["item_id"] for p in recap["picks"]] == ["coffee", "tea"]


def test_no_other_customers_data_in_any_recap(store: dict[str, Any], built: dict[str, dict]) -> None:
    """Every item, category and brand a recap names is the customer's own purchase of the year, and
    no other customer's id appears anywhere in it (comparisons are aggregates only)."""
    rows = _rows_by_customer(store["purchases"])
    items = {r["item_id"]: r for r in store["catalog"].to_pylist()}
    customers = set(rows)

    def strings(value: Any) -> Iterable[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)

    for user, recap in built.items():
        mine = [r for r in rows[user] if r["timestamp"].year == YEAR]
        own_items = {r["item_id"] for r in mine}
        named = {i["item_id"] for i in recap["top_items"]} | (
            {recap["staple"]["item_id"]} if recap["staple"] else set()
        )
        assert named <= own_items, user
        assert {c["category"] for c in recap["top_categories"]} <= {items[i]["category"] for i in own_items}, user
        assert {b["brand"] for b in recap["top_brands"]} <= {items[i]["brand"] for i in own_items}, user
        assert set(strings(recap)) & customers == {user}, user


def test_build_shows_one_progress_bar_over_its_steps(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [("u", "milk", "2025-03-01T10:00:00+00:00", 1, 1.0, "o1")]
    build_recaps(purchases=purchases_table(rows), options=RecapOptions(year=YEAR), progress=True)
    err = capsys.readouterr().err
    assert "recaps: 100%" in err and "11/11" in err  # 9 aggregate tables, the picks, 1 partition


def test_comparisons_respect_the_minimum_cohort(store: dict[str, Any], built: dict) -> None:
    shown = [c for r in built.values() for c in r["comparisons"]]
    assert shown, "with a cohort minimum of 50 a store of this size shows comparisons"
    assert all(c["cohort_size"] >= 50 for c in shown)
    assert {c["kind"] for c in shown} == {"orders", "category_top"}
    big = RecapOptions(year=YEAR, sensitive_categories=SENSITIVE, min_cohort=len(built) + 1)
    result = build_recaps(purchases=store["purchases"], catalog=store["catalog"], options=big)
    assert all(r["comparisons"] == [] for r in result.records())


def test_orders_comparison_is_the_share_of_customers_with_fewer_orders(built: dict[str, dict]) -> None:
    orders = [r["orders"] for r in built.values()]
    checked = 0
    for r in list(built.values())[:200]:
        for c in r["comparisons"]:
            if c["kind"] == "orders":
                assert c["percent"] == 100 * sum(o < r["orders"] for o in orders) // len(orders)
                assert c["percent"] >= 50
                checked += 1
    assert checked, "no orders comparison among the first 200 recaps"


def test_picks_come_from_the_recommender_with_its_version(store: dict[str, Any]) -> None:
    items = store["catalog"].column("item_id").to_pylist()
    asked: list[str] = []

    def recommend(user_ids: list[str]) -> list[list[tuple[str, float]]]:
        asked.extend(user_ids)
        return [[(items[0], 0.9), (items[1], 0.5)] for _ in user_ids]

    result = build_recaps(
        purchases=store["purchases"],
        catalog=store["catalog"],
        options=RecapOptions(year=YEAR, picks_k=1),
        recommend=recommend,
        model_version="7",
        recommend_batch_size=500,
    )
    records = list(result.records())
    assert sorted(asked) == sorted(r["user_id"] for r in records)
    # The model's first candidate, unless the customer bought it this year (or it is sold out): then its second.
    rows = store["purchases"].filter(pc.equal(pc.year(store["purchases"].column("timestamp")), YEAR))
    bought = set(zip(rows.column("user_id").to_pylist(), rows.column("item_id").to_pylist(), strict=True))
    stock = dict(zip(items, store["catalog"].column("in_stock").to_pylist(), strict=True))
    assert stock[items[0]] and stock[items[1]]
    for r in records:
        expected = [i for i in items[:2] if (r["user_id"], i) not in bought][:1]
        assert r["model_version"] == "7" and [p["item_id"] for p in r["picks"]] == expected, r["user_id"]
    assert {r["picks"][0]["item_id"] for r in records if r["picks"]} == {items[0], items[1]}  # both cases occur
    named = next(r for r in records if r["picks"] and r["picks"][0]["item_id"] == items[0])
    assert named["picks"][0]["name"] == store["catalog"].column("name")[0].as_py()


def test_picks_are_never_bought_this_year_sold_out_or_sensitive() -> None:
    """Whatever the recommender says: the customer bought milk and coffee in 2025 (bread only in
    2024), tea is sold out, pills are sensitive; jam is not in the catalog (kept: nothing says no).
    A recap keeps the first `picks_k` allowed among the first 2 × `picks_k` candidates."""
    catalog = CATALOG.append_column("in_stock", pa.array([True, True, True, True, False]))
    rows = [("u", "milk", f"2025-0{m}-01T10:00:00+00:00", 1, 1.0, f"o{m}") for m in range(1, 5)]
    rows += [
        ("u", "coffee", "2025-05-02T10:00:00+00:00", 1, 3.0, "o5"),
        ("u", "bread", "2024-03-01T10:00:00+00:00", 1, 2.0, "b"),
    ]
    candidates = [
        ("milk", 0.9),
        ("bread", 0.8),
        ("tea", 0.7),
        ("jam", 0.6),
        ("coffee", 0.5),
        ("pills", 0.4),
        ("x", 0.1),
    ]
    for k, expected in ((1, ["bread"]), (2, ["bread", "jam"]), (3, ["bread", "jam"]), (4, ["bread", "jam", "x"])):
        result = build_recaps(
            purchases=purchases_table(rows),
            catalog=catalog,
            options=RecapOptions(year=YEAR, picks_k=k),
            recommend=lambda users: [candidates for _ in users],
        )
        (recap,) = result.records()
        assert [p["item_id"] for p in recap["picks"]] == expected, k


def test_partitioned_build_gives_the_same_recaps(store: dict[str, Any], built: dict[str, dict]) -> None:
    """Big stores are assembled in partitions of customers; the recaps must not depend on it."""
    options = RecapOptions(year=YEAR, sensitive_categories=SENSITIVE, min_cohort=50)
    rows = store["purchases"].num_rows
    result = build_recaps(
        purchases=store["purchases"], catalog=store["catalog"], options=options, partition_rows=rows // 4 + 1
    )
    assert result.recaps.column("user_id").to_pylist() == sorted(built)
    assert {r["user_id"]: r for r in result.records()} == built
