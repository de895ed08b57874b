"""GET /v1/users/{user_id}/recaps/{year}: the stored yearly recap, as JSON or as the email page."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse

from service.deps import FeaturesDep, RecapsKey, ServicesDep
from service.errors import NotFound, RecapsUnavailable
from service.online.features import OnlineStoreDown
from service.schemas import ERRORS, UserId
from training.recaps.render import render_recap_html

router = APIRouter(tags=["recaps"])

# A real record's shape (training/recaps.py `_final_sql`), lists shortened to one or two entries.
EXAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "user_id": "C000123",
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
        {"item_id": "I00042", "name": "Oat Milk 1L", "category": "Dairy", "items": 52, "spend": 93.6},
    ],
    "top_brands": [{"brand": "Oatly", "items": 52, "spend": 93.6}],
    "staple": {"item_id": "I00042", "name": "Oat Milk 1L", "orders": 40, "items": 52},
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
    "picks": [{"item_id": "I00311", "name": "Sourdough Loaf", "category": "Bakery", "score": 0.812}],
    "model_version": "3",
}


@router.get(
    "/v1/users/{user_id}/recaps/{year}",
    responses={
        **ERRORS,
        200: {
            "content": {"application/json": {"example": EXAMPLE}, "text/html": {"schema": {"type": "string"}}},
            "description": "The recap record (format=json) or its email page (format=html).",
        },
        404: ERRORS[401] | {"description": "No recap for this customer and year."},
        503: ERRORS[401] | {"description": "The online store holding recaps is unavailable."},
    },
)
async def recap(
    user_id: UserId,
    year: Annotated[int, Path(ge=1970, le=2100, examples=[2025])],
    _key: RecapsKey,
    features: FeaturesDep,
    services: ServicesDep,
    format: Annotated[
        Literal["json", "html"], Query(description="json (the record) or html (the email page).")
    ] = "json",
) -> Any:
    """The customer's "Your year with us" recap from the online store (feature service recap_v1)."""
    try:
        record = await features.recap(user_id, year)
    except OnlineStoreDown as exc:
        raise RecapsUnavailable(f"Recaps are temporarily unavailable ({exc}); retry shortly.") from None
    if record is None:
        raise NotFound(f"No recap for this customer and year {year}.")
    if format == "html":
        settings = services.settings
        return HTMLResponse(
            render_recap_html(record, store=settings.recap_store_name, currency=settings.recap_currency)
        )
    return JSONResponse(record)
