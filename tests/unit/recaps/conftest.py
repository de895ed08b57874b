"""Recap fixtures: the `messy_store` loaded, its 2025 recaps built once, a small known catalog, and the
checked-in example brand (docs/brand.example.toml)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from training.data.contract import PURCHASE_SCHEMA
from training.data.load import load_catalog, load_purchases
from training.recaps.brand import Brand, load_brand
from training.recaps.build import build_recaps
from training.recaps.rules import RecapOptions

YEAR = 2025
SENSITIVE = ("Pharmacy",)
EXAMPLE_BRAND = Path(__file__).resolve().parents[3] / "docs" / "brand.example.toml"
SIGNING_KEY = b"unit-test-signing-key"


@pytest.fixture(scope="session")
def brand() -> Brand:
    """The shop of docs/brand.example.toml: every link, a logo and product images."""
    from training.settings import load_settings

    return load_brand(load_settings(), EXAMPLE_BRAND)


@pytest.fixture(scope="module")
def store(messy_store: Path) -> dict[str, Any]:
    purchases, _ = load_purchases(messy_store / "purchases.parquet")
    catalog, _ = load_catalog(messy_store / "catalog.parquet")
    return {"dir": messy_store, "purchases": purchases, "catalog": catalog}


@pytest.fixture(scope="module")
def built(store: dict[str, Any]) -> dict[str, dict[str, Any]]:
    options = RecapOptions(year=YEAR, sensitive_categories=SENSITIVE, min_cohort=50)
    result = build_recaps(purchases=store["purchases"], catalog=store["catalog"], options=options)
    return {r["user_id"]: r for r in result.records()}


def purchases_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    """Purchases in the contract's schema from (user, item, ISO time, quantity, price, order)."""
    names = PURCHASE_SCHEMA.names
    records = [dict(zip(names, r, strict=True)) for r in rows]
    for r in records:
        r["timestamp"] = datetime.fromisoformat(r["timestamp"]).astimezone(UTC)
    return pa.Table.from_pylist(records, schema=PURCHASE_SCHEMA)


CATALOG = pa.table(
    {
        "item_id": ["milk", "bread", "pills", "coffee", "tea"],
        "name": ["Milk", "Bread <b>fresh</b>", "Pain Relief", "Coffee", "Tea"],
        "category": ["Milk", "Bread", "Pharmacy", "Coffee", "Tea"],
        "brand": ["Dairyco", "Bakeco", "Medco", "Beanco", "Leafco"],
    }
)
