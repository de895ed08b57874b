"""The recap record as GET /v1/users/{user_id}/recaps/{year} documents it (docs/recaps.md, "What a recap holds").

The record is the recap job's (training.recaps), stored in the online store and served as it is;
EXAMPLE is its OpenAPI example (tests compare its shape with a real answer).
"""

from __future__ import annotations

from typing import Any

# A real record's shape (training/recaps/sql.py `final_sql`), lists shortened to one or two entries.
EXAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "user_id": "C0001",
    "year": 2025,
    "kind": "full",
    "new_customer": False,
    "orders": 48,
    "items": 912,
    "spend": 2315.4,
    "days_shopped": 46,
    "previous_year": {"year": 2024, "orders": 41, "items": 803, "spend": 1990.12, "days_shopped": 40},
    "change_vs_previous_year": {"orders_pct": 17.1, "items_pct": 13.6, "spend_pct": 16.3},
    "top_categories": [
        {"category": "Dairy", "items": 160, "spend": 231.5},
        {"category": "Bakery", "items": 120, "spend": 198.2},
    ],
    "top_items": [
        {"item_id": "P0007", "name": "Oat Milk 1L", "category": "Dairy", "items": 52, "spend": 93.6},
    ],
    "top_brands": [{"brand": "Oatly", "items": 52, "spend": 93.6}],
    "staple": {"item_id": "P0007", "name": "Oat Milk 1L", "orders": 40, "items": 52},
    "discoveries": {"categories": ["Sourdough"], "categories_count": 1, "brands": [], "brands_count": 0},
    "busiest_month": {"month": 12, "name": "December", "orders": 7, "spend": 320.45},
    "favourite_weekday": {"weekday": 6, "name": "Saturday", "orders": 19},
    "longest_weekly_streak": 9,
    "spend_by_month": [180.2, 150.0, 175.3, 190.1, 201.7, 160.4, 170.0, 185.9, 199.3, 210.5, 171.55, 320.45],
    "orders_by_month": [4, 3, 4, 4, 4, 3, 4, 4, 4, 4, 3, 7],
    # (no null in an example: FastAPI leaves null-valued keys out of the OpenAPI document)
    "comparisons": [
        {
            "kind": "category_top",
            "category": "Dairy",
            "percent": 3,
            "cohort_size": 4100,
            "text": "You are in the top 3% of Dairy buyers",
        }
    ],
    "persona": {
        "name": "Weekend Planner",
        "rule": "at least 4 orders, and at least 60% of them on a Saturday or Sunday",
        "reason": "65% of your orders were on a weekend",
    },
    "picks": [{"item_id": "P0434", "name": "Sourdough Loaf", "category": "Bakery", "score": 0.812}],
    "model_version": "3",
    # Added by the recap job for the shop's brand (training/recaps/brand.py); the token is signed
    # with RECO_RECAP_SIGNING_KEY and also opens the email page (format=html) without an API key.
    "links": {
        "view_in_browser": "https://reco.shop.example/v1/users/C000123/recaps/2025?format=html&t=4f1c9a0e2b7d6c3a8e5f1b0d9c7a2e6f",
        "unsubscribe": "https://shop.example/unsubscribe?u=C000123&t=4f1c9a0e2b7d6c3a8e5f1b0d9c7a2e6f",
        "list_unsubscribe": "<https://shop.example/unsubscribe?u=C000123&t=4f1c9a0e2b7d6c3a8e5f1b0d9c7a2e6f>",
        "list_unsubscribe_post": "List-Unsubscribe=One-Click",
        "token": "4f1c9a0e2b7d6c3a8e5f1b0d9c7a2e6f",
    },
}
