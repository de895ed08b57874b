"""What the domains share to answer: a ranked list (`Ranked`), a customer's live context, the count
of every answer by source and degradation, and the JSON of a ranking endpoint.

`recommendations_answer` serializes with orjson and bypasses the route's declared response_model
(a performance shortcut under review; tests compare its answers with the model): keep it here.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import timedelta

import orjson
from fastapi import Response

from service.events.store import EventLogDown
from service.model import LoadedModel
from service.observability import ANSWER_SOURCE, DEGRADED, current_request_id, labelled
from service.online.features import CustomerFeatures
from service.state import Services
from training.core.bundle import SECONDS_PER_DAY

CUSTOMER_MISSING = "customer-features-missing"  # a customer the model knows has no row in the online store


@dataclass
class Ranked:
    """One answer: (item_id, score, reason or None) triples and where they came from."""

    items: list[tuple[str, float, str | None]]
    source: str
    degraded_reasons: list[str] = field(default_factory=list)
    fallback: str | None = None  # what was unknown, when the caller asked for fallback=popular

    @property
    def degraded(self) -> bool:
        return bool(self.degraded_reasons)


@dataclass
class CustomerContext:
    """Online features of a customer plus what they bought too recently to be recommended again."""

    features: CustomerFeatures | None
    just_bought: set[str] = field(default_factory=set)
    degraded_reasons: list[str] = field(default_factory=list)


# The feature read's reasons that say the online store itself failed (not merely that it is not configured).
STORE_FAILED = frozenset({"online-store-timeout", "online-store-error", "online-store-backoff"})


async def customer_context(services: Services, user_id: str) -> CustomerContext:
    """Read recommend_v1 and the purchases this customer posted as events (from any replica when
    the event log is in Redis), each bounded by the feature timeout; a failed read degrades.

    Without the online store's answer (down, slow, emptied) what the customer bought recently is
    taken from the model's own history instead, by whole days: never recommend what may have been
    bought an hour ago just because the features are missing."""
    read = await services.features.customer(user_id)
    since = services.settings.clock() - timedelta(hours=services.settings.just_bought_hours)
    model = services.holder.current
    missing = read.degraded_reason
    if read.features is not None and not read.features.known and model is not None and model.bundle.knows_user(user_id):
        # The model knows them, so the features built from the same purchases should too: the online
        # store lost them (emptied a moment ago, before its marker's poll says so).
        missing = CUSTOMER_MISSING
    if missing is None and read.features is not None:
        just_bought = read.features.bought_since(since)
    else:
        day = math.floor(since.timestamp() / SECONDS_PER_DAY)
        just_bought = model.bundle.bought_since(user_id, day=day) if model is not None else set()
    reasons = [missing] if missing else []
    if services.events.kind == "redis" and read.degraded_reason in STORE_FAILED:
        return CustomerContext(read.features, just_bought, reasons)  # the same Redis just failed: don't wait twice
    try:
        async with asyncio.timeout(services.settings.feature_timeout_ms / 1000.0):
            just_bought |= await services.events.bought_since(user_id, since)
    except (EventLogDown, TimeoutError):  # the answer goes on without them, marked degraded
        reasons.append("event-log-error")
    return CustomerContext(read.features, just_bought, reasons)


def record(endpoint: str, source: str, reasons: list[str]) -> None:
    """Count the answer by source and each degradation reason."""
    labelled(ANSWER_SOURCE, endpoint, source).inc()
    for reason in reasons:
        labelled(DEGRADED, endpoint, reason).inc()


def model_reasons(model: LoadedModel | None) -> list[str]:
    return [] if model is not None else ["model-not-loaded"]


def recommendations_answer(
    *, endpoint: str, ranked: Ranked, model: LoadedModel | None, extra_reasons: list[str]
) -> Response:
    """The JSON answer of a ranking endpoint, in the shape of `Recommendations` (the route's
    response_model, which documents it; tests validate answers against it). Serialized here with
    orjson from plain dicts: through the pydantic models it cost about 35 µs per answer, a tenth of
    a cached recommendation."""
    reasons = list(dict.fromkeys([*extra_reasons, *ranked.degraded_reasons, *model_reasons(model)]))
    record(endpoint, ranked.source, reasons)
    answer = {
        "items": [{"item_id": i, "score": round(s, 6), "reason": r} for i, s, r in ranked.items],
        "model_version": model.version if model else None,
        "source": ranked.source,
        "degraded": bool(reasons),
        "degraded_reasons": reasons,
        "fallback": ranked.fallback,
        "request_id": current_request_id(),
    }
    return Response(content=orjson.dumps(answer), media_type="application/json")
