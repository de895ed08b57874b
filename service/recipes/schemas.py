"""Models of GET /v1/users/{user_id}/recipes/{recipe_id}/cart."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from training.core.columns import ID_MAX_LENGTH

RecipeId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, examples=["pancakes"])]


class CartLineOut(BaseModel):
    """One ingredient of a recipe, with the item chosen for it."""

    ingredient: str
    item_id: str | None
    name: str | None
    price: float | None
    in_cart: bool
    status: Literal["added", "probably-at-home", "unavailable"]
    reason: str
    category: str | None = Field(default=None, description="The ingredient's aisle.")


class RecipeCart(BaseModel):
    """A cart for a recipe: one item per ingredient."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "recipe_id": "pancakes",
                    "name": "Pancakes",
                    "lines": [
                        {
                            "ingredient": "Plain Flour",
                            "item_id": "P0461",
                            "name": "Basics Plain Flour (Medium)",
                            "price": 0.71,
                            "in_cart": True,
                            "status": "added",
                            "reason": "popular in Flour at your usual price level",
                            "category": "Flour",
                        },
                        {
                            "ingredient": "Milk",
                            "item_id": "P0007",
                            "name": "Hillcrest Premium Semi-Skimmed Milk (Value Pack)",
                            "price": 1.62,
                            "in_cart": False,
                            "status": "probably-at-home",
                            "reason": "you bought Hillcrest Premium Semi-Skimmed Milk (Value Pack) 3 days ago and "
                            "usually buy it every 12 days",
                            "category": "Milk",
                        },
                    ],
                    "model_version": "3",
                    "source": "model",
                    "degraded": False,
                    "request_id": "7f3c9e1a2b4d4c6e8f0a1b2c3d4e5f60",
                }
            ]
        }
    )

    recipe_id: str
    name: str
    lines: list[CartLineOut]
    model_version: str | None
    source: str
    degraded: bool
    degraded_reasons: list[str] = Field(default_factory=list)
    request_id: str


class Ingredient(BaseModel):
    """One ingredient: what the recipe calls it, and its aisle."""

    name: str
    category: str | None


class Recipe(BaseModel):
    """A recipe the shop can fill."""

    id: str
    name: str
    ingredients: list[Ingredient]


class Recipes(BaseModel):
    """Every recipe, by id."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "recipes": [
                        {
                            "id": "pancakes",
                            "name": "Pancakes",
                            "ingredients": [
                                {"name": "Plain Flour", "category": "Flour"},
                                {"name": "Eggs", "category": "Eggs"},
                                {"name": "Milk", "category": "Milk"},
                                {"name": "Butter", "category": "Butter"},
                                {"name": "Maple Syrup", "category": "Sugar & Syrup"},
                            ],
                        }
                    ],
                    "request_id": "7f3c9e1a2b4d4c6e8f0a1b2c3d4e5f60",
                }
            ]
        }
    )

    recipes: list[Recipe]
    request_id: str
