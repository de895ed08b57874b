"""POST /v1/baskets/complete."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.answers import customer_context, recommendations_answer
from service.baskets.schemas import BasketRequest
from service.baskets.service import complete_basket
from service.deps import ModelDep, RecommendKey, ServicesDep
from service.schemas import BODY_ERRORS, ERRORS, Recommendations

router = APIRouter(tags=["recommendations"])


@router.post(
    "/v1/baskets/complete",
    response_model=Recommendations,
    responses={**BODY_ERRORS, 404: ERRORS[401] | {"description": "No item of the cart is in the catalog."}},
)
async def basket_complete(
    basket: BasketRequest, _key: RecommendKey, services: ServicesDep, model: ModelDep
) -> Response:
    """Items that complete the cart, personalized when `user_id` is given."""
    reasons: list[str] = []
    just_bought: set[str] = set()
    if basket.user_id is not None:
        live = await customer_context(services, basket.user_id)
        just_bought, reasons = live.just_bought, live.degraded_reasons
    ranked = complete_basket(
        model=model,
        catalog=services.features.catalog,
        user_id=basket.user_id,
        basket=basket.items,
        k=basket.k,
        just_bought=just_bought,
        explain=basket.explain,
        sensitive=services.settings.sensitive_categories,
        fallback=basket.fallback,
    )
    return recommendations_answer(endpoint="basket", ranked=ranked, model=model, extra_reasons=reasons)
