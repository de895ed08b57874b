"""A customer's stored yearly recap, and its email page, as plain functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.errors import NotFound, RecapsUnavailable
from service.online.features import OnlineStoreDown
from training.recaps.render import render_recap_html

if TYPE_CHECKING:
    from service.config import ServiceSettings
    from service.online.features import OnlineFeatures


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
    """The recap's email page, as the recap job renders it (markup in the record escaped)."""
    return render_recap_html(record, store=settings.recap_store_name, currency=settings.recap_currency)
