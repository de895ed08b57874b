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
                            "ingredient": "Dairy",
                            "item_id": "I00042",
                            "name": "Whole Milk 1L",
                            "price": 1.19,
                            "in_cart": False,
                            "status": "probably-at-home",
                            "reason": "you bought Whole Milk 1L 2 days ago and usually buy it every 7 days",
                        },
                        {
                            "ingredient": "Bakery",
                            "item_id": "I00311",
                            "name": "Flour 1kg",
                            "price": 0.89,
                            "in_cart": True,
                            "status": "added",
                            "reason": "your usual",
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
