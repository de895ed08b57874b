"""GET /v1/users/{user_id}/recaps/{year}: the stored yearly recap, as JSON or as the email page."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Security
from fastapi.responses import HTMLResponse, JSONResponse

from service.deps import FeaturesDep, ServicesDep, api_key_header
from service.recaps.schemas import EXAMPLE
from service.recaps.service import authorize_recap, recap_page, stored_recap
from service.schemas import ERRORS, UserId

router = APIRouter(tags=["recaps"])


@router.get(
    "/v1/users/{user_id}/recaps/{year}",
    responses={
        **ERRORS,
        200: {
            "content": {"application/json": {"example": EXAMPLE}, "text/html": {"schema": {"type": "string"}}},
            "description": "The recap record (format=json) or its email page (format=html).",
        },
        403: ERRORS[401] | {"description": "The key lacks the recaps scope, or the link's token is not this recap's."},
        404: ERRORS[401] | {"description": "No recap for this customer and year."},
        503: ERRORS[401]
        | {"description": "The online store holding recaps is unavailable, or too many requests in flight."},
    },
)
async def recap(
    user_id: UserId,
    year: Annotated[int, Path(ge=1970, le=2100, examples=[2025])],
    key: Annotated[str | None, Security(api_key_header)],
    features: FeaturesDep,
    services: ServicesDep,
    format: Annotated[
        Literal["json", "html"], Query(description="json (the record) or html (the email page).")
    ] = "json",
    t: Annotated[
        str | None,
        Query(
            max_length=128,
            description="The customer's token from the view-in-browser link of the recap email: opens the "
            "email page (format=html) without an API key.",
        ),
    ] = None,
) -> Any:
    """The customer's "Your year with us" recap from the online store (feature service recap_v1); needs
    the recaps scope, or for the email page the token of the customer's view-in-browser link."""
    authorize_recap(settings=services.settings, key=key, token=t, user_id=user_id, year=year, page=format == "html")
    record = await stored_recap(features=features, user_id=user_id, year=year)
    if format == "html":
        return HTMLResponse(recap_page(record=record, settings=services.settings))
    return JSONResponse(record)
