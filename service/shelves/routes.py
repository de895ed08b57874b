"""GET /v1/users/{user_id}/shelves: the home page as shelves."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.answers import customer_context, model_reasons, record
from service.deps import ModelDep, RecommendKey, ServicesDep
from service.observability import current_request_id
from service.schemas import ERRORS, Item, UserId
from service.shelves.schemas import Shelf, Shelves, ShelvesQuery
from service.shelves.service import shelves_for_customer

router = APIRouter(tags=["recommendations"])


@router.get("/v1/users/{user_id}/shelves", response_model=Shelves, responses=ERRORS)
async def shelves(
    user_id: UserId,
    _key: RecommendKey,
    services: ServicesDep,
    model: ModelDep,
    query: Annotated[ShelvesQuery, Query()],
) -> Shelves:
    """The home page as ordered shelves (buy it again, picked for you, because you bought …), no item twice."""
    live = await customer_context(services, user_id)
    page = shelves_for_customer(
        model=model,
        catalog=services.features.catalog,
        user_id=user_id,
        count=query.shelves,
        k=query.k,
        min_items=query.min_items,
        just_bought=live.just_bought,
        features=live.features,
        sensitive=services.settings.sensitive_categories,
    )
    reasons = list(dict.fromkeys([*live.degraded_reasons, *page.degraded_reasons, *model_reasons(model)]))
    record("shelves", page.source, reasons)
    return Shelves(
        shelves=[
            Shelf(
                id=s.id,
                title=s.title,
                reason=s.reason,
                items=[Item(item_id=i, score=round(score, 6), reason=r) for i, score, r in s.items],
                anchor_item_id=s.anchor_item_id,
                category=s.category,
            )
            for s in page.shelves
        ],
        model_version=model.version if model else None,
        source=page.source,
        degraded=bool(reasons),
        degraded_reasons=reasons,
        request_id=current_request_id(),
    )
