"""A customer's stored yearly recap, and its email page, as plain functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.deps import authorize
from service.errors import InvalidRecapLink, NotFound, RecapsUnavailable
from service.online.features import OnlineStoreDown
from training.recaps.brand import signing_key, token_matches
from training.recaps.render import render_recap_html

if TYPE_CHECKING:
    from service.config import ServiceSettings
    from service.online.features import OnlineFeatures


def authorize_recap(
    *, settings: ServiceSettings, key: str | None, token: str | None, user_id: str, year: int, page: bool
) -> None:
    """An API key with the recaps scope; or, for the email page only (`page`), the customer's token
    from the view-in-browser link of their email (signed with RECO_RECAP_SIGNING_KEY)."""
    if token is None or key is not None or not page or settings.auth == "disabled":
        authorize(settings, key, "recaps")
        return
    secret = signing_key(settings)
    if secret is None or not token_matches(secret, token, user_id, year):
        raise InvalidRecapLink("This link does not open this recap: use the link from your email.")


async def stored_recap(*, features: OnlineFeatures, user_id: str, year: int) -> dict[str, Any]:
    """The recap record from the online store (recap_v1); RecapsUnavailable when it is down, else NotFound."""
    try:
        record = await features.recap(user_id, year)
    except OnlineStoreDown as exc:
        raise RecapsUnavailable(f"Recaps are temporarily unavailable ({exc}); retry shortly.") from None
    if record is None:
        raise NotFound(f"No recap for this customer and year {year}.")
    return record


def recap_page(*, record: dict[str, Any], settings: ServiceSettings) -> str:
    """The recap's email page, as the recap job renders it for the same shop (markup in the record escaped)."""
    return render_recap_html(record, brand=settings.recap_brand)
