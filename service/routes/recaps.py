"""GET /v1/users/{user_id}/recaps/{year}: the stored yearly recap, as JSON or as the email page."""

from __future__ import annotations

import html
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse

from service.deps import FeaturesDep, RecapsKey
from service.errors import NotFound, RecapsUnavailable
from service.features import OnlineStoreDown
from service.observability import current_request_id
from service.routes.recommendations import UserId
from service.schemas import ERRORS

router = APIRouter(tags=["recaps"])

EXAMPLE = {
    "schema_version": 1,
    "user_id": "C000123",
    "year": 2025,
    "orders": 48,
    "items": 912,
    "spend": 2315.4,
    "top_categories": ["Dairy", "Bakery"],
    "top_items": ["Oat Milk"],
    "top_brands": ["Oatly"],
    "staple": "Oat Milk",
    "discoveries": ["Sourdough"],
    "busiest_month": "December",
    "persona": "Weekly Planner",
    "picks": ["I00042"],
    "model_version": "3",
}


@router.get(
    "/v1/users/{user_id}/recaps/{year}",
    responses={
        **ERRORS,
        200: {
            "content": {"application/json": {"example": EXAMPLE}, "text/html": {}},
            "description": "The recap record (format=json) or its HTML page (format=html).",
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
        return HTMLResponse(render_html(record), headers={"X-Request-ID": current_request_id()})
    return JSONResponse(record)


def render_html(record: dict[str, Any]) -> str:
    """The recap job's renderer when it exposes one, else a plain escaped page."""
    from training import recaps

    render = getattr(recaps, "render_html", None)
    if callable(render):
        return str(render(record))
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v, ensure_ascii=False))}</td></tr>"
        for k, v in record.items()
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Your {int(record.get('year', 0))} with us"
        f"</title></head><body><h1>Your {int(record.get('year', 0))} with us</h1><table>{rows}</table>"
        "</body></html>"
    )
