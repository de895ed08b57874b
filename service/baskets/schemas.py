"""Request model of POST /v1/baskets/complete (the answer is the shared `Recommendations`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas import MAX_K, Id, JsonWholeNumber

MAX_BASKET_ITEMS = 100


class BasketRequest(BaseModel):
    """The current cart."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"user_id": "C0001", "items": ["P0001", "P0107"], "k": 5, "explain": True}]},
    )

    user_id: Id | None = None
    items: list[Id] = Field(min_length=1, max_length=MAX_BASKET_ITEMS)
    k: JsonWholeNumber = Field(default=10, ge=1, le=MAX_K)
    explain: bool = Field(default=False, strict=True)  # true or false: not 0, 1 or "yes"
    fallback: Literal["popular"] | None = Field(
        default=None,
        description="popular: answer popular items, with `fallback` saying what was unknown, instead of a 404 "
        "when no item of the cart is in the catalog.",
    )
