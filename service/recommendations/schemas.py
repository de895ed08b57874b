"""Query models of GET /v1/users/{user_id}/recommendations and GET /v1/items/{item_id}/similar."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from service.schemas import MAX_K, WholeNumber
from training.core.columns import ID_MAX_LENGTH

Context = Literal["home", "buy-again", "discover"]
MAX_EXCLUDE = 100


Fallback = Literal["popular"]


class SimilarQuery(BaseModel):
    """Query parameters of GET /v1/items/{item_id}/similar."""

    k: WholeNumber = Field(default=10, ge=1, le=MAX_K, description="How many items (1..100).")
    explain: bool = Field(default=False, description="Add a reason to every item.")
    fallback: Fallback | None = Field(
        default=None,
        description="popular: answer popular items, with `fallback` saying what was unknown, instead of a 404 "
        "for an unknown item or category.",
    )


class RecommendationsQuery(SimilarQuery):
    """Query parameters of GET /v1/users/{user_id}/recommendations."""

    context: Context = Field(default="home", description="home (the blend), buy-again (bought before), discover (new).")
    category: str | None = Field(default=None, min_length=1, max_length=ID_MAX_LENGTH, examples=["Bakery"])
    exclude: list[Annotated[str, StringConstraints(max_length=ID_MAX_LENGTH)]] | None = Field(
        default=None,
        max_length=MAX_EXCLUDE,
        description=f"Item ids to leave out: repeat the parameter or comma-separate (at most {MAX_EXCLUDE} values "
        f"of at most {ID_MAX_LENGTH} characters).",
    )
    diversity: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="context=home only: the share of items new to the customer (explore slots, spread over the "
        "list; default RECO_HOME_EXPLORE_SHARE if set, else the model's share, 0.1 unless trained otherwise; "
        "0 gives the plain blend).",
    )
