"""Models of POST /v1/events."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventsRequest(BaseModel):
    """Purchase events; each is validated on its own (a bad one is reported, the rest stored)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "event_id": "e-1",
                            "user_id": "C000123",
                            "item_id": "I00042",
                            "timestamp": "2025-12-30T10:15:00Z",
                            "quantity": 2,
                            "price": 1.19,
                            "order_id": "o-77",
                        }
                    ]
                }
            ]
        }
    )

    events: list[Any] = Field(min_length=1, max_length=1_000)


class EventRejection(BaseModel):
    index: int
    event_id: str | None
    reason: str


class EventsAnswer(BaseModel):
    """received = accepted + duplicates + rejected."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "received": 2,
                    "accepted": 1,
                    "duplicates": 0,
                    "rejected": 1,
                    "rejections": [{"index": 1, "event_id": "e-2", "reason": "quantity must be an integer ≥ 1"}],
                    "request_id": "7f3c9e1a2b4d4c6e8f0a1b2c3d4e5f60",
                }
            ]
        }
    )

    received: int
    accepted: int
    duplicates: int
    rejected: int
    rejections: list[EventRejection]
    request_id: str
