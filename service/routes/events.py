"""POST /v1/events: purchase events from the storefront."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from fastapi import APIRouter

from service.deps import EventsDep, EventsKey, ServicesDep
from service.errors import EventsUnavailable, InvalidInput
from service.observability import EVENTS, current_request_id
from service.schemas import ERRORS, EventRejection, EventsAnswer, EventsRequest

router = APIRouter(tags=["events"])
log = logging.getLogger("reco.service.events")


@router.post(
    "/v1/events",
    response_model=EventsAnswer,
    responses={**ERRORS, 503: ERRORS[401] | {"description": "The event log cannot be written; nothing was stored."}},
)
async def post_events(body: EventsRequest, _key: EventsKey, services: ServicesDep, store: EventsDep) -> EventsAnswer:
    """Validate each event; store the valid ones durably; count and report every rejected one."""
    limit = services.settings.max_events_per_request
    if len(body.events) > limit:
        raise InvalidInput(f"At most {limit} events per request (RECO_MAX_EVENTS); got {len(body.events)}.")
    try:
        # A durable commit (fsync) blocks: run it off the event loop.
        result = await asyncio.to_thread(store.ingest, body.events, now=services.settings.clock())
    except (sqlite3.Error, OSError) as exc:
        log.warning("event log write failed: %s: %s", type(exc).__name__, (str(exc).splitlines() or [""])[0][:200])
        raise EventsUnavailable("The event log cannot be written right now; nothing was stored, retry.") from None
    EVENTS.labels(outcome="accepted").inc(result.accepted)
    EVENTS.labels(outcome="duplicate").inc(result.duplicates)
    EVENTS.labels(outcome="rejected").inc(result.rejected)
    return EventsAnswer(
        received=result.received,
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=result.rejected,
        rejections=[EventRejection(index=r.index, event_id=r.event_id, reason=r.reason) for r in result.rejections],
        request_id=current_request_id(),
    )
