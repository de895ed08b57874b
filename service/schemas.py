"""What every endpoint shares (docs/api.md): id types, the ranked-list answer, the error body.

Each domain's own request and response models live beside its routes (`service/<domain>/schemas.py`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from training.core.columns import ID_MAX_LENGTH

MAX_K = 100

# Ids hold no control character (a NUL among them): the same pattern in OpenAPI and in the checks.
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
_CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_WHOLE_NUMBER = re.compile(r"\s*[+-]?\d+\s*")


def has_control_or_surrogate(text: str) -> bool:
    """Whether `text` holds a control character or an unpaired surrogate (JSON can carry one, UTF-8 cannot)."""
    return _CONTROL_OR_SURROGATE.search(text) is not None


def whole_number(value: Any) -> Any:
    """A count or a year in a query string or a path: digits with an optional sign (pydantic alone
    takes "10.0" as 10; a sign lets "-1" hear the range it is outside). A JSON number is left to
    pydantic: 10.0 is an integer for JSON Schema too, 10.5 is not."""
    if isinstance(value, bool) or (isinstance(value, str) and not _WHOLE_NUMBER.fullmatch(value)):
        raise PydanticCustomError("int_type", "Input should be a whole number, without a decimal point")
    return value


def json_whole_number(value: Any) -> Any:
    """A count in a JSON body: a JSON number without a fraction (10 or 10.0), not "10" or true."""
    if isinstance(value, bool | str):
        raise PydanticCustomError("int_type", "Input should be a JSON number without a fraction")
    return value


WholeNumber = Annotated[int, BeforeValidator(whole_number)]  # query strings and paths
JsonWholeNumber = Annotated[int, BeforeValidator(json_whole_number)]  # JSON bodies

Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
UserId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN, examples=["C0001"])]
ItemId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN, examples=["P0007"])]


class Item(BaseModel):
    """A recommended item."""

    item_id: str
    score: float
    reason: str | None = Field(default=None, description="Why, in a shopper's words (when explain=true).")


class Recommendations(BaseModel):
    """A ranked list and where it came from."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"item_id": "P0434", "score": 0.93, "reason": "you buy this about every 12 days"},
                        {
                            "item_id": "P0021",
                            "score": 0.71,
                            "reason": "because you bought Hillcrest Premium Semi-Skimmed Milk (Value Pack)",
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

    items: list[Item]
    model_version: str | None = Field(description="Registered model version that ranked (null: no model loaded).")
    source: str = Field(
        description="Link of the fallback chain that answered: model | item-to-item | "
        "popular-in-category | popular | none; for buy-again also recent-purchases (what the online store "
        "says they bought) or no-history (an empty list: nothing bought, never others' items)."
    )
    degraded: bool = Field(description="True when a dependency (online store, model) was skipped.")
    degraded_reasons: list[str] = Field(default_factory=list)
    fallback: str | None = Field(
        default=None,
        description="Set when the request named an unknown category or item and asked for fallback=popular: "
        "what was unknown (the items are then popular ones; null otherwise).",
    )
    request_id: str


class ErrorBody(BaseModel):
    """Every error answer."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"detail": "Missing X-API-Key header.", "request_id": "7f3c9e1a2b4d"}]}
    )

    detail: Any
    request_id: str


# The refusals every keyed endpoint can answer (service/errors.py, service/edge.py); BODY_ERRORS adds
# the body limit for endpoints that take a body.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or unknown X-API-Key."},
    403: {"model": ErrorBody, "description": "The key lacks this endpoint's scope."},
    422: {"model": ErrorBody, "description": "Input out of bounds."},
    503: {
        "model": ErrorBody,
        "description": "More requests in flight on this worker than RECO_MAX_REQUESTS_IN_FLIGHT; retry after "
        "the Retry-After seconds.",
    },
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": ErrorBody, "description": "The body cannot be read as UTF-8 JSON text."},
    413: {"model": ErrorBody, "description": "The body is larger than RECO_MAX_BODY_BYTES."},
}
