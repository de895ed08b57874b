"""Request model of POST /v1/baskets/complete (the answer is the shared `Recommendations`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from service.schemas import MAX_K, Id
from training.core.columns import ID_MAX_LENGTH

MAX_BASKET_ITEMS = 100


class BasketRequest(BaseModel):
    """The current cart."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"user_id": "C000123", "items": ["I00042", "I00007"], "k": 5}]},
    )

    user_id: str | None = Field(default=None, min_length=1, max_length=ID_MAX_LENGTH)
    items: list[Id] = Field(min_length=1, max_length=MAX_BASKET_ITEMS)
    k: int = Field(default=10, ge=1, le=MAX_K)
    explain: bool = False
