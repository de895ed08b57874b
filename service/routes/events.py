"""POST /v1/events: purchase events from the storefront."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from service.deps import EventsDep, EventsKey, ServicesDep
from service.observability import EVENTS, current_request_id
from service.schemas import ERRORS, EventRejection, EventsAnswer, EventsRequest

router = APIRouter(tags=["events"])


@router.post("/v1/events", response_model=EventsAnswer, responses=ERRORS)
async def post_events(body: EventsRequest, _key: EventsKey, services: ServicesDep, store: EventsDep) -> EventsAnswer:
    """Validate each event; store the valid ones durably; count and report every rejected one."""
    # A durable commit (fsync) blocks: run it off the event loop.
    result = await asyncio.to_thread(store.ingest, body.events, now=services.settings.clock())
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
