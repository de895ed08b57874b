"""GET /v1/users/{user_id}/recommendations and GET /v1/items/{item_id}/similar."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from service.answers import customer_context, recommendations_answer
from service.deps import FeaturesDep, ModelDep, RecommendKey, ServicesDep
from service.errors import InvalidInput
from service.recommend import recommend_for_customer, similar_to_item
from service.schemas import ERRORS, MAX_K, Context, Recommendations
from training.columns import ID_MAX_LENGTH

router = APIRouter(tags=["recommendations"])

UserId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, examples=["C000123"])]
ItemId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, examples=["I00042"])]
K = Annotated[int, Query(ge=1, le=MAX_K, description="How many items (1..100).")]
Explain = Annotated[bool, Query(description="Add a reason to every item.")]
MAX_EXCLUDE = 100


@router.get("/v1/users/{user_id}/recommendations", response_model=Recommendations, responses=ERRORS)
async def recommendations(
    user_id: UserId,
    _key: RecommendKey,
    services: ServicesDep,
    model: ModelDep,
    k: K = 10,
    context: Annotated[
        Context, Query(description="home (the blend), buy-again (bought before), discover (new).")
    ] = "home",
    category: Annotated[str | None, Query(min_length=1, max_length=ID_MAX_LENGTH, examples=["Bakery"])] = None,
    exclude: Annotated[list[str] | None, Query(description="Item ids to leave out (repeat or comma-separate).")] = None,
    explain: Explain = False,
) -> Response:
    """Top-k items for a customer; unknown customers get the fallback chain, named in `source`."""
    excluded = _split_ids(exclude)
    live = await customer_context(services, user_id)
    ranked = recommend_for_customer(
        model=model,
        catalog=services.features.catalog,
        user_id=user_id,
        k=k,
        context=context,
        category=category,
        exclude=excluded,
        just_bought=live.just_bought,
        features=live.features,
        explain=explain,
    )
    return recommendations_answer(
        endpoint="recommendations", ranked=ranked, model=model, extra_reasons=live.degraded_reasons
    )


@router.get("/v1/items/{item_id}/similar", response_model=Recommendations, responses=ERRORS)
async def similar(
    item_id: ItemId,
    _key: RecommendKey,
    features: FeaturesDep,
    model: ModelDep,
    k: K = 10,
    explain: Explain = False,
) -> Response:
    """ "Customers also bought": items bought with this one (fallback: popular in its category)."""
    ranked = similar_to_item(model=model, catalog=features.catalog, item_id=item_id, k=k, explain=explain)
    return recommendations_answer(endpoint="similar", ranked=ranked, model=model, extra_reasons=[])


def _split_ids(values: list[str] | None) -> list[str]:
    ids = [v.strip() for value in values or () for v in value.split(",") if v.strip()]
    if len(ids) > MAX_EXCLUDE:
        raise InvalidInput(f"exclude takes at most {MAX_EXCLUDE} item ids.")
    if any(len(i) > ID_MAX_LENGTH for i in ids):
        raise InvalidInput(f"exclude ids must be at most {ID_MAX_LENGTH} characters.")
    return ids
