"""GET /v1/users/{user_id}/recipes/{recipe_id}/cart: shop by recipe."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from service.answers import customer_context, model_reasons, record
from service.deps import ModelDep, RecommendKey, ServicesDep
from service.observability import current_request_id
from service.recipes.schemas import CartLineOut, Recipe, RecipeCart, RecipeId, Recipes
from service.recipes.service import find_recipe, list_recipes, recipe_cart
from service.schemas import ERRORS, UserId

router = APIRouter(tags=["recipes"])


@router.get("/v1/recipes", response_model=Recipes, responses=ERRORS)
async def recipes(_key: RecommendKey, services: ServicesDep) -> Recipes:
    """The recipes the shop can fill: id, name and ingredients (each a name and an aisle)."""
    return Recipes(
        recipes=[Recipe.model_validate(r) for r in list_recipes(recipes=services.recipes)],
        request_id=current_request_id(),
    )


@router.get(
    "/v1/users/{user_id}/recipes/{recipe_id}/cart",
    response_model=RecipeCart,
    responses={**ERRORS, 404: ERRORS[401] | {"description": "No such recipe."}},
)
async def recipe(
    user_id: UserId, recipe_id: RecipeId, _key: RecommendKey, services: ServicesDep, model: ModelDep
) -> RecipeCart:
    """One in-stock item per ingredient, chosen for this customer; what they probably have at home is marked."""
    found = find_recipe(recipes=services.recipes, recipe_id=recipe_id)
    live = await customer_context(services, user_id)
    lines, source = recipe_cart(
        model=model,
        catalog=services.features.catalog,
        recipe=found,
        user_id=user_id,
        now=services.settings.clock(),
        just_bought=live.just_bought,
    )
    reasons = list(dict.fromkeys([*live.degraded_reasons, *model_reasons(model)]))
    record("recipe", source, reasons)
    return RecipeCart(
        recipe_id=recipe_id,
        name=str(found.get("name", recipe_id)),
        lines=[CartLineOut(**asdict(line)) for line in lines],
        model_version=model.version if model else None,
        source=source,
        degraded=bool(reasons),
        degraded_reasons=reasons,
        request_id=current_request_id(),
    )
