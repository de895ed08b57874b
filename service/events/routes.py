"""POST /v1/events: purchase events from the storefront."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from service.deps import EventsDep, EventsKey, ServicesDep
from service.events.schemas import EventRejection, EventsAnswer, EventsRequest
from service.events.service import check_batch_size, ingest_events
from service.observability import current_request_id
from service.schemas import BODY_ERRORS, ERRORS

router = APIRouter(tags=["events"])


@router.post(
    "/v1/events",
    response_model=EventsAnswer,
    responses={
        **BODY_ERRORS,
        503: ERRORS[401]
        | {
            "description": "The event log cannot be written (nothing was stored), or more requests in flight than "
            "RECO_MAX_REQUESTS_IN_FLIGHT: retry after the Retry-After seconds."
        },
    },
)
async def post_events(body: EventsRequest, _key: EventsKey, services: ServicesDep, store: EventsDep) -> EventsAnswer:
    """Validate each event; store the valid ones durably; count and report every rejected one."""
    check_batch_size(events=body.events, limit=services.settings.max_events_per_request)
    # A durable commit (fsync) blocks: run it off the event loop.
    result = await asyncio.to_thread(ingest_events, store=store, events=body.events, now=services.settings.clock())
    return EventsAnswer(
        received=result.received,
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=result.rejected,
        rejections=[EventRejection(index=r.index, event_id=r.event_id, reason=r.reason) for r in result.rejections],
        request_id=current_request_id(),
    )
