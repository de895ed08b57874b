"""Models of POST /v1/events."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

# An event as the purchase contract and an event_id make it (service/events/store.py validates it).
# Declared for OpenAPI only: each event is validated on its own, so one bad event is reported in the
# answer instead of failing the whole batch with a 422.
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "PurchaseEvent",
    "required": ["event_id", "user_id", "item_id", "timestamp"],
    "properties": {
        "event_id": {"type": "string", "maxLength": 128, "description": "Unique per event (duplicates are counted)."},
        "user_id": {"type": "string", "maxLength": 128},
        "item_id": {"type": "string", "maxLength": 128},
        "timestamp": {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
            "description": "ISO-8601 or epoch seconds; stored as UTC; at most a day in the future.",
        },
        "quantity": {"type": "integer", "minimum": 1, "default": 1},
        "price": {"type": ["number", "null"], "minimum": 0, "description": "Unit price."},
        "order_id": {"type": ["string", "null"], "maxLength": 128, "description": "Lines sharing it form a basket."},
    },
}
Event = Annotated[Any, WithJsonSchema(EVENT_SCHEMA)]


class EventsRequest(BaseModel):
    """Purchase events; each is validated on its own (a bad one is reported, the rest stored)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "event_id": "e-1",
                            "user_id": "C0001",
                            "item_id": "P0007",
                            "timestamp": "2025-12-31T10:15:00Z",
                            "quantity": 2,
                            "price": 1.62,
                            "order_id": "o-77",
                        }
                    ]
                }
            ]
        }
    )

    events: list[Event] = Field(min_length=1, max_length=1_000)


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
