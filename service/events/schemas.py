"""Models of POST /v1/events."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from service.schemas import ID_PATTERN, has_control_or_surrogate
from training.core import columns as col


def _id(value: Any, info: ValidationInfo) -> str:
    """An id as the purchase contract keeps it: text or an integer, trimmed, 1..128 characters, no
    control character and no unpaired surrogate (SQLite and Parquet cannot store one)."""
    name = info.field_name
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise PydanticCustomError("missing_id", f"missing {name}")
    text = str(value).strip()
    if len(text) > col.ID_MAX_LENGTH:
        raise PydanticCustomError("id_too_long", f"{name} longer than {col.ID_MAX_LENGTH} characters")
    if has_control_or_surrogate(text):
        raise PydanticCustomError("id_characters", f"{name} holds a control character or an unpaired surrogate")
    return text


def _optional_id(value: Any, info: ValidationInfo) -> str | None:
    return None if value is None else _id(value, info)


def _timestamp(value: Any, info: ValidationInfo) -> datetime:
    """ISO-8601 text or epoch seconds, as UTC, from 1970-01-01 to a day after the service's now
    (`now` in the validation context)."""
    parsed = _parse_time(value)
    if parsed is None:
        raise PydanticCustomError("timestamp", "unparseable or missing timestamp (ISO-8601 or epoch seconds)")
    if parsed < col.EARLIEST_TIMESTAMP:
        raise PydanticCustomError("timestamp_early", "timestamp is before 1970-01-01")
    now = (info.context or {}).get("now") or datetime.now(UTC)
    if parsed > now + col.FUTURE_SLACK:
        raise PydanticCustomError("timestamp_future", "timestamp is in the future")
    return parsed


def _parse_time(value: Any) -> datetime | None:
    try:
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int | float):
            return datetime.fromtimestamp(float(value), tz=UTC) if math.isfinite(value) else None
        if isinstance(value, str) and value.strip():
            text = value.strip()
            if text.replace(".", "", 1).isdigit():
                return datetime.fromtimestamp(float(text), tz=UTC)
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _quantity(value: Any) -> Any:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("quantity", QUANTITY_RULE)
    return value


QUANTITY_RULE = f"quantity must be a whole number from 1 to {col.QUANTITY_MAX:,}"
ID_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": col.ID_MAX_LENGTH, "pattern": ID_PATTERN},
        {"type": "integer"},
    ]
}
EventId = Annotated[str, BeforeValidator(_id), WithJsonSchema(ID_SCHEMA)]
OptionalId = Annotated[
    str | None, BeforeValidator(_optional_id), WithJsonSchema({"anyOf": [ID_SCHEMA, {"type": "null"}]})
]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
            "description": "ISO-8601 or epoch seconds; stored as UTC; from 1970-01-01 to a day after now.",
        }
    ),
]


class PurchaseEvent(BaseModel):
    """One purchase event: the purchase contract's line plus an event_id. Validated on its own
    (`validate_event`): a bad event is rejected with its reason and the rest of the batch stored."""

    model_config = ConfigDict(title="PurchaseEvent", extra="ignore")

    event_id: EventId = Field(description="Unique per event (duplicates are counted, not stored twice).")
    user_id: EventId
    item_id: EventId
    timestamp: Timestamp
    quantity: Annotated[int, BeforeValidator(_quantity)] = Field(default=1, ge=1, le=col.QUANTITY_MAX)
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="Unit price.")
    order_id: OptionalId = Field(default=None, description="Lines sharing it form a basket.")


# Errors raised by the validators above: their message is the reason.
CUSTOM = frozenset(
    {"missing_id", "id_too_long", "id_characters", "timestamp", "timestamp_early", "timestamp_future", "quantity"}
)
# The reason of a rejected event per field, when pydantic's own check (a type, a bound) refused it.
REASONS = {
    "quantity": QUANTITY_RULE,
    "price": "price must be a number ≥ 0",
    "timestamp": "unparseable or missing timestamp (ISO-8601 or epoch seconds)",
}

# Declared for OpenAPI as PurchaseEvent, read as any JSON value: each event is validated on its own,
# so one bad event is reported in the answer instead of failing the whole batch with a 422.
Event = Annotated[Any, WithJsonSchema(PurchaseEvent.model_json_schema())]


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
