"""Models of GET /v1/users/{user_id}/shelves."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from service.schemas import MAX_K, Item, WholeNumber

MAX_SHELVES = 6


class ShelvesQuery(BaseModel):
    """Query parameters of GET /v1/users/{user_id}/shelves."""

    shelves: WholeNumber = Field(default=4, ge=1, le=MAX_SHELVES, description="How many shelves at most (1..6).")
    k: WholeNumber = Field(default=10, ge=1, le=MAX_K, description="Items per shelf at most (1..100).")
    min_items: WholeNumber = Field(
        default=4, ge=1, le=MAX_K, description="A shelf with fewer items is left out (capped at k)."
    )


class Shelf(BaseModel):
    """One row of the home page."""

    id: str = Field(
        description="Stable id of the row: buy-again, picked-for-you, because-you-bought-{item_id}, "
        "new-in-{category}, popular-in-{category}, popular-this-week, popular-this-month."
    )
    title: str = Field(description="What the shopper reads above the row.")
    reason: str = Field(description="Why this row, in a shopper's words.")
    items: list[Item] = Field(description="The row's items, each with its own reason; no item is on two rows.")
    anchor_item_id: str | None = Field(default=None, description="The purchase a because-you-bought row is about.")
    category: str | None = Field(default=None, description="The aisle of a new-in or popular-in row.")


class Shelves(BaseModel):
    """The home page as ordered shelves and where they came from."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "shelves": [
                        {
                            "id": "buy-again",
                            "title": "Buy it again",
                            "reason": "Your regulars, the ones you are due to buy first",
                            "items": [
                                {"item_id": "P0434", "score": 10.88, "reason": "you buy this about every 28 days"}
                            ],
                        },
                        {
                            "id": "because-you-bought-p0007",
                            "title": "Because you bought Basics Everyday Passata (Medium)",
                            "reason": "New to you, and what customers who buy Basics Everyday Passata (Medium) buy",
                            "items": [
                                {
                                    "item_id": "P0107",
                                    "score": 0.81,
                                    "reason": "because you bought Basics Everyday Passata (Medium)",
                                }
                            ],
                            "anchor_item_id": "P0007",
                        },
                    ],
                    "model_version": "1",
                    "source": "model",
                    "degraded": False,
                    "degraded_reasons": [],
                    "request_id": "7f3c9e1a2b4d4c6e8f0a1b2c3d4e5f60",
                }
            ]
        }
    )

    shelves: list[Shelf]
    model_version: str | None = Field(description="Registered model version that ranked (null: no model loaded).")
    source: str = Field(
        description="model for a customer the model knows; else the first shelf's link: item-to-item | "
        "popular-in-category | popular; none when no shelf had enough items."
    )
    degraded: bool = Field(description="True when a dependency (online store, model) was skipped.")
    degraded_reasons: list[str] = Field(default_factory=list)
    request_id: str
