"""GET /v1/users/{user_id}/recommendations and GET /v1/items/{item_id}/similar.

Both are the storefront's hot routes: they answer through the fast lane (service/fastlane.py),
whose `build` for them is `_fast_arguments`, and with `recommendations_answer` (service/answers.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from service.answers import customer_context, recommendations_answer
from service.deps import ModelDep, RecommendKey, ServicesDep, authorize
from service.fastlane import api_key, fast_lane, query_model
from service.recommendations.schemas import RecommendationsQuery, SimilarQuery
from service.recommendations.service import explore_share, recommend_for_customer, similar_to_item
from service.schemas import ERRORS, ItemId, Recommendations, UserId, has_control_or_surrogate
from training.core.columns import ID_MAX_LENGTH

router = APIRouter(tags=["recommendations"])


async def recommendations(
    user_id: UserId,
    _key: RecommendKey,
    services: ServicesDep,
    model: ModelDep,
    query: Annotated[RecommendationsQuery, Query()],
) -> Response:
    """Top-k items for a customer; unknown customers get the fallback chain, named in `source`."""
    excluded = _split_ids(query.exclude)
    share = explore_share(diversity=query.diversity, setting=services.settings.home_explore_share, model=model)
    live = await customer_context(services, user_id)
    ranked = recommend_for_customer(
        model=model,
        catalog=services.features.catalog,
        user_id=user_id,
        k=query.k,
        context=query.context,
        category=query.category,
        exclude=excluded,
        just_bought=live.just_bought,
        features=live.features,
        explain=query.explain,
        sensitive=services.settings.sensitive_categories,
        explore_share=share,
        fallback=query.fallback,
    )
    return recommendations_answer(
        endpoint="recommendations", ranked=ranked, model=model, extra_reasons=live.degraded_reasons
    )


async def similar(
    item_id: ItemId,
    _key: RecommendKey,
    services: ServicesDep,
    model: ModelDep,
    query: Annotated[SimilarQuery, Query()],
) -> Response:
    """ "Customers also bought": items bought with this one (fallback: popular in its category)."""
    ranked = similar_to_item(
        model=model,
        catalog=services.features.catalog,
        item_id=item_id,
        k=query.k,
        explain=query.explain,
        sensitive=services.settings.sensitive_categories,
        fallback=query.fallback,
    )
    return recommendations_answer(endpoint="similar", ranked=ranked, model=model, extra_reasons=[])


def _fast_arguments(path_param: str, query: type[SimilarQuery]) -> Callable[[Request], dict[str, Any] | None]:
    """The fast lane's `build` (service/fastlane.py) for the two routes above."""

    def build(request: Request) -> dict[str, Any] | None:
        value = request.path_params[path_param]
        parsed = query_model(request, query)
        if parsed is None or len(value) > ID_MAX_LENGTH or has_control_or_surrogate(value):
            return None  # FastAPI's lane answers with its 422
        services = request.app.state.services
        return {
            path_param: value,
            "_key": authorize(services.settings, api_key(request), "recommend"),
            "services": services,
            "model": services.holder.current,
            "query": parsed,
        }

    return build


for path, endpoint, param, query_class in (
    ("/v1/users/{user_id}/recommendations", recommendations, "user_id", RecommendationsQuery),
    ("/v1/items/{item_id}/similar", similar, "item_id", SimilarQuery),
):
    router.add_api_route(
        path,
        endpoint,
        methods=["GET"],
        response_model=Recommendations,
        responses={**ERRORS, 404: ERRORS[401] | {"description": "An unknown item or category (one sentence)."}},
        route_class_override=fast_lane(_fast_arguments(param, query_class)),
    )


def _split_ids(values: list[str] | None) -> list[str]:
    """The `exclude` values split at commas (the query model bounds their number and length)."""
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]
